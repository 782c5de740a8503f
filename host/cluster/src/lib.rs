//! Eddy as a session cluster: `eddy coordinator` accepts jobs and the components they
//! name (kept by SHA-256), schedules each onto a worker's slots and restarts it from
//! its latest checkpoint when an attempt fails or its worker is lost; `eddy worker`
//! registers its slots, fetches components once and runs attempts through the
//! binary's [`worker::Executor`]. The protocol between them is in [`wire`]; what
//! people ask of the coordinator (and the REST API serves) is in [`api`].

pub mod api;
mod blobs;
mod control;
pub mod coordinator;
pub mod ha;
mod jobstore;
pub mod provision;
mod reports;
pub mod wire;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use blobs::{Blobs, sha256};
pub use control::{Submission, as_seen};
pub use coordinator::{Coordinator, Options};
pub use wire::Resume;
pub use worker::{Attempt, Executor, Live, WorkerConfig, run_worker};

/// Why a cluster role could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The listening address is taken or invalid.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// A directory or file of the cluster cannot be used.
    #[error("{}: {error}", path.display())]
    Dir {
        /// The directory or file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// The coordinator cannot be reached.
    #[error("cannot reach the coordinator: {0}")]
    Coordinator(std::io::Error),
    /// The connection to the coordinator was lost.
    #[error("lost the coordinator: {0}")]
    Lost(String),
    /// The jobs the previous leaders left cannot be taken over.
    #[error("cannot take over the cluster's jobs: {0}")]
    Recovery(String),
    /// The coordinator refused a request.
    #[error("{0}")]
    Refused(String),
}
