//! Exactly-once through asynchronous barrier snapshots (Chandy-Lamport, as in Flink):
//! a coordinator injects numbered barriers at the sources, every task snapshots its
//! state when the barrier has arrived on all of its inputs and passes it on, and a
//! checkpoint completes once every task has acknowledged and its metadata is durable.
//! Sinks then publish what they prepared for it (two-phase commit).
//!
//! - [`snapshot`]: what one task contributes to a checkpoint.
//! - [`storage`]: the directory layout, atomic completion, retention and restore.
//! - [`objects`]: the same in an object store (S3), staged locally.
//! - [`coordinator`]: triggers, acknowledgements and completion while a job runs.
//! - [`link`]: how the coordinators of a job that spans processes work together.

pub mod align;
pub mod coordinator;
pub mod files;
pub mod link;
pub mod objects;
pub mod snapshot;
pub mod storage;

pub use coordinator::{Coordinator, TaskId};
pub use snapshot::{Flight, TaskSnapshot};
pub use storage::{CheckpointError, Restored, Storage};
