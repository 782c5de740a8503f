//! The contract of a sink: batches written, prepared at each checkpoint barrier, and a
//! committer that publishes what was prepared once the checkpoint completed (two-phase
//! commit). The connectors that implement it are in [`crate::connectors`].

use std::path::Path;

use crate::batch::Batch;
use crate::error::ErrorClass;

/// A consumer of result batches.
pub trait Sink: Send {
    /// Writes every event of `batch`.
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError>;

    /// A checkpoint barrier: makes what was written so far durable but not yet
    /// visible, and returns what its [`Committer`] needs to publish it once checkpoint
    /// `checkpoint` has completed.
    fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, SinkError>;

    /// The input ended: prepares the rest, for the job's final commit.
    fn finish(&mut self) -> Result<Vec<u8>, SinkError> {
        self.prepare(u64::MAX)
    }

    /// Finishes and publishes at once, for sinks outside checkpoints (side outputs,
    /// dead letters).
    fn publish(&mut self) -> Result<(), SinkError>;

    /// Whether the reader of this sink has gone away (`eddy run … | head`): what the
    /// sink is sent from then on is dropped, and the job ends its input as on a stop.
    fn closed(&self) -> bool {
        false
    }
}

/// Publishes what a sink prepared, once its checkpoint has completed; lives with the
/// checkpoint coordinator, apart from the sink that writes.
pub trait Committer: Send {
    /// Publishes `prepared`; doing it twice changes nothing.
    fn commit(&mut self, prepared: &[u8]) -> Result<(), SinkError>;

    /// Discards `prepared`, whose checkpoint will never complete.
    fn abort(&mut self, prepared: &[u8]) -> Result<(), SinkError> {
        let _ = prepared;
        Ok(())
    }
}

/// A sink's writer and its committer.
pub type Connected = (Box<dyn Sink>, Box<dyn Committer>);

/// A sink failed to write; names the sink and what it writes.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink:?}: {}{error}", target.as_ref().map(|t| format!("cannot write {t}: ")).unwrap_or_default())]
pub struct SinkError {
    /// Name of the sink.
    pub sink: String,
    /// The file or stream, when the sink writes one the host opened; a plugin sink's
    /// error names its plugin itself.
    pub target: Option<String>,
    /// The I/O error.
    pub error: std::io::Error,
}

impl SinkError {
    /// An error of sink `sink` writing `target`.
    pub fn new(sink: &str, target: &Path, error: std::io::Error) -> Self {
        SinkError {
            sink: sink.to_owned(),
            target: Some(target.display().to_string()),
            error,
        }
    }

    /// An error of sink `sink` that the error itself describes (a plugin sink's, which
    /// names the plugin and its export).
    pub fn of(sink: &str, error: std::io::Error) -> Self {
        SinkError {
            sink: sink.to_owned(),
            target: None,
            error,
        }
    }

    /// Whether a restart can get past this error, by the kind of its I/O error
    /// (connectors that know an error to be deterministic report it as
    /// [`std::io::ErrorKind::InvalidData`]).
    pub fn class(&self) -> ErrorClass {
        ErrorClass::of_io(&self.error)
    }
}

/// `connected`, after its committer published `restored` (what the sink prepared for
/// the checkpoint a job restarts from) again: for connectors whose writer does not
/// take up what it prepared itself.
pub fn commit_restored(
    connected: Connected,
    restored: Option<&[u8]>,
) -> Result<Connected, SinkError> {
    let (sink, mut committer) = connected;
    if let Some(prepared) = restored {
        committer.commit(prepared)?;
    }
    Ok((sink, committer))
}
