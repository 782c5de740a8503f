//! Running a job: the plan cut into stages, tasks joined by byte-bounded channels and
//! exchanges, watermarks combined per task, the dataflow that builds and runs them, and
//! the supervisor that restarts it.

mod build;
pub mod channel;
mod dataflow;
pub mod exchange;
pub mod network;
pub mod plan;
mod run_error;
pub mod supervise;
mod task;
pub mod watermark;

pub use build::BuildOptions;
pub use dataflow::{Dataflow, RunSummary, summary};
pub use run_error::RunError;
