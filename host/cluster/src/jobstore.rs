//! What the leading coordinator keeps of each job so that the next leader recovers it:
//! a record file in the coordinators' shared directory (the job file, its components'
//! SHA-256s, where it starts from) and, in the high-availability store, a pointer to
//! it with the job's latest attempt. Every pointer write is fenced by the leader's
//! epoch; so is every deployment, which writes the attempt first.
//!
//! A job that reached a terminal state is cleaned up in two steps: its pointer is
//! marked for cleanup, its files are removed, then the pointer is. A cleanup cut short
//! by a failover is finished by the next leader.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::coordinator::JobEntry;
use crate::ha::{HaError, Leader};
use crate::wire::Resume;

/// A job as submitted, as its record file keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub(crate) file: String,
    pub(crate) yaml: String,
    pub(crate) components: BTreeMap<String, String>,
    pub(crate) resume: Resume,
    pub(crate) base: Option<PathBuf>,
    pub(crate) submitted_ms: u64,
}

/// A job's pointer in the high-availability store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pointer {
    /// Its record file, relative to the coordinators' directory.
    pub(crate) record: String,
    /// Its latest attempt, if one was deployed.
    pub(crate) attempt: Option<u32>,
    /// The restarts its strategy has counted.
    pub(crate) restarts: u32,
    /// It ended: what is left of it is being removed.
    pub(crate) cleanup: bool,
}

/// A job the previous leaders left: its id, record and pointer.
pub(crate) type Recovered = (u64, JobRecord, Pointer);

/// The jobs' records and pointers of a leading coordinator.
pub(crate) struct JobStore {
    leader: Option<Leader>,
    dir: PathBuf,
}

/// The key of the counter that keeps job ids unique across leaders.
const COUNTER: &str = "job-counter";

fn key(id: u64) -> String {
    format!("jobs/{id}")
}

impl JobStore {
    /// The store of a coordinator keeping its files under `dir`; without a leader
    /// (no high availability) it keeps nothing.
    pub(crate) fn new(leader: Option<Leader>, dir: &Path) -> JobStore {
        JobStore {
            leader,
            dir: dir.to_owned(),
        }
    }

    /// The directory of job `id`'s files.
    pub(crate) fn job_dir(&self, id: u64) -> PathBuf {
        self.dir.join("jobs").join(id.to_string())
    }

    fn record_path(id: u64) -> String {
        format!("jobs/{id}/record.json")
    }

    fn point(&self, leader: &Leader, job: &JobEntry, cleanup: bool) -> Result<(), HaError> {
        let pointer = Pointer {
            record: Self::record_path(job.id),
            attempt: job.deployed.then_some(job.attempt),
            restarts: job.restarts,
            cleanup,
        };
        let value = serde_json::to_vec(&pointer).unwrap_or_default();
        leader.put(&key(job.id), &value)
    }

    /// Job `job` was admitted: its record, then its pointer (and the id counter).
    pub(crate) fn submitted(&self, job: &JobEntry) -> Result<(), String> {
        let Some(leader) = &self.leader else {
            return Ok(());
        };
        let record = JobRecord {
            file: job.file.clone(),
            yaml: job.yaml.clone(),
            components: job.components.clone(),
            resume: job.resume.clone(),
            base: job.base.clone(),
            submitted_ms: job.submitted_ms,
        };
        let path = self.dir.join(Self::record_path(job.id));
        let text = serde_json::to_vec_pretty(&record).unwrap_or_default();
        write_durably(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
        leader
            .put(COUNTER, job.id.to_string().as_bytes())
            .and_then(|()| self.point(leader, job, false))
            .map_err(|e| e.to_string())
    }

    /// An attempt of `job` is about to be deployed: its number is kept first, so that
    /// a later leader's attempts come after it, and a deposed leader deploys nothing.
    pub(crate) fn deploying(&self, job: &JobEntry) -> Result<(), String> {
        match &self.leader {
            Some(leader) => self.point(leader, job, false).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Job `job` reached a terminal state: its files and pointer are removed.
    pub(crate) fn ended(&self, job: &JobEntry) -> Result<(), String> {
        let Some(leader) = &self.leader else {
            return Ok(());
        };
        self.point(leader, job, true).map_err(|e| e.to_string())?;
        self.clean(leader, job.id)
    }

    fn clean(&self, leader: &Leader, id: u64) -> Result<(), String> {
        let dir = self.job_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
        leader.delete(&key(id)).map_err(|e| e.to_string())
    }

    /// What the previous leaders left: the jobs to take over, and the highest job id
    /// handed out. Cleanups cut short are finished first.
    pub(crate) fn recover(&self) -> Result<(Vec<Recovered>, u64), String> {
        let Some(leader) = &self.leader else {
            return Ok((Vec::new(), 0));
        };
        let counter = leader
            .list(COUNTER)
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|(k, _)| k == COUNTER)
            .and_then(|(_, v)| String::from_utf8_lossy(&v).parse::<u64>().ok())
            .unwrap_or(0);
        let mut jobs = Vec::new();
        for (k, value) in leader.list("jobs/").map_err(|e| e.to_string())? {
            let Some(id) = k.strip_prefix("jobs/").and_then(|i| i.parse::<u64>().ok()) else {
                continue;
            };
            let pointer: Pointer = serde_json::from_slice(&value)
                .map_err(|e| format!("the pointer of job {id}: {e}"))?;
            if pointer.cleanup {
                tracing::info!(job = id, "finishing the cleanup of an ended job");
                self.clean(leader, id)?;
                continue;
            }
            let path = self.dir.join(&pointer.record);
            let record = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                .map_err(|e| format!("the record of job {id}, {}: {e}", path.display()))?;
            jobs.push((id, record, pointer));
        }
        let highest = jobs.iter().map(|(id, ..)| *id).max().unwrap_or(0);
        Ok((jobs, counter.max(highest)))
    }
}

/// Writes `bytes` to `path` through a temporary file, synced, so that a reader never
/// sees half of it.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
