//! One adapter per family of plugin worlds, each giving a bound [`Instance`] the one
//! core trait its steps are driven through: stateless operators (map, filter,
//! flat-map), process functions, and the functions of window steps. The connector
//! worlds (source, sink) are adapted with the connectors.
//!
//! [`Instance`]: crate::instance::Instance

pub mod process;
pub mod stateless;
pub mod window;

pub use process::WasmProcess;
pub use stateless::{StatelessWorld, WasmStateless};
pub use window::{WasmAggregate, WasmWindowFunction};
