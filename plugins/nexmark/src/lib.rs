//! The operator code of the Nexmark queries q0–q5, q7 and q8 (the job files are in
//! `plugins/nexmark/queries/`). One crate, compiled twice: into the components
//! `nexmark_select.wasm` (a flat-map) and `nexmark_state.wasm` (a process function),
//! and natively, as the twins the benchmark compares them with.
//!
//! Results follow Flink's SQL semantics: a NULL field fails every predicate and stays
//! NULL in the output; prices and ids are BIGINT.

mod event;
mod rows;
mod select;
mod state;

pub use select::Select;
pub use state::Stateful;
