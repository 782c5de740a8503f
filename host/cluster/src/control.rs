//! What people and scripts ask of a running coordinator (the REST API calls these):
//! each request acts for an [`Access`], which sees the whole cluster or one tenant's
//! jobs only; another tenant's job answers as if it did not exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use eddy_core::Job;
use eddy_core::exec::plan::Plan;
use eddy_core::job::DEFAULT_TENANT;
use eddy_core::tenant::Access;

use crate::api::{
    CheckpointView, ControlError, EdgeView, ExceptionView, GraphView, JobDetail, JobView, Overview,
    PoolView, SavepointView, VertexView, WorkerView,
};
use crate::coordinator::{
    self, Coordinator, JobEntry, JobState, Shared, State, keep, materialize, now_ms, schedule, view,
};
use crate::wire::{Msg, Resume};

impl Coordinator {
    /// Who a request with bearer `token` acts for; `None` refuses it.
    pub fn authenticate(&self, token: Option<&str>) -> Option<Access> {
        self.shared.tenants.authenticate(token)
    }

    /// The cluster at a glance, with the jobs `access` sees.
    pub fn overview(&self, access: &Access) -> Overview {
        let state = self.shared.lock();
        let mut jobs = BTreeMap::new();
        for job in state.jobs.values().filter(|j| access.sees(&j.tenant)) {
            *jobs.entry(view(job).state).or_default() += 1;
        }
        Overview {
            version: env!("CARGO_PKG_VERSION").into(),
            workers: state.workers.len() as u32,
            slots_total: state.workers.values().map(|w| w.slots).sum(),
            slots_free: state
                .workers
                .values()
                .map(|w| w.slots.saturating_sub(w.used))
                .sum(),
            jobs,
        }
    }

    /// The jobs `access` sees, oldest first.
    pub fn jobs(&self, access: &Access) -> Vec<JobView> {
        let state = self.shared.lock();
        let visible = state.jobs.values().filter(|j| access.sees(&j.tenant));
        visible.map(view).collect()
    }

    /// Job `id` with its graph and its vertices' latest rates.
    pub fn job(&self, access: &Access, id: u64) -> Result<JobDetail, ControlError> {
        let state = self.shared.lock();
        let job = visible(&state, access, id)?;
        Ok(JobDetail {
            job: view(job),
            graph: graph(job),
            stopped_with: job.stopped_with.clone(),
        })
    }

    /// Accepts `submission` for `access` and schedules it; returns the job's id. A job
    /// that names no tenant runs for the tenant whose token submitted it.
    pub fn submit(&self, access: &Access, submission: Submission) -> Result<u64, ControlError> {
        let shared = &self.shared;
        let mut components = BTreeMap::new();
        for (path, bytes) in &submission.components {
            let sha = shared.blobs.put(bytes).map_err(|e| {
                ControlError::Internal(format!("cannot keep component {path}: {e}"))
            })?;
            components.insert(path.clone(), sha);
        }
        let id = {
            let mut state = shared.lock();
            state.next_job += 1;
            state.next_job
        };
        let dir = shared.dir.join("jobs").join(id.to_string());
        let admitted = self.admit(access, id, &dir, submission, components);
        if admitted.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        admitted.map(|()| id)
    }

    /// Checks job `id` as a worker will see it (its components under a plugin
    /// directory of its own), against the tenant's quotas, then keeps and schedules it.
    fn admit(
        &self,
        access: &Access,
        id: u64,
        dir: &Path,
        submission: Submission,
        components: BTreeMap<String, String>,
    ) -> Result<(), ControlError> {
        let Submission {
            name, yaml, base, ..
        } = &submission;
        let shared = &self.shared;
        let load = |yaml: &str| load(shared, dir, name, yaml, &components, base.as_deref());
        let mut yaml = yaml.clone();
        let mut job = load(&yaml)?;
        if let Access::Tenant(tenant) = access
            && job.tenant == DEFAULT_TENANT
        {
            yaml = format!("{}\ntenant: {tenant}\n", yaml.trim_end());
            job = load(&yaml)?;
        }
        if !access.sees(&job.tenant) {
            return Err(ControlError::Forbidden(format!(
                "{name}: the job runs for tenant {:?}, which this token does not act for",
                job.tenant
            )));
        }
        let tenants = &shared.tenants;
        tenants
            .admit(&job)
            .map_err(|e| ControlError::Forbidden(e.to_string()))?;
        let mut entry = entry(id, dir, &job, name, yaml, components)?;
        let slots = entry.slots;
        let quotas = tenants.tenants.get(&job.tenant);
        if let Some(max) = quotas.and_then(|q| q.max_slots)
            && slots > max
        {
            return Err(ControlError::Forbidden(format!(
                "job {:?} needs {slots} slot(s); tenant {:?} may hold {max} (max-slots)",
                job.name, job.tenant
            )));
        }
        let mut state = shared.lock();
        if let Some(max) = quotas.and_then(|q| q.max_jobs) {
            let live = state
                .jobs
                .values()
                .filter(|j| j.tenant == job.tenant && !j.state.ended())
                .count();
            if live >= max as usize {
                return Err(ControlError::Forbidden(format!(
                    "tenant {:?} has {live} job(s) that have not ended, its max-jobs: cancel \
                     one first",
                    job.tenant
                )));
            }
        }
        entry.resume = submission.resume;
        entry.base = submission.base;
        shared
            .store
            .submitted(&entry)
            .map_err(|e| ControlError::Internal(format!("cannot keep job {id}: {e}")))?;
        state.jobs.insert(id, entry);
        schedule(&mut state, shared);
        tracing::info!(job = id, name = %job.name, tenant = %job.tenant, slots, "job submitted");
        Ok(())
    }

    /// Cancels job `id`: its running parts end at once, publishing nothing more.
    pub fn cancel(&self, access: &Access, id: u64) -> Result<JobView, ControlError> {
        let mut state = self.shared.lock();
        visible(&state, access, id)?;
        coordinator::cancel(&mut state, id)?;
        visible(&state, access, id).map(view)
    }

    /// Asks job `id` for a savepoint (and to stop after it, if `stop`); answers at once
    /// with the trigger to poll. A retry with the same `request_id` gets the same
    /// savepoint instead of a second one.
    pub fn trigger_savepoint(
        &self,
        access: &Access,
        id: u64,
        stop: bool,
        request_id: Option<String>,
    ) -> Result<SavepointView, ControlError> {
        let mut state = self.shared.lock();
        let job = visible(&state, access, id)?;
        if let Some((_, asked)) = job
            .savepoints
            .iter()
            .find(|(r, _)| r.is_some() && *r == request_id)
        {
            return Ok(asked.clone());
        }
        if !job.checkpointing {
            return Err(ControlError::Conflict(format!(
                "job {id} has no `checkpoints` section, so it cannot take savepoints"
            )));
        }
        let attempt = job.attempt;
        let leader = match (&job.state, &job.leader) {
            (JobState::Running { .. }, Some(leader)) if !job.cancelling => leader.clone(),
            _ => {
                return Err(ControlError::Conflict(format!(
                    "job {id} is {}: only a running job takes savepoints",
                    view(job).state
                )));
            }
        };
        state.next_trigger += 1;
        let trigger =
            eddy_core::sha256(format!("{id}/{}/{}", state.next_trigger, now_ms()).as_bytes())[..16]
                .to_owned();
        let asked = SavepointView {
            trigger: trigger.clone(),
            stop,
            state: "pending".into(),
            location: None,
            error: None,
            requested_ms: now_ms(),
        };
        let Some(worker) = state.workers.get(&leader) else {
            return Err(ControlError::Conflict(format!(
                "job {id}'s worker {leader} is gone; it restarts"
            )));
        };
        let message = Msg::Savepoint {
            job: id,
            attempt,
            trigger,
            stop,
        };
        let _ = worker.out.send((message, Vec::new()));
        if let Some(job) = state.jobs.get_mut(&id) {
            keep(&mut job.savepoints, (request_id, asked.clone()));
        }
        tracing::info!(job = id, trigger = %asked.trigger, stop, "savepoint asked for");
        Ok(asked)
    }

    /// The savepoints asked of job `id`, oldest first.
    pub fn savepoints(&self, access: &Access, id: u64) -> Result<Vec<SavepointView>, ControlError> {
        let state = self.shared.lock();
        let job = visible(&state, access, id)?;
        Ok(job.savepoints.iter().map(|(_, s)| s.clone()).collect())
    }

    /// Savepoint `trigger` of job `id`.
    pub fn savepoint(
        &self,
        access: &Access,
        id: u64,
        trigger: &str,
    ) -> Result<SavepointView, ControlError> {
        let state = self.shared.lock();
        let job = visible(&state, access, id)?;
        let found = job.savepoints.iter().find(|(_, s)| s.trigger == trigger);
        found
            .map(|(_, s)| s.clone())
            .ok_or_else(|| ControlError::NoSavepoint {
                job: id,
                trigger: trigger.to_owned(),
            })
    }

    /// Job `id`'s latest checkpoints and savepoints, oldest first.
    pub fn checkpoints(
        &self,
        access: &Access,
        id: u64,
    ) -> Result<Vec<CheckpointView>, ControlError> {
        let state = self.shared.lock();
        let job = visible(&state, access, id)?;
        let word = |yes: bool, a: &str, b: &str| if yes { a } else { b }.to_owned();
        Ok(job
            .checkpoints
            .values()
            .map(|c| CheckpointView {
                id: c.id,
                kind: word(c.savepoint, "savepoint", "checkpoint"),
                state: word(c.completed, "completed", "abandoned"),
                size_bytes: c.size_bytes,
                duration_ms: c.duration_ms,
                trigger_ms: c.trigger_ms,
            })
            .collect())
    }

    /// Job `id`'s failures, oldest first.
    pub fn exceptions(&self, access: &Access, id: u64) -> Result<Vec<ExceptionView>, ControlError> {
        let state = self.shared.lock();
        let job = visible(&state, access, id)?;
        Ok(job.exceptions.iter().cloned().collect())
    }

    /// The workers, with the jobs of `access` they run and their memory pools.
    pub fn workers(&self, access: &Access) -> Vec<WorkerView> {
        let state = self.shared.lock();
        state
            .workers
            .iter()
            .map(|(id, w)| {
                let mut jobs = BTreeSet::new();
                let mut pools: BTreeMap<String, (u64, u64)> = BTreeMap::new();
                for job in state.jobs.values() {
                    let runs_here = matches!(&job.state, JobState::Running { assigned, .. }
                        if assigned.contains_key(id));
                    if runs_here && access.sees(&job.tenant) {
                        jobs.insert(job.id);
                    }
                    for pool in job.reports.get(id).iter().flat_map(|r| &r.pools) {
                        let sum = pools.entry(pool.name.clone()).or_default();
                        sum.0 += pool.used;
                        sum.1 += pool.capacity;
                    }
                }
                WorkerView {
                    id: id.clone(),
                    data: w.data.to_string(),
                    slots: w.slots,
                    slots_free: w.slots.saturating_sub(w.used),
                    incarnation: w.incarnation,
                    heartbeat_ms_ago: w.last_seen.elapsed().as_millis() as u64,
                    jobs: jobs.into_iter().collect(),
                    pools: pools
                        .into_iter()
                        .map(|(name, (used, capacity))| PoolView {
                            name,
                            used,
                            capacity,
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

/// A job as submitted: its file, its components and where it starts from.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The job file's name.
    pub name: String,
    /// Its text.
    pub yaml: String,
    /// Each component it names, by its path under the plugin directory.
    pub components: Vec<(String, Vec<u8>)>,
    /// Where its first attempt starts from (later ones resume from the latest
    /// checkpoint).
    pub resume: Resume,
    /// The directory its relative paths resolve against, when not its own (a job
    /// that `eddy run` runs in its embedded cluster sees its files where they are).
    /// Only the process itself sets it: the REST API never does.
    pub base: Option<PathBuf>,
}

/// The path job file `file` is read as: where its relative paths resolve.
pub fn as_seen(file: &Path, base: Option<&Path>) -> PathBuf {
    match (base, file.file_name()) {
        (Some(base), Some(name)) => base.join(name),
        _ => file.to_owned(),
    }
}

/// A job file as its workers will see it, with its components under `dir`'s plugin
/// directory; errors name the file as submitted, not the coordinator's copy of it.
fn load(
    shared: &Shared,
    dir: &Path,
    name: &str,
    yaml: &str,
    components: &BTreeMap<String, String>,
    base: Option<&Path>,
) -> Result<Job, ControlError> {
    let invalid = invalid_in(dir);
    let file = materialize(&shared.blobs, dir, name, yaml, components).map_err(&invalid)?;
    let file = as_seen(&file, base);
    Job::parse(yaml, &file, Some(&dir.join("plugins"))).map_err(|e| invalid(e.to_string()))
}

/// A job file's error as its submitter sees it: without the coordinator's `dir`.
fn invalid_in(dir: &Path) -> impl Fn(String) -> ControlError {
    let prefix = format!("{}/", dir.display());
    move |e: String| ControlError::Invalid(e.replace(&prefix, ""))
}

/// The coordinator's entry of job `id` (its files in `dir`), planned: the slots it
/// needs and its graph.
fn entry(
    id: u64,
    dir: &Path,
    job: &Job,
    name: &str,
    yaml: String,
    components: BTreeMap<String, String>,
) -> Result<JobEntry, ControlError> {
    let plan = Plan::new(job).map_err(|e| invalid_in(dir)(e.to_string()))?;
    let slots = plan.stages.iter().map(|s| s.parallelism).max().unwrap_or(1);
    let graph = plan.graph(job);
    Ok(JobEntry::new(id, job, name, yaml, components, slots, graph))
}

/// Takes over the jobs the previous leaders left: each restarts from its latest
/// checkpoint (one never deployed waits for slots as if just submitted), its attempts
/// numbered after theirs.
pub(crate) fn recover(shared: &Shared, state: &mut State) -> Result<(), String> {
    let (jobs, highest) = shared.store.recover()?;
    state.next_job = state.next_job.max(highest);
    for (id, record, pointer) in jobs {
        let dir = shared.store.job_dir(id);
        let job = load(
            shared,
            &dir,
            &record.file,
            &record.yaml,
            &record.components,
            record.base.as_deref(),
        )
        .map_err(|e| format!("job {id}: {e}"))?;
        let mut entry = entry(id, &dir, &job, &record.file, record.yaml, record.components)
            .map_err(|e| format!("job {id}: {e}"))?;
        entry.resume = record.resume;
        entry.base = record.base;
        entry.submitted_ms = record.submitted_ms;
        entry.restarts = pointer.restarts;
        if let Some(attempt) = pointer.attempt {
            entry.attempt = attempt;
            entry.deployed = true;
            entry.state = JobState::Restarting {
                at: std::time::Instant::now(),
                reason: "the coordinator that ran it was lost".into(),
            };
        }
        tracing::info!(job = id, name = %entry.name, "job taken over");
        state.jobs.insert(id, entry);
    }
    Ok(())
}

/// Job `id` if `access` sees it; another tenant's job is as missing as one that never
/// was, so that ids do not leak.
fn visible<'a>(state: &'a State, access: &Access, id: u64) -> Result<&'a JobEntry, ControlError> {
    state
        .jobs
        .get(&id)
        .filter(|j| access.sees(&j.tenant))
        .ok_or(ControlError::NoJob(id))
}

/// `job`'s graph with its vertices' rates summed over the workers' latest reports.
fn graph(job: &JobEntry) -> GraphView {
    let vertices = job
        .graph
        .vertices
        .iter()
        .map(|v| {
            let samples: Vec<_> = job
                .reports
                .values()
                .flat_map(|r| r.nodes.iter().filter(|n| n.name == v.name))
                .collect();
            VertexView {
                name: v.name.clone(),
                role: v.role.clone(),
                parallelism: v.parallelism,
                records_in: samples.iter().map(|s| s.records_in).sum(),
                records_out: samples.iter().map(|s| s.records_out).sum(),
                records_in_per_s: samples.iter().map(|s| s.in_per_s).sum(),
                records_out_per_s: samples.iter().map(|s| s.out_per_s).sum(),
                // Each part's share is of all the vertex's subtasks.
                busy: samples.iter().map(|s| s.busy).sum::<f64>().min(1.0),
                backpressured: samples
                    .iter()
                    .map(|s| s.backpressured)
                    .sum::<f64>()
                    .min(1.0),
                // Every part must have reached an event time for the vertex to have.
                watermark_ms: if samples.is_empty() {
                    None
                } else {
                    samples
                        .iter()
                        .map(|s| s.watermark)
                        .collect::<Option<Vec<_>>>()
                        .and_then(|w| w.into_iter().min())
                },
            }
        })
        .collect();
    let edges = job
        .graph
        .edges
        .iter()
        .map(|e| EdgeView {
            from: e.from.clone(),
            to: e.to.clone(),
            exchange: e.exchange.clone(),
            chained: e.chained,
        })
        .collect();
    GraphView { vertices, edges }
}
