//! The contract of a source: batches polled, split watermarks, a checkpointable position.
//! The connectors that implement it are in [`crate::connectors`].

use crate::batch::Batch;
use crate::error::ErrorClass;

/// A producer of batches.
pub trait Source: Send {
    /// Up to `max` events (possibly none yet), or `None` once the input has ended.
    fn poll(&mut self, max: usize) -> Result<Option<Batch>, SourceError>;

    /// The split's watermark, for sources with event time.
    fn watermark(&self) -> Option<i64> {
        None
    }

    /// Whether the split has been without events long enough to be left out of
    /// watermark computations.
    fn idle(&self) -> bool {
        false
    }

    /// How many splits this subtask reads: each keeps its own watermark, and the
    /// source's is the least of them (Flink's per-split watermarks).
    fn splits(&self) -> usize {
        1
    }

    /// The split the last polled batch came from.
    fn last_split(&self) -> usize {
        0
    }

    /// Whether split `split` has ended (it then holds no watermark back).
    fn split_ended(&self, split: usize) -> bool {
        let _ = split;
        false
    }

    /// Where the source is, for a checkpoint: reading on from here after [`Source::seek`]
    /// yields exactly the events that followed.
    fn position(&mut self) -> Result<Vec<u8>, SourceError>;

    /// Continues from a position [`Source::position`] returned.
    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError>;

    /// Records skipped since the last call because they could not be read, for the
    /// job's dead-letter sink (sources whose policy is `on-error: dead-letter`).
    fn take_rejected(&mut self) -> Vec<Rejected> {
        Vec::new()
    }
}

/// A record a source could not read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The record's key, if it has one.
    pub key: Option<Vec<u8>>,
    /// The record's bytes as read.
    pub value: Vec<u8>,
    /// What is wrong with it, and where it was read.
    pub error: String,
}

/// A source failed; names the source and the position in its input.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The input cannot be opened or read.
    #[error("source {source_name:?}: cannot read {input}: {error}")]
    Io {
        /// Name of the source.
        source_name: String,
        /// The file or stream.
        input: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A record of the input is not what the format requires.
    #[error("source {source_name:?}: {input}:{line}: {message}")]
    Malformed {
        /// Name of the source.
        source_name: String,
        /// The file or stream.
        input: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong with the record.
        message: String,
    },
    /// The source cannot do what was asked, for a reason outside the job (a broker, a
    /// connection); a restart may get past it.
    #[error("source {source_name:?}: {message}")]
    Other {
        /// Name of the source.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// The source failed in a way whose class its origin knows: a plugin connector's
    /// error, or a deterministic one (no replay, a record without its event time).
    #[error("source {source_name:?}: {message}")]
    Failed {
        /// Name of the source.
        source_name: String,
        /// What went wrong.
        message: String,
        /// Whether a restart can get past it.
        class: ErrorClass,
    },
}

impl SourceError {
    /// A deterministic failure of source `source_name`: restarting cannot help.
    pub fn fatal(source_name: &str, message: impl Into<String>) -> Self {
        SourceError::Failed {
            source_name: source_name.to_owned(),
            message: message.into(),
            class: ErrorClass::USER_FATAL,
        }
    }

    /// Whether a restart can get past this error: I/O by its kind, a malformed record
    /// never, other failures of the outside world after a delay.
    pub fn class(&self) -> ErrorClass {
        match self {
            SourceError::Io { error, .. } => ErrorClass::of_io(error),
            SourceError::Malformed { .. } => ErrorClass::USER_FATAL,
            SourceError::Other { .. } => ErrorClass::EXTERNAL,
            SourceError::Failed { class, .. } => *class,
        }
    }
}

/// Every event value `src` yields, polling up to `max` at a time: what tests of
/// sources compare.
#[cfg(test)]
pub(crate) fn drain(src: &mut dyn Source, max: usize) -> Result<Vec<String>, SourceError> {
    let mut out = Vec::new();
    while let Some(b) = src.poll(max)? {
        out.extend(
            b.iter()
                .map(|e| String::from_utf8_lossy(e.value).into_owned()),
        );
    }
    Ok(out)
}
