//! From a checked job to its execution plan: nodes grouped into stages (chains of
//! forward-connected operators of equal parallelism, run as one task per subtask) and
//! the exchanges between stages.

use std::fmt;

use crate::error::ErrorClass;
use crate::job::{Job, Partition, StepOp};

/// A stage: one task per subtask runs its sources or input, its steps and its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Subtasks.
    pub parallelism: u32,
    /// Whether the job's sources run in this stage (the first one).
    pub sources: bool,
    /// Indices of the job's steps chained in this stage, in order.
    pub steps: Vec<usize>,
    /// Whether the job's sinks run in this stage (the last one).
    pub sinks: bool,
    /// How events arrive from the stage before; `None` for the source stage.
    pub input: Option<Partition>,
}

/// The execution plan of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Stages in pipeline order.
    pub stages: Vec<Stage>,
    /// Key groups of hash exchanges.
    pub max_parallelism: u32,
}

/// A job whose topology cannot run as written.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: step {step:?}: {message}", file.display(), location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct PlanError {
    /// The job file.
    pub file: std::path::PathBuf,
    /// Line and column of the step in it, when known.
    pub location: Option<(usize, usize)>,
    /// The step at fault.
    pub step: String,
    /// What is wrong.
    pub message: String,
}

impl PlanError {
    /// The error `message` about step `step`, at `path` of the job file.
    fn at(job: &Job, path: &str, step: &str, message: String) -> PlanError {
        PlanError {
            file: job.file.clone(),
            location: job.positions.find(path),
            step: step.to_owned(),
            message,
        }
    }

    /// A job that cannot run as written does not run on a second try either.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::USER_FATAL
    }
}

/// Sinks run as one subtask (stdout and a file are single streams).
const SINK_PARALLELISM: u32 = 1;

impl Plan {
    /// Plans `job`.
    pub fn new(job: &Job) -> Result<Plan, PlanError> {
        let source_p = job
            .sources
            .iter()
            .map(|(_, s)| s.subtasks())
            .max()
            .unwrap_or(1);
        let mut stages = vec![Stage {
            parallelism: source_p,
            sources: true,
            steps: Vec::new(),
            sinks: false,
            input: None,
        }];
        // Whether the stream is partitioned by key, and whether the last node set keys.
        let mut keyed = false;
        let mut after_key_by = false;
        for (i, step) in job.steps.iter().enumerate() {
            let prev_p = stages.last().map_or(1, |s| s.parallelism);
            // A join's sources key their events for it: its input always hashes.
            let keyed_input = after_key_by || matches!(step.op, StepOp::Join(_));
            let edge =
                edge(step.partition, keyed_input, prev_p, step.parallelism).map_err(|message| {
                    PlanError::at(job, &format!("steps[{i}]"), &step.name, message)
                })?;
            keyed = match edge {
                Partition::Hash => true,
                Partition::Forward => keyed,
                Partition::Rebalance | Partition::Broadcast => false,
            };
            let keyed_op = match step.op {
                StepOp::Rolling(_) => Some("rolling"),
                StepOp::Window(_) => Some("window"),
                StepOp::Plugin {
                    kind: crate::job::OperatorKind::Process,
                    ..
                } => Some("process"),
                _ => None,
            };
            if let Some(op) = keyed_op
                && !keyed
            {
                return Err(PlanError::at(
                    job,
                    &format!("steps[{i}]"),
                    &step.name,
                    format!(
                        "`{op}` needs a stream partitioned by key: put a `key-by` step before \
                         it, with no other partitioning in between (this step receives by {})",
                        partition_name(edge)
                    ),
                ));
            }
            after_key_by = matches!(step.op, StepOp::KeyBy(_));
            push(&mut stages, edge, step.parallelism, Some(i), false);
        }
        let prev_p = stages.last().map_or(1, |s| s.parallelism);
        let edge = edge(None, after_key_by, prev_p, SINK_PARALLELISM)
            .map_err(|message| PlanError::at(job, "sinks", "sinks", message))?;
        push(&mut stages, edge, SINK_PARALLELISM, None, true);
        Ok(Plan {
            stages,
            max_parallelism: job.max_parallelism,
        })
    }

    /// Subtasks over all stages: the number of tasks that run.
    pub fn tasks(&self) -> u32 {
        self.stages.iter().map(|s| s.parallelism).sum()
    }
}

fn edge(
    explicit: Option<Partition>,
    after_key_by: bool,
    from: u32,
    to: u32,
) -> Result<Partition, String> {
    match explicit {
        Some(Partition::Forward) if from != to => Err(format!(
            "`partition: forward` needs equal parallelism, but {from} subtasks feed {to}"
        )),
        Some(p) => Ok(p),
        None if after_key_by => Ok(Partition::Hash),
        None if from == to => Ok(Partition::Forward),
        None => Ok(Partition::Rebalance),
    }
}

fn push(
    stages: &mut Vec<Stage>,
    edge: Partition,
    parallelism: u32,
    step: Option<usize>,
    sinks: bool,
) {
    if edge != Partition::Forward {
        stages.push(Stage {
            parallelism,
            sources: false,
            steps: Vec::new(),
            sinks: false,
            input: Some(edge),
        });
    }
    if let Some(last) = stages.last_mut() {
        last.steps.extend(step);
        last.sinks |= sinks;
    }
}

fn partition_name(p: Partition) -> &'static str {
    match p {
        Partition::Forward => "forward",
        Partition::Rebalance => "rebalance",
        Partition::Broadcast => "broadcast",
        Partition::Hash => "hash",
    }
}

/// A job's graph as people look at it (the dashboard, the REST API): its sources,
/// steps and sinks as vertices, and how events travel between them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Graph {
    /// Sources, steps, then sinks, in the job's order.
    pub vertices: Vec<Vertex>,
    /// From each vertex to the next ones.
    pub edges: Vec<Edge>,
}

/// One source, step or sink of a [`Graph`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vertex {
    /// Its name in the job (the name its metrics carry).
    pub name: String,
    /// `source`, `step` or `sink`.
    pub role: String,
    /// Its subtasks.
    pub parallelism: u32,
}

/// How events go from one vertex of a [`Graph`] to the next.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Edge {
    /// The upstream vertex.
    pub from: String,
    /// The downstream vertex.
    pub to: String,
    /// `forward`, `hash`, `rebalance` or `broadcast`.
    pub exchange: String,
    /// Whether both run in the same task (no exchange between them).
    pub chained: bool,
}

impl Plan {
    /// The graph of `job`, planned as this.
    pub fn graph(&self, job: &Job) -> Graph {
        let vertex = |name: &str, role: &str, parallelism: u32| Vertex {
            name: name.to_owned(),
            role: role.to_owned(),
            parallelism,
        };
        let source_p = self.stages.first().map_or(1, |s| s.parallelism);
        let mut vertices: Vec<Vertex> = job
            .sources
            .iter()
            .map(|(name, _)| vertex(name, "source", source_p))
            .collect();
        let mut edges = Vec::new();
        let mut upstream: Vec<String> = vertices.iter().map(|v| v.name.clone()).collect();
        let mut link = |to: &str, upstream: &[String], input: Option<Partition>| {
            for from in upstream {
                edges.push(Edge {
                    from: from.clone(),
                    to: to.to_owned(),
                    exchange: partition_name(input.unwrap_or(Partition::Forward)).into(),
                    chained: input.is_none(),
                });
            }
        };
        for stage in &self.stages {
            // Only the first node of a stage receives through its exchange.
            let mut input = stage.input;
            for &i in &stage.steps {
                let step = &job.steps[i];
                link(&step.name, &upstream, input.take());
                vertices.push(vertex(&step.name, "step", step.parallelism));
                upstream = vec![step.name.clone()];
            }
            if stage.sinks {
                for (name, _) in &job.sinks {
                    link(name, &upstream, input);
                    vertices.push(vertex(name, "sink", SINK_PARALLELISM));
                }
            }
        }
        Graph { vertices, edges }
    }
}

/// The plan of a job, printable for `eddy plan`.
pub struct PlanView<'a> {
    /// The job.
    pub job: &'a Job,
    /// Its plan.
    pub plan: &'a Plan,
}

impl fmt::Display for PlanView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (job, plan) = (self.job, self.plan);
        writeln!(
            f,
            "job {:?}: {} stage(s), {} task(s), max-parallelism {}, batch-size {}",
            job.name,
            plan.stages.len(),
            plan.tasks(),
            plan.max_parallelism,
            job.batch_size
        )?;
        let m = &job.memory;
        writeln!(
            f,
            "memory: process {} = network {} + managed {} + wasm {} + host",
            m.process, m.network, m.managed, m.wasm
        )?;
        for (i, stage) in plan.stages.iter().enumerate() {
            if let Some(input) = stage.input {
                let detail = match input {
                    Partition::Hash => format!(" by key into {} key groups", plan.max_parallelism),
                    _ => String::new(),
                };
                writeln!(f, "  ⇓ {}{detail}", partition_name(input))?;
            }
            let mut chain: Vec<String> = Vec::new();
            if stage.sources {
                // A union of sources feeds the chain together.
                let sources: Vec<String> = job
                    .sources
                    .iter()
                    .map(|(name, spec)| format!("source {name} (×{})", spec.subtasks()))
                    .collect();
                chain.push(sources.join(" + "));
            }
            chain.extend(stage.steps.iter().map(|&s| {
                let step = &job.steps[s];
                format!("{} [{}]", step.name, step.op.label())
            }));
            if stage.sinks {
                chain.extend(job.sinks.iter().map(|(name, _)| format!("sink {name}")));
            }
            writeln!(
                f,
                "stage {} ×{}: {}",
                i + 1,
                stage.parallelism,
                chain.join(" → ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn plan(text: &str) -> Result<Plan, PlanError> {
        let job = Job::parse(text, Path::new("/j/job.yaml"), None).unwrap();
        Plan::new(&job)
    }

    #[test]
    fn chains_forward_steps_and_splits_at_exchanges() {
        let p = plan(
            "name: x\nparallelism: 2\nsources:\n  - type: generator\nsteps:\n  - where: a > 1\n  - key-by: k\n  - rolling: count\n  - select: { k: key }\n    parallelism: 1\nsinks:\n  - type: stdout\n",
        )
        .unwrap();
        let shape: Vec<_> = p
            .stages
            .iter()
            .map(|s| (s.parallelism, s.sources, s.steps.clone(), s.sinks, s.input))
            .collect();
        assert_eq!(
            shape,
            vec![
                (2, true, vec![0, 1], false, None),
                (2, false, vec![2], false, Some(Partition::Hash)),
                (1, false, vec![3], true, Some(Partition::Rebalance)),
            ]
        );
        assert_eq!(p.tasks(), 5);
    }

    #[test]
    fn the_graph_shows_each_vertex_and_how_events_reach_it() {
        let text = "name: x\nparallelism: 2\nsources:\n  - type: generator\n    name: gen\nsteps:\n  - name: big\n    where: a > 1\n  - name: by-k\n    key-by: k\n  - name: count\n    rolling: count\n  - name: pick\n    select: { k: key }\n    parallelism: 1\nsinks:\n  - type: stdout\n    name: out\n";
        let job = Job::parse(text, Path::new("/j/job.yaml"), None).unwrap();
        let graph = Plan::new(&job).unwrap().graph(&job);
        let vertices: Vec<_> = graph
            .vertices
            .iter()
            .map(|v| format!("{} {} {}", v.role, v.name, v.parallelism))
            .collect();
        assert_eq!(
            vertices,
            [
                "source gen 2",
                "step big 2",
                "step by-k 2",
                "step count 2",
                "step pick 1",
                "sink out 1"
            ]
        );
        let edges: Vec<_> = graph
            .edges
            .iter()
            .map(|e| format!("{}->{} {} {}", e.from, e.to, e.exchange, e.chained))
            .collect();
        assert_eq!(
            edges,
            [
                "gen->big forward true",
                "big->by-k forward true",
                "by-k->count hash false",
                "count->pick rebalance false",
                "pick->out forward true",
            ]
        );
    }

    #[test]
    fn rolling_needs_a_keyed_stream() {
        let err = plan("name: x\nsources:\n  - type: generator\nsteps:\n  - name: r\n    rolling: count\nsinks:\n  - type: stdout\n")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("needs a stream partitioned by key"),
            "{err}"
        );
        // At the step's line and column in the job file.
        assert_eq!(err.location, Some((5, 5)), "{err}");
        assert!(
            err.to_string().contains("job.yaml:5:5: step \"r\""),
            "{err}"
        );
        let err = plan("name: x\nsources:\n  - type: generator\nsteps:\n  - key-by: k\n  - name: r\n    rolling: count\n    partition: rebalance\nsinks:\n  - type: stdout\n")
            .unwrap_err();
        assert!(err.to_string().contains("receives by rebalance"), "{err}");
    }

    #[test]
    fn forward_between_unequal_parallelism_is_an_error() {
        let err = plan("name: x\nsources:\n  - type: generator\nsteps:\n  - name: s\n    where: 'true'\n    parallelism: 2\n    partition: forward\nsinks:\n  - type: stdout\n")
            .unwrap_err();
        assert!(err.to_string().contains("needs equal parallelism"), "{err}");
    }
}
