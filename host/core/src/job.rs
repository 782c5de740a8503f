//! The declarative job file: what a user writes, parsed and checked before anything runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::checkpoint::{CheckpointSpec, RestartSpec};
use crate::expr::Expr;
use crate::join::JoinSpec;
use crate::kafka::{Guarantee, KafkaSinkSpec, KafkaSourceSpec};
use crate::memory::{ByteSize, MemoryBudget, MemorySpec};
use crate::sandbox::{DEFAULT_MAX_STACK, OnError, Sandbox, SandboxSpec};
use crate::state::backend::StateSpec;
use crate::time::Span;
use crate::window::{Assigner, WindowSpec};

/// Events per batch when the job does not say.
pub const DEFAULT_BATCH_SIZE: usize = 256;
/// Key groups when the job does not say: the most subtasks a keyed step can ever have.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

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

/// Event time of a source: a timestamp field and the watermark strategy of each split.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EventTimeSpec {
    /// JSON field holding the event time in milliseconds since the epoch; left out,
    /// the timestamps the source itself reads (Kafka record timestamps).
    pub field: Option<String>,
    /// How far out of order events may arrive: the watermark trails the largest
    /// timestamp seen by this much (default 0).
    pub max_out_of_orderness: Option<Span>,
    /// After this long without events a split is idle and holds no watermark back.
    pub idle_timeout: Option<Span>,
    /// Read in step with the other splits of an alignment group.
    pub align: Option<AlignSpec>,
}

/// Watermark alignment: the group a source's splits belong to and the drift allowed.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AlignSpec {
    /// Sources naming the same group read in step with each other.
    pub group: String,
    /// How far a split's watermark may run ahead of the slowest active split.
    pub max_drift: Span,
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
    /// The digest of the final rows, exactly once (see [`crate::digest`]).
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

/// How events travel to a step's subtasks when they change hands.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Partition {
    /// Subtask `i` to subtask `i` (only between equal parallelism; such steps chain).
    Forward,
    /// Batches round-robin over the next subtasks.
    Rebalance,
    /// Every batch to every next subtask.
    Broadcast,
    /// Each event to the subtask owning its key's key group.
    Hash,
}

/// The kinds of operator a plugin step can be; each is one WIT world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperatorKind {
    /// One event in, one event out.
    Map,
    /// One event in, zero or one (the same) out.
    Filter,
    /// One event in, any number out.
    FlatMap,
    /// A window aggregate function.
    Aggregate,
    /// A window process function.
    Window,
    /// A stateful process function over a keyed stream.
    Process,
    /// A source connector.
    Source,
    /// A two-phase-commit sink connector.
    Sink,
}

impl OperatorKind {
    /// The job-file key that selects this kind.
    pub fn key(self) -> &'static str {
        match self {
            OperatorKind::Map => "map",
            OperatorKind::Filter => "filter",
            OperatorKind::FlatMap => "flat-map",
            OperatorKind::Aggregate => "window.function",
            OperatorKind::Window => "window.process",
            OperatorKind::Process => "process",
            OperatorKind::Source => "sources[].plugin",
            OperatorKind::Sink => "sinks[].plugin",
        }
    }
}

/// What a checked step does.
#[derive(Clone, Debug)]
pub enum StepOp {
    /// A WASM plugin operator.
    Plugin {
        /// Which operator world the plugin must implement.
        kind: OperatorKind,
        /// Path to the component.
        plugin: PathBuf,
        /// The step's params as a JSON object text.
        params_json: String,
    },
    /// Sets each event's key from a JSON field.
    KeyBy(Vec<String>),
    /// Keeps events for which the expression holds.
    Where(Expr),
    /// Replaces each event by an object of named expressions.
    Select(Vec<(String, Expr)>),
    /// A running aggregate per key.
    Rolling(RollingSpec),
    /// Event-time windows per key.
    Window(Box<WindowSpec>),
    /// A join of two sources.
    Join(Box<JoinSpec>),
}

impl StepOp {
    /// A short label for plans and metrics.
    pub fn label(&self) -> String {
        match self {
            StepOp::Plugin { kind, plugin, .. } => format!(
                "{} {}",
                kind.key(),
                plugin.file_name().unwrap_or_default().to_string_lossy()
            ),
            StepOp::KeyBy(path) => format!("key-by {}", path.join(".")),
            StepOp::Where(_) => "where".into(),
            StepOp::Select(fields) => format!("select {} field(s)", fields.len()),
            StepOp::Rolling(RollingSpec::Count) => "rolling count".into(),
            StepOp::Rolling(RollingSpec::Sum(f)) => format!("rolling sum {f}"),
            StepOp::Window(w) => match w.assigner() {
                Ok(Assigner::Tumbling(size)) => format!("window tumbling {size} ms"),
                Ok(Assigner::Sliding(size, slide)) => format!("window sliding {size}/{slide} ms"),
                Ok(Assigner::Session(gap)) => format!("window session gap {gap} ms"),
                Ok(Assigner::Global(count)) => format!("window global every {count} events"),
                Err(_) => "window".into(),
            },
            StepOp::Join(j) => format!(
                "{} join {}.{} = {}.{}",
                if j.window.is_some() {
                    "window"
                } else {
                    "interval"
                },
                j.left.source,
                j.left.key,
                j.right.source,
                j.right.key
            ),
        }
    }
}

/// A step resolved and checked.
#[derive(Clone, Debug)]
pub struct Step {
    /// Unique name of the step in its job.
    pub name: String,
    /// What it does.
    pub op: StepOp,
    /// Subtasks.
    pub parallelism: u32,
    /// Explicit partitioning of the edge into this step, if the job set one.
    pub partition: Option<Partition>,
    /// Limits and grants of a plugin step's instances.
    pub sandbox: Sandbox,
    /// What to do with an event the step fails on.
    pub on_error: OnError,
    /// Side outputs the step emits to.
    pub side_outputs: Vec<String>,
}

/// A job ready to run: names assigned, paths resolved, everything checked.
#[derive(Clone, Debug)]
pub struct Job {
    /// Name of the job.
    pub name: String,
    /// The tenant the job runs under.
    pub tenant: String,
    /// The job file it came from.
    pub file: PathBuf,
    /// Events per batch.
    pub batch_size: usize,
    /// Default subtasks per step.
    pub parallelism: u32,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// The memory budget split into pools.
    pub memory: MemoryBudget,
    /// Address for Prometheus metrics, if enabled.
    pub prometheus: Option<std::net::SocketAddr>,
    /// Sources with their resolved names and paths.
    pub sources: Vec<(String, SourceSpec)>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Sinks with their resolved names and paths.
    pub sinks: Vec<(String, SinkSpec)>,
    /// Sinks of side outputs, each naming its side output in `input`.
    pub side_sinks: Vec<(String, SinkSpec)>,
    /// The dead-letter sink, when a step sends events there.
    pub dead_letter: Option<(String, SinkSpec)>,
    /// WASM stack size of the job's plugins.
    pub max_stack: ByteSize,
    /// Checkpointing, with its directory resolved.
    pub checkpoints: Option<CheckpointSpec>,
    /// The restart strategy.
    pub restart: RestartSpec,
    /// The keyed state backend, with its directory resolved.
    pub state: StateSpec,
}

/// Why a job file cannot run, always naming the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The file cannot be read.
    #[error("cannot read job file {file}: {source}")]
    Read {
        /// The job file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not match the job schema.
    #[error("{file}{}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Syntax {
        /// The job file.
        file: PathBuf,
        /// Line and column, when the parser knows them.
        location: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
    },
    /// The job parses but makes no sense (a step without an operator, a missing plugin).
    #[error("{file}{}: {what}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The job file.
        file: PathBuf,
        /// Line of the offending entry, when it can be found.
        line: Option<usize>,
        /// The entry at fault, e.g. `steps[2] (to-eur)`.
        what: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A plugin source or sink of a job.
#[derive(Clone, Debug)]
pub struct Connector<'a> {
    /// Its name.
    pub name: &'a str,
    /// `Source` or `Sink`: the world it must implement.
    pub kind: OperatorKind,
    /// The component file.
    pub plugin: &'a Path,
    /// Plugin instances it runs as.
    pub instances: u32,
    /// Its resolved sandbox.
    pub sandbox: &'a Sandbox,
}

/// A WASM component a job runs, and where.
#[derive(Clone, Debug)]
pub struct PluginUse<'a> {
    /// The step that runs it.
    pub step: &'a Step,
    /// The world it must implement.
    pub kind: OperatorKind,
    /// The component file.
    pub path: &'a Path,
}

impl Job {
    /// Every WASM component the job runs: plugin steps and window functions. Each runs
    /// as one instance per subtask of its step.
    pub fn plugins(&self) -> Vec<PluginUse<'_>> {
        self.steps
            .iter()
            .filter_map(|step| match &step.op {
                StepOp::Plugin { kind, plugin, .. } => Some(PluginUse {
                    step,
                    kind: *kind,
                    path: plugin,
                }),
                StepOp::Window(w) => w
                    .function
                    .as_ref()
                    .map(|f| (OperatorKind::Aggregate, f))
                    .or(w.process.as_ref().map(|f| (OperatorKind::Window, f)))
                    .map(|(kind, f)| PluginUse {
                        step,
                        kind,
                        path: &f.plugin,
                    }),
                _ => None,
            })
            .collect()
    }

    /// Every connector component: plugin sources and sinks, side outputs and dead
    /// letters included.
    pub fn connectors(&self) -> Vec<Connector<'_>> {
        let sources = self.sources.iter().filter_map(|(name, spec)| match spec {
            SourceSpec::Plugin {
                plugin,
                parallelism,
                grants,
                ..
            } => Some(Connector {
                name,
                kind: OperatorKind::Source,
                plugin,
                instances: parallelism.unwrap_or(1),
                sandbox: grants,
            }),
            _ => None,
        });
        let sinks = self
            .sinks
            .iter()
            .chain(&self.side_sinks)
            .chain(&self.dead_letter)
            .filter_map(|(name, spec)| match spec {
                SinkSpec::Plugin { plugin, grants, .. } => Some(Connector {
                    name,
                    kind: OperatorKind::Sink,
                    plugin,
                    // A writer and a committer.
                    instances: 2,
                    sandbox: grants,
                }),
                _ => None,
            });
        sources.chain(sinks).collect()
    }

    /// Reads, parses and checks the job file at `file`; `plugin_dir` overrides the file's.
    pub fn load(file: &Path, plugin_dir: Option<&Path>) -> Result<Job, JobError> {
        let text = std::fs::read_to_string(file).map_err(|source| JobError::Read {
            file: file.to_owned(),
            source,
        })?;
        Job::parse(&text, file, plugin_dir)
    }

    /// Parses and checks job text that came from `file` (used for relative paths and errors).
    pub fn parse(text: &str, file: &Path, plugin_dir: Option<&Path>) -> Result<Job, JobError> {
        let spec: JobSpec = serde_yaml::from_str(text).map_err(|e| JobError::Syntax {
            file: file.to_owned(),
            location: e.location().map(|l| (l.line(), l.column())),
            message: e.to_string(),
        })?;
        Resolver { file, text }.resolve(spec, plugin_dir)
    }
}

/// What a step inherits from its job.
struct StepDefaults<'a> {
    plugin_base: &'a Path,
    parallelism: u32,
    max_parallelism: u32,
    sandbox: &'a SandboxSpec,
}

/// Turns a parsed spec into a checked [`Job`], pointing errors at lines of the text.
struct Resolver<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Resolver<'_> {
    fn invalid(&self, what: String, hint: &str, message: String) -> JobError {
        JobError::Invalid {
            file: self.file.to_owned(),
            line: line_of(self.text, hint),
            what,
            message,
        }
    }

    fn base_dir(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn resolve(&self, spec: JobSpec, plugin_dir: Option<&Path>) -> Result<Job, JobError> {
        let base = self.base_dir();
        if spec.name.trim().is_empty() {
            return Err(self.invalid("name".into(), "name:", "must not be empty".into()));
        }
        if spec.sources.is_empty() {
            return Err(self.invalid(
                "sources".into(),
                "sources:",
                "a job needs at least one source".into(),
            ));
        }
        if spec.sinks.is_empty() {
            return Err(self.invalid(
                "sinks".into(),
                "sinks:",
                "a job needs at least one sink".into(),
            ));
        }
        let batch_size = spec.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            return Err(self.invalid(
                "batch-size".into(),
                "batch-size:",
                "must be at least 1".into(),
            ));
        }
        let parallelism = spec.parallelism.unwrap_or(1);
        let max_parallelism = spec.max_parallelism.unwrap_or(DEFAULT_MAX_PARALLELISM);
        if max_parallelism == 0 || max_parallelism > 32_768 {
            return Err(self.invalid(
                "max-parallelism".into(),
                "max-parallelism:",
                "must be between 1 and 32768".into(),
            ));
        }
        self.check_parallelism("parallelism", "parallelism:", parallelism, max_parallelism)?;
        let memory = spec
            .memory
            .budget()
            .map_err(|m| self.invalid("memory".into(), "memory:", m))?;
        let prometheus = spec
            .metrics
            .prometheus
            .as_deref()
            .map(|addr| {
                addr.parse().map_err(|e| {
                    self.invalid(
                        "metrics.prometheus".into(),
                        "prometheus:",
                        format!("{addr:?} is not a socket address like 127.0.0.1:9249: {e}"),
                    )
                })
            })
            .transpose()?;
        let plugin_base = match (plugin_dir, &spec.plugin_dir) {
            (Some(dir), _) => dir.to_owned(),
            (None, Some(dir)) => base.join(dir),
            (None, None) => base.clone(),
        };
        let mut names = std::collections::HashSet::new();
        let sources = spec
            .sources
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                let name = match &mut s {
                    SourceSpec::File { name, path, .. } => {
                        *path = base.join(&*path);
                        name.clone().unwrap_or_else(|| format!("source-{i}"))
                    }
                    SourceSpec::Stdin { name, .. } => {
                        name.clone().unwrap_or_else(|| "stdin".into())
                    }
                    SourceSpec::Generator {
                        name,
                        rate,
                        event_rate,
                        shape,
                        parallelism: p,
                        ..
                    } => {
                        if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                            return Err(self.invalid(
                                format!("sources[{i}]"),
                                "rate:",
                                "rate must be a positive number of events per second".into(),
                            ));
                        }
                        match (event_rate, shape) {
                            (Some(r), GeneratorShape::Nexmark) if !(*r > 0.0 && r.is_finite()) => {
                                return Err(self.invalid(
                                    format!("sources[{i}]"),
                                    "event-rate:",
                                    "event-rate must be a positive number of events per second"
                                        .into(),
                                ));
                            }
                            (Some(_), shape) if *shape != GeneratorShape::Nexmark => {
                                return Err(self.invalid(
                                    format!("sources[{i}]"),
                                    "event-rate:",
                                    "event-rate applies to `shape: nexmark` only".into(),
                                ));
                            }
                            _ => {}
                        }
                        let chosen = p.unwrap_or(parallelism);
                        self.check_parallelism(
                            &format!("sources[{i}].parallelism"),
                            "parallelism:",
                            chosen,
                            max_parallelism,
                        )?;
                        *p = Some(chosen);
                        name.clone().unwrap_or_else(|| format!("source-{i}"))
                    }
                    SourceSpec::Plugin {
                        name,
                        plugin,
                        parallelism: p,
                        sandbox,
                        grants,
                        ..
                    } => {
                        let what = format!("sources[{i}]");
                        *plugin = self.connector_plugin(&plugin_base, plugin, &what)?;
                        let chosen = p.unwrap_or(1);
                        self.check_parallelism(
                            &format!("{what}.parallelism"),
                            "parallelism:",
                            chosen,
                            max_parallelism,
                        )?;
                        *p = Some(chosen);
                        **grants = self.connector_sandbox(&spec.sandbox, sandbox, &what)?;
                        name.clone().unwrap_or_else(|| format!("source-{i}"))
                    }
                    SourceSpec::Kafka(kafka) => {
                        let what = format!("sources[{i}]");
                        if kafka.topics.is_empty() {
                            return Err(self.invalid(
                                what,
                                "topics:",
                                "a Kafka source needs at least one topic".into(),
                            ));
                        }
                        if kafka.max_rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                            return Err(self.invalid(
                                what,
                                "max-rate:",
                                "max-rate must be a positive number of records per second".into(),
                            ));
                        }
                        let chosen = kafka.parallelism.unwrap_or(parallelism);
                        self.check_parallelism(
                            &format!("{what}.parallelism"),
                            "parallelism:",
                            chosen,
                            max_parallelism,
                        )?;
                        kafka.parallelism = Some(chosen);
                        kafka.name.clone().unwrap_or_else(|| format!("source-{i}"))
                    }
                };
                let own_timestamps = matches!(
                    s,
                    SourceSpec::Kafka(_)
                        | SourceSpec::Plugin { .. }
                        | SourceSpec::Generator {
                            shape: GeneratorShape::Nexmark,
                            ..
                        }
                );
                if !own_timestamps && s.event_time().is_some_and(|t| t.field.is_none()) {
                    return Err(self.invalid(
                        format!("sources[{i}].event-time"),
                        "event-time:",
                        "`field` names the JSON field holding the event time; only Kafka, \
                         Nexmark and plugin sources have timestamps of their own"
                            .into(),
                    ));
                }
                self.unique(&mut names, &name, format!("sources[{i}]"))?;
                Ok((name, s))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let steps = spec
            .steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let defaults = StepDefaults {
                    plugin_base: &plugin_base,
                    parallelism,
                    max_parallelism,
                    sandbox: &spec.sandbox,
                };
                self.step(i, s, &defaults, &mut names)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sinks = spec
            .sinks
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                let name = match &mut s {
                    SinkSpec::Stdout { name, .. } => {
                        name.clone().unwrap_or_else(|| "stdout".into())
                    }
                    SinkSpec::Discard { name, .. } => {
                        name.clone().unwrap_or_else(|| "discard".into())
                    }
                    SinkSpec::File { name, path, .. } => {
                        *path = base.join(&*path);
                        name.clone().unwrap_or_else(|| format!("sink-{i}"))
                    }
                    SinkSpec::Digest {
                        name, path, rows, ..
                    } => {
                        *path = base.join(&*path);
                        *rows = rows.as_ref().map(|r| base.join(r));
                        name.clone().unwrap_or_else(|| format!("sink-{i}"))
                    }
                    SinkSpec::Plugin {
                        name,
                        plugin,
                        sandbox,
                        grants,
                        ..
                    } => {
                        let what = format!("sinks[{i}]");
                        *plugin = self.connector_plugin(&plugin_base, plugin, &what)?;
                        **grants = self.connector_sandbox(&spec.sandbox, sandbox, &what)?;
                        name.clone().unwrap_or_else(|| format!("sink-{i}"))
                    }
                    SinkSpec::Kafka(kafka) => {
                        kafka.name.clone().unwrap_or_else(|| format!("sink-{i}"))
                    }
                };
                self.unique(&mut names, &name, format!("sinks[{i}]"))?;
                Ok((name, s))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, step) in steps.iter().enumerate() {
            let StepOp::Join(join) = &step.op else {
                continue;
            };
            let what = format!("steps[{i}] ({})", step.name);
            if i != 0 {
                return Err(self.invalid(what, "join:", "a join must be the first step".into()));
            }
            for side in [&join.left, &join.right] {
                let Some((_, source)) = sources.iter().find(|(n, _)| *n == side.source) else {
                    return Err(self.invalid(
                        what,
                        "join:",
                        format!("no source named {:?}", side.source),
                    ));
                };
                if source.event_time().is_none() {
                    return Err(self.invalid(
                        what,
                        "join:",
                        format!("source {:?} needs `event-time` to be joined", side.source),
                    ));
                }
            }
            if let Some((name, _)) = sources
                .iter()
                .find(|(n, _)| *n != join.left.source && *n != join.right.source)
            {
                return Err(self.invalid(
                    what,
                    "join:",
                    format!("source {name:?} is neither side of the join"),
                ));
            }
        }
        let (side_sinks, sinks): (Vec<_>, Vec<_>) =
            sinks.into_iter().partition(|(_, s)| s.input().is_some());
        if sinks.is_empty() {
            return Err(self.invalid(
                "sinks".into(),
                "sinks:",
                "a job needs at least one sink of its main output (without `input`)".into(),
            ));
        }
        let side_outputs: Vec<&str> = steps
            .iter()
            .flat_map(|s| {
                let late = match &s.op {
                    StepOp::Window(w) => w.late_output.as_deref(),
                    _ => None,
                };
                late.into_iter()
                    .chain(s.side_outputs.iter().map(String::as_str))
            })
            .collect();
        for (name, sink) in &side_sinks {
            let input = sink.input().unwrap_or_default();
            if !side_outputs.contains(&input) {
                return Err(self.invalid(
                    format!("sink {name:?}"),
                    "input:",
                    format!("no step has a side output named {input:?}"),
                ));
            }
        }
        if let Some(missing) = side_outputs
            .iter()
            .find(|o| !side_sinks.iter().any(|(_, s)| s.input() == Some(o)))
        {
            return Err(self.invalid(
                format!("late-output {missing:?}"),
                "late-output:",
                format!("no sink reads it: add a sink with `input: {missing}`"),
            ));
        }
        let dead_letter = match spec.dead_letter {
            Some(mut sink) => {
                if let SinkSpec::File { path, .. } = &mut sink {
                    *path = base.join(&*path);
                }
                Some(("dead-letter".to_owned(), sink))
            }
            None => None,
        };
        let dead_lettering = steps
            .iter()
            .filter(|s| s.on_error == OnError::DeadLetter)
            .map(|s| format!("step {:?}", s.name))
            .chain(sources.iter().filter_map(|(name, s)| match s {
                SourceSpec::Kafka(k) if k.on_error == OnError::DeadLetter => {
                    Some(format!("source {name:?}"))
                }
                _ => None,
            }))
            .next();
        if dead_letter.is_none()
            && let Some(what) = dead_lettering
        {
            return Err(self.invalid(
                what,
                "on-error:",
                "`on-error: dead-letter` needs a `dead-letter:` sink in the job".into(),
            ));
        }
        let unchecked_output = side_sinks.iter().chain(&dead_letter).find(
            |(_, s)| matches!(s, SinkSpec::Kafka(k) if k.guarantee == Guarantee::ExactlyOnce),
        );
        if let Some((name, _)) = unchecked_output {
            return Err(self.invalid(
                format!("sink {name:?}"),
                "guarantee:",
                "side outputs and dead letters are not part of checkpoints, so they cannot be \
                 written exactly once; use `guarantee: at-least-once`"
                    .into(),
            ));
        }
        let max_stack = spec.sandbox.max_stack.unwrap_or(DEFAULT_MAX_STACK);
        if max_stack.0 < 64 << 10 || max_stack.0 > 64 << 20 {
            return Err(self.invalid(
                "sandbox.max-stack".into(),
                "max-stack:",
                format!("{max_stack} is outside 64 KiB ..= 64 MiB"),
            ));
        }
        let tenant = spec
            .tenant
            .unwrap_or_else(|| crate::tenant::DEFAULT_TENANT.into());
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.invalid(
                "tenant".into(),
                "tenant:",
                format!("{tenant:?} is not a tenant name (letters, digits, `-`, `_`)"),
            ));
        }
        let exactly_once = sinks.iter().find(
            |(_, s)| matches!(s, SinkSpec::Kafka(k) if k.guarantee == Guarantee::ExactlyOnce),
        );
        if let (None, Some((name, _))) = (&spec.checkpoints, exactly_once) {
            return Err(self.invalid(
                format!("sink {name:?}"),
                "guarantee:",
                "`exactly-once` commits a Kafka transaction per checkpoint: add a \
                 `checkpoints:` section, or use `guarantee: at-least-once`"
                    .into(),
            ));
        }
        let checkpoints = match spec.checkpoints {
            None => None,
            Some(mut c) => {
                if let Some((name, _)) = sources
                    .iter()
                    .find(|(_, s)| matches!(s, SourceSpec::Stdin { .. }))
                {
                    return Err(self.invalid(
                        "checkpoints".into(),
                        "checkpoints:",
                        format!(
                            "source {name:?} reads stdin, which cannot be replayed after a \
                             failure; read a file instead, or turn checkpoints off"
                        ),
                    ));
                }
                if c.interval.0.is_zero() {
                    return Err(self.invalid(
                        "checkpoints.interval".into(),
                        "interval:",
                        "must be longer than 0".into(),
                    ));
                }
                let dir = c
                    .dir
                    .take()
                    .unwrap_or_else(|| Path::new(".eddy/checkpoints").join(&spec.name));
                c.dir = Some(base.join(dir));
                Some(c)
            }
        };
        let mut state = spec.state;
        let state_dir = state
            .dir
            .take()
            .unwrap_or_else(|| Path::new(".eddy/state").join(&spec.name));
        state.dir = Some(base.join(state_dir));
        Ok(Job {
            checkpoints,
            restart: spec.restart,
            state,
            name: spec.name,
            tenant,
            dead_letter,
            side_sinks,
            max_stack,
            file: self.file.to_owned(),
            batch_size,
            parallelism,
            max_parallelism,
            memory,
            prometheus,
            sources,
            steps,
            sinks,
        })
    }

    /// The component of a connector, which must exist.
    fn connector_plugin(
        &self,
        plugin_base: &Path,
        plugin: &Path,
        what: &str,
    ) -> Result<PathBuf, JobError> {
        let path = plugin_base.join(plugin);
        if !path.is_file() {
            return Err(self.invalid(
                what.to_owned(),
                "plugin:",
                format!("plugin component {} not found", path.display()),
            ));
        }
        Ok(path)
    }

    /// A connector's sandbox: its own settings over the job's.
    fn connector_sandbox(
        &self,
        job: &SandboxSpec,
        own: &SandboxSpec,
        what: &str,
    ) -> Result<Sandbox, JobError> {
        job.merged(own)
            .resolve(&self.base_dir())
            .map_err(|m| self.invalid(format!("{what}.sandbox"), "sandbox:", m))
    }

    fn unique(
        &self,
        names: &mut std::collections::HashSet<String>,
        name: &str,
        what: String,
    ) -> Result<(), JobError> {
        if names.insert(name.to_owned()) {
            Ok(())
        } else {
            Err(self.invalid(
                what,
                &format!("name: {name}"),
                format!("the name {name:?} is used twice; names must be unique in a job"),
            ))
        }
    }

    fn check_parallelism(&self, what: &str, hint: &str, p: u32, max: u32) -> Result<(), JobError> {
        if p == 0 || p > max {
            return Err(self.invalid(
                what.into(),
                hint,
                format!("parallelism {p} must be between 1 and max-parallelism ({max})"),
            ));
        }
        Ok(())
    }

    fn step(
        &self,
        i: usize,
        spec: StepSpec,
        defaults: &StepDefaults<'_>,
        names: &mut std::collections::HashSet<String>,
    ) -> Result<Step, JobError> {
        let plugin_base = defaults.plugin_base;
        let label = match &spec.name {
            Some(n) => format!("steps[{i}] ({n})"),
            None => format!("steps[{i}]"),
        };
        let hint = spec
            .name
            .as_ref()
            .map(|n| format!("name: {n}"))
            .unwrap_or_else(|| "steps:".into());
        let plugin = |kind: OperatorKind, path: &PathBuf| (kind.key(), Some((kind, path.clone())));
        let mut chosen: Vec<(&str, Option<(OperatorKind, PathBuf)>)> = Vec::new();
        if let Some(p) = &spec.map {
            chosen.push(plugin(OperatorKind::Map, p));
        }
        if let Some(p) = &spec.filter {
            chosen.push(plugin(OperatorKind::Filter, p));
        }
        if let Some(p) = &spec.flat_map {
            chosen.push(plugin(OperatorKind::FlatMap, p));
        }
        if let Some(p) = &spec.process {
            chosen.push(plugin(OperatorKind::Process, p));
        }
        for (key, set) in [
            ("key-by", spec.key_by.is_some()),
            ("where", spec.where_.is_some()),
            ("select", spec.select.is_some()),
            ("rolling", spec.rolling.is_some()),
            ("window", spec.window.is_some()),
            ("join", spec.join.is_some()),
        ] {
            if set {
                chosen.push((key, None));
            }
        }
        let key = match chosen.as_slice() {
            [(key, _)] => *key,
            [] => {
                return Err(self.invalid(
                    label,
                    &hint,
                    "a step needs one of `map`, `filter`, `flat-map`, `process` (a component \
                     path), `key-by`, `where`, `select`, `rolling` or `window`"
                        .into(),
                ));
            }
            many => {
                let keys: Vec<_> = many.iter().map(|(k, _)| *k).collect();
                return Err(self.invalid(
                    label,
                    &hint,
                    format!("a step has exactly one operator, found {}", keys.join(", ")),
                ));
            }
        };
        let expr = |text: &str, what: &str| {
            Expr::parse(text)
                .map_err(|e| self.invalid(format!("{label}.{what}"), text, e.to_string()))
        };
        let op = match (key, chosen.pop().and_then(|c| c.1)) {
            (_, Some((kind, path))) => {
                let plugin = plugin_base.join(&path);
                if !plugin.is_file() {
                    return Err(self.invalid(
                        label,
                        &path.display().to_string(),
                        format!("plugin component {} not found", plugin.display()),
                    ));
                }
                let params_json = serde_json::to_string(&spec.params).map_err(|e| {
                    self.invalid(format!("steps[{i}].params"), "params:", e.to_string())
                })?;
                StepOp::Plugin {
                    kind,
                    plugin,
                    params_json,
                }
            }
            ("key-by", None) => {
                let field = spec.key_by.unwrap_or_default();
                let path: Vec<String> = field.split('.').map(str::to_owned).collect();
                if path.iter().any(String::is_empty) {
                    return Err(self.invalid(
                        format!("{label}.key-by"),
                        "key-by:",
                        format!("{field:?} is not a field path like `customer` or `user.id`"),
                    ));
                }
                StepOp::KeyBy(path)
            }
            ("where", None) => StepOp::Where(expr(&spec.where_.unwrap_or_default(), "where")?),
            ("select", None) => StepOp::Select(
                spec.select
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, text)| Ok((name.clone(), expr(&text, &format!("select.{name}"))?)))
                    .collect::<Result<_, JobError>>()?,
            ),
            ("window", None) => {
                let mut window = spec.window.clone().ok_or_else(|| {
                    self.invalid(label.clone(), &hint, "a window step needs `window:`".into())
                })?;
                for function in window.function.iter_mut().chain(window.process.iter_mut()) {
                    let path = plugin_base.join(&function.plugin);
                    if !path.is_file() {
                        return Err(self.invalid(
                            label,
                            &function.plugin.display().to_string(),
                            format!("plugin component {} not found", path.display()),
                        ));
                    }
                    function.plugin = path;
                }
                if window.process.is_some()
                    && (window.function.is_some() || !window.aggregate.is_empty())
                {
                    return Err(self.invalid(
                        format!("{label}.window"),
                        "process:",
                        "a window has either a `process` function or aggregates, not both".into(),
                    ));
                }
                window
                    .assigner()
                    .map_err(|m| self.invalid(format!("{label}.window"), "window:", m))?;
                StepOp::Window(Box::new(window))
            }
            ("join", None) => {
                let join = spec.join.clone().ok_or_else(|| {
                    self.invalid(label.clone(), &hint, "a join step needs `join:`".into())
                })?;
                join.check()
                    .map_err(|m| self.invalid(format!("{label}.join"), "join:", m))?;
                StepOp::Join(join)
            }
            (_, None) => StepOp::Rolling(spec.rolling.unwrap_or(RollingSpec::Count)),
        };
        if !matches!(op, StepOp::Plugin { .. }) && !spec.params.is_empty() {
            return Err(self.invalid(label, "params:", "only plugin steps take `params`".into()));
        }
        let parallelism = spec.parallelism.unwrap_or(defaults.parallelism);
        self.check_parallelism(
            &format!("{label}.parallelism"),
            &hint,
            parallelism,
            defaults.max_parallelism,
        )?;
        if spec.sandbox.max_stack.is_some() {
            return Err(self.invalid(
                format!("{label}.sandbox"),
                "max-stack:",
                "max-stack is set for the whole job, in the job's `sandbox:`".into(),
            ));
        }
        let sandbox = defaults
            .sandbox
            .merged(&spec.sandbox)
            .resolve(&self.base_dir())
            .map_err(|m| self.invalid(format!("{label}.sandbox"), "sandbox:", m))?;
        let name = spec.name.unwrap_or_else(|| format!("{}-{i}", key));
        self.unique(names, &name, format!("steps[{i}]"))?;
        Ok(Step {
            name,
            op,
            parallelism,
            partition: spec.partition,
            sandbox,
            on_error: spec.on_error,
            side_outputs: spec.side_outputs,
        })
    }
}

/// The 1-based line of the first line containing `needle`, to point errors at.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Job, JobError> {
        Job::parse(text, Path::new("/jobs/test.yaml"), None)
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let err =
            parse("name: x\nsources:\n  - type: file\n    pathh: a\nsinks: []\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/jobs/test.yaml:"), "{msg}");
        assert!(msg.contains("pathh"), "{msg}");
        assert!(matches!(
            err,
            JobError::Syntax {
                location: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn kafka_settings_that_cannot_keep_their_promise_are_refused() {
        let kafka_in = "sources:\n  - type: kafka\n    bootstrap: b:1\n    topics: [t]\n";
        let eos =
            "  - type: kafka\n    bootstrap: b:1\n    topic: o\n    guarantee: exactly-once\n";
        let no_checkpoints = format!("name: x\n{kafka_in}sinks:\n{eos}");
        let msg = parse(&no_checkpoints).unwrap_err().to_string();
        assert!(msg.contains("add a `checkpoints:` section"), "{msg}");
        let dead_letters = format!(
            "name: x\ncheckpoints: {{ interval: 1s }}\n{kafka_in}dead-letter:\n{}sinks:\n  - type: stdout\n",
            eos.replacen("  - ", "  ", 1).replace("\n    ", "\n  ")
        );
        let msg = parse(&dead_letters).unwrap_err().to_string();
        assert!(msg.contains("cannot be written exactly once"), "{msg}");
        let untimed = "name: x\nsources:\n  - type: generator\n    event-time: {}\nsinks:\n  - type: stdout\n";
        let msg = parse(untimed).unwrap_err().to_string();
        assert!(
            msg.contains("only Kafka, Nexmark and plugin sources have timestamps"),
            "{msg}"
        );
        parse(&format!(
            "name: x\n{kafka_in}    event-time: {{}}\nsinks:\n  - type: stdout\n"
        ))
        .unwrap();
    }

    #[test]
    fn missing_plugin_names_step_and_line() {
        let text = "name: x\nsources:\n  - type: stdin\nsteps:\n  - name: conv\n    map: nope.wasm\nsinks:\n  - type: stdout\n";
        let msg = parse(text).unwrap_err().to_string();
        assert_eq!(
            msg,
            "/jobs/test.yaml:6: steps[0] (conv): plugin component /jobs/nope.wasm not found"
        );
    }

    #[test]
    fn built_in_steps_parse_and_check_expressions() {
        let text = "name: x\nparallelism: 2\nsources:\n  - type: generator\nsteps:\n  - key-by: customer\n  - where: amount > 10\n  - select: { c: customer, twice: amount * 2 }\n  - rolling: count\n    parallelism: 4\n  - rolling: { sum: amount }\nsinks:\n  - type: stdout\n";
        let job = parse(text).unwrap();
        assert_eq!(job.steps.len(), 5);
        assert!(matches!(job.steps[0].op, StepOp::KeyBy(ref p) if p == &["customer"]));
        assert_eq!(job.steps[3].parallelism, 4);
        assert_eq!(job.steps[1].parallelism, 2);
        assert!(matches!(&job.steps[4].op, StepOp::Rolling(RollingSpec::Sum(f)) if f == "amount"));
        assert!(matches!(
            &job.sources[0].1,
            SourceSpec::Generator {
                parallelism: Some(2),
                ..
            }
        ));
        let bad = "name: x\nsources:\n  - type: stdin\nsteps:\n  - name: w\n    where: amount = 1\nsinks:\n  - type: stdout\n";
        let msg = parse(bad).unwrap_err().to_string();
        assert!(msg.contains("test.yaml:6: steps[0] (w).where"), "{msg}");
        assert!(msg.contains("compare with `==`"), "{msg}");
    }

    #[test]
    fn a_step_needs_exactly_one_operator() {
        let text = "name: x\nsources:\n  - type: stdin\nsteps:\n  - name: s\n    params: {}\nsinks:\n  - type: stdout\n";
        assert!(
            parse(text)
                .unwrap_err()
                .to_string()
                .contains("needs one of")
        );
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let text = "name: x\nsources:\n  - type: stdin\n    name: a\nsinks:\n  - type: stdout\n    name: a\n";
        assert!(parse(text).unwrap_err().to_string().contains("used twice"));
    }

    #[test]
    fn relative_paths_resolve_against_the_job_file() {
        let text = "name: x\nsources:\n  - type: file\n    path: in.jsonl\nsinks:\n  - type: file\n    path: out/o.jsonl\n";
        let job = parse(text).unwrap();
        assert!(
            matches!(&job.sources[0].1, SourceSpec::File { path, .. } if path == Path::new("/jobs/in.jsonl"))
        );
        assert!(
            matches!(&job.sinks[0].1, SinkSpec::File { path, .. } if path == Path::new("/jobs/out/o.jsonl"))
        );
        assert_eq!(job.batch_size, DEFAULT_BATCH_SIZE);
    }
}
