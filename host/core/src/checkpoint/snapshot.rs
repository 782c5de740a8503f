//! What one task contributes to a checkpoint: its sources' positions, its operators'
//! state and its sinks' prepared transactions, each under the name of its node so that
//! a job restored with other parallelism (or an upgraded plugin) finds its state.

use crate::exec::channel::Message;
use crate::state::{Decoder, Encoder, StateEntry, StateError};

/// Marks the start of a task snapshot file, and its version.
const MAGIC: &[u8; 8] = b"EDDYSNP2";

/// The state of one task at one barrier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskSnapshot {
    /// Source name, subtask, position.
    pub sources: Vec<(String, u32, Vec<u8>)>,
    /// Step name and its state entries.
    pub steps: Vec<(String, Vec<StateEntry>)>,
    /// Sink name and what its commit needs.
    pub sinks: Vec<(String, Vec<u8>)>,
    /// In-flight messages of an unaligned checkpoint: received from sender `peer`
    /// after the snapshot (`Inbound`), or overtaken on the way to subtask `peer`
    /// (`Outbound`).
    pub channels: Vec<(Flight, u32, Vec<Message>)>,
}

/// Which side of a channel in-flight messages were recorded on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flight {
    /// Taken in by this task after its snapshot, before the sender's barrier.
    Inbound,
    /// Sent by this task before its barrier and overtaken by it.
    Outbound,
}

impl TaskSnapshot {
    /// The snapshot in its file format.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.bytes(MAGIC);
        e.count(self.sources.len());
        for (name, subtask, position) in &self.sources {
            e.bytes(name.as_bytes()).u32(*subtask).bytes(position);
        }
        e.count(self.steps.len());
        for (name, entries) in &self.steps {
            e.bytes(name.as_bytes()).count(entries.len());
            for entry in entries {
                match entry.key_group {
                    None => e.u8(0),
                    Some(g) => e.u8(1).u32(g),
                };
                e.bytes(&entry.bytes);
            }
        }
        e.count(self.sinks.len());
        for (name, prepared) in &self.sinks {
            e.bytes(name.as_bytes()).bytes(prepared);
        }
        e.count(self.channels.len());
        for (flight, peer, messages) in &self.channels {
            e.u8(u8::from(*flight == Flight::Outbound))
                .u32(*peer)
                .count(messages.len());
            for m in messages {
                m.encode(&mut e);
            }
        }
        e.finish()
    }

    /// Reads what [`TaskSnapshot::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<TaskSnapshot, StateError> {
        let mut d = Decoder::new(bytes);
        if d.bytes()? != MAGIC {
            return Err(StateError("not a task snapshot of this version".into()));
        }
        let mut snapshot = TaskSnapshot::default();
        for _ in 0..d.count()? {
            let name = d.str()?.to_owned();
            let subtask = d.u32()?;
            snapshot.sources.push((name, subtask, d.bytes()?.to_vec()));
        }
        for _ in 0..d.count()? {
            let name = d.str()?.to_owned();
            let mut entries = Vec::new();
            for _ in 0..d.count()? {
                let key_group = match d.u8()? {
                    0 => None,
                    _ => Some(d.u32()?),
                };
                entries.push(StateEntry {
                    key_group,
                    bytes: d.bytes()?.to_vec(),
                });
            }
            snapshot.steps.push((name, entries));
        }
        for _ in 0..d.count()? {
            let name = d.str()?.to_owned();
            snapshot.sinks.push((name, d.bytes()?.to_vec()));
        }
        for _ in 0..d.count()? {
            let flight = if d.u8()? == 0 {
                Flight::Inbound
            } else {
                Flight::Outbound
            };
            let peer = d.u32()?;
            let messages = (0..d.count()?)
                .map(|_| Message::decode(&mut d))
                .collect::<Result<Vec<_>, _>>()?;
            snapshot.channels.push((flight, peer, messages));
        }
        d.end()?;
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_reject_garbage() {
        let s = TaskSnapshot {
            sources: vec![("in".into(), 1, vec![1, 2])],
            steps: vec![(
                "w".into(),
                vec![
                    StateEntry {
                        key_group: Some(3),
                        bytes: vec![9],
                    },
                    StateEntry {
                        key_group: None,
                        bytes: vec![],
                    },
                ],
            )],
            sinks: vec![("out".into(), vec![7])],
            channels: vec![(Flight::Outbound, 1, vec![Message::Watermark(5)])],
        };
        let bytes = s.encode();
        assert_eq!(TaskSnapshot::decode(&bytes).unwrap(), s);
        assert!(TaskSnapshot::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(TaskSnapshot::decode(b"hello").is_err());
    }
}
