//! Eddy's network data plane: how subtasks on different workers exchange batches.
//!
//! Each pair of workers shares one TCP connection (made by whichever side needs it
//! first), on which every channel between their subtasks is multiplexed as
//! length-prefixed [`frame::Frame`]s. Flow control is credit-based, as in Flink: the
//! receiver grants each channel credit in bytes it has reserved for it, and a sender
//! sends a batch only with credit for it (announcing its backlog when it has none), so
//! the connection's reader never waits and a backpressured channel never stalls the
//! others. Watermarks, idleness, end of input and checkpoint barriers travel in band;
//! an unaligned barrier overtakes what is in flight on request. A [`RemoteOutlet`] is
//! an exchange's [`eddy_core::exec::exchange::Outlet`] to a subtask on another worker;
//! subtasks on the same worker keep their in-memory channels.
//!
//! The network side runs on a small tokio runtime of its own; task threads (which run
//! WASM) only ever wait on credit, never on the socket.

mod credit;
pub mod frame;
mod placement;
mod plane;

use std::net::SocketAddr;

pub use placement::Placement;
pub use plane::{DataPlane, PeerEvent, RemoteOutlet};

/// Why the data plane could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The network runtime could not start.
    #[error("cannot start the data plane's runtime: {0}")]
    Runtime(std::io::Error),
    /// The listening address is taken or invalid.
    #[error("cannot listen for the data plane on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// A peer cannot be reached.
    #[error("cannot connect to the data plane of {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// The connection to a peer ended.
    #[error("the connection to {0} was lost")]
    Lost(String),
    /// The data plane is shutting down.
    #[error("the data plane is stopped")]
    Stopped,
}
