//! Runs a job as a dataflow: one thread per task (a subtask of a stage), stages joined
//! by byte-bounded channels, so a slow stage slows its producers instead of piling up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::checkpoint::Coordinator;
use crate::checkpoint::coordinator::{Outcome, Savepoints};
use crate::deadletter::DeadLetters;
use crate::exec::channel::Channel;
use crate::exec::exchange::Outlet;
use crate::metrics::{JobMetrics, NodeTotals, Role};
use crate::sideoutput::SideOutput;

use super::run_error::RunError;
use super::task::{Task, TaskError};

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

/// How often a run looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(10);

/// A job with every task built, ready to run.
pub struct Dataflow {
    pub(super) side_outputs: Vec<Arc<SideOutput>>,
    /// Native stack of task threads: WASM runs on it, so it must hold the WASM stack.
    pub(super) thread_stack: usize,
    pub(super) tasks: Vec<Task>,
    pub(super) dead_letters: Option<Arc<DeadLetters>>,
    pub(super) channels: Vec<Arc<Channel>>,
    /// Where this part sends to subtasks in other processes.
    pub(super) remote: Vec<Arc<dyn Outlet>>,
    pub(super) metrics: Arc<JobMetrics>,
    pub(super) coordinator: Coordinator,
    /// Set from outside to end the run at once, publishing nothing.
    pub(super) cancel: Arc<AtomicBool>,
}

impl Dataflow {
    /// The handle that takes savepoints of the running job.
    pub fn savepoints(&self) -> Savepoints {
        self.coordinator.savepoints()
    }

    /// Setting it ends the run at once with [`RunError::Cancelled`], publishing nothing
    /// past the last checkpoint: for an attempt whose job fails over elsewhere.
    pub fn canceller(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
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
        let (channels, remote) = (&self.channels, &self.remote);
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
            // A sender waiting for another process's credit would wait forever.
            for r in remote {
                r.close();
            }
        };
        let fail = |e: RunError| halt(Some(e));
        let mut coordinator = self.coordinator;
        let cancel = self.cancel;
        let ended = AtomicBool::new(false);
        let coordinator = std::thread::scope(|scope| {
            let (abort_ref, halt_ref) = (&abort, &halt);
            let (cancel, ended) = (&cancel, &ended);
            let watching = std::thread::Builder::new()
                .name("cancel".into())
                .spawn_scoped(scope, move || {
                    while !ended.load(Ordering::SeqCst) && !abort_ref.load(Ordering::SeqCst) {
                        if cancel.load(Ordering::SeqCst) {
                            halt_ref(Some(RunError::Cancelled));
                            return;
                        }
                        std::thread::sleep(CANCEL_POLL);
                    }
                });
            if let Err(e) = watching {
                fail(RunError::Thread(e));
            }
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
            let joined = checkpoints.and_then(|handle| handle.join().ok());
            ended.store(true, Ordering::SeqCst);
            joined
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
