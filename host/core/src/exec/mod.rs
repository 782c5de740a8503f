//! Running a job: the plan cut into stages, tasks joined by byte-bounded channels and
//! exchanges, watermarks combined per task, the dataflow that builds and runs them, and
//! the supervisor that restarts it.

pub mod channel;
mod dataflow;
pub mod exchange;
pub mod plan;
pub mod supervise;
pub mod watermark;

pub use dataflow::{BuildOptions, Dataflow, RunError, RunSummary, summary};
