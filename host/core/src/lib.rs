//! Eddy's engine core: events in packed batches, job files, the executor, and the
//! built-in sources and sinks. It knows nothing of WebAssembly: plugin operators come
//! in through [`operator::OperatorFactory`], so the core builds and tests in seconds.

pub mod executor;
pub mod generator;
pub mod job;
pub mod operator;
pub mod sink;
pub mod source;

pub use eddy_batch::{self as batch, Batch, EventRef, Header, NO_TIMESTAMP};
pub use executor::{Pipeline, RunError, RunSummary, StageMetrics};
pub use job::{Job, JobError, OperatorKind, Step};
pub use operator::{Operator, OperatorError, OperatorFactory};
