//! Eddy's WebAssembly runtime: one wasmtime engine per process, components compiled
//! once and cached by content hash, instances started from `InstancePre` with the
//! pooling allocator, and one instance per operator subtask, called with whole batches.
//!
//! Plugins see nothing of the host but the `eddy:plugin` WIT interfaces and a WASI
//! context with nothing granted; their stdout and stderr go to the host log.

pub mod bindings;
mod cache;
mod connector;
mod error;
mod host;
mod keyed;
mod native;
mod operator;
mod output;
mod runtime;

pub use cache::ComponentCache;
pub use connector::{WasmCommitter, WasmSink, WasmSource};
pub use eddy_core::metrics::PluginMetrics;
pub use error::WasmError;
pub use host::{HostState, InstanceInfo, MemoryMeter};
pub use native::NativeTwins;
pub use operator::WasmOperator;
pub use runtime::{Plugin, Prepared, Runtime, RuntimeConfig, WIT_VERSION, world_of};
