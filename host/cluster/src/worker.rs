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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eddy_core::exec::network::Network;
use eddy_net::{DataPlane, Placement};

use crate::ClusterError;
use crate::blobs::Blobs;
use crate::coordinator::materialize;
use crate::wire::{self, Deployment, Failure, Msg};

/// How often a worker says it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(300);
/// How long a starting worker keeps trying to reach its coordinator.
const CONNECT_FOR: Duration = Duration::from_secs(10);

/// One attempt's part on this worker, as the executor runs it.
pub struct Attempt<'a> {
    /// The job file.
    pub job: &'a Path,
    /// The directory its components are in.
    pub plugins: &'a Path,
    /// Whether to resume from the job's latest checkpoint.
    pub restore_latest: bool,
    /// The other workers of the attempt, when it spans several.
    pub network: Option<&'a dyn Network>,
    /// Ends the input early and drains (Ctrl-C).
    pub stop: &'a AtomicBool,
    /// Set when the coordinator cancels the attempt: it ends at once.
    pub cancel: Arc<AtomicBool>,
}

/// Runs one attempt of a job on this worker; the binary provides it, with the WASM
/// runtime, the state backends and the connectors.
pub trait Executor: Send + Sync + 'static {
    /// Runs this worker's part of the attempt to its end.
    fn run(&self, attempt: Attempt<'_>) -> Result<(), Failure>;
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
    /// Where its data plane listens (port 0 picks one).
    pub data: SocketAddr,
    /// Its working directory: the component cache and the deployed jobs.
    pub dir: PathBuf,
}

/// The cancel flags of the attempts running here, by job and attempt.
type Running = Arc<Mutex<HashMap<(u64, u32), Arc<AtomicBool>>>>;

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
    let plane = Arc::new(
        DataPlane::bind(&config.id, incarnation, config.data)
            .map_err(|e| ClusterError::Lost(e.to_string()))?,
    );
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
        data: plane.local_addr(),
    })
    .map_err(|e| ClusterError::Lost(e.to_string()))?;
    let running: Running = Arc::default();
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
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let (msg, payload) =
            wire::read(&mut input).map_err(|e| ClusterError::Lost(e.to_string()))?;
        match msg {
            Msg::Deploy(deployment) => {
                let (send, blobs, arrivals) = (send.clone(), blobs.clone(), arrivals.clone());
                let (executor, plane, me) = (executor.clone(), plane.clone(), config.id.clone());
                let dir = config.dir.clone();
                let key = (deployment.job, deployment.attempt);
                let cancel = Arc::new(AtomicBool::new(false));
                lock(&running).insert(key, cancel.clone());
                let running = running.clone();
                let _ = std::thread::Builder::new()
                    .name(format!("eddy-job-{}", deployment.job))
                    .spawn(move || {
                        // A cancelled earlier attempt of the job ends before this one
                        // starts, so that it cannot commit behind the new one's back.
                        let earlier = |r: &HashMap<(u64, u32), Arc<AtomicBool>>| {
                            r.keys().any(|(j, a)| *j == key.0 && *a < key.1)
                        };
                        let deadline = Instant::now() + Duration::from_secs(30);
                        while earlier(&lock(&running)) && Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        let failure = deploy(&deployment, &dir, &blobs, &arrivals, &send)
                            .and_then(|(job, plugins)| {
                                let placement = spans(&deployment, &me).then(|| {
                                    let slots = deployment
                                        .slots
                                        .iter()
                                        .map(|s| (s.worker.clone(), s.data))
                                        .collect();
                                    let attempt =
                                        deployment.job << 20 | u64::from(deployment.attempt);
                                    Placement::new(plane, &me, slots, attempt)
                                });
                                executor.run(Attempt {
                                    job: &job,
                                    plugins: &plugins,
                                    restore_latest: deployment.restore_latest,
                                    network: placement.as_ref().map(|p| p as &dyn Network),
                                    stop,
                                    cancel,
                                })
                            })
                            .err();
                        lock(&running).remove(&key);
                        if let Some(f) = &failure {
                            let (job, attempt) = key;
                            tracing::warn!(
                                "attempt {attempt} of job {job} failed here: {}",
                                f.message
                            );
                        }
                        let _ = send(&Msg::Ended {
                            job: deployment.job,
                            attempt: deployment.attempt,
                            failure,
                        });
                    });
            }
            Msg::Cancel { job, attempt } => {
                if let Some(cancel) = lock(&running).get(&(job, attempt)) {
                    cancel.store(true, Ordering::SeqCst);
                }
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

/// Whether an attempt has slots on workers other than `me`.
fn spans(d: &Deployment, me: &str) -> bool {
    d.slots.iter().any(|s| s.worker != me)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Entries are inserted and removed whole; a panic elsewhere leaves the map usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
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
