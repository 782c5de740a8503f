//! Building a dataflow from a job: its plan, the channels between stages, and every
//! task with its sources, chain of operators and sinks, opened through the registry and
//! restored from a checkpoint when one is given.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::checkpoint::coordinator::Schedule;
use crate::checkpoint::{CheckpointError, Coordinator, Restored, Storage};
use crate::connectors::Opening;
use crate::connectors::timed::{Alignments, with_event_time};
use crate::deadletter::DeadLetters;
use crate::exec::channel::Channel;
use crate::exec::exchange::{Exchange, Outlet};
use crate::exec::network::Network;
use crate::exec::plan::Plan;
use crate::job::kafka::Guarantee;
use crate::job::{Job, SinkSpec, StepOp};
use crate::latency::EventClock;
use crate::memory::Pools;
use crate::metrics::{Counters, JobMetrics, NodeMetrics, PluginEntry, Role};
use crate::operator::{OperatorError, OperatorFactory};
use crate::operators::builtin::{BuiltinContext, builtin_operator};
use crate::operators::join::JoinInput;
use crate::registry::Registry;
use crate::sideoutput::SideOutput;
use crate::sink::{Connected, Sink, SinkError};
use crate::source::Source;
use crate::state::backend::{BackendFactory, HeapFactory};
use crate::state::entries_for;
use crate::time::{Clock, SystemClock};

use super::dataflow::Dataflow;
use super::run_error::RunError;
use super::task::{Input, Link, Output, Task};

/// What building a dataflow may take besides the job: by default the system clock, no
/// checkpoint to restore from, no latency measurement, and keyed state in memory.
#[derive(Clone, Default)]
pub struct BuildOptions<'a> {
    /// The processing-time clock (default: the system's).
    pub clock: Option<Arc<dyn Clock>>,
    /// The checkpoint every source, operator and sink is restored from.
    pub restore: Option<&'a Restored>,
    /// A benchmark's latency clock: event-time sources note on it when they reach each
    /// event time, and digest sinks measure their rows against it.
    pub latency: Option<Arc<EventClock>>,
    /// Opens the keyed state of every stateful operator (default: in memory, charged
    /// to the pools' managed memory).
    pub state: Option<Arc<dyn BackendFactory>>,
    /// The job's other processes, when it spans several: only this process's subtasks
    /// are built, and channels to and from the others go over it (default: every
    /// subtask runs here).
    pub network: Option<&'a dyn Network>,
    /// Setting it cancels the run (see [`Dataflow::canceller`]); default: a new flag.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Where the job's checkpoints go (default: its checkpoint directory; a job whose
    /// checkpoints go to an object store needs it).
    pub checkpoints: Option<Storage>,
}

impl Dataflow {
    /// Plans `job` and opens every source, operator instance and sink, charging memory
    /// to `pools` (keyed state too, which stays in memory) and creating plugin
    /// operators and connectors through `registry`.
    pub fn build(
        job: &Job,
        registry: &Registry<'_>,
        pools: Arc<Pools>,
    ) -> Result<Dataflow, RunError> {
        Dataflow::build_with_options(job, registry, pools, BuildOptions::default())
    }

    /// [`Dataflow::build`] with the job's keyed state in backends opened by `state`
    /// (every stateful operator's: windows, joins, rolling aggregates, process
    /// functions), a processing-time clock of the caller's choosing, and every source,
    /// operator and sink restored from `restore` if given.
    pub fn build_with(
        job: &Job,
        registry: &Registry<'_>,
        pools: Arc<Pools>,
        state: Arc<dyn BackendFactory>,
        clock: Arc<dyn Clock>,
        restore: Option<&Restored>,
    ) -> Result<Dataflow, RunError> {
        let options = BuildOptions {
            clock: Some(clock),
            restore,
            latency: None,
            state: Some(state),
            network: None,
            cancel: None,
            checkpoints: None,
        };
        Dataflow::build_with_options(job, registry, pools, options)
    }

    /// [`Dataflow::build`] with everything [`BuildOptions`] can change.
    pub fn build_with_options(
        job: &Job,
        registry: &Registry<'_>,
        pools: Arc<Pools>,
        options: BuildOptions<'_>,
    ) -> Result<Dataflow, RunError> {
        let BuildOptions {
            clock,
            restore,
            latency,
            state,
            network,
            cancel,
            mut checkpoints,
        } = options;
        let local = |subtask: u32| network.is_none_or(|n| n.is_local(subtask));
        let clock = clock.unwrap_or_else(|| Arc::new(SystemClock));
        let state = state.unwrap_or_else(|| Arc::new(HeapFactory::new(Some(pools.clone()))));
        let latency = latency.as_ref();
        let plan = Plan::new(job)?;
        if let Some(r) = restore
            && r.max_parallelism != plan.max_parallelism
        {
            return Err(CheckpointError::Incompatible {
                path: r.path.clone(),
                message: format!(
                    "it has {} key groups (max-parallelism) and the job {}: keyed state \
                     cannot be split differently",
                    r.max_parallelism, plan.max_parallelism
                ),
            }
            .into());
        }
        let source_stage_p = plan.stages[0].parallelism as usize;
        let counters = |n: usize| {
            (0..n)
                .map(|_| Arc::new(Counters::default()))
                .collect::<Vec<_>>()
        };
        let mut nodes: Vec<NodeMetrics> = Vec::new();
        for (name, _) in &job.sources {
            nodes.push(NodeMetrics {
                name: name.clone(),
                role: Role::Source,
                subtasks: counters(source_stage_p),
            });
        }
        let step_base = nodes.len();
        for step in &job.steps {
            nodes.push(NodeMetrics {
                name: step.name.clone(),
                role: Role::Step,
                subtasks: counters(step.parallelism as usize),
            });
        }
        let sink_base = nodes.len();
        for (name, _) in &job.sinks {
            nodes.push(NodeMetrics {
                name: name.clone(),
                role: Role::Sink,
                subtasks: counters(1),
            });
        }
        let dead_letters = match &job.dead_letter {
            Some((name, spec)) => Some(Arc::new(DeadLetters::new(
                &job.name,
                &job.tenant,
                connect_sink(registry, job, name, spec, None, latency)?.0,
            ))),
            None => None,
        };

        // One inbound channel per subtask of every stage but the first, sharing the
        // network pool equally so that their sum never exceeds it.
        let inbound: u32 = plan.stages.iter().skip(1).map(|s| s.parallelism).sum();
        let capacity = pools.network.capacity() / inbound.max(1) as usize;
        let channels: Vec<Vec<Option<Arc<Channel>>>> = plan
            .stages
            .iter()
            .enumerate()
            .map(|(s, stage)| {
                let n = if s == 0 { 0 } else { stage.parallelism };
                (0..n)
                    .map(|i| local(i).then(|| Arc::new(Channel::new(capacity, pools.clone()))))
                    .collect()
            })
            .collect();
        // Remote senders feed local inbound channels through the network.
        if let Some(network) = network {
            for (s, inbound) in channels.iter().enumerate().skip(1) {
                for (to, channel) in inbound.iter().enumerate() {
                    let Some(channel) = channel else { continue };
                    for from in (0..plan.stages[s - 1].parallelism).filter(|&f| !local(f)) {
                        network.inlet(s, from, to as u32, channel.clone(), capacity);
                    }
                }
            }
        }

        let mut grouped: BTreeMap<String, Vec<Box<dyn Sink>>> = BTreeMap::new();
        for (name, spec) in &job.side_sinks {
            let input = spec.input().unwrap_or_default().to_owned();
            grouped
                .entry(input)
                .or_default()
                .push(connect_sink(registry, job, name, spec, None, latency)?.0);
        }
        let side_outputs: Arc<HashMap<String, Arc<SideOutput>>> = Arc::new(
            grouped
                .into_iter()
                .map(|(name, sinks)| {
                    let output = Arc::new(SideOutput::new(sinks));
                    (name, output)
                })
                .collect(),
        );
        let alignments = Alignments::default();
        let mut committers = Vec::new();
        // Tasks are assembled first and given the metrics once every plugin is known.
        let mut parts = Vec::new();
        let mut remote = Vec::new();
        let mut plugins = Vec::new();
        for (s, stage) in plan.stages.iter().enumerate() {
            for i in (0..stage.parallelism).filter(|&i| local(i)) {
                let input = if stage.sources {
                    let mut sources = Vec::new();
                    for (j, (name, spec)) in job.sources.iter().enumerate() {
                        if i < spec.subtasks() {
                            let at = Opening {
                                job,
                                name,
                                subtask: i,
                                restored: None,
                                latency,
                            };
                            let opened = registry.connectors.source(&at, spec)?;
                            let mut source =
                                with_event_time(name, opened, spec, &alignments, latency);
                            if let Some(r) = restore {
                                restore_source(r, name, spec, i, source.as_mut())?;
                            }
                            if let Some(StepOp::Join(join)) = job.steps.first().map(|s| &s.op) {
                                source = JoinInput::wrap(name, source, join);
                            }
                            sources.push((j, source));
                        }
                    }
                    Input::Sources(sources)
                } else {
                    let Some(channel) = channels[s][i as usize].clone() else {
                        return Err(RunError::Internal(format!(
                            "no inbound channel for local subtask {i} of stage {s}"
                        )));
                    };
                    Input::Channel {
                        channel,
                        senders: plan.stages[s - 1].parallelism,
                    }
                };
                let chain = stage
                    .steps
                    .iter()
                    .map(|&k| {
                        let step = &job.steps[k];
                        let ctx = BuiltinContext {
                            pools: &pools,
                            side_outputs: &side_outputs,
                            counters: nodes[step_base + k].subtasks[i as usize].clone(),
                            factory: registry,
                            job,
                            subtask: i,
                            clock: clock.clone(),
                            state: state.as_ref(),
                        };
                        let mut op = match builtin_operator(step, ctx) {
                            Some(op) => op?,
                            None => registry.create(job, step, i, step.parallelism, &*state)?,
                        };
                        if let Some(r) = restore {
                            let entries = r.step_entries(&step.name);
                            let mine =
                                entries_for(&entries, i, step.parallelism, plan.max_parallelism);
                            op.restore(mine, &r.path)?;
                        }
                        if let (Some(counters), StepOp::Plugin { plugin, .. }) =
                            (op.plugin_counters(), &step.op)
                        {
                            plugins.push(PluginEntry {
                                step: step.name.clone(),
                                plugin: plugin
                                    .file_name()
                                    .unwrap_or_default()
                                    .to_string_lossy()
                                    .into_owned(),
                                subtask: i,
                                counters,
                            });
                        }
                        Ok(Link {
                            node: step_base + k,
                            step: step.name.clone(),
                            op,
                            on_error: step.on_error,
                        })
                    })
                    .collect::<Result<Vec<_>, OperatorError>>()?;
                let output = if stage.sinks {
                    let sinks = job
                        .sinks
                        .iter()
                        .enumerate()
                        .map(|(k, (name, spec))| {
                            let prepared = restore.and_then(|r| r.sink_prepared(name));
                            let (sink, committer) =
                                connect_sink(registry, job, name, spec, prepared, latency)?;
                            committers.push((name.clone(), committer));
                            Ok((sink_base + k, sink))
                        })
                        .collect::<Result<Vec<_>, SinkError>>()?;
                    Output::Sinks(sinks)
                } else {
                    let next = &plan.stages[s + 1];
                    let partition = next.input.unwrap_or(crate::job::Partition::Forward);
                    let targets = channels[s + 1]
                        .iter()
                        .enumerate()
                        .map(|(to, c)| match (c, network) {
                            (Some(c), _) => Ok(c.clone() as Arc<dyn Outlet>),
                            (None, Some(n)) => {
                                let outlet = n
                                    .outlet(s + 1, i, to as u32, capacity)
                                    .map_err(RunError::Network)?;
                                remote.push(outlet.clone());
                                Ok(outlet)
                            }
                            (None, None) => Err(RunError::Internal(format!(
                                "no channel to subtask {to} of stage {}",
                                s + 2
                            ))),
                        })
                        .collect::<Result<Vec<_>, RunError>>()?;
                    Output::Exchange(Exchange::new(partition, targets, i, plan.max_parallelism))
                };
                parts.push((task_name(s, i), i as usize, input, chain, output));
            }
        }
        // Every task of the job, in this process or not: checkpoints name them all.
        let names: Vec<String> = plan
            .stages
            .iter()
            .enumerate()
            .flat_map(|(s, stage)| (0..stage.parallelism).map(move |i| task_name(s, i)))
            .collect();
        let metrics = Arc::new(JobMetrics {
            job: job.name.clone(),
            tenant: job.tenant.clone(),
            nodes,
            plugins,
            pools: pools.clone(),
            started: Instant::now(),
            checkpoints: Arc::default(),
        });
        if let Some(r) = restore
            && r.has_in_flight()
        {
            let now: Vec<&String> = names.iter().collect();
            if r.task_names().iter().any(|t| !now.contains(&t)) || r.task_names().len() != now.len()
            {
                return Err(CheckpointError::Incompatible {
                    path: r.path.clone(),
                    message: "it is unaligned and holds in-flight data, which restores only at \
                              the same parallelism; rescale from a savepoint (savepoints are \
                              aligned)"
                        .into(),
                }
                .into());
            }
        }
        if let Some(r) = restore {
            refuse_replaying_what_cannot_be_taken_back(job, r)?;
        }
        let schedule = match &job.checkpoints {
            None => None,
            Some(spec) => {
                let storage = match (checkpoints.take(), spec.objects_url()) {
                    (Some(storage), _) => storage,
                    (None, Some(url)) => {
                        return Err(CheckpointError::Remote {
                            at: url.to_owned(),
                            message: "this process cannot reach object stores".into(),
                        }
                        .into());
                    }
                    (None, None) => Storage::new(
                        spec.dir.clone().unwrap_or_default(),
                        &job.name,
                        spec.retain(),
                    ),
                };
                Some(Schedule {
                    first_id: storage.next_id()?,
                    storage,
                    interval: spec.interval.0,
                    timeout: spec.timeout(),
                    unaligned: spec.unaligned,
                })
            }
        };
        let coordinator = Coordinator::new(
            schedule,
            names.clone(),
            plan.max_parallelism,
            committers,
            metrics.checkpoints.clone(),
        );
        let coordinator = match network {
            Some(network) => {
                let here: Vec<bool> = names
                    .iter()
                    .map(|n| parts.iter().any(|p| p.0 == *n))
                    .collect();
                coordinator.spanning(network.link(), here)
            }
            None => coordinator,
        };
        let unread = Arc::new(AtomicBool::new(false));
        let tasks = parts
            .into_iter()
            .map(|(name, subtask, input, chain, output)| Task {
                restored_flight: restore
                    .map(|r| r.in_flight(&name).to_vec())
                    .unwrap_or_default(),
                unaligned: None,
                id: names.iter().position(|n| *n == name).unwrap_or_default(),
                barriers: coordinator.barriers(),
                checkpointing: job.checkpoints.is_some(),
                last_barrier: 0,
                name,
                subtask,
                input,
                chain,
                output,
                batch_size: job.batch_size,
                metrics: metrics.clone(),
                dead_letters: dead_letters.clone(),
                clock: clock.clone(),
                last_tick: i64::MIN,
                side_outputs: side_outputs.clone(),
                unread: unread.clone(),
            })
            .collect();
        Ok(Dataflow {
            side_outputs: side_outputs.values().cloned().collect(),
            thread_stack: job.max_stack.0 + (2 << 20),
            tasks,
            dead_letters,
            channels: channels.into_iter().flatten().flatten().collect(),
            remote,
            metrics,
            coordinator,
            cancel: cancel.unwrap_or_default(),
        })
    }
}

/// A checkpoint older than the newest completed one replays what was committed since;
/// file sinks cut their output back to the restored checkpoint, but transactions a
/// Kafka sink committed cannot be taken back: restoring would publish them twice.
fn refuse_replaying_what_cannot_be_taken_back(
    job: &Job,
    restore: &Restored,
) -> Result<(), CheckpointError> {
    let Some(newer) = restore.passed_over else {
        return Ok(());
    };
    let kafka = job.sinks.iter().find(
        |(_, spec)| matches!(spec, SinkSpec::Kafka(k) if k.guarantee == Guarantee::ExactlyOnce),
    );
    let Some((name, _)) = kafka else {
        return Ok(());
    };
    Err(CheckpointError::Incompatible {
        path: restore.path.clone(),
        message: format!(
            "checkpoint {newer} is newer, and Kafka sink {name:?} committed its transactions, \
             which cannot be taken back: restoring checkpoint {} would publish their records \
             again. Restore checkpoint {newer} (repaired, if it is damaged), or write to a new \
             topic",
            restore.id
        ),
    })
}

/// The name of subtask `i` of stage `s` (0-based), as checkpoints record it.
fn task_name(s: usize, i: u32) -> String {
    format!("stage{}-{i}", s + 1)
}

/// Opens sink `name` and its committer; with `restored` (what it prepared for the
/// checkpoint the job restarts from), that is committed first.
fn connect_sink(
    registry: &Registry<'_>,
    job: &Job,
    name: &str,
    spec: &crate::job::SinkSpec,
    restored: Option<&[u8]>,
    latency: Option<&Arc<EventClock>>,
) -> Result<Connected, SinkError> {
    let at = Opening {
        job,
        name,
        subtask: 0,
        restored,
        latency,
    };
    registry.connectors.sink(&at, spec)
}

/// Seeks subtask `subtask` of source `name` to its position in checkpoint `r`.
fn restore_source(
    r: &Restored,
    name: &str,
    spec: &crate::job::SourceSpec,
    subtask: u32,
    source: &mut dyn Source,
) -> Result<(), RunError> {
    let had = r.source_subtasks(name);
    if had == 0 {
        tracing::warn!(
            "checkpoint {} has no position for source {name:?}: it starts from the beginning",
            r.id
        );
        return Ok(());
    }
    let now = spec.subtasks() as usize;
    match r.source_position(name, subtask) {
        Some(position) if had == now => Ok(source.seek(position)?),
        _ => Err(CheckpointError::Incompatible {
            path: r.path.clone(),
            message: format!(
                "source {name:?} ran as {had} subtask(s) and now runs as {now}: a source's \
                 parallelism must stay the same across a restore"
            ),
        }
        .into()),
    }
}
