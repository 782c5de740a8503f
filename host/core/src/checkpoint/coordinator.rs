//! The checkpoint coordinator of a running job: triggers checkpoints on an interval,
//! collects the tasks' snapshots (writing them off the tasks' threads, so snapshots
//! are asynchronous for the tasks), completes a checkpoint once every task has
//! acknowledged, and only then lets the sinks publish what they prepared for it.
//!
//! A task that finished reports its final snapshot once; it counts as acknowledged for
//! every later checkpoint. When all tasks have finished, a final checkpoint is taken and
//! committed, so a bounded job's last output is exactly-once too.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::snapshot::TaskSnapshot;
use super::storage::{CheckpointError, Storage, TaskFile};
use crate::job::SinkSpec;
use crate::sink::{SinkError, commit_sink};

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
    reports: mpsc::Sender<Report>,
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
}

/// A checkpoint in flight.
struct Pending {
    id: u64,
    started: Instant,
    files: Vec<Option<TaskFile>>,
    sinks: Vec<(String, Vec<u8>)>,
}

/// Coordinates the checkpoints of one run.
pub struct Coordinator {
    schedule: Option<Schedule>,
    tasks: Vec<String>,
    max_parallelism: u32,
    sinks: Vec<(String, SinkSpec)>,
    requested: Arc<AtomicU64>,
    reports: mpsc::Receiver<Report>,
    /// Kept until the run starts, so that tasks can be given handles.
    sender: Option<mpsc::Sender<Report>>,
    /// The last checkpoint that completed, for the run summary.
    pub completed: Option<(u64, PathBuf)>,
}

impl Coordinator {
    /// A coordinator for tasks named `tasks`; without a schedule it never checkpoints
    /// but still commits the sinks' final output when the job finishes.
    pub fn new(
        schedule: Option<Schedule>,
        tasks: Vec<String>,
        max_parallelism: u32,
        sinks: Vec<(String, SinkSpec)>,
    ) -> Self {
        let (sender, reports) = mpsc::channel();
        Coordinator {
            schedule,
            tasks,
            max_parallelism,
            sinks,
            requested: Arc::new(AtomicU64::new(0)),
            reports,
            sender: Some(sender),
            completed: None,
        }
    }

    /// The handle tasks use.
    pub fn barriers(&self) -> Barriers {
        Barriers {
            requested: self.requested.clone(),
            reports: self.sender.clone().unwrap_or_else(|| mpsc::channel().0),
        }
    }

    fn commit(&self, prepared: &[(String, Vec<u8>)]) -> Result<(), SinkError> {
        for (name, bytes) in prepared {
            if let Some((_, spec)) = self.sinks.iter().find(|(n, _)| n == name) {
                commit_sink(name, spec, bytes)?;
            }
        }
        Ok(())
    }

    fn write(
        &self,
        id: u64,
        task: TaskId,
        snapshot: &TaskSnapshot,
    ) -> Result<Option<TaskFile>, CheckpointError> {
        match &self.schedule {
            None => Ok(None),
            Some(s) => s
                .storage
                .write_task(id, false, &self.tasks[task], snapshot)
                .map(Some),
        }
    }

    /// Runs until every task has finished (then takes the final checkpoint and commits
    /// it) or the tasks are gone because the job failed (`abort`).
    pub fn run(&mut self, abort: &AtomicBool) -> Result<(), CoordinatorError> {
        drop(self.sender.take());
        let n = self.tasks.len();
        let mut finished: Vec<Option<TaskSnapshot>> = vec![None; n];
        let mut pending: Option<Pending> = None;
        let mut next_id = self.schedule.as_ref().map_or(1, |s| s.first_id);
        let interval = self.schedule.as_ref().map(|s| s.interval);
        let mut next_trigger = interval.map(|i| Instant::now() + i);
        loop {
            if abort.load(Ordering::Relaxed) {
                return Ok(());
            }
            if finished.iter().all(Option::is_some) {
                return self.finish(next_id, pending.take(), &finished);
            }
            let wait = next_trigger
                .map_or(Duration::from_millis(100), |t| {
                    t.saturating_duration_since(Instant::now())
                })
                .min(Duration::from_millis(100));
            match self.reports.recv_timeout(wait) {
                Ok(Report::Ack { task, id, snapshot }) => {
                    if let Some(p) = pending.as_mut().filter(|p| p.id == id) {
                        p.sinks.extend(snapshot.sinks.iter().cloned());
                        p.files[task] = self.write(id, task, &snapshot)?;
                    }
                }
                Ok(Report::Finished { task, snapshot }) => {
                    if let Some(p) = pending.as_mut()
                        && p.files[task].is_none()
                    {
                        p.sinks.extend(snapshot.sinks.iter().cloned());
                        p.files[task] = self.write(p.id, task, &snapshot)?;
                    }
                    finished[task] = Some(snapshot);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Every task is gone without finishing: the job failed.
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if let (Some(p), Some(schedule)) = (&pending, &self.schedule) {
                if p.files.iter().all(Option::is_some) {
                    if let Some(p) = pending.take() {
                        self.complete(p)?;
                    }
                } else if p.started.elapsed() > schedule.timeout {
                    tracing::warn!(
                        "checkpoint {} abandoned: not acknowledged within {:?}",
                        p.id,
                        schedule.timeout
                    );
                    schedule.storage.abandon(p.id, false);
                    pending = None;
                }
            }
            if let (None, Some(t), Some(i)) = (&pending, next_trigger, interval)
                && Instant::now() >= t
            {
                let id = next_id;
                next_id += 1;
                next_trigger = Some(Instant::now() + i);
                let mut p = Pending {
                    id,
                    started: Instant::now(),
                    files: vec![None; n],
                    sinks: Vec::new(),
                };
                for (task, snapshot) in finished.iter().enumerate() {
                    if let Some(snapshot) = snapshot {
                        p.sinks.extend(snapshot.sinks.iter().cloned());
                        p.files[task] = self.write(id, task, snapshot)?;
                    }
                }
                tracing::debug!("triggering checkpoint {id}");
                pending = Some(p);
                self.requested.store(id, Ordering::Release);
            }
        }
    }

    fn complete(&mut self, p: Pending) -> Result<(), CoordinatorError> {
        let Some(schedule) = &self.schedule else {
            return Ok(());
        };
        let files = p.files.into_iter().flatten().collect();
        let dir = schedule
            .storage
            .complete(p.id, false, self.max_parallelism, files)?;
        tracing::info!(
            "checkpoint {} completed in {} ms",
            p.id,
            p.started.elapsed().as_millis()
        );
        self.commit(&p.sinks)?;
        self.completed = Some((p.id, dir));
        Ok(())
    }

    /// Every task finished: the final checkpoint records it, then the sinks publish.
    fn finish(
        &mut self,
        id: u64,
        pending: Option<Pending>,
        finished: &[Option<TaskSnapshot>],
    ) -> Result<(), CoordinatorError> {
        let sinks: Vec<(String, Vec<u8>)> = finished
            .iter()
            .flatten()
            .flat_map(|s| s.sinks.clone())
            .collect();
        let Some(schedule) = &self.schedule else {
            return Ok(self.commit(&sinks)?);
        };
        if let Some(p) = pending {
            schedule.storage.abandon(p.id, false);
        }
        let mut files = Vec::new();
        for (task, snapshot) in finished.iter().enumerate() {
            if let Some(snapshot) = snapshot {
                files.push(self.write(id, task, snapshot)?);
            }
        }
        self.complete(Pending {
            id,
            started: Instant::now(),
            files,
            sinks,
        })
    }
}
