//! Built-in connectors that need more than a few lines: the event generator, and the
//! digest sink of the benchmarks.

pub mod digest;
pub mod generator;
