//! The sending side of an exchange: how a task's output batches are split over the
//! next stage's subtasks (forward, rebalance, broadcast, or hash by key group;
//! see [`crate::keygroup`]).

use std::sync::Arc;
use std::time::Duration;

use crate::batch::Batch;
use crate::error::ErrorClass;
use crate::exec::channel::{Channel, Closed, Message};
use crate::job::Partition;
use crate::keygroup::{key_group, subtask_of};

/// A batch that cannot travel because one event alone is larger than a channel.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The job is being torn down.
    #[error(transparent)]
    Closed(#[from] Closed),
    /// One event exceeds the channel capacity.
    #[error(
        "an event of {event} bytes does not fit a network channel of {capacity} bytes; \
         raise memory.network in the job file"
    )]
    EventTooLarge {
        /// Size of the event.
        event: usize,
        /// Channel capacity.
        capacity: usize,
    },
}

impl SendError {
    /// Whether a restart can get past this error: a torn-down exchange can, an event
    /// larger than a channel cannot.
    pub fn class(&self) -> ErrorClass {
        match self {
            SendError::Closed(_) => ErrorClass::INTERNAL,
            SendError::EventTooLarge { .. } => ErrorClass::USER_FATAL,
        }
    }
}

/// Where an exchange sends to one subtask of the next stage: that subtask's inbound
/// [`Channel`] when it runs in this process, a channel of the network data plane when
/// it runs on another worker.
pub trait Outlet: Send + Sync {
    /// Most bytes one message may hold.
    fn capacity(&self) -> usize;

    /// Sends `message` from sender `from`, waiting while the receiver has no room for
    /// it; returns how long it waited (backpressure).
    fn send(&self, from: u32, message: Message) -> Result<Duration, Closed>;

    /// Puts an unaligned barrier of sender `from` ahead of everything in flight to the
    /// receiver, and returns copies of what it overtook.
    fn overtake(&self, from: u32, id: u64) -> Result<Vec<Message>, Closed>;

    /// The run is torn down: a sender waiting for room stops with [`Closed`], and so
    /// does every send after.
    fn close(&self);
}

impl Outlet for Channel {
    fn capacity(&self) -> usize {
        Channel::capacity(self)
    }

    fn send(&self, from: u32, message: Message) -> Result<Duration, Closed> {
        Channel::send(self, from, message)
    }

    fn overtake(&self, from: u32, id: u64) -> Result<Vec<Message>, Closed> {
        Channel::overtake(self, from, id)
    }

    fn close(&self) {
        Channel::close(self);
    }
}

/// One subtask's output into the next stage.
pub struct Exchange {
    partition: Partition,
    targets: Vec<Arc<dyn Outlet>>,
    subtask: u32,
    next: usize,
    max_parallelism: u32,
}

impl Exchange {
    /// Subtask `subtask`'s output into `targets` (one outlet per next subtask).
    pub fn new(
        partition: Partition,
        targets: Vec<Arc<dyn Outlet>>,
        subtask: u32,
        max_parallelism: u32,
    ) -> Self {
        Exchange {
            partition,
            targets,
            subtask,
            next: subtask as usize,
            max_parallelism,
        }
    }

    fn send_to(&self, target: usize, batch: Batch) -> Result<Duration, SendError> {
        let channel = &self.targets[target];
        let parts =
            batch
                .split_by_bytes(channel.capacity())
                .map_err(|event| SendError::EventTooLarge {
                    event,
                    capacity: channel.capacity(),
                })?;
        let mut waited = Duration::ZERO;
        for part in parts {
            waited += channel.send(self.subtask, Message::Data(part))?;
        }
        Ok(waited)
    }

    /// Sends a batch; returns the time spent blocked by backpressure.
    pub fn send(&mut self, batch: Batch) -> Result<Duration, SendError> {
        let n = self.targets.len();
        match self.partition {
            Partition::Forward => self.send_to(self.subtask as usize % n, batch),
            Partition::Rebalance => {
                self.next = (self.next + 1) % n;
                self.send_to(self.next, batch)
            }
            Partition::Broadcast => {
                let mut waited = Duration::ZERO;
                for t in 0..n {
                    waited += self.send_to(t, batch.clone())?;
                }
                Ok(waited)
            }
            Partition::Hash => {
                let mut parts = vec![Batch::default(); n];
                for i in 0..batch.len() {
                    let group = key_group(batch.key(i).unwrap_or_default(), self.max_parallelism);
                    let target = subtask_of(group, n as u32, self.max_parallelism) as usize;
                    // A part never holds more than the whole batch, which fit before.
                    let _ = parts[target].push_from(&batch, i);
                }
                let mut waited = Duration::ZERO;
                for (t, part) in parts.into_iter().enumerate() {
                    if !part.is_empty() {
                        waited += self.send_to(t, part)?;
                    }
                }
                Ok(waited)
            }
        }
    }

    /// Sends an unaligned barrier to the head of every next subtask's channel; returns,
    /// per target subtask, the in-flight messages it overtook.
    pub fn overtake(&mut self, id: u64) -> Result<Vec<Vec<Message>>, Closed> {
        self.targets
            .iter()
            .map(|t| t.overtake(self.subtask, id))
            .collect()
    }

    /// Sends the in-flight messages of a restored unaligned checkpoint to target
    /// `target`, ahead of anything new.
    pub fn resend(&mut self, target: usize, messages: Vec<Message>) -> Result<(), Closed> {
        let channel = &self.targets[target];
        for m in messages {
            channel.send(self.subtask, m)?;
        }
        Ok(())
    }

    /// Sends a control message (watermark, idleness, end of input) to every next subtask.
    pub fn broadcast(&mut self, message: Message) -> Result<(), Closed> {
        for target in &self.targets {
            target.send(self.subtask, message.clone())?;
        }
        Ok(())
    }
}
