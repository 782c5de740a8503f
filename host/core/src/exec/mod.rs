//! Running a job: the plan cut into stages, tasks joined by byte-bounded channels and
//! exchanges, watermarks combined per task, and the dataflow that builds and runs them.

pub mod channel;
mod dataflow;
pub mod exchange;
pub mod plan;
pub mod watermark;

pub use dataflow::{BuildOptions, Dataflow, RunError, RunSummary, summary};
