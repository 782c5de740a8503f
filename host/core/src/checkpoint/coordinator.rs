//! The checkpoint coordinator of a running job: triggers checkpoints on an interval,
//! collects the tasks' snapshots (writing them off the tasks' threads, so snapshots
//! are asynchronous for the tasks), completes a checkpoint once every task has
//! acknowledged, and only then lets the sinks publish what they prepared for it.
//!
//! A task that finished reports its final snapshot once; it counts as acknowledged for
//! every later checkpoint. When all tasks have finished, a final checkpoint is taken and
//! committed, so a bounded job's last output is exactly-once too.
//!
//! Savepoints are checkpoints taken on request, kept until deleted by hand; a request
//! may also stop the job once its savepoint has completed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::link::{CoordinatorLink, PartMessage};
use super::snapshot::TaskSnapshot;
use super::storage::{CheckpointError, Storage, TaskFile};
use crate::error::ErrorClass;
use crate::metrics::{CheckpointCounters, CheckpointRecord};
use crate::sink::{Committer, SinkError};

/// Index of a task in its dataflow.
pub type TaskId = usize;

/// What tasks tell the coordinator.
enum Report {
    /// Task `task` took its snapshot for checkpoint `id`.
    Ack {
        task: TaskId,
        id: u64,
        snapshot: TaskSnapshot,
    },
    /// Task `task` ended its input; this is its final state.
    Finished {
        task: TaskId,
        snapshot: TaskSnapshot,
    },
}

/// The tasks' side of the coordinator: which barrier is due, and where to report.
#[derive(Clone, Debug)]
pub struct Barriers {
    requested: Arc<AtomicU64>,
    /// The newest requested checkpoint: id, directory for state files, unaligned.
    target: Arc<Mutex<Option<Target>>>,
    reports: mpsc::Sender<Report>,
}

/// Where and how the newest requested checkpoint is taken.
#[derive(Clone, Debug)]
struct Target {
    id: u64,
    dir: Option<PathBuf>,
    unaligned: bool,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Report::Ack { task, id, .. } => write!(f, "Ack(task {task}, checkpoint {id})"),
            Report::Finished { task, .. } => write!(f, "Finished(task {task})"),
        }
    }
}

impl Barriers {
    /// The newest checkpoint the sources should inject a barrier for (0: none yet).
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// The directory checkpoint `id` is written to, for state kept in files; `None`
    /// for a savepoint, or if a newer checkpoint replaced it.
    pub fn target(&self, id: u64) -> Option<PathBuf> {
        self.current(id).and_then(|t| t.dir)
    }

    /// Whether checkpoint `id` is unaligned.
    pub fn unaligned(&self, id: u64) -> bool {
        self.current(id).is_some_and(|t| t.unaligned)
    }

    fn current(&self, id: u64) -> Option<Target> {
        let target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        target.as_ref().filter(|t| t.id == id).cloned()
    }

    /// Task `task` snapshotted `snapshot` for checkpoint `id`.
    pub fn ack(&self, task: TaskId, id: u64, snapshot: TaskSnapshot) {
        // The coordinator is gone only when the job is being torn down.
        let _ = self.reports.send(Report::Ack { task, id, snapshot });
    }

    /// Task `task` finished with `snapshot` as its final state.
    pub fn finished(&self, task: TaskId, snapshot: TaskSnapshot) {
        let _ = self.reports.send(Report::Finished { task, snapshot });
    }
}

/// Why the coordinator stopped the job.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// A checkpoint could not be written.
    #[error(transparent)]
    Storage(#[from] CheckpointError),
    /// A sink could not commit a completed checkpoint.
    #[error(transparent)]
    Commit(#[from] SinkError),
}

impl CoordinatorError {
    /// Whether a restart can get past this error: that of the storage or the sink.
    pub fn class(&self) -> ErrorClass {
        match self {
            CoordinatorError::Storage(e) => e.class(),
            CoordinatorError::Commit(e) => e.class(),
        }
    }
}

/// Checkpointing of one job: where, how often, and what completes.
#[derive(Debug)]
pub struct Schedule {
    /// Where checkpoints go.
    pub storage: Storage,
    /// Time between checkpoints.
    pub interval: Duration,
    /// Time after which a checkpoint is abandoned.
    pub timeout: Duration,
    /// First checkpoint id to use.
    pub first_id: u64,
    /// Whether checkpoints (not savepoints) are unaligned.
    pub unaligned: bool,
}

/// Bytes of the files under `dir`, recursively.
fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_size(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

/// A request for a savepoint, answered with its directory.
#[derive(Debug)]
pub struct SavepointRequest {
    /// Stop the job once the savepoint has completed.
    pub stop: bool,
    /// Where the answer goes.
    pub reply: mpsc::Sender<Result<PathBuf, String>>,
}

/// Asks a running job for savepoints.
#[derive(Clone, Debug)]
pub struct Savepoints(mpsc::Sender<SavepointRequest>);

impl Savepoints {
    /// Takes a savepoint (and stops the job after it, if `stop`), waiting at most
    /// `timeout` for it to complete; returns its directory.
    pub fn trigger(&self, stop: bool, timeout: Duration) -> Result<PathBuf, String> {
        let (reply, answer) = mpsc::channel();
        self.0
            .send(SavepointRequest { stop, reply })
            .map_err(|_| "the job is no longer running".to_owned())?;
        answer
            .recv_timeout(timeout)
            .map_err(|_| format!("no savepoint within {timeout:?}"))?
    }
}

/// A checkpoint in flight.
struct Pending {
    id: u64,
    started: Instant,
    files: Vec<Option<TaskFile>>,
    sinks: Vec<(String, Vec<u8>)>,
    /// Set for a savepoint.
    savepoint: Option<SavepointRequest>,
}

impl Pending {
    /// What the history keeps of this checkpoint, ended now.
    fn record(&self, savepoint: bool, completed: bool, size_bytes: u64) -> CheckpointRecord {
        let took = self.started.elapsed();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        CheckpointRecord {
            id: self.id,
            savepoint,
            completed,
            trigger_ms: now.saturating_sub(took).as_millis() as u64,
            duration_ms: took.as_millis() as u64,
            size_bytes,
        }
    }
}

/// Coordinates the checkpoints of one run.
pub struct Coordinator {
    schedule: Option<Schedule>,
    tasks: Vec<String>,
    max_parallelism: u32,
    committers: Vec<(String, Box<dyn Committer>)>,
    requested: Arc<AtomicU64>,
    target: Arc<Mutex<Option<Target>>>,
    reports: mpsc::Receiver<Report>,
    /// Kept until the run starts, so that tasks can be given handles.
    sender: Option<mpsc::Sender<Report>>,
    savepoint_requests: mpsc::Receiver<SavepointRequest>,
    savepoint_sender: mpsc::Sender<SavepointRequest>,
    /// The last checkpoint that completed, for the run summary.
    pub completed: Option<(u64, PathBuf)>,
    counters: Arc<CheckpointCounters>,
    /// For a job that spans processes: the other parts' coordinators, and which of
    /// the job's tasks run here.
    link: Option<(Arc<dyn CoordinatorLink>, Vec<bool>)>,
    /// A follower's triggered checkpoints: whether each is a savepoint.
    triggered: HashMap<u64, bool>,
}

/// How a coordinator's run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every task finished, or the job failed.
    Ended,
    /// A stop-with-savepoint completed: the job must stop now.
    Stop(PathBuf),
}

impl Coordinator {
    /// A coordinator for tasks named `tasks`, committing sinks through `committers`
    /// (by sink name) and reporting to `counters`; without a schedule it never
    /// checkpoints but still commits the sinks' final output when the job finishes.
    pub fn new(
        schedule: Option<Schedule>,
        tasks: Vec<String>,
        max_parallelism: u32,
        committers: Vec<(String, Box<dyn Committer>)>,
        counters: Arc<CheckpointCounters>,
    ) -> Self {
        let (sender, reports) = mpsc::channel();
        let (savepoint_sender, savepoint_requests) = mpsc::channel();
        Coordinator {
            schedule,
            tasks,
            max_parallelism,
            committers,
            requested: Arc::new(AtomicU64::new(0)),
            target: Arc::default(),
            reports,
            sender: Some(sender),
            savepoint_requests,
            savepoint_sender,
            completed: None,
            counters,
            link: None,
            triggered: HashMap::new(),
        }
    }

    /// This coordinator as one part's of a job that spans processes: `local` says
    /// which of the job's tasks run here; `link` reaches the other parts.
    pub fn spanning(mut self, link: Arc<dyn CoordinatorLink>, local: Vec<bool>) -> Self {
        self.link = Some((link, local));
        self
    }

    /// Whether another part leads this job's checkpoints.
    fn follows(&self) -> bool {
        self.link.as_ref().is_some_and(|(l, _)| !l.leads())
    }

    /// Whether every task of this part has finished while the leader still waits
    /// for other parts' tasks: their reports come over the link, which may lag behind
    /// the data that ended this part's tasks.
    fn awaits_other_parts(&self, finished: &[Option<TaskSnapshot>]) -> bool {
        let Some((link, local)) = &self.link else {
            return false;
        };
        link.leads()
            && finished
                .iter()
                .zip(local)
                .all(|(f, here)| f.is_some() || !here)
    }

    /// A follower's task snapshotted for checkpoint `id`: it writes the file and tells
    /// the leader.
    fn forward_ack(
        &self,
        task: TaskId,
        id: u64,
        snapshot: &TaskSnapshot,
    ) -> Result<(), CheckpointError> {
        let (Some((link, _)), Some(schedule)) = (&self.link, &self.schedule) else {
            return Ok(());
        };
        let savepoint = self.triggered.get(&id).copied().unwrap_or(false);
        let file = schedule
            .storage
            .write_task(id, savepoint, &self.tasks[task], snapshot)?;
        link.send(&PartMessage::Ack {
            task: task as u32,
            id,
            file,
            sinks: snapshot.sinks.clone(),
        });
        Ok(())
    }

    /// Takes what the other parts sent: triggers (a follower), acknowledgements and
    /// finished tasks (the leader).
    /// Waits at most `wait` for the first message.
    fn receive_remote(
        &mut self,
        pending: &mut Option<Pending>,
        finished: &mut [Option<TaskSnapshot>],
        wait: Duration,
    ) -> Result<(), CheckpointError> {
        let Some((link, _)) = self.link.clone() else {
            return Ok(());
        };
        let mut wait = wait;
        while let Some(message) = link.recv(std::mem::take(&mut wait)) {
            match message {
                PartMessage::Trigger {
                    id,
                    savepoint,
                    unaligned,
                } => {
                    self.triggered.insert(id, savepoint);
                    let dir = match (&self.schedule, savepoint) {
                        (Some(s), false) => Some(s.storage.checkpoint_dir(id, false)),
                        _ => None,
                    };
                    *self.target.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Target { id, dir, unaligned });
                    self.requested.store(id, Ordering::Release);
                }
                PartMessage::Ack {
                    task,
                    id,
                    file,
                    sinks,
                } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.id == id)
                        && let Some(slot) = p.files.get_mut(task as usize)
                        && slot.is_none()
                    {
                        *slot = Some(file);
                        p.sinks.extend(sinks);
                    }
                }
                PartMessage::Finished { task, snapshot } => {
                    let task = task as usize;
                    let snapshot =
                        TaskSnapshot::decode(&snapshot).map_err(|e| CheckpointError::Corrupt {
                            path: PathBuf::from(format!("task {task} of another part")),
                            message: format!("its final snapshot: {e}"),
                        })?;
                    if task >= finished.len() {
                        continue;
                    }
                    if let Some(mut p) = pending.take() {
                        if p.files[task].is_none() {
                            self.record(&mut p, task, &snapshot)?;
                        }
                        *pending = Some(p);
                    }
                    finished[task] = Some(snapshot);
                }
            }
        }
        Ok(())
    }

    /// The handle tasks use.
    pub fn barriers(&self) -> Barriers {
        Barriers {
            requested: self.requested.clone(),
            target: self.target.clone(),
            reports: self.sender.clone().unwrap_or_else(|| mpsc::channel().0),
        }
    }

    /// The handle that asks for savepoints.
    pub fn savepoints(&self) -> Savepoints {
        Savepoints(self.savepoint_sender.clone())
    }

    fn commit(&mut self, prepared: &[(String, Vec<u8>)]) -> Result<(), SinkError> {
        for (name, bytes) in prepared {
            if let Some((_, committer)) = self.committers.iter_mut().find(|(n, _)| n == name) {
                committer.commit(bytes)?;
            }
        }
        Ok(())
    }

    /// Writes task `task`'s snapshot into checkpoint `p` (and its prepared output).
    fn record(
        &self,
        p: &mut Pending,
        task: TaskId,
        snapshot: &TaskSnapshot,
    ) -> Result<(), CheckpointError> {
        p.sinks.extend(snapshot.sinks.iter().cloned());
        if let Some(s) = &self.schedule {
            let savepoint = p.savepoint.is_some();
            p.files[task] =
                Some(
                    s.storage
                        .write_task(p.id, savepoint, &self.tasks[task], snapshot)?,
                );
        }
        Ok(())
    }

    /// Runs until every task has finished (then takes the final checkpoint and commits
    /// it), the tasks are gone because the job failed (`abort`), or a
    /// stop-with-savepoint completed.
    pub fn run(&mut self, abort: &AtomicBool) -> Result<Outcome, CoordinatorError> {
        drop(self.sender.take());
        let n = self.tasks.len();
        let mut finished: Vec<Option<TaskSnapshot>> = vec![None; n];
        let mut pending: Option<Pending> = None;
        let mut next_id = self.schedule.as_ref().map_or(1, |s| s.first_id);
        let interval = self.schedule.as_ref().map(|s| s.interval);
        let mut next_trigger = interval.map(|i| Instant::now() + i);
        // Every task here has finished and let go of its handle.
        let mut tasks_gone = false;
        loop {
            if abort.load(Ordering::Relaxed) {
                return Ok(Outcome::Ended);
            }
            if self.follows() {
                // A follower is done when its own tasks are; the leader takes the final
                // checkpoint.
                let local = self
                    .link
                    .as_ref()
                    .map(|(_, l)| l.clone())
                    .unwrap_or_default();
                if finished
                    .iter()
                    .zip(&local)
                    .all(|(f, here)| f.is_some() || !here)
                {
                    return Ok(Outcome::Ended);
                }
            } else if finished.iter().all(Option::is_some) {
                self.finish(next_id, pending.take(), &finished)?;
                return Ok(Outcome::Ended);
            }
            // Wait for reports; with no checkpoint in flight, only until the next one is
            // due (a due trigger must not make the wait zero while one is in flight:
            // that spun a core until it completed).
            let wait = match (&pending, next_trigger) {
                (None, Some(t)) => t.saturating_duration_since(Instant::now()),
                _ => Duration::from_millis(20),
            }
            .min(Duration::from_millis(if self.link.is_some() {
                5
            } else {
                20
            }));
            let received = if tasks_gone {
                Err(mpsc::RecvTimeoutError::Timeout)
            } else {
                self.reports.recv_timeout(wait)
            };
            match received {
                Ok(Report::Ack { task, id, snapshot }) if self.follows() => {
                    self.forward_ack(task, id, &snapshot)?;
                }
                Ok(Report::Finished { task, snapshot }) if self.follows() => {
                    if let Some((link, _)) = &self.link {
                        // Without checkpoints the leader needs only to know it ended.
                        let state = match self.schedule {
                            Some(_) => snapshot.encode(),
                            None => TaskSnapshot::default().encode(),
                        };
                        link.send(&PartMessage::Finished {
                            task: task as u32,
                            snapshot: state,
                        });
                    }
                    finished[task] = Some(snapshot);
                }
                Ok(Report::Ack { task, id, snapshot }) => {
                    if let Some(mut p) = pending.take() {
                        if p.id == id {
                            self.record(&mut p, task, &snapshot)?;
                        }
                        pending = Some(p);
                    }
                }
                Ok(Report::Finished { task, snapshot }) => {
                    if let Some(mut p) = pending.take() {
                        if p.files[task].is_none() {
                            self.record(&mut p, task, &snapshot)?;
                        }
                        pending = Some(p);
                    }
                    finished[task] = Some(snapshot);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Every task here is gone: finished, with other parts' reports to
                    // wait for (until they come or the attempt is aborted), or not:
                    // then the job failed.
                    if !self.awaits_other_parts(&finished) {
                        return Ok(Outcome::Ended);
                    }
                    tasks_gone = true;
                }
            }
            // With no task here left to report, the link is what to wait on.
            let link_wait = if tasks_gone { wait } else { Duration::ZERO };
            self.receive_remote(&mut pending, &mut finished, link_wait)?;
            if self.follows() {
                continue;
            }
            let state = match (&pending, &self.schedule) {
                (Some(p), Some(_)) if p.files.iter().all(Option::is_some) => Some(true),
                (Some(p), Some(s)) if p.started.elapsed() > s.timeout => Some(false),
                _ => None,
            };
            match (state, pending.take()) {
                (Some(true), Some(p)) => {
                    if let Some(stopped) = self.complete(p)? {
                        return Ok(Outcome::Stop(stopped));
                    }
                }
                (Some(false), Some(p)) => self.abandon(p),
                (_, p) => pending = p,
            }
            if pending.is_some() {
                continue;
            }
            // A savepoint request goes first; otherwise the interval's checkpoint.
            let savepoint = match self.savepoint_requests.try_recv() {
                Ok(request) if self.schedule.is_none() => {
                    let _ = request.reply.send(Err(
                        "savepoints need a `checkpoints` section in the job file".into(),
                    ));
                    None
                }
                Ok(request) => Some(request),
                Err(_) => None,
            };
            let due = next_trigger.is_some_and(|t| Instant::now() >= t);
            if savepoint.is_none() && !due {
                continue;
            }
            let id = next_id;
            next_id += 1;
            if savepoint.is_none() {
                next_trigger = interval.map(|i| Instant::now() + i);
            }
            let mut p = Pending {
                id,
                started: Instant::now(),
                files: vec![None; n],
                sinks: Vec::new(),
                savepoint,
            };
            for (task, snapshot) in finished.iter().enumerate() {
                if let Some(snapshot) = snapshot {
                    self.record(&mut p, task, snapshot)?;
                }
            }
            tracing::debug!("triggering checkpoint {id}");
            // Savepoints get no directory for state files: backends write them in their
            // portable form, so that any backend can restore them.
            let target = match (&self.schedule, &p.savepoint) {
                (Some(s), None) => Some(Target {
                    id,
                    dir: Some(s.storage.checkpoint_dir(id, false)),
                    unaligned: s.unaligned,
                }),
                _ => Some(Target {
                    id,
                    dir: None,
                    unaligned: false,
                }),
            };
            if let (Some((link, _)), Some(t)) = (&self.link, &target) {
                link.send(&PartMessage::Trigger {
                    id,
                    savepoint: p.savepoint.is_some(),
                    unaligned: t.unaligned,
                });
            }
            *self.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
            pending = Some(p);
            self.requested.store(id, Ordering::Release);
        }
    }

    /// Gives up on checkpoint `p`, which took too long; its prepared output is aborted.
    fn abandon(&mut self, p: Pending) {
        for (name, bytes) in &p.sinks {
            if let Some((_, committer)) = self.committers.iter_mut().find(|(n, _)| n == name)
                && let Err(e) = committer.abort(bytes)
            {
                tracing::warn!("cannot abort what sink {name:?} prepared: {e}");
            }
        }
        let Some(schedule) = &self.schedule else {
            return;
        };
        let message = format!(
            "checkpoint {} was not acknowledged within {:?}",
            p.id, schedule.timeout
        );
        tracing::warn!("{message}; abandoned");
        self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
        self.counters
            .record(p.record(p.savepoint.is_some(), false, 0));
        schedule.storage.abandon(p.id, p.savepoint.is_some());
        if let Some(request) = p.savepoint {
            let _ = request.reply.send(Err(message));
        }
    }

    /// Completes checkpoint `p` and commits its sinks; returns the savepoint's
    /// directory if the job must stop now.
    fn complete(&mut self, mut p: Pending) -> Result<Option<PathBuf>, CoordinatorError> {
        let Some(schedule) = &self.schedule else {
            return Ok(None);
        };
        let savepoint = p.savepoint.is_some();
        let files = std::mem::take(&mut p.files).into_iter().flatten().collect();
        let dir = schedule
            .storage
            .complete(p.id, savepoint, self.max_parallelism, files)?;
        let took = p.started.elapsed().as_millis();
        let size = dir_size(&dir);
        self.counters.record(p.record(savepoint, true, size));
        if savepoint {
            tracing::info!(
                "savepoint {} completed in {took} ms: {}",
                p.id,
                dir.display()
            );
        } else {
            tracing::debug!("checkpoint {} completed in {took} ms", p.id);
        }
        self.commit(&p.sinks)?;
        match p.savepoint {
            Some(request) => {
                let _ = request.reply.send(Ok(dir.clone()));
                Ok(request.stop.then_some(dir))
            }
            None => {
                let c = &self.counters;
                c.completed.fetch_add(1, Ordering::Relaxed);
                c.last_id.store(p.id, Ordering::Relaxed);
                c.last_duration_ms.store(took as u64, Ordering::Relaxed);
                c.last_size_bytes.store(size, Ordering::Relaxed);
                self.completed = Some((p.id, dir));
                Ok(None)
            }
        }
    }

    /// Every task finished: the final checkpoint records it, then the sinks publish.
    fn finish(
        &mut self,
        id: u64,
        pending: Option<Pending>,
        finished: &[Option<TaskSnapshot>],
    ) -> Result<(), CoordinatorError> {
        if self.schedule.is_none() {
            let sinks: Vec<(String, Vec<u8>)> = finished
                .iter()
                .flatten()
                .flat_map(|s| s.sinks.clone())
                .collect();
            return Ok(self.commit(&sinks)?);
        }
        // A checkpoint or savepoint in flight completes with the final state.
        let mut p = pending.unwrap_or(Pending {
            id,
            started: Instant::now(),
            files: vec![None; finished.len()],
            sinks: Vec::new(),
            savepoint: None,
        });
        p.sinks.clear();
        for (task, snapshot) in finished.iter().enumerate() {
            if let Some(snapshot) = snapshot {
                self.record(&mut p, task, snapshot)?;
            }
        }
        self.complete(p)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The other part of a two-part job, as the leader's link sees it: what it
    /// reports arrives when the test sends it.
    struct Follower(Mutex<mpsc::Receiver<PartMessage>>);

    impl CoordinatorLink for Follower {
        fn leads(&self) -> bool {
            true
        }

        fn send(&self, _: &PartMessage) {}

        fn recv(&self, timeout: Duration) -> Option<PartMessage> {
            let inbox = self.0.lock().unwrap();
            inbox
                .recv_timeout(timeout.max(Duration::from_micros(1)))
                .ok()
        }
    }

    /// Records what it is told to commit.
    struct Commits(Committed);

    impl Committer for Commits {
        fn commit(&mut self, prepared: &[u8]) -> Result<(), SinkError> {
            self.0.lock().unwrap().push(prepared.to_vec());
            Ok(())
        }
    }

    /// What a sink was told to commit, in order.
    type Committed = Arc<Mutex<Vec<Vec<u8>>>>;

    /// The leader of a job in two parts: task 0 (the sink) runs here, task 1 in the
    /// other part; what the other part sends, and what the sink was told to commit.
    fn leader_of_two_parts() -> (Coordinator, mpsc::Sender<PartMessage>, Committed) {
        let commits = Arc::new(Mutex::new(Vec::new()));
        let sink = ("out".to_owned(), Box::new(Commits(commits.clone())) as _);
        let (to_leader, inbox) = mpsc::channel();
        let leader = Coordinator::new(
            None,
            vec!["sink".into(), "remote".into()],
            128,
            vec![sink],
            Arc::default(),
        )
        .spanning(Arc::new(Follower(Mutex::new(inbox))), vec![true, false]);
        (leader, to_leader, commits)
    }

    #[test]
    fn a_leader_whose_tasks_all_finished_commits_once_the_other_parts_report() {
        let (mut leader, to_leader, commits) = leader_of_two_parts();
        let barriers = leader.barriers();
        let last = TaskSnapshot {
            sinks: vec![("out".into(), b"final part".to_vec())],
            ..TaskSnapshot::default()
        };
        // The sink finishes and its task lets go of its handle before the other
        // part's report of its own finished task has come over the link.
        barriers.finished(0, last);
        drop(barriers);
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let snapshot = TaskSnapshot::default().encode();
            to_leader
                .send(PartMessage::Finished { task: 1, snapshot })
                .unwrap();
        });
        let outcome = leader.run(&AtomicBool::new(false)).unwrap();
        late.join().unwrap();
        assert_eq!(outcome, Outcome::Ended);
        assert_eq!(*commits.lock().unwrap(), [b"final part".to_vec()]);
    }

    #[test]
    fn a_leader_whose_tasks_are_gone_unfinished_ends_without_committing() {
        let (mut leader, _to_leader, commits) = leader_of_two_parts();
        drop(leader.barriers());
        assert_eq!(leader.run(&AtomicBool::new(false)).unwrap(), Outcome::Ended);
        assert!(commits.lock().unwrap().is_empty());
    }
}
