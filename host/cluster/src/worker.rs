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

use eddy_core::checkpoint::coordinator::Savepoints;
use eddy_core::exec::network::Network;
use eddy_core::metrics::JobMetrics;
use eddy_net::{DataPlane, Placement};

use crate::ClusterError;
use crate::blobs::Blobs;
use crate::coordinator::{HEARTBEAT_TIMEOUT, materialize};
use crate::reports::Reporter;
use crate::wire::{self, Deployment, Failure, Msg, Resume};

/// How often a worker says it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(300);
/// How long a starting worker keeps trying to reach its coordinator.
const CONNECT_FOR: Duration = Duration::from_secs(10);
/// How often a worker reports how its attempts are doing.
const REPORT: Duration = Duration::from_secs(1);

/// One attempt's part on this worker, as the executor runs it.
pub struct Attempt<'a> {
    /// The job file.
    pub job: &'a Path,
    /// The directory its components are in.
    pub plugins: &'a Path,
    /// Where it starts from.
    pub resume: &'a Resume,
    /// The directory the job's relative paths resolve against, when not its own.
    pub base: Option<&'a Path>,
    /// The other workers of the attempt, when it spans several.
    pub network: Option<&'a dyn Network>,
    /// Ends the input early and drains (Ctrl-C).
    pub stop: &'a AtomicBool,
    /// Set when the coordinator cancels the attempt: it ends at once.
    pub cancel: Arc<AtomicBool>,
    /// Called once the attempt's dataflow is built, with what the coordinator may
    /// look at and ask of it while it runs.
    pub started: &'a (dyn Fn(Live) + Sync),
}

/// What a running attempt offers the coordinator: its metrics, reported every
/// second, and its savepoints, taken when someone asks.
pub struct Live {
    /// The attempt's metrics on this worker.
    pub metrics: Arc<JobMetrics>,
    /// Takes savepoints (on the worker that leads the attempt's checkpoints).
    pub savepoints: Savepoints,
    /// How long a savepoint may take (the job's checkpoint timeout).
    pub savepoint_timeout: Duration,
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
    /// The coordinators' addresses (`host:port`, resolved at each attempt to connect,
    /// so a Kubernetes Service name follows its pods): the one that leads accepts
    /// workers (standbys do not listen); they are tried in turn.
    pub coordinators: Vec<String>,
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

/// One attempt's part running here.
struct Part {
    /// Set to cancel it.
    cancel: Arc<AtomicBool>,
    /// Once its dataflow is built.
    live: Option<Live>,
}

/// The attempts' parts running here, by job and attempt.
type Running = Arc<Mutex<HashMap<(u64, u32), Part>>>;

/// How long a savepoint request waits for an attempt that is still starting.
const START_WAIT: Duration = Duration::from_secs(60);

/// The savepoint trigger of part `key` once it runs, waiting for it while it starts;
/// why not when it is not there or does not start within [`START_WAIT`].
fn live_savepoints(running: &Running, key: (u64, u32)) -> Result<(Savepoints, Duration), String> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        match lock(running).get(&key).map(|p| p.live.as_ref()) {
            None => return Err("is not running".into()),
            Some(Some(live)) => return Ok((live.savepoints.clone(), live.savepoint_timeout)),
            Some(None) if Instant::now() > deadline => {
                return Err(format!("did not start within {START_WAIT:?}"));
            }
            Some(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

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
    reporter: Arc<Mutex<Reporter>>,
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
    let mut stream = connect(&config.coordinators)?;
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
        reporter: Arc::default(),
        arrivals: Arc::default(),
    };
    let reporting = (
        worker.output.clone(),
        worker.running.clone(),
        worker.reporter.clone(),
    );
    std::thread::Builder::new()
        .name("eddy-report".into())
        .spawn(move || report(&reporting.0, &reporting.1, &reporting.2, stop))
        .map_err(ClusterError::Thread)?;
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
            match reach(&config.coordinators) {
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
        for part in lock(&self.running).values() {
            part.cancel.store(true, Ordering::SeqCst);
        }
    }

    /// Takes a savepoint of attempt `attempt` of job `job` on a thread of its own, and
    /// tells the coordinator how it went. An attempt still starting (fetching its
    /// components, restoring its state) takes it once it runs.
    fn savepoint(&self, job: u64, attempt: u32, trigger: String, stop: bool) {
        let running = self.running.clone();
        let reporter = self.reporter.clone();
        let output = self.output.clone();
        let me = self.config.id.clone();
        let _ = std::thread::Builder::new()
            .name(format!("eddy-savepoint-{job}"))
            .spawn(move || {
                let result = live_savepoints(&running, (job, attempt))
                    .map_err(|why| format!("attempt {attempt} of job {job} {why} on worker {me}"))
                    .and_then(|(savepoints, timeout)| {
                        savepoints
                            .trigger(stop, timeout)
                            .map(|dir| dir.display().to_string())
                    });
                report_now(&output, &running, &reporter, (job, attempt));
                let done = Msg::SavepointDone {
                    job,
                    trigger,
                    result,
                };
                let _ = send_on(&output, &done);
            });
    }

    /// Registers over `stream` and serves the coordinator until `stop` (`Ok`) or until
    /// the connection is lost (the reason).
    fn session(&self, stream: TcpStream) -> Result<(), String> {
        let config = self.config;
        let _ = stream.set_nodelay(true);
        let coordinator = stream.peer_addr().map_err(|e| e.to_string())?;
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
        tracing::info!(worker = %config.id, slots = config.slots, "registered with {coordinator}");
        let mut input = BufReader::new(stream);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let (msg, payload) = wire::read(&mut input).map_err(|e| e.to_string())?;
            match msg {
                Msg::Deploy(deployment) => self.start(*deployment),
                Msg::Cancel { job, attempt } => {
                    if let Some(part) = lock(&self.running).get(&(job, attempt)) {
                        part.cancel.store(true, Ordering::SeqCst);
                    }
                }
                Msg::Savepoint {
                    job,
                    attempt,
                    trigger,
                    stop,
                } => self.savepoint(job, attempt, trigger, stop),
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
        let output_end = self.output.clone();
        let send = move |msg: &Msg| send_on(&output, msg);
        let (blobs, arrivals) = (self.blobs.clone(), self.arrivals.clone());
        let (executor, plane) = (self.executor.clone(), self.plane.clone());
        let (me, dir, stop) = (self.config.id.clone(), self.config.dir.clone(), self.stop);
        let key = (deployment.job, deployment.attempt);
        let cancel = Arc::new(AtomicBool::new(false));
        let part = Part {
            cancel: cancel.clone(),
            live: None,
        };
        lock(&self.running).insert(key, part);
        let running = self.running.clone();
        let reporter = self.reporter.clone();
        let _ = std::thread::Builder::new()
            .name(format!("eddy-job-{}", deployment.job))
            .spawn(move || {
                // A cancelled earlier attempt of the job ends before this one
                // starts, so that it cannot commit behind the new one's back.
                let earlier = |r: &HashMap<(u64, u32), Part>| {
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
                            resume: &deployment.resume,
                            base: deployment.base.as_deref(),
                            network: placement.as_ref().map(|p| p as &dyn Network),
                            stop,
                            cancel,
                            started: &|live| {
                                if let Some(part) = lock(&running).get_mut(&key) {
                                    part.live = Some(live);
                                }
                            },
                        })
                    })
                    .err();
                // Its last checkpoints (a final savepoint among them) are reported
                // before it is said to have ended.
                report_now(&output_end, &running, &reporter, key);
                lock(&reporter).forget(key);
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

/// Reports every second how each attempt running here is doing, until `stop`.
fn report(output: &Output, running: &Running, reporter: &Mutex<Reporter>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(REPORT);
        let live: Vec<((u64, u32), Arc<JobMetrics>)> = lock(running)
            .iter()
            .filter_map(|(key, part)| Some((*key, part.live.as_ref()?.metrics.clone())))
            .collect();
        let mut reporter = lock(reporter);
        reporter.keep(|key| live.iter().any(|(k, _)| k == key));
        for (key, metrics) in live {
            let _ = send_on(
                output,
                &Msg::Report(Box::new(reporter.report(key, &metrics))),
            );
        }
    }
}

/// Sends the report of part `key` now, if it runs: its checkpoints and savepoints
/// reach the coordinator without waiting for the next round.
fn report_now(output: &Output, running: &Running, reporter: &Mutex<Reporter>, key: (u64, u32)) {
    let metrics = lock(running)
        .get(&key)
        .and_then(|p| Some(p.live.as_ref()?.metrics.clone()));
    if let Some(metrics) = metrics {
        let report = lock(reporter).report(key, &metrics);
        let _ = send_on(output, &Msg::Report(Box::new(report)));
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
fn connect(addrs: &[String]) -> Result<TcpStream, ClusterError> {
    let deadline = Instant::now() + CONNECT_FOR;
    loop {
        match reach(addrs) {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() >= deadline => return Err(ClusterError::Coordinator(e)),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The first of `addrs` that accepts a connection: the leading coordinator.
fn reach(addrs: &[String]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::other("no coordinator address");
    for addr in addrs {
        match TcpStream::connect(addr.as_str()) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
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
