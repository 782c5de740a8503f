//! Runs a job as a dataflow: one thread per task (a subtask of a stage), stages joined
//! by byte-bounded channels, so a slow stage slows its producers instead of piling up.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::checkpoint::align::Aligner;
use crate::checkpoint::coordinator::{Barriers, CoordinatorError, Outcome, Savepoints, Schedule};
use crate::checkpoint::{
    CheckpointError, Coordinator, Flight, Restored, Storage, TaskId, TaskSnapshot,
};
use crate::connectors::Opening;
use crate::connectors::timed::{Alignments, with_event_time};
use crate::deadletter::DeadLetters;
use crate::error::ErrorClass;
use crate::exec::channel::{Channel, Closed, Message};
use crate::exec::exchange::{Exchange, SendError};
use crate::exec::plan::{Plan, PlanError};
use crate::exec::watermark::{Change, WatermarkTracker};
use crate::job::sandbox::OnError;
use crate::job::{Job, StepOp};
use crate::latency::EventClock;
use crate::memory::Pools;
use crate::metrics::{Counters, JobMetrics, NodeMetrics, NodeTotals, PluginEntry, Role};
use crate::operator::{Operator, OperatorError, OperatorFactory};
use crate::operators::builtin::{BuiltinContext, builtin_operator};
use crate::operators::join::JoinInput;
use crate::registry::Registry;
use crate::sideoutput::SideOutput;
use crate::sink::{Connected, Sink, SinkError};
use crate::source::{Rejected, Source, SourceError};
use crate::state::backend::{BackendFactory, HeapFactory};
use crate::state::entries_for;
use crate::time::{Clock, SystemClock};

/// How often tasks hand processing time to their operators.
const TICK: Duration = Duration::from_millis(10);

/// Why a run stopped before its input ended.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The job's topology cannot run.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// An operator failed.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// An exchange could not carry a batch.
    #[error(transparent)]
    Exchange(SendError),
    /// Checkpoints cannot be written or restored.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint coordinator failed.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// A task thread could not be started.
    #[error("cannot start a task thread: {0}")]
    Thread(std::io::Error),
    /// A bug in Eddy itself; please report it.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RunError {
    /// Whose failure this is and whether a restart can get past it.
    pub fn class(&self) -> ErrorClass {
        match self {
            RunError::Plan(e) => e.class(),
            RunError::Source(e) => e.class(),
            RunError::Operator(e) => e.class(),
            RunError::Sink(e) => e.class(),
            RunError::Exchange(e) => e.class(),
            RunError::Checkpoint(e) => e.class(),
            RunError::Coordinator(e) => e.class(),
            RunError::Thread(_) | RunError::Internal(_) => ErrorClass::INTERNAL,
        }
    }

    /// Whether a restart may get past this error.
    pub fn retryable(&self) -> bool {
        self.class().retryable()
    }
}

/// What a finished run did, node by node.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Per source.
    pub sources: Vec<NodeTotals>,
    /// Per step.
    pub steps: Vec<NodeTotals>,
    /// Per sink.
    pub sinks: Vec<NodeTotals>,
    /// Per memory pool: name, peak bytes, capacity.
    pub pools: Vec<(&'static str, usize, usize)>,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// The last checkpoint that completed: id and directory.
    pub checkpoint: Option<(u64, std::path::PathBuf)>,
    /// The savepoint the job stopped with, if it was stopped with one.
    pub stopped: Option<std::path::PathBuf>,
}

/// A task failed, or stopped because another one did.
enum TaskError {
    Failed(RunError),
    Aborted,
}

impl<E: Into<RunError>> From<E> for TaskError {
    fn from(e: E) -> Self {
        TaskError::Failed(e.into())
    }
}

impl From<Closed> for RunError {
    fn from(_: Closed) -> Self {
        RunError::Exchange(SendError::Closed(Closed))
    }
}

enum Input {
    Sources(Vec<(usize, Box<dyn Source>)>),
    Channel { channel: Arc<Channel>, senders: u32 },
}

enum Output {
    Exchange(Exchange),
    Sinks(Vec<(usize, Box<dyn Sink>)>),
}

/// One operator of a task's chain.
struct Link {
    node: usize,
    step: String,
    op: Box<dyn Operator>,
    on_error: OnError,
}

/// One subtask of one stage.
struct Task {
    name: String,
    subtask: usize,
    input: Input,
    chain: Vec<Link>,
    output: Output,
    batch_size: usize,
    metrics: Arc<JobMetrics>,
    dead_letters: Option<Arc<DeadLetters>>,
    clock: Arc<dyn Clock>,
    /// When processing time was last handed to the chain.
    last_tick: i64,
    side_outputs: Arc<HashMap<String, Arc<SideOutput>>>,
    /// This task's index, in reports to the checkpoint coordinator.
    id: TaskId,
    barriers: Barriers,
    /// Whether the job checkpoints (sources must then report positions).
    checkpointing: bool,
    /// The last checkpoint this task snapshotted for.
    last_barrier: u64,
    /// An unaligned checkpoint snapshotted, waiting for its last barriers.
    unaligned: Option<(u64, TaskSnapshot)>,
    /// In-flight messages of the restored checkpoint: taken in before the failure
    /// (replayed first), and sent but overtaken (sent again first).
    restored_flight: Vec<(Flight, u32, Vec<Message>)>,
    /// Set when a sink's reader went away: sources end their input, as on a stop.
    unread: Arc<AtomicBool>,
}

impl Task {
    /// Sends a record source `node` could not read to the dead-letter sink.
    fn reject(&self, node: usize, r: Rejected) -> Result<(), RunError> {
        let source = &self.metrics.nodes[node].name;
        let Some(dead_letters) = &self.dead_letters else {
            return Err(SourceError::fatal(source, r.error).into());
        };
        let event = crate::EventRef {
            key: r.key.as_deref(),
            value: &r.value,
            timestamp: None,
        };
        Ok(dead_letters.send(source, event, &r.error)?)
    }

    fn counters(&self, node: usize) -> &Counters {
        let subtasks = &self.metrics.nodes[node].subtasks;
        &subtasks[self.subtask.min(subtasks.len() - 1)]
    }

    fn run(mut self, stop: &AtomicBool, abort: &AtomicBool) -> Result<(), TaskError> {
        let mut inbound = Vec::new();
        for (flight, peer, messages) in std::mem::take(&mut self.restored_flight) {
            match (flight, &mut self.output) {
                (Flight::Outbound, Output::Exchange(exchange)) => exchange
                    .resend(peer as usize, messages)
                    .map_err(|_| TaskError::Aborted)?,
                (Flight::Inbound, _) => inbound.extend(messages.into_iter().map(|m| (peer, m))),
                (Flight::Outbound, Output::Sinks(_)) => {}
            }
        }
        match std::mem::replace(&mut self.input, Input::Sources(Vec::new())) {
            Input::Sources(mut sources) => {
                let mut tracker = WatermarkTracker::new(sources.len());
                let mut live = vec![true; sources.len()];
                while live.iter().any(|l| *l)
                    && !stop.load(Ordering::Relaxed)
                    && !self.unread.load(Ordering::Relaxed)
                {
                    if abort.load(Ordering::Relaxed) {
                        return Err(TaskError::Aborted);
                    }
                    let due = self.barriers.requested();
                    if due > self.last_barrier {
                        self.checkpoint(due, &mut sources)?;
                    }
                    self.tick()?;
                    for i in 0..sources.len() {
                        if !live[i] {
                            continue;
                        }
                        let (node, source) = &mut sources[i];
                        let node = *node;
                        let t = Instant::now();
                        let polled = source.poll(self.batch_size)?;
                        for r in source.take_rejected() {
                            self.reject(node, r)?;
                        }
                        let change = match polled {
                            None => {
                                live[i] = false;
                                tracker.end(i)
                            }
                            Some(batch) => {
                                let change = if source.idle() {
                                    tracker.set_idle(i, true)
                                } else if let Some(w) = source.watermark() {
                                    tracker.update(i, w)
                                } else {
                                    Change::default()
                                };
                                self.counters(node).record(
                                    0,
                                    batch.len(),
                                    batch.byte_size(),
                                    t.elapsed(),
                                );
                                self.push(batch, node)?;
                                change
                            }
                        };
                        self.on_change(change)?;
                    }
                }
                // Stopped early: the remaining sources end here, so windows fire.
                for i in (0..sources.len()).filter(|&i| live[i]) {
                    let change = tracker.end(i);
                    self.on_change(change)?;
                }
                if abort.load(Ordering::Relaxed) {
                    return Err(TaskError::Aborted);
                }
                self.finish(&mut sources)?;
            }
            Input::Channel { channel, senders } => {
                let mut tracker = WatermarkTracker::new(senders as usize);
                let mut aligner = Aligner::new(senders as usize);
                aligner.replay_first(inbound);
                while !aligner.done() {
                    self.tick()?;
                    let (from, message) = match aligner.replayed() {
                        Some(held) => held,
                        None => match channel.recv_timeout(TICK) {
                            Ok(Some(received)) => received,
                            Ok(None) => continue,
                            Err(Closed) => return Err(TaskError::Aborted),
                        },
                    };
                    let from_index = from as usize;
                    if let Message::Barrier(id) = message
                        && self.barriers.unaligned(id)
                    {
                        if aligner.offer_unaligned(from, id) {
                            self.snapshot_unaligned(id, &mut [])?;
                        }
                        self.complete_unaligned(&mut aligner);
                        continue;
                    }
                    let change = match aligner.offer(from, message) {
                        None => Change::default(),
                        Some(Message::Data(batch)) => {
                            let first = self.chain.first().map_or(usize::MAX, |c| c.node);
                            self.push(batch, first)?;
                            Change::default()
                        }
                        Some(Message::Watermark(w)) => tracker.update(from_index, w),
                        Some(Message::Idle(idle)) => tracker.set_idle(from_index, idle),
                        Some(Message::EndOfInput) => tracker.end(from_index),
                        // Barriers are the aligner's.
                        Some(Message::Barrier(_)) => Change::default(),
                    };
                    self.on_change(change)?;
                    if let Some(id) = aligner.aligned() {
                        self.checkpoint(id, &mut [])?;
                    }
                    self.complete_unaligned(&mut aligner);
                }
                if abort.load(Ordering::Relaxed) {
                    return Err(TaskError::Aborted);
                }
                self.finish(&mut [])?;
            }
        }
        Ok(())
    }

    /// A snapshot of the task: sources' positions, operators' state, and the sinks'
    /// prepared output (for checkpoint `barrier`, or final when `None`).
    fn snapshot(
        &mut self,
        sources: &mut [(usize, Box<dyn Source>)],
        barrier: Option<u64>,
    ) -> Result<TaskSnapshot, TaskError> {
        let mut snapshot = TaskSnapshot::default();
        if self.checkpointing {
            for (node, source) in sources.iter_mut() {
                let name = self.metrics.nodes[*node].name.clone();
                snapshot
                    .sources
                    .push((name, self.subtask as u32, source.position()?));
            }
            let target = barrier.and_then(|id| self.barriers.target(id));
            for link in &mut self.chain {
                let entries = link.op.snapshot(target.as_deref())?;
                snapshot.steps.push((link.step.clone(), entries));
            }
        }
        if let Output::Sinks(sinks) = &mut self.output {
            for (node, sink) in sinks.iter_mut() {
                let prepared = match barrier {
                    Some(id) => sink.prepare(id)?,
                    None => sink.finish()?,
                };
                let name = self.metrics.nodes[*node].name.clone();
                snapshot.sinks.push((name, prepared));
            }
        }
        Ok(snapshot)
    }

    /// The first barrier of unaligned checkpoint `id` arrived: snapshot at once, send
    /// the barrier ahead of the queued output (which the snapshot keeps), and wait for
    /// the other inputs' barriers before acknowledging.
    fn snapshot_unaligned(
        &mut self,
        id: u64,
        sources: &mut [(usize, Box<dyn Source>)],
    ) -> Result<(), TaskError> {
        let mut snapshot = self.snapshot(sources, Some(id))?;
        if let Output::Exchange(exchange) = &mut self.output {
            let overtaken = exchange.overtake(id).map_err(|_| TaskError::Aborted)?;
            for (target, messages) in overtaken.into_iter().enumerate() {
                if !messages.is_empty() {
                    snapshot
                        .channels
                        .push((Flight::Outbound, target as u32, messages));
                }
            }
        }
        self.last_barrier = id;
        self.unaligned = Some((id, snapshot));
        Ok(())
    }

    /// Acknowledges the unaligned checkpoint whose last barrier arrived, with what was
    /// taken in after its snapshot.
    fn complete_unaligned(&mut self, aligner: &mut Aligner) {
        let Some((id, taken)) = aligner.take_completed() else {
            return;
        };
        if let Some((pending, mut snapshot)) = self.unaligned.take()
            && pending == id
        {
            for (sender, messages) in taken {
                snapshot.channels.push((Flight::Inbound, sender, messages));
            }
            self.barriers.ack(self.id, id, snapshot);
        }
    }

    /// Checkpoint `id`'s barrier has arrived on every input: snapshot, pass it on,
    /// acknowledge.
    fn checkpoint(
        &mut self,
        id: u64,
        sources: &mut [(usize, Box<dyn Source>)],
    ) -> Result<(), TaskError> {
        if self.barriers.unaligned(id) {
            self.snapshot_unaligned(id, sources)?;
            if let Some((id, snapshot)) = self.unaligned.take() {
                self.barriers.ack(self.id, id, snapshot);
            }
            return Ok(());
        }
        let snapshot = self.snapshot(sources, Some(id))?;
        if let Output::Exchange(exchange) = &mut self.output {
            exchange
                .broadcast(Message::Barrier(id))
                .map_err(|_| TaskError::Aborted)?;
        }
        self.barriers.ack(self.id, id, snapshot);
        self.last_barrier = id;
        Ok(())
    }

    /// The input ended: the end travels on and the final state goes to the coordinator
    /// (which commits the sinks once every task has finished).
    fn finish(&mut self, sources: &mut [(usize, Box<dyn Source>)]) -> Result<(), TaskError> {
        if let Output::Exchange(exchange) = &mut self.output {
            exchange
                .broadcast(Message::EndOfInput)
                .map_err(|_| TaskError::Aborted)?;
        }
        let snapshot = self.snapshot(sources, None)?;
        self.barriers.finished(self.id, snapshot);
        Ok(())
    }
}

impl Task {
    /// Hands processing time to the chain every [`TICK`] (processing-time windows).
    fn tick(&mut self) -> Result<(), TaskError> {
        let now = self.clock.now_ms();
        if now.saturating_sub(self.last_tick) < TICK.as_millis() as i64 {
            return Ok(());
        }
        self.last_tick = now;
        for i in 0..self.chain.len() {
            let node = self.chain[i].node;
            let fired = self.chain[i].op.on_processing_time(now)?;
            self.route_side(i)?;
            if !fired.is_empty() {
                self.counters(node)
                    .record(0, fired.len(), fired.byte_size(), Duration::ZERO);
                self.flow(i + 1, fired, node)?;
            }
        }
        Ok(())
    }

    /// Writes what chain link `i` sent to side outputs into their sinks.
    fn route_side(&mut self, i: usize) -> Result<(), TaskError> {
        for (tag, batch) in self.chain[i].op.take_side_outputs() {
            let Some(out) = self.side_outputs.get(&tag) else {
                let message = format!(
                    "side output {tag:?} is not declared: list it in the step's `side-outputs` \
                     and route it to a sink with `input: {tag}`"
                );
                let e = OperatorError::new(&self.chain[i].step, message);
                return Err(e.with_class(ErrorClass::USER_FATAL).into());
            };
            out.write(&batch)?;
        }
        Ok(())
    }

    /// Acts on a change of the input watermark or idleness.
    fn on_change(&mut self, change: Change) -> Result<(), TaskError> {
        if let Some(watermark) = change.watermark {
            self.advance(watermark)?;
        }
        if let (Some(idle), Output::Exchange(exchange)) = (change.idle, &mut self.output) {
            exchange
                .broadcast(Message::Idle(idle))
                .map_err(|_| TaskError::Aborted)?;
        }
        Ok(())
    }

    /// Event time reached `watermark`: every operator of the chain emits what it
    /// completes (flowing through the operators after it), then the watermark travels on.
    fn advance(&mut self, watermark: i64) -> Result<(), TaskError> {
        for i in 0..self.chain.len() {
            let node = self.chain[i].node;
            let t = Instant::now();
            let fired = self.chain[i].op.on_watermark(watermark)?;
            self.route_side(i)?;
            self.counters(node)
                .record(0, fired.len(), fired.byte_size(), t.elapsed());
            self.flow(i + 1, fired, node)?;
        }
        if let Output::Exchange(exchange) = &mut self.output {
            exchange
                .broadcast(Message::Watermark(watermark))
                .map_err(|_| TaskError::Aborted)?;
        }
        Ok(())
    }

    /// Runs `batch` through the chain and hands it to the output; `producer` is the
    /// node that made it (charged with backpressure when the chain is empty).
    fn push(&mut self, batch: Batch, producer: usize) -> Result<(), TaskError> {
        self.flow(0, batch, producer)
    }

    /// Runs `batch` through the chain from link `from` on, then to the output.
    fn flow(
        &mut self,
        from: usize,
        mut batch: Batch,
        mut producer: usize,
    ) -> Result<(), TaskError> {
        for i in from..self.chain.len() {
            if batch.is_empty() {
                return Ok(());
            }
            let node = self.chain[i].node;
            let t = Instant::now();
            let n = batch.len();
            batch = self.apply(i, batch)?;
            self.route_side(i)?;
            self.counters(node)
                .record(n, batch.len(), batch.byte_size(), t.elapsed());
            producer = node;
        }
        if batch.is_empty() {
            return Ok(());
        }
        match &mut self.output {
            Output::Exchange(exchange) => {
                let waited = match exchange.send(batch) {
                    Ok(waited) => waited,
                    Err(SendError::Closed(_)) => return Err(TaskError::Aborted),
                    Err(e) => return Err(RunError::Exchange(e).into()),
                };
                if producer != usize::MAX {
                    self.counters(producer).blocked(waited);
                }
            }
            Output::Sinks(sinks) => {
                for (node, sink) in sinks.iter_mut() {
                    let t = Instant::now();
                    sink.write(&batch)?;
                    if sink.closed() {
                        self.unread.store(true, Ordering::Relaxed);
                    }
                    let subtasks = &self.metrics.nodes[*node].subtasks;
                    subtasks[0].record(batch.len(), 0, 0, t.elapsed());
                }
            }
        }
        Ok(())
    }
}

impl Task {
    /// Runs chain link `i` on `batch`, sending the events it fails on to the dead
    /// letters when its policy says so.
    fn apply(&mut self, i: usize, batch: Batch) -> Result<Batch, TaskError> {
        let dead_letters = match (&self.dead_letters, self.chain[i].on_error) {
            (Some(d), OnError::DeadLetter) => d.clone(),
            _ => return Ok(self.chain[i].op.process(batch)?),
        };
        let input = batch.clone();
        let first_error = match self.chain[i].op.process(batch) {
            Ok(out) => return Ok(out),
            Err(e) => e,
        };
        tracing::debug!(step = %self.chain[i].step, "isolating failing events: {first_error}");
        // Find the offending events one by one on a fresh instance; keep the rest.
        let link = &mut self.chain[i];
        link.op.reset()?;
        let mut out = Batch::default();
        let mut rejected = 0u64;
        for j in 0..input.len() {
            let mut single = Batch::default();
            single
                .push_from(&input, j)
                .map_err(|e| OperatorError::new(&link.step, e))?;
            match link.op.process(single) {
                Ok(produced) => {
                    for k in 0..produced.len() {
                        out.push_from(&produced, k)
                            .map_err(|e| OperatorError::new(&link.step, e))?;
                    }
                }
                Err(e) => {
                    dead_letters.send(&link.step, input.event(j), &e)?;
                    rejected += 1;
                    link.op.reset()?;
                }
            }
        }
        let node = link.node;
        self.counters(node)
            .dead_letters
            .fetch_add(rejected, Ordering::Relaxed);
        Ok(out)
    }
}

/// A job with every task built, ready to run.
pub struct Dataflow {
    side_outputs: Vec<Arc<SideOutput>>,
    /// Native stack of task threads: WASM runs on it, so it must hold the WASM stack.
    thread_stack: usize,
    tasks: Vec<Task>,
    dead_letters: Option<Arc<DeadLetters>>,
    channels: Vec<Arc<Channel>>,
    metrics: Arc<JobMetrics>,
    coordinator: Coordinator,
}

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
        } = options;
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
        let channels: Vec<Vec<Arc<Channel>>> = plan
            .stages
            .iter()
            .enumerate()
            .map(|(s, stage)| {
                let n = if s == 0 { 0 } else { stage.parallelism };
                (0..n)
                    .map(|_| Arc::new(Channel::new(capacity, pools.clone())))
                    .collect()
            })
            .collect();

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
        let mut plugins = Vec::new();
        for (s, stage) in plan.stages.iter().enumerate() {
            for i in 0..stage.parallelism {
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
                    Input::Channel {
                        channel: channels[s][i as usize].clone(),
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
                    Output::Exchange(Exchange::new(
                        partition,
                        channels[s + 1].clone(),
                        i,
                        plan.max_parallelism,
                    ))
                };
                parts.push((
                    format!("stage{}-{i}", s + 1),
                    i as usize,
                    input,
                    chain,
                    output,
                ));
            }
        }
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
            let now: Vec<&String> = parts.iter().map(|p| &p.0).collect();
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
        let schedule = match &job.checkpoints {
            None => None,
            Some(spec) => {
                let dir = spec.dir.clone().unwrap_or_default();
                let storage = Storage::new(dir, &job.name, spec.retain());
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
            parts.iter().map(|p| p.0.clone()).collect(),
            plan.max_parallelism,
            committers,
            metrics.checkpoints.clone(),
        );
        let unread = Arc::new(AtomicBool::new(false));
        let tasks = parts
            .into_iter()
            .enumerate()
            .map(|(id, (name, subtask, input, chain, output))| Task {
                restored_flight: restore
                    .map(|r| r.in_flight(&name).to_vec())
                    .unwrap_or_default(),
                unaligned: None,
                id,
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
            channels: channels.into_iter().flatten().collect(),
            metrics,
            coordinator,
        })
    }

    /// The handle that takes savepoints of the running job.
    pub fn savepoints(&self) -> Savepoints {
        self.coordinator.savepoints()
    }

    /// Live metrics, readable while the job runs.
    pub fn metrics(&self) -> Arc<JobMetrics> {
        self.metrics.clone()
    }

    /// Runs every task until the input ends (or `stop` is set, which ends the input
    /// early and drains what is in flight); sinks finish only when every task
    /// finished cleanly, so a failed run publishes nothing.
    pub fn run(self, stop: &AtomicBool) -> Result<RunSummary, RunError> {
        let started = Instant::now();
        let abort = AtomicBool::new(false);
        let first_error: Mutex<Option<RunError>> = Mutex::new(None);
        let channels = &self.channels;
        // Tears the tasks down; with an error, the run fails with it.
        let halt = |e: Option<RunError>| {
            if let Some(e) = e {
                let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
            }
            abort.store(true, Ordering::SeqCst);
            for c in channels {
                c.close();
            }
        };
        let fail = |e: RunError| halt(Some(e));
        let mut coordinator = self.coordinator;
        let coordinator = std::thread::scope(|scope| {
            let (abort_ref, halt_ref) = (&abort, &halt);
            let checkpoints = std::thread::Builder::new()
                .name("checkpoints".into())
                .spawn_scoped(scope, move || {
                    let stopped = match coordinator.run(abort_ref) {
                        Ok(Outcome::Ended) => None,
                        Ok(Outcome::Stop(savepoint)) => {
                            halt_ref(None);
                            Some(savepoint)
                        }
                        Err(e) => {
                            halt_ref(Some(e.into()));
                            None
                        }
                    };
                    (coordinator, stopped)
                });
            let checkpoints = match checkpoints {
                Ok(handle) => Some(handle),
                Err(e) => {
                    fail(RunError::Thread(e));
                    None
                }
            };
            for task in self.tasks {
                let name = task.name.clone();
                let (abort, fail) = (&abort, &fail);
                let spawned = std::thread::Builder::new()
                    .name(name)
                    .stack_size(self.thread_stack)
                    .spawn_scoped(scope, move || {
                        let name = task.name.clone();
                        // A bug in a task must fail the job, not take the process down.
                        let run = std::panic::AssertUnwindSafe(|| task.run(stop, abort));
                        match std::panic::catch_unwind(run) {
                            Ok(Ok(())) | Ok(Err(TaskError::Aborted)) => {}
                            Ok(Err(TaskError::Failed(e))) => fail(e),
                            Err(panic) => {
                                let message = panic
                                    .downcast_ref::<&str>()
                                    .map(|s| s.to_string())
                                    .or_else(|| panic.downcast_ref::<String>().cloned())
                                    .unwrap_or_default();
                                fail(RunError::Internal(format!(
                                    "task {name} panicked: {message}"
                                )));
                            }
                        }
                    });
                if let Err(e) = spawned {
                    fail(RunError::Thread(e));
                }
            }
            checkpoints.and_then(|handle| handle.join().ok())
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let (coordinator, stopped) = match coordinator {
            Some((c, stopped)) => (Some(c), stopped),
            None => (None, None),
        };
        if let Some(dead_letters) = &self.dead_letters {
            dead_letters.finish()?;
        }
        for side in &self.side_outputs {
            side.finish()?;
        }
        Ok(RunSummary {
            elapsed: started.elapsed(),
            checkpoint: coordinator.and_then(|c| c.completed),
            stopped,
            ..summary(&self.metrics)
        })
    }
}

/// The totals of a job's metrics, for the end-of-run summary.
pub fn summary(metrics: &JobMetrics) -> RunSummary {
    RunSummary {
        sources: metrics.totals(Role::Source),
        steps: metrics.totals(Role::Step),
        sinks: metrics.totals(Role::Sink),
        pools: metrics
            .pools
            .all()
            .iter()
            .map(|p| (p.name(), p.peak(), p.capacity()))
            .collect(),
        elapsed: metrics.started.elapsed(),
        checkpoint: None,
        stopped: None,
    }
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
