//! The control protocol between the coordinator and its workers: frames of a JSON
//! header (`u32` length, little-endian) followed by a binary payload (`u32` length),
//! empty but for component downloads. People and scripts use the REST API instead.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;

use eddy_core::ErrorClass;
use eddy_core::metrics::CheckpointRecord;
use serde::{Deserialize, Serialize};

/// Headers and payloads larger than this are refused: the peer is broken or hostile.
const MAX_PART: usize = 1 << 30;

/// One message of the control protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum Msg {
    // Worker → coordinator.
    /// A worker offers `slots` slots; `incarnation` tells a restarted worker of the
    /// same identity from the one before it.
    Register {
        /// The worker's identity.
        worker: String,
        /// Which start of the worker this is.
        incarnation: u64,
        /// Subtasks of each stage it can run at once.
        slots: u32,
        /// Where its data plane listens.
        data: SocketAddr,
    },
    /// The worker is alive.
    Heartbeat,
    /// The worker wants the component with this SHA-256.
    Fetch {
        /// Its hex SHA-256.
        sha256: String,
    },
    /// An attempt of a job ended on the worker.
    Ended {
        /// The job.
        job: u64,
        /// The attempt.
        attempt: u32,
        /// `None` when it finished, else why it failed.
        failure: Option<Failure>,
    },
    /// How this worker's part of an attempt is doing, every second while it runs.
    Report(Box<Report>),
    /// A savepoint the coordinator asked for completed or failed.
    SavepointDone {
        /// The job.
        job: u64,
        /// The request's trigger id.
        trigger: String,
        /// The savepoint's directory, or why there is none.
        result: Result<String, String>,
    },

    // Coordinator → worker.
    /// Run this worker's part of an attempt of a job.
    Deploy(Box<Deployment>),
    /// End attempt `attempt` of job `job` at once, publishing nothing more.
    Cancel {
        /// The job.
        job: u64,
        /// The attempt.
        attempt: u32,
    },
    /// Take a savepoint of attempt `attempt` of job `job` (this worker leads its
    /// checkpoints), and stop the job after it if `stop`.
    Savepoint {
        /// The job.
        job: u64,
        /// The attempt.
        attempt: u32,
        /// The request's trigger id, echoed in [`Msg::SavepointDone`].
        trigger: String,
        /// Stop the job once the savepoint completed.
        stop: bool,
    },
    /// The component with this SHA-256 is the payload.
    Blob {
        /// Its hex SHA-256.
        sha256: String,
    },
    /// The component with this SHA-256 cannot be sent.
    Missing {
        /// Its hex SHA-256.
        sha256: String,
        /// Why.
        message: String,
    },
}

/// What a worker needs to run one attempt of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Deployment {
    /// The job.
    pub job: u64,
    /// The attempt (0 for the first).
    pub attempt: u32,
    /// The job file's name.
    pub file: String,
    /// The job file's text.
    pub yaml: String,
    /// Each component by its path under the plugin directory, as hex SHA-256.
    pub components: BTreeMap<String, String>,
    /// Where the attempt starts from.
    pub resume: Resume,
    /// The directory the job's relative paths resolve against, when not its own.
    pub base: Option<std::path::PathBuf>,
    /// The attempt's slots in order: slot `i` holds subtask `i` of every stage.
    pub slots: Vec<Slot>,
}

/// Where an attempt of a job starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resume {
    /// The beginning of its input.
    Beginning,
    /// Its latest completed checkpoint (the beginning when there is none yet).
    Latest,
    /// This savepoint or checkpoint directory.
    From(std::path::PathBuf),
}

/// Where one slot of an attempt is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The worker holding it.
    pub worker: String,
    /// That worker's data-plane address.
    pub data: SocketAddr,
}

/// Why an attempt failed, and what a restart can do about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The error, as the worker reports it.
    pub message: String,
    /// Its class.
    pub class: ErrorClass,
}

/// One attempt's part on one worker: its nodes' rates, its checkpoints (when it leads
/// them) and its memory pools.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    /// The job.
    pub job: u64,
    /// The attempt.
    pub attempt: u32,
    /// Every node, over the subtasks running on this worker.
    pub nodes: Vec<NodeSample>,
    /// The latest checkpoints and savepoints (from the part that leads them).
    pub checkpoints: Vec<CheckpointRecord>,
    /// The attempt's memory pools here.
    pub pools: Vec<PoolSample>,
}

/// A node's counts and rates over the last report interval, on one worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeSample {
    /// The node's name in the job.
    pub name: String,
    /// Events received so far.
    pub records_in: u64,
    /// Events emitted so far.
    pub records_out: u64,
    /// Events received per second.
    pub in_per_s: f64,
    /// Events emitted per second.
    pub out_per_s: f64,
    /// Share of the subtasks' time spent working (0 to 1).
    pub busy: f64,
    /// Share of the subtasks' time blocked by backpressure (0 to 1).
    pub backpressured: f64,
    /// The lowest event time its subtasks here have reached, in ms.
    pub watermark: Option<i64>,
}

/// A memory pool's use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PoolSample {
    /// `network`, `managed` or `wasm`.
    pub name: String,
    /// Bytes in use.
    pub used: u64,
    /// Bytes it may hold.
    pub capacity: u64,
}

/// A frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed or ended.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something that is not a frame of this protocol.
    #[error("malformed message: {0}")]
    Malformed(String),
}

fn read_part(input: &mut impl Read) -> Result<Vec<u8>, WireError> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_PART {
        return Err(WireError::Malformed(format!("a part of {len} bytes")));
    }
    let mut part = vec![0u8; len];
    input.read_exact(&mut part)?;
    Ok(part)
}

/// Reads one message and its payload.
pub fn read(input: &mut impl Read) -> Result<(Msg, Vec<u8>), WireError> {
    let header = read_part(input)?;
    let msg = serde_json::from_slice(&header).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok((msg, read_part(input)?))
}

/// Writes one message and its payload, and flushes.
pub fn write(output: &mut impl Write, msg: &Msg, payload: &[u8]) -> Result<(), WireError> {
    let header = serde_json::to_vec(msg).map_err(|e| WireError::Malformed(e.to_string()))?;
    let mut frame = Vec::with_capacity(8 + header.len() + payload.len());
    frame.extend_from_slice(&(header.len() as u32).to_le_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    output.write_all(&frame)?;
    output.flush()?;
    Ok(())
}

/// Sends `msg` and reads the answer: one request of a client.
pub fn call(stream: &mut std::net::TcpStream, msg: &Msg, payload: &[u8]) -> Result<Msg, WireError> {
    write(stream, msg, payload)?;
    Ok(read(stream)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_payloads_read_back_as_written() {
        let msgs = [
            (
                Msg::Blob {
                    sha256: "ab".repeat(32),
                },
                b"\0asm".to_vec(),
            ),
            (
                Msg::Ended {
                    job: 3,
                    attempt: 1,
                    failure: Some(Failure {
                        message: "broker down".into(),
                        class: ErrorClass::EXTERNAL,
                    }),
                },
                Vec::new(),
            ),
            (
                Msg::Deploy(Box::new(Deployment {
                    job: 1,
                    attempt: 2,
                    file: "job.yaml".into(),
                    yaml: "name: j".into(),
                    components: [("a.wasm".to_owned(), "ab".repeat(32))].into(),
                    resume: Resume::Latest,
                    base: None,
                    slots: vec![Slot {
                        worker: "w".into(),
                        data: "127.0.0.1:7000".parse().unwrap(),
                    }],
                })),
                Vec::new(),
            ),
        ];
        let mut bytes = Vec::new();
        for (m, p) in &msgs {
            write(&mut bytes, m, p).unwrap();
        }
        let mut input = &bytes[..];
        for (m, p) in &msgs {
            assert_eq!(&read(&mut input).unwrap(), &(m.clone(), p.clone()));
        }
        assert!(matches!(read(&mut input), Err(WireError::Io(_))));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let mut bytes = 4u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"nope");
        bytes.extend_from_slice(&0u32.to_le_bytes());
        let e = read(&mut &bytes[..]).unwrap_err();
        assert!(e.to_string().starts_with("malformed message"), "{e}");
        let huge = u32::MAX.to_le_bytes();
        assert!(read(&mut &huge[..]).is_err());
    }
}
