//! Connectors: sources that read splits of an input from checkpointed positions, and
//! sinks that take part in two-phase commit, so that plugin connectors are exactly-once
//! like the built-in ones.

use eddy_batch::Batch;

use crate::{Context, Emitter, Error, Event};

/// One independently readable part of a source's input (a partition, a file, a shard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Unique within the source; positions are kept under it.
    pub id: String,
    /// What the source needs to open the split, in its own encoding.
    pub descriptor: Vec<u8>,
}

/// Whether a split may produce more after a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitStatus {
    /// More events may follow at once.
    More,
    /// Nothing now, more later (the split may go idle for watermarks).
    Idle,
    /// The split is exhausted.
    End,
}

/// A source of events: the host lists its splits, gives each subtask its share, and
/// stores each split's position in checkpoints.
pub trait SourceConnector: Sized + 'static {
    /// Creates the source once per instance, from the source's configuration.
    fn open(ctx: &Context) -> Result<Self, Error>;
    /// Every split of the input (each instance must list the same ones).
    fn splits(&mut self) -> Result<Vec<Split>, Error>;
    /// Starts reading `split`, right after `position` when restoring a checkpoint.
    fn open_split(&mut self, split: Split, position: Option<&[u8]>) -> Result<(), Error>;
    /// Emits up to `max` events of split `split`.
    fn poll(&mut self, split: &str, max: u32, out: &mut Emitter<'_>) -> Result<SplitStatus, Error>;
    /// The position just after the last event polled from `split`.
    fn position(&mut self, split: &str) -> Result<Vec<u8>, Error>;
}

/// A sink with two-phase commit: written events stay invisible until the checkpoint
/// they belong to has completed.
pub trait SinkConnector: Sized + 'static {
    /// Creates the sink once per instance, from the sink's configuration. A sink whose
    /// job restarts should discard transactions it never prepared.
    fn open(ctx: &Context) -> Result<Self, Error>;
    /// Adds events to the current transaction.
    fn write(&mut self, events: &[Event<'_>]) -> Result<(), Error>;
    /// A barrier: makes the transaction durable but invisible and returns what
    /// [`SinkConnector::commit`] needs to publish it.
    fn prepare_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>, Error>;
    /// Publishes a prepared transaction; may run again after a failure (idempotent),
    /// possibly on another instance.
    fn commit(&mut self, checkpoint: u64, committable: &[u8]) -> Result<(), Error>;
    /// Discards a prepared transaction whose checkpoint failed.
    fn abort(&mut self, checkpoint: u64, committable: &[u8]) -> Result<(), Error> {
        let _ = (checkpoint, committable);
        Ok(())
    }
}

/// Runs one poll of a [`SourceConnector`].
pub fn run_poll<S: SourceConnector>(
    op: &mut S,
    split: &str,
    max: u32,
) -> Result<(Batch, SplitStatus), Error> {
    let mut out = Batch::default();
    let mut origins = Vec::new();
    let status = op.poll(
        split,
        max,
        &mut Emitter {
            out: &mut out,
            origins: &mut origins,
            origin: 0,
        },
    )?;
    Ok((out, status))
}

/// Runs a [`SinkConnector`]'s write over a batch.
pub fn run_write<S: SinkConnector>(op: &mut S, input: &Batch) -> Result<(), Error> {
    let events: Vec<Event<'_>> = input.iter().map(|inner| Event { inner }).collect();
    op.write(&events)
}
