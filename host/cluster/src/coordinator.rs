//! The coordinator: accepts jobs and their components, schedules each job onto the
//! slots of a worker, and restarts a job from its latest checkpoint when its attempt
//! fails or its worker is lost, as the job's restart strategy allows.
//!
//! A job needs as many slots as its highest parallelism (a slot holds one subtask of
//! each stage, as in Flink). A job goes on one worker when one has the room, else it
//! may span several, its subtasks exchanging batches over the network data plane and
//! its checkpoints led by the part in slot 0. A job that does not fit waits and says
//! why.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::BufReader;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use eddy_core::exec::plan::Graph;
use eddy_core::exec::supervise::{Decision, decide};
use eddy_core::job::checkpoint::RestartSpec;
use eddy_core::job::memory::ByteSize;
use eddy_core::metrics::CheckpointRecord;
use eddy_core::tenant::Tenants;
use eddy_core::{ErrorClass, Job};

use crate::ClusterError;
use crate::api::{ControlError, ExceptionView, JobView, SavepointView};
use crate::blobs::Blobs;
use crate::ha::Leader;
use crate::jobstore::JobStore;
use crate::provision::Native;
use crate::wire::{self, Deployment, Failure, Msg, Report, Resume, Slot};

/// A worker silent for this long is taken for dead (its connection closing is the
/// faster sign).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the coordinator looks for silent workers and due restarts.
const TICK: Duration = Duration::from_millis(100);

/// Checkpoints, savepoints and exceptions a job keeps for people to look at.
pub(crate) const KEPT: usize = 100;

/// Appends `item` to `kept`, dropping the oldest beyond [`KEPT`].
pub(crate) fn keep<T>(kept: &mut VecDeque<T>, item: T) {
    kept.push_back(item);
    if kept.len() > KEPT {
        kept.pop_front();
    }
}

/// Where a job is in its life.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum JobState {
    /// No worker has the slots it needs; the reason says what is missing.
    Waiting(String),
    /// An attempt runs: its slots per worker, and the workers whose part has not
    /// ended yet.
    Running {
        assigned: BTreeMap<String, u32>,
        pending: BTreeSet<String>,
    },
    /// An attempt failed; the next starts at `at`, from the latest checkpoint.
    Restarting { at: Instant, reason: String },
    /// It ran to its end.
    Finished,
    /// It failed for good.
    Failed(String),
    /// A user cancelled it.
    Cancelled,
}

impl JobState {
    /// Whether the job has ended for good.
    pub(crate) fn ended(&self) -> bool {
        matches!(
            self,
            JobState::Finished | JobState::Failed(_) | JobState::Cancelled
        )
    }
}

pub(crate) struct JobEntry {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) tenant: String,
    pub(crate) file: String,
    pub(crate) yaml: String,
    pub(crate) components: BTreeMap<String, String>,
    pub(crate) slots: u32,
    restart: RestartSpec,
    pub(crate) checkpointing: bool,
    /// Whether it may span workers (no side or dead-letter sinks, which each process
    /// would open).
    spreads: bool,
    pub(crate) state: JobState,
    pub(crate) attempt: u32,
    /// Whether an attempt was deployed (the first is attempt 0).
    pub(crate) deployed: bool,
    /// Whether its pointer and files are gone, once it ended (with high availability).
    cleaned: bool,
    pub(crate) restarts: u32,
    /// The last failure's message, which tells a repeated failure.
    last_failure: Option<String>,
    /// A user cancelled it while an attempt ran: it is cancelled once every part ended.
    pub(crate) cancelling: bool,
    /// Its memory budget in each process it runs in.
    memory: ByteSize,
    /// The processes (workers) its latest attempt ran in.
    parts: u32,
    /// When it was submitted, in ms since the Unix epoch.
    pub(crate) submitted_ms: u64,
    /// Its sources, steps and sinks.
    pub(crate) graph: Graph,
    /// The worker of the current attempt's slot 0, which leads its checkpoints.
    pub(crate) leader: Option<String>,
    /// The current attempt's latest report from each of its workers.
    pub(crate) reports: BTreeMap<String, Report>,
    /// Its latest checkpoints and savepoints, by id.
    pub(crate) checkpoints: BTreeMap<u64, CheckpointRecord>,
    /// Its attempts' failures, oldest first.
    pub(crate) exceptions: VecDeque<ExceptionView>,
    /// The savepoints asked for, oldest first, with the request id that asked.
    pub(crate) savepoints: VecDeque<(Option<String>, SavepointView)>,
    /// The savepoint it was stopped with.
    pub(crate) stopped_with: Option<String>,
    /// Where its first attempt starts from.
    pub(crate) resume: Resume,
    /// The directory its relative paths resolve against, when not its own.
    pub(crate) base: Option<PathBuf>,
}

impl JobEntry {
    /// Job `job` (id `id`, file `file` with text `yaml`), admitted to wait for slots.
    pub(crate) fn new(
        id: u64,
        job: &Job,
        file: &str,
        yaml: String,
        components: BTreeMap<String, String>,
        slots: u32,
        graph: Graph,
    ) -> JobEntry {
        JobEntry {
            id,
            name: job.name.clone(),
            tenant: job.tenant.clone(),
            file: file.to_owned(),
            yaml,
            components,
            slots,
            restart: job.restart.clone(),
            checkpointing: job.checkpoints.is_some(),
            spreads: job.side_sinks.is_empty() && job.dead_letter.is_none(),
            state: JobState::Waiting("not scheduled yet".into()),
            cancelling: false,
            memory: job.memory.process,
            parts: 0,
            attempt: 0,
            deployed: false,
            cleaned: false,
            restarts: 0,
            last_failure: None,
            submitted_ms: now_ms(),
            graph,
            leader: None,
            reports: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            exceptions: VecDeque::new(),
            savepoints: VecDeque::new(),
            stopped_with: None,
            resume: Resume::Beginning,
            base: None,
        }
    }
}

pub(crate) struct WorkerEntry {
    pub(crate) incarnation: u64,
    pub(crate) data: SocketAddr,
    pub(crate) slots: u32,
    pub(crate) used: u32,
    pub(crate) out: Sender<(Msg, Vec<u8>)>,
    stream: TcpStream,
    pub(crate) last_seen: Instant,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) workers: BTreeMap<String, WorkerEntry>,
    pub(crate) jobs: BTreeMap<u64, JobEntry>,
    pub(crate) next_job: u64,
    /// Savepoint trigger ids handed out.
    pub(crate) next_trigger: u64,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) blobs: Blobs,
    pub(crate) dir: PathBuf,
    pub(crate) tenants: Tenants,
    /// What the next leader recovers the jobs from.
    pub(crate) store: JobStore,
    /// In native mode: who starts and stops workers.
    native: Option<Native>,
}

/// How a coordinator runs.
pub struct Options {
    /// Its tenants: jobs are admitted under their quotas, whose `max-slots` hold
    /// cluster-wide.
    pub tenants: Tenants,
    /// Its leadership of a highly available cluster: it first takes over the jobs the
    /// previous leaders left (its directory is shared by the cluster's coordinators).
    pub leader: Option<Leader>,
    /// Native mode: it starts and stops workers as jobs need slots.
    pub native: Option<Native>,
}

impl Options {
    /// A coordinator for `tenants`, otherwise as by default.
    pub fn for_tenants(tenants: Tenants) -> Options {
        Options {
            tenants,
            ..Options::default()
        }
    }
}

impl Default for Options {
    /// One coordinator, open to everyone, with workers started by hand.
    fn default() -> Options {
        Options {
            tenants: Tenants::local(),
            leader: None,
            native: None,
        }
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is made under the lock in whole steps.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running coordinator; it serves until the process ends. People and scripts act
/// on it through the methods of [`crate::control`].
#[derive(Clone)]
pub struct Coordinator {
    addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
}

impl Coordinator {
    /// Listens on `listen`, keeping components and job files under `dir`, as `options`
    /// say.
    pub fn start(
        listen: SocketAddr,
        dir: &Path,
        options: Options,
    ) -> Result<Coordinator, ClusterError> {
        let Options {
            tenants,
            leader,
            native,
        } = options;
        let listener = TcpListener::bind(listen).map_err(|e| ClusterError::Bind(listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ClusterError::Bind(listen, e))?;
        let blobs = Blobs::open(&dir.join("blobs")).map_err(|e| ClusterError::Dir {
            path: dir.into(),
            error: e,
        })?;
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            blobs,
            dir: dir.to_owned(),
            tenants,
            store: JobStore::new(leader, dir),
            native,
        });
        if let Some(native) = &shared.native {
            native.adopt();
        }
        crate::control::recover(&shared, &mut shared.lock()).map_err(ClusterError::Recovery)?;
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name("eddy-coordinator".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let shared = accepting.clone();
                    let _ = std::thread::Builder::new()
                        .name("eddy-session".into())
                        .spawn(move || session(&shared, stream));
                }
            })
            .map_err(ClusterError::Thread)?;
        let ticking = shared.clone();
        std::thread::Builder::new()
            .name("eddy-scheduler".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    tick(&ticking);
                }
            })
            .map_err(ClusterError::Thread)?;
        tracing::info!("coordinator listening on {addr}");
        Ok(Coordinator { addr, shared })
    }

    /// The address workers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Serves one connection: a worker registers first.
fn session(shared: &Arc<Shared>, stream: TcpStream) {
    let Ok(read) = stream.try_clone() else {
        return;
    };
    let mut input = BufReader::new(read);
    match wire::read(&mut input) {
        Ok((
            Msg::Register {
                worker,
                incarnation,
                slots,
                data,
            },
            _,
        )) => {
            let entry = WorkerEntry {
                incarnation,
                data,
                slots,
                used: 0,
                out: channel().0,
                stream,
                last_seen: Instant::now(),
            };
            worker_session(shared, &worker, entry, input);
        }
        Ok((other, _)) => tracing::warn!("a connection did not register first: {other:?}"),
        Err(e) => tracing::debug!("a connection ended before registering: {e}"),
    }
}

/// Writes a job file and its components (from `blobs`) under `dir`; returns the job
/// file's path. Component paths must stay inside the plugin directory.
pub(crate) fn materialize(
    blobs: &Blobs,
    dir: &Path,
    file: &str,
    yaml: &str,
    components: &BTreeMap<String, String>,
) -> Result<PathBuf, String> {
    let name = Path::new(file)
        .file_name()
        .ok_or_else(|| format!("{file:?} is not a job file name"))?;
    let plugins = dir.join("plugins");
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    std::fs::create_dir_all(&plugins).map_err(|e| io(&plugins, e))?;
    for (path, sha) in components {
        let relative = Path::new(path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "component path {path:?} leaves the plugin directory"
            ));
        }
        let target = plugins.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let bytes = blobs.get(sha).map_err(|e| io(&blobs.path(sha), e))?;
        std::fs::write(&target, bytes).map_err(|e| io(&target, e))?;
    }
    let job_file = dir.join(name);
    std::fs::write(&job_file, yaml).map_err(|e| io(&job_file, e))?;
    Ok(job_file)
}

/// Serves a registered worker until its connection ends, then fails over its jobs.
fn worker_session(
    shared: &Arc<Shared>,
    worker: &str,
    mut entry: WorkerEntry,
    mut input: BufReader<TcpStream>,
) {
    let (tx, rx) = channel::<(Msg, Vec<u8>)>();
    let Ok(mut writer) = entry.stream.try_clone() else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("eddy-worker-out".into())
        .spawn(move || {
            for (msg, payload) in rx {
                if wire::write(&mut writer, &msg, &payload).is_err() {
                    return;
                }
            }
        });
    entry.out = tx.clone();
    let incarnation = entry.incarnation;
    {
        let mut state = shared.lock();
        if state.workers.contains_key(worker) {
            // The same identity again: a new incarnation replaces the old one.
            lose_worker(&mut state, worker, "it registered again".into());
        }
        tracing::info!(%worker, incarnation, slots = entry.slots, data = %entry.data, "worker registered");
        state.workers.insert(worker.to_owned(), entry);
        if let Some(native) = &shared.native {
            native.registered(worker);
        }
        schedule(&mut state, shared);
    }
    let reason = loop {
        let (msg, _) = match wire::read(&mut input) {
            Ok(read) => read,
            Err(e) => break format!("its connection ended ({e})"),
        };
        let mut state = shared.lock();
        if !state
            .workers
            .get(worker)
            .is_some_and(|w| w.incarnation == incarnation)
        {
            return;
        }
        match msg {
            Msg::Heartbeat => {
                if let Some(w) = state.workers.get_mut(worker) {
                    w.last_seen = Instant::now();
                }
            }
            Msg::Fetch { sha256 } => {
                let answer = match shared.blobs.get(&sha256) {
                    Ok(bytes) => (Msg::Blob { sha256 }, bytes),
                    Err(e) => (
                        Msg::Missing {
                            message: format!("component {sha256}: {e}"),
                            sha256,
                        },
                        Vec::new(),
                    ),
                };
                let _ = tx.send(answer);
            }
            Msg::Ended {
                job,
                attempt,
                failure,
            } => {
                ended(&mut state, worker, job, attempt, failure);
                schedule(&mut state, shared);
            }
            Msg::Report(report) => {
                if let Some(job) = state.jobs.get_mut(&report.job)
                    && job.attempt == report.attempt
                    && matches!(job.state, JobState::Running { .. })
                {
                    for c in &report.checkpoints {
                        job.checkpoints.insert(c.id, c.clone());
                    }
                    while job.checkpoints.len() > KEPT {
                        job.checkpoints.pop_first();
                    }
                    job.reports.insert(worker.to_owned(), *report);
                }
            }
            Msg::SavepointDone {
                job,
                trigger,
                result,
            } => {
                if let Some(job) = state.jobs.get_mut(&job) {
                    savepoint_done(job, &trigger, result);
                }
            }
            other => tracing::warn!(%worker, "unexpected message from a worker: {other:?}"),
        }
    };
    let mut state = shared.lock();
    if state
        .workers
        .get(worker)
        .is_some_and(|w| w.incarnation == incarnation)
    {
        lose_worker(&mut state, worker, reason);
        schedule(&mut state, shared);
    }
}

/// Worker `worker` is gone: its attempts fail as a restart can get past.
fn lose_worker(state: &mut State, worker: &str, reason: String) {
    let Some(entry) = state.workers.remove(worker) else {
        return;
    };
    let _ = entry.stream.shutdown(Shutdown::Both);
    tracing::warn!(%worker, "worker lost: {reason}");
    let running: Vec<(u64, u32)> = state
        .jobs
        .values()
        .filter(
            |j| matches!(&j.state, JobState::Running { pending, .. } if pending.contains(worker)),
        )
        .map(|j| (j.id, j.attempt))
        .collect();
    for (job, attempt) in running {
        let failure = Failure {
            message: format!("worker {worker} was lost: {reason}"),
            class: ErrorClass::EXTERNAL,
        };
        ended(state, worker, job, attempt, Some(failure));
    }
}

/// Worker `worker`'s part of attempt `attempt` of `job` ended. The attempt ends when
/// every part has; a failed part cancels the others, then restarts the job or fails it.
fn ended(state: &mut State, worker: &str, job: u64, attempt: u32, failure: Option<Failure>) {
    let Some(entry) = state.jobs.get_mut(&job) else {
        return;
    };
    let JobState::Running { assigned, pending } = &mut entry.state else {
        return;
    };
    if entry.attempt != attempt || !pending.remove(worker) {
        return;
    }
    if let Some(f) = &failure {
        let exception = ExceptionView {
            time_ms: now_ms(),
            attempt,
            worker: Some(worker.to_owned()),
            message: f.message.clone(),
            class: f.class.domain.to_string(),
        };
        keep(&mut entry.exceptions, exception);
    }
    // Slots come back as each part ends; a failure (or a user's cancel) ends the
    // other parts too.
    let mut freed = vec![(
        worker.to_owned(),
        assigned.get(worker).copied().unwrap_or(0),
    )];
    if failure.is_some() || entry.cancelling {
        for other in std::mem::take(pending) {
            freed.push((other.clone(), assigned.get(&other).copied().unwrap_or(0)));
            if let Some(w) = state.workers.get(&other) {
                let _ = w.out.send((Msg::Cancel { job, attempt }, Vec::new()));
            }
        }
    }
    let done = pending.is_empty();
    if done || failure.is_some() || entry.cancelling {
        let why = failure
            .as_ref()
            .map_or("the job ended", |f| f.message.as_str());
        let pending: Vec<String> = entry
            .savepoints
            .iter()
            .filter(|(_, s)| s.state == "pending")
            .map(|(_, s)| s.trigger.clone())
            .collect();
        for trigger in pending {
            let why = format!("the attempt ended before the savepoint completed: {why}");
            savepoint_done(entry, &trigger, Err(why));
        }
        entry.reports.clear();
    }
    if entry.cancelling {
        entry.state = JobState::Cancelled;
        tracing::info!(job, "job cancelled");
    } else {
        conclude(entry, attempt, failure, done);
    }
    for (w, slots) in freed {
        if let Some(w) = state.workers.get_mut(&w) {
            w.used = w.used.saturating_sub(slots);
        }
    }
}

/// Job `entry`'s attempt `attempt` ended on a worker with `failure`; `done` when it
/// ended on every worker: the job finishes, restarts or fails for good.
fn conclude(entry: &mut JobEntry, attempt: u32, failure: Option<Failure>, done: bool) {
    let job = entry.id;
    match failure {
        None if !done => {}
        None => {
            entry.state = JobState::Finished;
            tracing::info!(job, "job finished");
        }
        Some(Failure { message, class }) => {
            let repeated = entry.last_failure.as_deref() == Some(message.as_str());
            let decision = decide(
                &entry.restart,
                entry.checkpointing,
                entry.restarts,
                class,
                repeated,
            );
            entry.last_failure = Some(message.clone());
            entry.state = match decision {
                Decision::Restart { after, restart } => {
                    entry.restarts = restart;
                    tracing::warn!(
                        job,
                        "attempt {attempt} failed: {message}; restart {restart} in {after:?}"
                    );
                    JobState::Restarting {
                        at: Instant::now() + after,
                        reason: message,
                    }
                }
                Decision::GiveUp(note) => {
                    let note = note.map(|n| format!(" ({n})")).unwrap_or_default();
                    tracing::error!(job, "job failed: {message}{note}");
                    JobState::Failed(format!("{message}{note}"))
                }
            };
        }
    }
}

/// A user cancels job `id`: a job waiting or between attempts is cancelled at once, a
/// running one once its attempt's parts have ended (they publish nothing more).
pub(crate) fn cancel(state: &mut State, id: u64) -> Result<(), ControlError> {
    let Some(job) = state.jobs.get_mut(&id) else {
        return Err(ControlError::NoJob(id));
    };
    match &job.state {
        JobState::Waiting(_) | JobState::Restarting { .. } => {
            job.state = JobState::Cancelled;
            tracing::info!(job = id, "job cancelled");
        }
        JobState::Running { pending, .. } => {
            job.cancelling = true;
            for worker in pending {
                if let Some(w) = state.workers.get(worker) {
                    let cancel = Msg::Cancel {
                        job: id,
                        attempt: job.attempt,
                    };
                    let _ = w.out.send((cancel, Vec::new()));
                }
            }
        }
        JobState::Finished | JobState::Failed(_) | JobState::Cancelled => {
            return Err(ControlError::Conflict(format!(
                "job {id} has ended: {}",
                view(job).state
            )));
        }
    }
    Ok(())
}

/// Where a job needing `slots` slots goes: one worker's slots if one has the room,
/// else (when it `spreads`) the free slots of several, most free first. `None` with
/// the reason when it does not fit.
fn place(
    workers: &BTreeMap<String, WorkerEntry>,
    slots: u32,
    spreads: bool,
) -> Result<Vec<String>, String> {
    let mut free: Vec<(&String, u32)> = workers
        .iter()
        .map(|(name, w)| (name, w.slots.saturating_sub(w.used)))
        .filter(|(_, f)| *f > 0)
        .collect();
    free.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if let Some((name, _)) = free.first().filter(|(_, f)| *f >= slots) {
        return Ok(vec![(*name).clone(); slots as usize]);
    }
    let total: u32 = free.iter().map(|(_, f)| f).sum();
    if spreads && total >= slots {
        let mut placed = Vec::new();
        for (name, f) in free {
            let take = f.min(slots - placed.len() as u32);
            placed.extend(std::iter::repeat_n(name.clone(), take as usize));
        }
        return Ok(placed);
    }
    let listed: Vec<String> = workers
        .iter()
        .map(|(n, w)| format!("{n}: {}", w.slots.saturating_sub(w.used)))
        .collect();
    let whereto = if spreads { "in all" } else { "on one worker" };
    Err(if listed.is_empty() {
        format!("needs {slots} slot(s) {whereto}; no worker is registered")
    } else {
        format!(
            "needs {slots} slot(s) {whereto}; free slots: {}",
            listed.join(", ")
        )
    })
}

/// Whether job `id`, placed on `parts` workers, stays within its tenant's cluster-wide
/// quotas: `max-slots` over the slots its tenant's other jobs hold, `max-memory` over
/// their memory budgets (one per process a job runs in). A restarting job keeps its
/// share, as in Flink.
fn within_quota(state: &State, tenants: &Tenants, id: u64, parts: u32) -> Result<(), String> {
    let Some(job) = state.jobs.get(&id) else {
        return Ok(());
    };
    let Some(quotas) = tenants.tenants.get(&job.tenant) else {
        return Ok(());
    };
    let others: Vec<&JobEntry> = state
        .jobs
        .values()
        .filter(|j| {
            j.id != id
                && j.tenant == job.tenant
                && matches!(
                    j.state,
                    JobState::Running { .. } | JobState::Restarting { .. }
                )
        })
        .collect();
    if let Some(max) = quotas.max_slots {
        let held: u32 = others.iter().map(|j| j.slots).sum();
        if held + job.slots > max {
            return Err(format!(
                "needs {} slot(s); tenant {:?} holds {held} of its {max} (max-slots)",
                job.slots, job.tenant
            ));
        }
    }
    if let Some(max) = quotas.max_memory {
        let budget = |j: &JobEntry, parts: u32| j.memory.0 as u128 * u128::from(parts);
        let held: u128 = others.iter().map(|j| budget(j, j.parts)).sum();
        let needs = budget(job, parts);
        if held + needs > max.0 as u128 {
            let size = |b: u128| ByteSize(usize::try_from(b).unwrap_or(usize::MAX));
            return Err(format!(
                "needs {} of memory on {parts} worker(s); tenant {:?} holds {} of its {max} \
                 (max-memory)",
                size(needs),
                job.tenant,
                size(held)
            ));
        }
    }
    Ok(())
}

/// Starts every job that waits or is due to restart where there is room for it.
pub(crate) fn schedule(state: &mut State, shared: &Shared) {
    let tenants = &shared.tenants;
    let now = Instant::now();
    let due: Vec<u64> = state
        .jobs
        .values()
        .filter(|j| match &j.state {
            JobState::Waiting(_) => true,
            JobState::Restarting { at, .. } => *at <= now,
            _ => false,
        })
        .map(|j| j.id)
        .collect();
    for id in due {
        let Some((slots, spreads)) = state.jobs.get(&id).map(|j| (j.slots, j.spreads)) else {
            continue;
        };
        let placed = place(&state.workers, slots, spreads).and_then(|placed| {
            let parts = placed.iter().collect::<BTreeSet<_>>().len() as u32;
            within_quota(state, tenants, id, parts).map(|()| placed)
        });
        let placed = match placed {
            Ok(placed) => placed,
            Err(reason) => {
                if let Some(job) = state.jobs.get_mut(&id)
                    && matches!(job.state, JobState::Waiting(_))
                {
                    job.state = JobState::Waiting(reason);
                }
                continue;
            }
        };
        let slot_list: Vec<Slot> = placed
            .iter()
            .filter_map(|w| {
                let data = state.workers.get(w)?.data;
                Some(Slot {
                    worker: w.clone(),
                    data,
                })
            })
            .collect();
        let Some(job) = state.jobs.get_mut(&id) else {
            continue;
        };
        let first = job.attempt;
        if matches!(job.state, JobState::Restarting { .. }) {
            job.attempt += 1;
        }
        let deployed = std::mem::replace(&mut job.deployed, true);
        if let Err(e) = shared.store.deploying(job) {
            tracing::error!(job = id, "not deployed: {e}");
            (job.attempt, job.deployed) = (first, deployed);
            continue;
        }
        let deployment = Deployment {
            job: id,
            attempt: job.attempt,
            file: job.file.clone(),
            yaml: job.yaml.clone(),
            components: job.components.clone(),
            // A first attempt starts afresh; any later one resumes.
            resume: if job.attempt > 0 && job.checkpointing {
                Resume::Latest
            } else {
                job.resume.clone()
            },
            base: job.base.clone(),
            slots: slot_list,
        };
        let mut assigned: BTreeMap<String, u32> = BTreeMap::new();
        for w in &placed {
            *assigned.entry(w.clone()).or_default() += 1;
        }
        for (worker, n) in &assigned {
            if let Some(w) = state.workers.get_mut(worker) {
                w.used += n;
                let _ = w
                    .out
                    .send((Msg::Deploy(Box::new(deployment.clone())), Vec::new()));
            }
        }
        tracing::info!(job = id, workers = ?assigned, attempt = job.attempt, "job deployed");
        job.leader = placed.first().cloned();
        job.reports.clear();
        job.parts = assigned.len() as u32;
        job.state = JobState::Running {
            pending: assigned.keys().cloned().collect(),
            assigned,
        };
    }
}

/// Fails over silent workers and starts due restarts.
fn tick(shared: &Shared) {
    let mut state = shared.lock();
    let silent: Vec<String> = state
        .workers
        .iter()
        .filter(|(_, w)| w.last_seen.elapsed() > HEARTBEAT_TIMEOUT)
        .map(|(name, _)| name.clone())
        .collect();
    for worker in silent {
        lose_worker(&mut state, &worker, "it stopped sending heartbeats".into());
    }
    // Workers take a silent coordinator for lost.
    for worker in state.workers.values() {
        let _ = worker.out.send((Msg::Heartbeat, Vec::new()));
    }
    if let Some(native) = &shared.native {
        native.tick(&state);
    }
    schedule(&mut state, shared);
    clean_ended(&mut state, shared);
}

/// Removes the pointers and files of jobs that ended, so that no later leader takes
/// them over.
fn clean_ended(state: &mut State, shared: &Shared) {
    for job in state.jobs.values_mut() {
        if job.cleaned || !job.state.ended() {
            continue;
        }
        match shared.store.ended(job) {
            Ok(()) => job.cleaned = true,
            Err(e) => tracing::warn!(job = job.id, "cannot clean up after the job: {e}"),
        }
    }
}

/// A job as lists show it.
pub(crate) fn view(job: &JobEntry) -> JobView {
    let (state, reason, workers) = match &job.state {
        JobState::Waiting(reason) => ("waiting", Some(reason.clone()), Vec::new()),
        JobState::Running { assigned, .. } => {
            let state = if job.cancelling {
                "cancelling"
            } else {
                "running"
            };
            (state, None, assigned.keys().cloned().collect())
        }
        JobState::Restarting { reason, .. } => ("restarting", Some(reason.clone()), Vec::new()),
        JobState::Finished => ("finished", None, Vec::new()),
        JobState::Failed(reason) => ("failed", Some(reason.clone()), Vec::new()),
        JobState::Cancelled => ("cancelled", None, Vec::new()),
    };
    JobView {
        id: job.id,
        name: job.name.clone(),
        tenant: job.tenant.clone(),
        state: state.into(),
        reason,
        workers,
        attempt: job.attempt,
        restarts: job.restarts,
        slots: job.slots,
        submitted_ms: job.submitted_ms,
    }
}

/// Savepoint `trigger` of `job` completed (its directory) or failed (why).
fn savepoint_done(job: &mut JobEntry, trigger: &str, result: Result<String, String>) {
    let Some((_, savepoint)) = job
        .savepoints
        .iter_mut()
        .find(|(_, s)| s.trigger == trigger && s.state == "pending")
    else {
        return;
    };
    match result {
        Ok(location) => {
            tracing::info!(job = job.id, trigger, "savepoint completed: {location}");
            if savepoint.stop {
                job.stopped_with = Some(location.clone());
            }
            savepoint.state = "completed".into();
            savepoint.location = Some(location);
        }
        Err(error) => {
            tracing::warn!(job = job.id, trigger, "savepoint failed: {error}");
            savepoint.state = "failed".into();
            savepoint.error = Some(error);
        }
    }
}

/// Now, in ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
