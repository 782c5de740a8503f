//! The worker: registers its slots with the coordinator, heartbeats, fetches the
//! components a deployment names (once each, by SHA-256), and runs each attempt it is
//! given through an [`Executor`], reporting how it ended.
//!
//! A worker that loses its coordinator (its connection ends, or the coordinator stays
//! silent for [`HEARTBEAT_TIMEOUT`]) lets its attempts run on for the configured
//! coordinator timeout while it tries to reach it again, then cancels them: they end
//! without publishing anything past their last checkpoint. When it is back, it cancels
//! what still runs (the coordinator restarted those jobs from their checkpoints) and
//! registers again, offering its slots.

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
use crate::coordinator::{HEARTBEAT_TIMEOUT, materialize};
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
    /// How long its attempts run on after the coordinator is lost.
    pub coordinator_timeout: Duration,
}

/// The cancel flags of the attempts running here, by job and attempt.
type Running = Arc<Mutex<HashMap<(u64, u32), Arc<AtomicBool>>>>;

/// Components the worker waits for, by SHA-256.
#[derive(Default)]
struct Arrivals {
    arrived: Mutex<HashMap<String, Result<(), String>>>,
    changed: Condvar,
}

/// The connection to the coordinator, when there is one.
type Output = Arc<Mutex<Option<TcpStream>>>;

/// Sends `msg` to the coordinator, if connected.
fn send_on(output: &Output, msg: &Msg) -> Result<(), wire::WireError> {
    match lock(output).as_mut() {
        Some(out) => wire::write(out, msg, &[]),
        None => Err(wire::WireError::Io(std::io::Error::from(
            std::io::ErrorKind::NotConnected,
        ))),
    }
}

/// What one worker process keeps across its connections to the coordinator.
struct Worker<'a> {
    config: &'a WorkerConfig,
    executor: Arc<dyn Executor>,
    stop: &'static AtomicBool,
    blobs: Blobs,
    plane: Arc<DataPlane>,
    incarnation: u64,
    output: Output,
    running: Running,
    arrivals: Arc<Arrivals>,
}

/// Serves as a worker until `stop` is set; an error only if the coordinator cannot be
/// reached at the start.
pub fn run_worker(
    config: &WorkerConfig,
    executor: Arc<dyn Executor>,
    stop: &'static AtomicBool,
) -> Result<(), ClusterError> {
    let blobs = Blobs::open(&config.dir.join("blobs")).map_err(|e| ClusterError::Dir {
        path: config.dir.clone(),
        error: e,
    })?;
    let mut stream = connect(config.coordinator)?;
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let plane = Arc::new(
        DataPlane::bind(&config.id, incarnation, config.data)
            .map_err(|e| ClusterError::Lost(e.to_string()))?,
    );
    let worker = Worker {
        config,
        executor,
        stop,
        blobs,
        plane,
        incarnation,
        output: Arc::default(),
        running: Arc::default(),
        arrivals: Arc::default(),
    };
    let heartbeat = worker.output.clone();
    std::thread::Builder::new()
        .name("eddy-heartbeat".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = send_on(&heartbeat, &Msg::Heartbeat);
                std::thread::sleep(HEARTBEAT);
            }
        })
        .map_err(ClusterError::Thread)?;
    loop {
        let reason = match worker.session(stream) {
            Ok(()) => return Ok(()),
            Err(reason) => reason,
        };
        *lock(&worker.output) = None;
        let timeout = config.coordinator_timeout;
        tracing::warn!(
            "lost the coordinator ({reason}); the attempts here run on for at most \
             {timeout:?} while it is reached again"
        );
        let lost = Instant::now();
        let mut cancelled = false;
        stream = loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if !cancelled && lost.elapsed() >= timeout {
                tracing::warn!(
                    "the coordinator stayed away for {timeout:?}: cancelling the attempts here"
                );
                worker.cancel_all();
                cancelled = true;
            }
            match TcpStream::connect(config.coordinator) {
                Ok(stream) => break stream,
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        // The coordinator restarted what ran here from its checkpoints (or does not
        // know it at all): nothing of the old attempts may commit behind its back.
        worker.cancel_all();
        tracing::info!("reached the coordinator again");
    }
}

impl Worker<'_> {
    /// Cancels every attempt running here.
    fn cancel_all(&self) {
        for cancel in lock(&self.running).values() {
            cancel.store(true, Ordering::SeqCst);
        }
    }

    /// Registers over `stream` and serves the coordinator until `stop` (`Ok`) or until
    /// the connection is lost (the reason).
    fn session(&self, stream: TcpStream) -> Result<(), String> {
        let config = self.config;
        let _ = stream.set_nodelay(true);
        // The coordinator sends a heartbeat every tick: silence means it is gone.
        stream
            .set_read_timeout(Some(HEARTBEAT_TIMEOUT))
            .map_err(|e| e.to_string())?;
        *lock(&self.output) = Some(stream.try_clone().map_err(|e| e.to_string())?);
        send_on(
            &self.output,
            &Msg::Register {
                worker: config.id.clone(),
                incarnation: self.incarnation,
                slots: config.slots,
                data: self.plane.local_addr(),
            },
        )
        .map_err(|e| e.to_string())?;
        tracing::info!(worker = %config.id, slots = config.slots, "registered with {}", config.coordinator);
        let mut input = BufReader::new(stream);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let (msg, payload) = wire::read(&mut input).map_err(|e| e.to_string())?;
            match msg {
                Msg::Deploy(deployment) => self.start(*deployment),
                Msg::Cancel { job, attempt } => {
                    if let Some(cancel) = lock(&self.running).get(&(job, attempt)) {
                        cancel.store(true, Ordering::SeqCst);
                    }
                }
                Msg::Blob { sha256 } => {
                    let kept = self
                        .blobs
                        .put(&payload)
                        .map_err(|e| e.to_string())
                        .and_then(|sha| {
                            (sha == sha256)
                                .then_some(())
                                .ok_or_else(|| format!("component {sha256} arrived corrupt"))
                        });
                    arrive(&self.arrivals, sha256, kept);
                }
                Msg::Missing { sha256, message } => arrive(&self.arrivals, sha256, Err(message)),
                Msg::Heartbeat => {}
                other => tracing::warn!("unexpected message from the coordinator: {other:?}"),
            }
        }
    }

    /// Runs this worker's part of `deployment` on a thread of its own.
    fn start(&self, deployment: Deployment) {
        let output = self.output.clone();
        let send = move |msg: &Msg| send_on(&output, msg);
        let (blobs, arrivals) = (self.blobs.clone(), self.arrivals.clone());
        let (executor, plane) = (self.executor.clone(), self.plane.clone());
        let (me, dir, stop) = (self.config.id.clone(), self.config.dir.clone(), self.stop);
        let key = (deployment.job, deployment.attempt);
        let cancel = Arc::new(AtomicBool::new(false));
        lock(&self.running).insert(key, cancel.clone());
        let running = self.running.clone();
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
                let failure = deploy(&deployment, &dir, &blobs, &arrivals, &send, &cancel)
                    .and_then(|(job, plugins)| {
                        let placement = spans(&deployment, &me).then(|| {
                            let slots = deployment
                                .slots
                                .iter()
                                .map(|s| (s.worker.clone(), s.data))
                                .collect();
                            let attempt = deployment.job << 20 | u64::from(deployment.attempt);
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
                    tracing::warn!("attempt {attempt} of job {job} failed here: {}", f.message);
                }
                let _ = send(&Msg::Ended {
                    job: deployment.job,
                    attempt: deployment.attempt,
                    failure,
                });
            });
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
/// directory of its own; returns the job file and the plugin directory. Gives up
/// when the attempt is cancelled meanwhile (the coordinator that would send them may
/// be gone).
fn deploy(
    d: &Deployment,
    dir: &Path,
    blobs: &Blobs,
    arrivals: &Arrivals,
    send: &impl Fn(&Msg) -> Result<(), wire::WireError>,
    cancel: &AtomicBool,
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
        let deadline = Instant::now() + Duration::from_secs(30);
        let result = loop {
            if let Some(result) = arrived.remove(sha) {
                break result;
            }
            if cancel.load(Ordering::SeqCst) {
                break Err(format!("cancelled while component {sha} was on its way"));
            }
            if Instant::now() >= deadline {
                break Err(format!("component {sha} did not arrive"));
            }
            arrived = arrivals
                .changed
                .wait_timeout(arrived, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        result.map_err(failure)?;
    }
    let job_dir = dir.join("jobs").join(format!("{}-{}", d.job, d.attempt));
    let job = materialize(blobs, &job_dir, &d.file, &d.yaml, &d.components).map_err(failure)?;
    Ok((job, job_dir.join("plugins")))
}
