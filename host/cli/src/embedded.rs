//! `eddy run --ui`: the jobs run in a cluster embedded in this process (a coordinator
//! and one worker with room for all of them), so that the REST API, the dashboard and
//! the client commands (`eddy status`, `eddy savepoint`, …) work on a one-command start
//! exactly as on a cluster. It ends when every job has ended; Ctrl-C cancels them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use eddy_cluster::{Coordinator, Options, Resume, WorkerConfig};
use eddy_core::Job;
use eddy_core::exec::plan::Plan;
use eddy_core::tenant::{Access, Tenants};
use eddy_rest::Rest;

use crate::Env;
use crate::cluster::LocalExecutor;

/// How long the API stays up after a job stopped with a savepoint ended.
const STOPPED_LINGER: Duration = Duration::from_secs(3);

/// The embedded worker leaves only with the process: its attempts end through the
/// coordinator (finished, or cancelled on Ctrl-C).
static WORKER_STAYS: AtomicBool = AtomicBool::new(false);

/// Runs `jobs` (loaded from `files`) in an embedded cluster serving its API on `addr`,
/// each starting from `resume`, until every one has ended.
pub fn run(
    files: &[PathBuf],
    jobs: &[Job],
    env: &Env,
    addr: SocketAddr,
    resume: &Resume,
) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("eddy-run-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(dir.clone());
    let tenants = match &env.tenants {
        Some(path) => Tenants::load(path)?,
        None => Tenants::local(),
    };
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let coordinator =
        Coordinator::start(any, &dir.join("coordinator"), Options::for_tenants(tenants))?;
    let rest = Rest::start(coordinator.clone(), addr)?;
    eprintln!(
        "eddy: dashboard and REST API on http://{}",
        rest.local_addr()
    );
    let mut slots = 0;
    for job in jobs {
        slots += Plan::new(job)?
            .stages
            .iter()
            .map(|s| s.parallelism)
            .max()
            .unwrap_or(1);
    }
    let config = WorkerConfig {
        coordinators: vec![coordinator.local_addr().to_string()],
        id: "local".into(),
        slots,
        data: any,
        dir: dir.join("worker"),
        coordinator_timeout: Duration::from_secs(10),
    };
    std::thread::Builder::new()
        .name("eddy-worker".into())
        .spawn(move || {
            let executor = Arc::new(LocalExecutor { exposition: None });
            if let Err(e) = eddy_cluster::run_worker(&config, executor, &WORKER_STAYS) {
                tracing::error!("the embedded worker stopped: {e}");
            }
        })?;
    let mut ids = Vec::new();
    for file in files {
        let mut submission =
            crate::client::submission(file, env.plugin_dir.as_deref(), resume.clone())?;
        // Its files are where `eddy run` would see them.
        let dir = file.parent().unwrap_or(Path::new("."));
        submission.base = Some(crate::client::absolute(dir)?);
        let id = coordinator
            .submit(&Access::Admin, submission)
            .with_context(|| format!("{}", file.display()))?;
        ids.push((file, id));
    }
    let mut cancelled = false;
    let ended = loop {
        let views = coordinator.jobs(&Access::Admin);
        if views
            .iter()
            .all(|j| matches!(j.state.as_str(), "finished" | "failed" | "cancelled"))
        {
            break views;
        }
        if crate::STOP.load(Ordering::Relaxed) && !cancelled {
            for (_, id) in &ids {
                let _ = coordinator.cancel(&Access::Admin, *id);
            }
            cancelled = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // A job stopped with a savepoint ends right after it: the client that asked is still
    // polling for the savepoint's directory, so the API stays up a moment for it.
    let stopped = ids.iter().any(|(_, id)| {
        coordinator
            .savepoints(&Access::Admin, *id)
            .is_ok_and(|s| s.iter().any(|s| s.stop))
    });
    if stopped && !crate::STOP.load(Ordering::Relaxed) {
        std::thread::sleep(STOPPED_LINGER);
    }
    let mut failed = 0;
    for ((file, _), job) in ids.iter().zip(&ended) {
        let reason = job
            .reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        eprintln!(
            "{}: job {:?} {}{reason}",
            file.display(),
            job.name,
            job.state
        );
        failed += usize::from(job.state == "failed");
    }
    if failed > 0 {
        bail!("{failed} of {} jobs failed", ended.len());
    }
    Ok(())
}

/// Removes the embedded cluster's directory when the run ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
