//! Eddy's WebAssembly runtime: one wasmtime engine per process, components compiled
//! once and cached by content hash, instances started from `InstancePre` with the
//! pooling allocator, and one instance per operator subtask, called with whole batches.
//!
//! An [`Instance`] is what every world shares (sandbox, limits, deadlines, traps as
//! errors); one adapter per world family in [`worlds`] and the connectors makes it the
//! core trait its steps, window functions, sources or sinks are driven through.
//!
//! Plugins see nothing of the host but the `eddy:plugin` WIT interfaces and a WASI
//! context with nothing granted; their stdout and stderr go to the host log.

pub mod bindings;
mod cache;
mod connector;
mod error;
mod host;
pub mod instance;
mod keyed;
mod native;
mod output;
mod runtime;
pub mod worlds;

pub use cache::ComponentCache;
pub use connector::{Polled, SplitInfo, WasmCommitter, WasmSink, WasmSource};
pub use eddy_core::metrics::PluginMetrics;
pub use error::WasmError;
pub use host::{HostState, InstanceInfo, MemoryMeter};
pub use instance::{Instance, World};
pub use native::NativeTwins;
pub use runtime::{Plugin, Runtime, RuntimeConfig, WIT_VERSION, world_of};
pub use worlds::{WasmAggregate, WasmProcess, WasmStateless, WasmWindowFunction};
