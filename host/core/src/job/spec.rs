//! The job file as written: the schema that YAML deserializes into, before any check.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Partition;
use super::checkpoint::{CheckpointSpec, RestartSpec};
use super::event_time::EventTimeSpec;
use super::join::JoinSpec;
use super::kafka::{KafkaSinkSpec, KafkaSourceSpec};
use super::memory::MemorySpec;
use super::sandbox::{OnError, Sandbox, SandboxSpec};
use super::state::StateSpec;
use super::window::WindowSpec;

/// A job file, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct JobSpec {
    /// Name of the job, used in logs, metrics and errors.
    pub name: String,
    /// The tenant the job runs under (default `default`).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Directory that relative plugin paths are resolved against (relative to the job file).
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    /// Events per batch handed to operators.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Subtasks per step unless a step says otherwise (default 1).
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// Number of key groups, the upper bound of any keyed step's parallelism (default 128).
    #[serde(default)]
    pub max_parallelism: Option<u32>,
    /// The process memory budget and its pools.
    #[serde(default)]
    pub memory: MemorySpec,
    /// Metrics exposition.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// Limits and grants of every plugin step (steps may override).
    #[serde(default)]
    pub sandbox: SandboxSpec,
    /// Where steps with `on-error: dead-letter` send the events they fail on.
    #[serde(default)]
    pub dead_letter: Option<SinkSpec>,
    /// Periodic checkpoints, for exactly-once results across failures (off unless set).
    #[serde(default)]
    pub checkpoints: Option<CheckpointSpec>,
    /// How a failed job restarts from its latest checkpoint.
    #[serde(default)]
    pub restart: RestartSpec,
    /// Where the keyed state of every stateful step (process functions, windows,
    /// joins, rolling aggregates) lives.
    #[serde(default)]
    pub state: StateSpec,
    /// Where events come from; several sources are read as a union.
    pub sources: Vec<SourceSpec>,
    /// Operators applied in order.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Where results go; every sink receives every result.
    pub sinks: Vec<SinkSpec>,
}

/// The `metrics` section of a job file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricsSpec {
    /// Address to serve Prometheus text metrics on, e.g. `127.0.0.1:9249`.
    pub prometheus: Option<String>,
}

/// Encoding of events read from or written to text streams.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One JSON document per line; malformed lines are errors.
    #[default]
    Json,
    /// One event per line, bytes as they are.
    Raw,
}

/// Shapes of events the built-in generator can produce.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorShape {
    /// Orders: `{"id","customer","amount","currency","ts"}`.
    #[default]
    Orders,
    /// Sentences: `{"id","text","ts"}`.
    Sentences,
    /// Nexmark's online auction: persons, auctions and bids as in the reference
    /// generator, event `n` of its own seed; event time is each event's date_time.
    Nexmark,
}

/// One source of the job.
#[derive(Clone, Debug, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub enum SourceSpec {
    /// Lines of a file (bounded).
    File {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// Path, relative to the job file.
        path: PathBuf,
        /// Line encoding.
        #[serde(default)]
        format: Format,
        /// Where event time comes from, and how watermarks follow it.
        event_time: Option<EventTimeSpec>,
    },
    /// Lines of standard input (bounded by end of input).
    Stdin {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// Line encoding.
        #[serde(default)]
        format: Format,
        /// Where event time comes from, and how watermarks follow it.
        event_time: Option<EventTimeSpec>,
    },
    /// Deterministic synthetic events: the same seed gives the same events.
    Generator {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// Number of events; unbounded when absent.
        count: Option<u64>,
        /// Seed of the event sequence.
        #[serde(default)]
        seed: u64,
        /// What the events look like.
        #[serde(default)]
        shape: GeneratorShape,
        /// Events per second of wall-clock time; as fast as possible when absent.
        rate: Option<f64>,
        /// Nexmark: events per second of event time (default 10,000).
        event_rate: Option<f64>,
        /// Subtasks; subtask `i` of `p` produces events `i, i+p, i+2p, …`.
        parallelism: Option<u32>,
        /// Where event time comes from, and how watermarks follow it.
        event_time: Option<EventTimeSpec>,
    },
    /// A WASM source connector (the `source-plugin` world): its splits are shared out
    /// to the subtasks and their positions checkpointed.
    Plugin {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// The component, relative to the plugin directory.
        plugin: PathBuf,
        /// Configuration handed to the plugin as a JSON object.
        #[serde(default)]
        params: serde_json::Map<String, serde_json::Value>,
        /// Subtasks reading splits (default 1).
        parallelism: Option<u32>,
        /// Where event time comes from, and how watermarks follow it.
        event_time: Option<EventTimeSpec>,
        /// Limits and grants beyond the job's `sandbox`.
        #[serde(default)]
        sandbox: Box<SandboxSpec>,
        /// The sandbox as resolved against the job's.
        #[serde(skip)]
        grants: Box<Sandbox>,
    },
    /// Topics of a Kafka cluster, partitions read as checkpointed splits.
    Kafka(Box<KafkaSourceSpec>),
}

impl SourceSpec {
    /// The source's event-time settings, if it has event time.
    pub fn event_time(&self) -> Option<&EventTimeSpec> {
        match self {
            SourceSpec::File { event_time, .. }
            | SourceSpec::Stdin { event_time, .. }
            | SourceSpec::Generator { event_time, .. }
            | SourceSpec::Plugin { event_time, .. } => event_time.as_ref(),
            SourceSpec::Kafka(kafka) => kafka.event_time.as_ref(),
        }
    }

    /// The `type:` it was written with, which names the connector that opens it.
    pub fn connector(&self) -> &'static str {
        match self {
            SourceSpec::File { .. } => "file",
            SourceSpec::Stdin { .. } => "stdin",
            SourceSpec::Generator { .. } => "generator",
            SourceSpec::Plugin { .. } => "plugin",
            SourceSpec::Kafka(_) => "kafka",
        }
    }

    /// The subtasks the source runs as: files and stdin are read by one subtask, the
    /// others by as many as their `parallelism`.
    pub fn subtasks(&self) -> u32 {
        match self {
            SourceSpec::Generator { parallelism, .. } | SourceSpec::Plugin { parallelism, .. } => {
                parallelism.unwrap_or(1)
            }
            SourceSpec::Kafka(kafka) => kafka.parallelism.unwrap_or(1),
            SourceSpec::File { .. } | SourceSpec::Stdin { .. } => 1,
        }
    }
}

/// One sink of the job.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkSpec {
    /// Standard output, one event value per line.
    Stdout {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// A side output to write instead of the main output.
        input: Option<String>,
    },
    /// Counts events and drops them (benchmarks, dry runs).
    Discard {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// A side output to write instead of the main output.
        input: Option<String>,
    },
    /// A file, one event value per line (JSON lines for JSON values).
    File {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// Path, relative to the job file.
        path: PathBuf,
        /// A side output to write instead of the main output.
        input: Option<String>,
    },
    /// The digest of the final rows, exactly once (see [`crate::connectors::digest`]).
    Digest {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// A side output to write instead of the main output.
        input: Option<String>,
        /// The row's columns, in order.
        columns: Vec<String>,
        /// The summary file (JSON: rows, digest, latency), relative to the job file.
        path: PathBuf,
        /// Also the final rows, sorted, to this file (keeps every row in memory).
        rows: Option<PathBuf>,
    },
    /// A WASM sink connector (the `sink-plugin` world), with two-phase commit.
    Plugin {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// The component, relative to the plugin directory.
        plugin: PathBuf,
        /// Configuration handed to the plugin as a JSON object.
        #[serde(default)]
        params: serde_json::Map<String, serde_json::Value>,
        /// A side output to write instead of the main output.
        input: Option<String>,
        /// Limits and grants beyond the job's `sandbox`.
        #[serde(default)]
        sandbox: Box<SandboxSpec>,
        /// The sandbox as resolved against the job's.
        #[serde(skip)]
        grants: Box<Sandbox>,
    },
    /// A Kafka topic, exactly once through transactions.
    Kafka(Box<KafkaSinkSpec>),
}

impl SinkSpec {
    /// The side output the sink writes, or `None` for the main output.
    pub fn input(&self) -> Option<&str> {
        match self {
            SinkSpec::Stdout { input, .. }
            | SinkSpec::Discard { input, .. }
            | SinkSpec::File { input, .. }
            | SinkSpec::Digest { input, .. }
            | SinkSpec::Plugin { input, .. } => input.as_deref(),
            SinkSpec::Kafka(kafka) => kafka.input.as_deref(),
        }
    }

    /// The `type:` it was written with, which names the connector that opens it.
    pub fn connector(&self) -> &'static str {
        match self {
            SinkSpec::Stdout { .. } => "stdout",
            SinkSpec::Discard { .. } => "discard",
            SinkSpec::File { .. } => "file",
            SinkSpec::Digest { .. } => "digest",
            SinkSpec::Plugin { .. } => "plugin",
            SinkSpec::Kafka(_) => "kafka",
        }
    }
}

/// One step of the pipeline, as written: exactly one operator key must be set.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StepSpec {
    /// Name used in errors and metrics; defaults to the operator and its position.
    pub name: Option<String>,
    /// A WASM component implementing the `map-plugin` world.
    pub map: Option<PathBuf>,
    /// A WASM component implementing the `filter-plugin` world.
    pub filter: Option<PathBuf>,
    /// A WASM component implementing the `flat-map-plugin` world.
    pub flat_map: Option<PathBuf>,
    /// A WASM component implementing the `process-plugin` world (keyed state, timers).
    pub process: Option<PathBuf>,
    /// Side outputs a process step emits to (sinks read them with `input`).
    #[serde(default)]
    pub side_outputs: Vec<String>,
    /// Built-in: keys each event by a JSON field (dotted path); the next exchange hashes.
    pub key_by: Option<String>,
    /// Built-in: keeps events for which the expression holds.
    #[serde(rename = "where")]
    pub where_: Option<String>,
    /// Built-in: replaces each event by an object of named expressions (in this order).
    pub select: Option<indexmap::IndexMap<String, String>>,
    /// Built-in: a running aggregate per key, emitted on every event.
    pub rolling: Option<RollingSpec>,
    /// Built-in: event-time windows per key with aggregates.
    pub window: Option<WindowSpec>,
    /// Built-in: a window or interval join of two sources (the first step only).
    pub join: Option<Box<JoinSpec>>,
    /// Parameters handed to the plugin as a JSON object.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Subtasks of this step (default: the job's parallelism).
    pub parallelism: Option<u32>,
    /// How events reach this step from the previous one (default: forward, or hash
    /// after a `key-by`).
    pub partition: Option<Partition>,
    /// Limits and grants of this plugin step, over the job's.
    #[serde(default)]
    pub sandbox: SandboxSpec,
    /// What to do with an event the step fails on.
    #[serde(default)]
    pub on_error: OnError,
}

/// A running aggregate per key: `rolling: count` or `rolling: { sum: FIELD }`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "RawRolling")]
pub enum RollingSpec {
    /// The number of events of the key so far.
    Count,
    /// The sum of a numeric field over the key's events so far.
    Sum(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRolling {
    Name(String),
    Sum { sum: String },
}

impl TryFrom<RawRolling> for RollingSpec {
    type Error = String;

    fn try_from(raw: RawRolling) -> Result<Self, String> {
        match raw {
            RawRolling::Name(n) if n == "count" => Ok(RollingSpec::Count),
            RawRolling::Name(n) => Err(format!(
                "unknown rolling aggregate {n:?}: use `count` or `{{ sum: FIELD }}`"
            )),
            RawRolling::Sum { sum } => Ok(RollingSpec::Sum(sum)),
        }
    }
}
