//! Test support shared by the end-to-end tests and the benchmarks: the example plugins,
//! built into components by this crate's build script, the job steps they share, the
//! servers they start (a Kafka broker, an S3-compatible store) and the repository's
//! paths.

pub mod etcd;
pub mod jobs;
pub mod kafka;
pub mod kube_fake;
pub mod s3;

use std::path::{Path, PathBuf};

/// Paths of the example plugin components.
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
