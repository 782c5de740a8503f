//! One task: a subtask of one stage, on a thread of its own. Its loop reads batches
//! from its sources or inbound channel, passes them down its chain of operators, and
//! writes to its sinks or the exchange to the next stage; watermarks, processing time,
//! checkpoint barriers and end of input take the same way.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::checkpoint::align::Aligner;
use crate::checkpoint::coordinator::Barriers;
use crate::checkpoint::{Flight, TaskId, TaskSnapshot};
use crate::deadletter::DeadLetters;
use crate::error::ErrorClass;
use crate::exec::channel::{Channel, Closed, Message};
use crate::exec::exchange::{Exchange, SendError};
use crate::exec::watermark::{Change, WatermarkTracker};
use crate::job::sandbox::OnError;
use crate::metrics::{Counters, JobMetrics};
use crate::operator::{Operator, OperatorError};
use crate::sideoutput::SideOutput;
use crate::sink::Sink;
use crate::source::{Rejected, Source, SourceError};
use crate::time::Clock;

use super::run_error::RunError;

/// How often tasks hand processing time to their operators.
const TICK: Duration = Duration::from_millis(10);

/// A task failed, or stopped because another one did.
pub(super) enum TaskError {
    Failed(RunError),
    Aborted,
}

impl<E: Into<RunError>> From<E> for TaskError {
    fn from(e: E) -> Self {
        TaskError::Failed(e.into())
    }
}

pub(super) enum Input {
    Sources(Vec<(usize, Box<dyn Source>)>),
    Channel { channel: Arc<Channel>, senders: u32 },
}

pub(super) enum Output {
    Exchange(Exchange),
    Sinks(Vec<(usize, Box<dyn Sink>)>),
}

/// One operator of a task's chain.
pub(super) struct Link {
    pub(super) node: usize,
    pub(super) step: String,
    pub(super) op: Box<dyn Operator>,
    pub(super) on_error: OnError,
}

/// One subtask of one stage.
pub(super) struct Task {
    pub(super) name: String,
    pub(super) subtask: usize,
    pub(super) input: Input,
    pub(super) chain: Vec<Link>,
    pub(super) output: Output,
    pub(super) batch_size: usize,
    pub(super) metrics: Arc<JobMetrics>,
    pub(super) dead_letters: Option<Arc<DeadLetters>>,
    pub(super) clock: Arc<dyn Clock>,
    /// When processing time was last handed to the chain.
    pub(super) last_tick: i64,
    pub(super) side_outputs: Arc<HashMap<String, Arc<SideOutput>>>,
    /// This task's index, in reports to the checkpoint coordinator.
    pub(super) id: TaskId,
    pub(super) barriers: Barriers,
    /// Whether the job checkpoints (sources must then report positions).
    pub(super) checkpointing: bool,
    /// The last checkpoint this task snapshotted for.
    pub(super) last_barrier: u64,
    /// An unaligned checkpoint snapshotted, waiting for its last barriers.
    pub(super) unaligned: Option<(u64, TaskSnapshot)>,
    /// In-flight messages of the restored checkpoint: taken in before the failure
    /// (replayed first), and sent but overtaken (sent again first).
    pub(super) restored_flight: Vec<(Flight, u32, Vec<Message>)>,
    /// Set when a sink's reader went away: sources end their input, as on a stop.
    pub(super) unread: Arc<AtomicBool>,
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

    pub(super) fn run(mut self, stop: &AtomicBool, abort: &AtomicBool) -> Result<(), TaskError> {
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
                                    self.counters(node).watermark.store(w, Ordering::Relaxed);
                                    tracker.update(i, w)
                                } else {
                                    Change::default()
                                };
                                // A poll that found nothing waited for input (or
                                // paced itself): idle time, not busy time.
                                let busy = if batch.is_empty() {
                                    Duration::ZERO
                                } else {
                                    t.elapsed()
                                };
                                let counters = self.counters(node);
                                counters.record(0, batch.len(), batch.byte_size(), busy);
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
            self.counters(node)
                .watermark
                .store(watermark, Ordering::Relaxed);
            let t = Instant::now();
            let fired = self.chain[i].op.on_watermark(watermark)?;
            self.route_side(i)?;
            self.counters(node)
                .record(0, fired.len(), fired.byte_size(), t.elapsed());
            self.flow(i + 1, fired, node)?;
        }
        match &mut self.output {
            Output::Exchange(exchange) => exchange
                .broadcast(Message::Watermark(watermark))
                .map_err(|_| TaskError::Aborted)?,
            Output::Sinks(sinks) => {
                for (node, _) in sinks.iter() {
                    let subtasks = &self.metrics.nodes[*node].subtasks;
                    subtasks[self.subtask.min(subtasks.len() - 1)]
                        .watermark
                        .store(watermark, Ordering::Relaxed);
                }
            }
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
