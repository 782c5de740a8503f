//! The worker: registers its slots with the coordinator, heartbeats, fetches the
//! components a deployment names (once each, by SHA-256), and runs each attempt it is
//! given through an [`Executor`], reporting how it ended.
//!
//! A worker that loses its coordinator stops: its attempts end without publishing
//! anything past their last checkpoint, and the coordinator restarts them elsewhere.

use std::collections::HashMap;
use std::io::BufReader;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::ClusterError;
use crate::blobs::Blobs;
use crate::coordinator::materialize;
use crate::wire::{self, Deployment, Failure, Msg};

/// How often a worker says it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(300);
/// How long a starting worker keeps trying to reach its coordinator.
const CONNECT_FOR: Duration = Duration::from_secs(10);

/// Runs one attempt of a job on this worker; the binary provides it, with the WASM
/// runtime, the state backends and the connectors.
pub trait Executor: Send + Sync + 'static {
    /// Runs the job in `job` (its components under `plugins`) to its end, from its
    /// latest checkpoint if `restore_latest`; `stop` ends its input early.
    fn run(
        &self,
        job: &Path,
        plugins: &Path,
        restore_latest: bool,
        stop: &AtomicBool,
    ) -> Result<(), Failure>;
}

/// Who a worker is and where it works.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The coordinator's address.
    pub coordinator: SocketAddr,
    /// The worker's identity.
    pub id: String,
    /// Slots it offers.
    pub slots: u32,
    /// Its working directory: the component cache and the deployed jobs.
    pub dir: PathBuf,
}

/// Components the worker waits for, by SHA-256.
#[derive(Default)]
struct Arrivals {
    arrived: Mutex<HashMap<String, Result<(), String>>>,
    changed: Condvar,
}

/// Serves as a worker until the coordinator is lost (an error) or `stop` is set.
pub fn run_worker(
    config: &WorkerConfig,
    executor: Arc<dyn Executor>,
    stop: &'static AtomicBool,
) -> Result<(), ClusterError> {
    let blobs = Blobs::open(&config.dir.join("blobs")).map_err(|e| ClusterError::Dir {
        path: config.dir.clone(),
        error: e,
    })?;
    let stream = connect(config.coordinator)?;
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let output = Arc::new(Mutex::new(
        stream.try_clone().map_err(ClusterError::Coordinator)?,
    ));
    let send = {
        let output = output.clone();
        move |msg: &Msg| -> Result<(), wire::WireError> {
            let mut out = output.lock().unwrap_or_else(|p| p.into_inner());
            wire::write(&mut *out, msg, &[])
        }
    };
    send(&Msg::Register {
        worker: config.id.clone(),
        incarnation,
        slots: config.slots,
    })
    .map_err(|e| ClusterError::Lost(e.to_string()))?;
    tracing::info!(worker = %config.id, slots = config.slots, "registered with {}", config.coordinator);
    let heartbeat = send.clone();
    let _ = std::thread::Builder::new()
        .name("eddy-heartbeat".into())
        .spawn(move || {
            while heartbeat(&Msg::Heartbeat).is_ok() {
                std::thread::sleep(HEARTBEAT);
            }
        });
    let arrivals = Arc::new(Arrivals::default());
    let mut input = BufReader::new(stream);
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let (msg, payload) =
            wire::read(&mut input).map_err(|e| ClusterError::Lost(e.to_string()))?;
        match msg {
            Msg::Deploy(deployment) => {
                let (send, blobs, arrivals) = (send.clone(), blobs.clone(), arrivals.clone());
                let executor = executor.clone();
                let dir = config.dir.clone();
                let _ = std::thread::Builder::new()
                    .name(format!("eddy-job-{}", deployment.job))
                    .spawn(move || {
                        let failure = deploy(&deployment, &dir, &blobs, &arrivals, &send)
                            .and_then(|(job, plugins)| {
                                executor.run(&job, &plugins, deployment.restore_latest, stop)
                            })
                            .err();
                        let _ = send(&Msg::Ended {
                            job: deployment.job,
                            attempt: deployment.attempt,
                            failure,
                        });
                    });
            }
            Msg::Blob { sha256 } => {
                let kept = blobs
                    .put(&payload)
                    .map_err(|e| e.to_string())
                    .and_then(|sha| {
                        (sha == sha256)
                            .then_some(())
                            .ok_or_else(|| format!("component {sha256} arrived corrupt"))
                    });
                arrive(&arrivals, sha256, kept);
            }
            Msg::Missing { sha256, message } => arrive(&arrivals, sha256, Err(message)),
            other => tracing::warn!("unexpected message from the coordinator: {other:?}"),
        }
    }
}

fn arrive(arrivals: &Arrivals, sha: String, result: Result<(), String>) {
    arrivals
        .arrived
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(sha, result);
    arrivals.changed.notify_all();
}

/// Connects to the coordinator, retrying while it starts.
fn connect(addr: SocketAddr) -> Result<TcpStream, ClusterError> {
    let deadline = Instant::now() + CONNECT_FOR;
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) if Instant::now() >= deadline => return Err(ClusterError::Coordinator(e)),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Fetches what the deployment's components lack here and lays the job out in a
/// directory of its own; returns the job file and the plugin directory.
fn deploy(
    d: &Deployment,
    dir: &Path,
    blobs: &Blobs,
    arrivals: &Arrivals,
    send: &impl Fn(&Msg) -> Result<(), wire::WireError>,
) -> Result<(PathBuf, PathBuf), Failure> {
    let failure = |message: String| Failure {
        message,
        class: eddy_core::ErrorClass::EXTERNAL,
    };
    for sha in d.components.values() {
        if blobs.has(sha) {
            continue;
        }
        send(&Msg::Fetch {
            sha256: sha.clone(),
        })
        .map_err(|e| failure(e.to_string()))?;
        let mut arrived = arrivals.arrived.lock().unwrap_or_else(|p| p.into_inner());
        let result = loop {
            if let Some(result) = arrived.remove(sha) {
                break result;
            }
            let (guard, timeout) = arrivals
                .changed
                .wait_timeout(arrived, Duration::from_secs(30))
                .unwrap_or_else(|p| p.into_inner());
            arrived = guard;
            if timeout.timed_out() {
                break Err(format!("component {sha} did not arrive"));
            }
        };
        result.map_err(failure)?;
    }
    let job_dir = dir.join("jobs").join(format!("{}-{}", d.job, d.attempt));
    let job = materialize(blobs, &job_dir, &d.file, &d.yaml, &d.components).map_err(failure)?;
    Ok((job, job_dir.join("plugins")))
}
