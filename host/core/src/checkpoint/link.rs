//! Checkpoints of a job that spans processes. One part leads: its coordinator triggers
//! every checkpoint, completes it once every task of every part has acknowledged, and
//! commits the sinks (which run in its slot 0). The others follow: their coordinators
//! pass the leader's triggers to their sources, write their tasks' snapshots into the
//! shared checkpoint directory themselves, and tell the leader which file each wrote.

use std::time::Duration;

use super::storage::TaskFile;
use crate::state::{Decoder, Encoder, StateError};

/// How the coordinators of a job's parts reach each other.
pub trait CoordinatorLink: Send + Sync {
    /// Whether this part leads.
    fn leads(&self) -> bool;

    /// Sends `message` to every follower (from the leader) or to the leader (from a
    /// follower).
    fn send(&self, message: &PartMessage);

    /// The next message for this part, waiting at most `timeout`.
    fn recv(&self, timeout: Duration) -> Option<PartMessage>;
}

/// What the coordinators of a job's parts tell each other.
#[derive(Clone, Debug, PartialEq)]
pub enum PartMessage {
    /// Leader → followers: inject barriers for checkpoint `id`.
    Trigger {
        /// The checkpoint.
        id: u64,
        /// Whether it is a savepoint (state in portable form).
        savepoint: bool,
        /// Whether its barriers overtake in-flight data.
        unaligned: bool,
    },
    /// Follower → leader: task `task` snapshotted for checkpoint `id` into `file`.
    Ack {
        /// The task's index in the job.
        task: u32,
        /// The checkpoint.
        id: u64,
        /// The file it wrote, as the metadata records it.
        file: TaskFile,
        /// What its sinks prepared.
        sinks: Vec<(String, Vec<u8>)>,
    },
    /// Follower → leader: task `task` finished; its final snapshot.
    Finished {
        /// The task's index in the job.
        task: u32,
        /// Its encoded final snapshot.
        snapshot: Vec<u8>,
    },
}

impl PartMessage {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        match self {
            PartMessage::Trigger {
                id,
                savepoint,
                unaligned,
            } => {
                e.u8(0)
                    .u64(*id)
                    .u8(u8::from(*savepoint))
                    .u8(u8::from(*unaligned));
            }
            PartMessage::Ack {
                task,
                id,
                file,
                sinks,
            } => {
                let file = serde_json::to_vec(file).unwrap_or_default();
                e.u8(1).u32(*task).u64(*id).bytes(&file).count(sinks.len());
                for (name, bytes) in sinks {
                    e.bytes(name.as_bytes()).bytes(bytes);
                }
            }
            PartMessage::Finished { task, snapshot } => {
                e.u8(2).u32(*task).bytes(snapshot);
            }
        }
        e.finish()
    }

    /// Reads what [`PartMessage::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<PartMessage, StateError> {
        let mut d = Decoder::new(bytes);
        let message = match d.u8()? {
            0 => PartMessage::Trigger {
                id: d.u64()?,
                savepoint: d.u8()? != 0,
                unaligned: d.u8()? != 0,
            },
            1 => {
                let task = d.u32()?;
                let id = d.u64()?;
                let file = serde_json::from_slice(d.bytes()?)
                    .map_err(|e| StateError(format!("task file: {e}")))?;
                let sinks = (0..d.count()?)
                    .map(|_| Ok((d.str()?.to_owned(), d.bytes()?.to_vec())))
                    .collect::<Result<_, StateError>>()?;
                PartMessage::Ack {
                    task,
                    id,
                    file,
                    sinks,
                }
            }
            2 => PartMessage::Finished {
                task: d.u32()?,
                snapshot: d.bytes()?.to_vec(),
            },
            kind => return Err(StateError(format!("part message kind {kind}"))),
        };
        d.end()?;
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_messages_read_back_as_written() {
        let file: TaskFile =
            serde_json::from_str(r#"{"file":"stage1-0.state","bytes":12,"crc32":7}"#).unwrap();
        for m in [
            PartMessage::Trigger {
                id: 4,
                savepoint: false,
                unaligned: true,
            },
            PartMessage::Ack {
                task: 3,
                id: 4,
                file,
                sinks: vec![("out".into(), vec![1, 2])],
            },
            PartMessage::Finished {
                task: 1,
                snapshot: vec![9; 5],
            },
        ] {
            assert_eq!(PartMessage::decode(&m.encode()).unwrap(), m);
        }
        assert!(PartMessage::decode(&[9]).is_err());
    }
}
