//! The `state` section: which backend keeps a job's keyed state, and where.

/// Which backend keeps a job's keyed state.
#[derive(Clone, Copy, Debug, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// In memory, charged to managed memory (default).
    #[default]
    Memory,
    /// Embedded RocksDB on local disk, with incremental checkpoints.
    Rocksdb,
}

/// The `state` section of a job file.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StateSpec {
    /// The backend (default `memory`).
    #[serde(default)]
    pub backend: BackendKind,
    /// Working directory of on-disk backends (default `.eddy/state/<job name>` beside
    /// the job file); emptied when a run starts.
    #[serde(default)]
    pub dir: Option<std::path::PathBuf>,
}
