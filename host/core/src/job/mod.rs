//! The declarative job model: what a user writes ([`spec`]), and the checked [`Job`]
//! that the planner and executor run. Nothing here imports the runtime; the runtime
//! imports this.

pub mod checkpoint;
pub mod event_time;
pub mod join;
pub mod kafka;
pub mod memory;
pub(crate) mod position;
mod resolve;
pub mod sandbox;
pub mod span;
pub mod spec;
pub mod state;
pub mod window;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::expr::Expr;
use checkpoint::{CheckpointSpec, RestartSpec};
use join::JoinSpec;
use memory::{ByteSize, MemoryBudget};
use sandbox::{OnError, Sandbox};
pub use spec::{
    Format, GeneratorShape, JobSpec, MetricsSpec, RollingSpec, SinkSpec, SourceSpec, StepSpec,
};
use state::StateSpec;
use window::{Assigner, WindowSpec};

/// The tenant of a job that names none.
pub const DEFAULT_TENANT: &str = "default";
/// Events per batch when the job does not say.
pub const DEFAULT_BATCH_SIZE: usize = 256;
/// Key groups when the job does not say: the most subtasks a keyed step can ever have.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

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
    /// The directory its plugin paths are under: a cluster keeps its components by
    /// their paths relative to it.
    pub plugin_dir: PathBuf,
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
    /// Where each node of the job file is, for errors found after loading (the
    /// plan's).
    pub positions: std::sync::Arc<position::Positions>,
}

/// Why a job file cannot run, always naming the file and, where known, the line and
/// column of the node at fault.
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
    #[error("{file}{}: {what}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Invalid {
        /// The job file.
        file: PathBuf,
        /// Line and column of the node at fault, when the job file has it.
        location: Option<(usize, usize)>,
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
        let spec =
            position::parse::<JobSpec>(text).map_err(|(location, message)| JobError::Syntax {
                file: file.to_owned(),
                location,
                message,
            })?;
        resolve::Resolver::new(file, text).resolve(spec, plugin_dir)
    }
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
            "/jobs/test.yaml:6:10: steps[0] (conv): plugin component /jobs/nope.wasm not found"
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
        assert!(msg.contains("test.yaml:6:12: steps[0] (w).where"), "{msg}");
        assert!(msg.contains("compare with `==`"), "{msg}");
    }

    #[test]
    fn aggregates_of_one_letter_fields_parse() {
        let text = "name: x\nsources:\n  - type: generator\n    event-time: { field: ts }\nsteps:\n  - key-by: customer\n  - window:\n      tumbling: 1s\n      aggregate: { n: count, total: { sum: n } }\nsinks:\n  - type: stdout\n";
        let job = parse(text).unwrap();
        assert!(matches!(&job.steps[1].op, StepOp::Window(w) if w.aggregate.len() == 2));
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
