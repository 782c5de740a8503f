//! The sending side of an exchange: how a task's output batches are split over the
//! next stage's subtasks (forward, rebalance, broadcast, or hash by key group).

use std::sync::Arc;
use std::time::Duration;

use crate::batch::Batch;
use crate::channel::{Channel, Closed, Message};
use crate::error::ErrorClass;
use crate::job::Partition;

/// The key group of `key`: a stable hash modulo the number of key groups. Key groups,
/// not subtasks, are what keyed state is organized by, so a job can be rescaled.
pub fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    // FNV-1a, then the murmur3 finalizer to spread the low bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h % u64::from(max_parallelism)) as u32
}

/// The subtask owning key group `group`: subtask `i` of `p` owns the contiguous range
/// [`key_group_range`] returns.
pub fn subtask_of(group: u32, parallelism: u32, max_parallelism: u32) -> u32 {
    (u64::from(group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

/// The key groups subtask `subtask` of `parallelism` owns.
pub fn key_group_range(
    subtask: u32,
    parallelism: u32,
    max_parallelism: u32,
) -> std::ops::Range<u32> {
    let (s, p, m) = (
        u64::from(subtask),
        u64::from(parallelism),
        u64::from(max_parallelism),
    );
    let start = (s * m).div_ceil(p);
    let end = ((s + 1) * m).div_ceil(p);
    start as u32..end as u32
}

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

/// One subtask's output into the next stage.
pub struct Exchange {
    partition: Partition,
    targets: Vec<Arc<Channel>>,
    subtask: u32,
    next: usize,
    max_parallelism: u32,
}

impl Exchange {
    /// Subtask `subtask`'s output into `targets` (one channel per next subtask).
    pub fn new(
        partition: Partition,
        targets: Vec<Arc<Channel>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_group_ranges_cover_every_group_once() {
        for p in [1, 2, 3, 4, 7, 128] {
            let mut next = 0;
            for s in 0..p {
                let range = key_group_range(s, p, 128);
                assert_eq!(range.start, next);
                for g in range.clone() {
                    assert_eq!(subtask_of(g, p, 128), s, "group {g} at p={p}");
                }
                next = range.end;
            }
            assert_eq!(next, 128);
        }
    }

    #[test]
    fn key_groups_are_stable_and_spread() {
        assert_eq!(key_group(b"customer-1", 128), key_group(b"customer-1", 128));
        let groups: std::collections::HashSet<u32> = (0..1000)
            .map(|i| key_group(format!("k{i}").as_bytes(), 128))
            .collect();
        assert!(groups.len() > 100, "only {} groups used", groups.len());
    }
}
