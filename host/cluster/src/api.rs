//! What the control plane answers people and scripts: the cluster, its jobs (with
//! their graph and live rates), savepoints, checkpoints, exceptions and workers, as
//! the REST API serves them (kebab-case JSON, described by its OpenAPI document).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The cluster at a glance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Overview {
    /// The coordinator's version.
    pub version: String,
    /// Workers registered.
    pub workers: u32,
    /// Slots all workers offer.
    pub slots_total: u32,
    /// Slots no job holds.
    pub slots_free: u32,
    /// Jobs by state (only the caller's own for a tenant).
    pub jobs: BTreeMap<String, u32>,
}

/// A job as a list shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct JobView {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// The tenant it runs for.
    pub tenant: String,
    /// `waiting`, `running`, `cancelling`, `restarting`, `finished`, `failed` or
    /// `cancelled`.
    pub state: String,
    /// Why it waits, restarts or failed.
    pub reason: Option<String>,
    /// Its current attempt (0 for the first).
    pub attempt: u32,
    /// Restarts made.
    pub restarts: u32,
    /// Slots it needs.
    pub slots: u32,
    /// The workers running it.
    pub workers: Vec<String>,
    /// When it was submitted, in ms since the Unix epoch.
    pub submitted_ms: u64,
}

/// A job with its graph and how each vertex is doing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct JobDetail {
    /// The job as listed.
    #[serde(flatten)]
    pub job: JobView,
    /// Its sources, steps and sinks and the edges between them.
    pub graph: GraphView,
    /// The savepoint it was stopped with, if it was.
    pub stopped_with: Option<String>,
}

/// A job's graph with live rates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GraphView {
    /// Sources, steps, then sinks.
    pub vertices: Vec<VertexView>,
    /// How events travel between them.
    pub edges: Vec<EdgeView>,
}

/// One source, step or sink and how it is doing (summed over every worker running it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct VertexView {
    /// Its name in the job.
    pub name: String,
    /// `source`, `step` or `sink`.
    pub role: String,
    /// Its subtasks.
    pub parallelism: u32,
    /// Events received by the current attempt.
    pub records_in: u64,
    /// Events emitted by the current attempt.
    pub records_out: u64,
    /// Events received per second, lately.
    pub records_in_per_s: f64,
    /// Events emitted per second, lately.
    pub records_out_per_s: f64,
    /// Share of its subtasks' time spent working (0 to 1).
    pub busy: f64,
    /// Share of its subtasks' time blocked by backpressure (0 to 1).
    pub backpressured: f64,
    /// The event time it has reached, in ms since the Unix epoch.
    pub watermark_ms: Option<i64>,
}

/// An edge of a job's graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EdgeView {
    /// The upstream vertex.
    pub from: String,
    /// The downstream vertex.
    pub to: String,
    /// `forward`, `hash`, `rebalance` or `broadcast`.
    pub exchange: String,
    /// Whether both run in one task (no exchange between them).
    pub chained: bool,
}

/// A savepoint someone asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct SavepointView {
    /// The id to poll it by.
    pub trigger: String,
    /// Whether the job stops once it completed.
    pub stop: bool,
    /// `pending`, `completed` or `failed`.
    pub state: String,
    /// Its directory, once completed.
    pub location: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was asked for, in ms since the Unix epoch.
    pub requested_ms: u64,
}

/// A checkpoint or savepoint of the job's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct CheckpointView {
    /// Its id.
    pub id: u64,
    /// `checkpoint` or `savepoint`.
    pub kind: String,
    /// `completed` or `abandoned`.
    pub state: String,
    /// Bytes of its files.
    pub size_bytes: u64,
    /// Trigger to completion, in ms.
    pub duration_ms: u64,
    /// When it was triggered, in ms since the Unix epoch.
    pub trigger_ms: u64,
}

/// A failure of one of the job's attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ExceptionView {
    /// When it was reported, in ms since the Unix epoch.
    pub time_ms: u64,
    /// The attempt that failed.
    pub attempt: u32,
    /// The worker it failed on, when one reported it.
    pub worker: Option<String>,
    /// What went wrong.
    pub message: String,
    /// Its class: what a restart can do about it.
    pub class: String,
}

/// A worker and what runs on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct WorkerView {
    /// Its identity.
    pub id: String,
    /// Its data-plane address.
    pub data: String,
    /// Slots it offers.
    pub slots: u32,
    /// Slots no job holds.
    pub slots_free: u32,
    /// Which start of the worker this is.
    pub incarnation: u64,
    /// Time since its last heartbeat, in ms.
    pub heartbeat_ms_ago: u64,
    /// The jobs it runs (only the caller's own for a tenant).
    pub jobs: Vec<u64>,
    /// Its memory pools, summed over the attempts it runs.
    pub pools: Vec<PoolView>,
}

/// A memory pool's use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolView {
    /// `network`, `managed` or `wasm`.
    pub name: String,
    /// Bytes in use.
    pub used: u64,
    /// Bytes it may hold.
    pub capacity: u64,
}

/// Why the control plane refused a request; each maps to one HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No such job, or not the caller's (ids of other tenants do not leak).
    #[error("no job {0}")]
    NoJob(u64),
    /// No such savepoint of the job.
    #[error("job {job} has no savepoint {trigger:?}")]
    NoSavepoint {
        /// The job.
        job: u64,
        /// The trigger id asked for.
        trigger: String,
    },
    /// The request is malformed, or the job file or a component is broken.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this (another tenant's job file, a quota).
    #[error("{0}")]
    Forbidden(String),
    /// The job is not in a state that allows it.
    #[error("{0}")]
    Conflict(String),
    /// The coordinator could not do it (its disk).
    #[error("{0}")]
    Internal(String),
}
