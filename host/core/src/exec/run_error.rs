//! Why a run failed: the error of whatever failed (source, operator, sink, exchange,
//! checkpoint), and its class, which decides whether the job restarts.

use crate::checkpoint::CheckpointError;
use crate::checkpoint::coordinator::CoordinatorError;
use crate::error::ErrorClass;
use crate::exec::channel::Closed;
use crate::exec::exchange::SendError;
use crate::exec::plan::PlanError;
use crate::operator::OperatorError;
use crate::sink::SinkError;
use crate::source::SourceError;

/// Why a run stopped before its input ended.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The job's topology cannot run.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// An operator failed.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// An exchange could not carry a batch.
    #[error(transparent)]
    Exchange(SendError),
    /// Checkpoints cannot be written or restored.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint coordinator failed.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// A channel to a subtask in another process could not be made.
    #[error("network: {0}")]
    Network(String),
    /// The run was cancelled from outside (its job is failing over elsewhere).
    #[error("cancelled")]
    Cancelled,
    /// A task thread could not be started.
    #[error("cannot start a task thread: {0}")]
    Thread(std::io::Error),
    /// A bug in Eddy itself; please report it.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RunError {
    /// Whose failure this is and whether a restart can get past it.
    pub fn class(&self) -> ErrorClass {
        match self {
            RunError::Plan(e) => e.class(),
            RunError::Source(e) => e.class(),
            RunError::Operator(e) => e.class(),
            RunError::Sink(e) => e.class(),
            RunError::Exchange(e) => e.class(),
            RunError::Checkpoint(e) => e.class(),
            RunError::Coordinator(e) => e.class(),
            RunError::Network(_) => ErrorClass::EXTERNAL,
            RunError::Cancelled => ErrorClass::EXTERNAL,
            RunError::Thread(_) | RunError::Internal(_) => ErrorClass::INTERNAL,
        }
    }

    /// Whether a restart may get past this error.
    pub fn retryable(&self) -> bool {
        self.class().retryable()
    }
}

impl From<Closed> for RunError {
    fn from(_: Closed) -> Self {
        RunError::Exchange(SendError::Closed(Closed))
    }
}
