//! Eddy's engine core: events in packed batches, job files, the executor, and the
//! built-in connectors and operators. It knows nothing of WebAssembly: plugin operators
//! and connectors of leaf crates come in through a [`registry::Registry`], so the core
//! builds and tests in seconds.

pub mod checkpoint;
pub mod connectors;
pub mod deadletter;
pub mod error;
pub mod exec;
pub mod expr;
pub mod fields;
pub mod http;
pub mod job;
pub mod keygroup;
pub mod latency;
pub mod memory;
pub mod metrics;
pub mod operator;
pub mod operators;
pub mod registry;
pub mod sideoutput;
pub mod sink;
pub mod source;
pub mod state;
pub mod tenant;
pub mod time;

pub use eddy_batch::{self as batch, Batch, EventRef, Header, NO_TIMESTAMP};
pub use eddy_nexmark as nexmark;
pub use error::{ErrorClass, ErrorDomain, Retry};
pub use exec::{BuildOptions, Dataflow, RunError, RunSummary};
pub use job::{Job, JobError, OperatorKind, Partition, Step, StepOp};
pub use operator::{Operator, OperatorError, OperatorFactory};
pub use registry::Registry;

/// The hex SHA-256 of `bytes`: how components are named by content and API tokens are
/// kept without keeping the tokens.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
