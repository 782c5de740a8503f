//! The cluster roles of the binary (`eddy coordinator`, `eddy worker`) and the client
//! commands that call a coordinator's REST API (`eddy submit`, `list`, `status`,
//! `cancel`, `savepoint`, `checkpoints`). A worker runs each attempt it is given as
//! `eddy run` runs a job, once: restarts are the coordinator's.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use eddy_cluster::ha::{Etcd, HaSpec, HaStore, Leader};
use eddy_cluster::provision::Native;
use eddy_cluster::wire::Failure;
use eddy_cluster::{Attempt, Coordinator, Executor, Live, Options, Resume, WorkerConfig, as_seen};
use eddy_core::http::{Router, Server};
use eddy_core::memory::Pools;
use eddy_core::metrics::Exposition;
use eddy_core::tenant::Tenants;
use eddy_core::{BuildOptions, Dataflow, ErrorClass, Job};
use eddy_kube::{PodTemplate, WorkerPods};
use eddy_rest::Rest;

use crate::client::{self, Client, Remote};

/// The cluster's commands.
#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Run a coordinator: it accepts jobs, schedules them onto workers' slots and
    /// restarts them from their latest checkpoint when a worker is lost. It serves the
    /// REST API and the web dashboard.
    Coordinator {
        /// Address workers connect to.
        #[arg(long, default_value = "127.0.0.1:6123")]
        listen: SocketAddr,
        /// Address of the REST API and the web dashboard.
        #[arg(long, default_value = "127.0.0.1:8081")]
        rest: SocketAddr,
        /// Where it keeps components and job files; with high availability, a directory
        /// every coordinator of the cluster shares.
        #[arg(long, default_value = "eddy-coordinator")]
        dir: PathBuf,
        /// High availability: `none` (one coordinator; a restarted one has no jobs) or
        /// `etcd:http://host:port[,...]` (coordinators elect a leader; the others stand
        /// by and take over its jobs when it is lost).
        #[arg(long, env = "EDDY_HA", default_value = "none", value_parser = HaSpec::parse)]
        ha: HaSpec,
        /// The cluster's name in the high-availability store: coordinators of the same
        /// cluster elect one leader among them.
        #[arg(long, env = "EDDY_CLUSTER_ID", default_value = "default")]
        cluster_id: String,
        /// How long a lost leader keeps the leadership before a standby takes over.
        #[arg(long, default_value = "5s", value_parser = eddy_core::job::span::Span::parse)]
        lease: eddy_core::job::span::Span,
        /// Tenants, their API tokens (hashed) and quotas (YAML); without it the API
        /// needs no token and every tenant runs unrestricted.
        #[arg(long, env = "EDDY_TENANTS")]
        tenants: Option<PathBuf>,
        #[command(flatten)]
        native: NativeArgs,
    },
    /// Run a worker: it offers its slots to the coordinator and runs what it is given.
    Worker {
        /// The coordinators' addresses (`host:port`), comma-separated: it registers with
        /// the one that leads (standbys do not listen).
        #[arg(long, value_delimiter = ',', required = true)]
        coordinator: Vec<String>,
        /// Subtasks of each stage it runs at once.
        #[arg(long, default_value_t = 2)]
        slots: u32,
        /// Its identity (default: the host name and process id).
        #[arg(long)]
        id: Option<String>,
        /// Its working directory: the component cache and the deployed jobs.
        #[arg(long, default_value = "eddy-worker")]
        dir: PathBuf,
        /// Where its data plane listens for other workers (port 0 picks one); the
        /// address must be one the other workers reach.
        #[arg(long, default_value = "127.0.0.1:0")]
        data: SocketAddr,
        /// How long its attempts run on after it lost the coordinator, while it tries
        /// to reach it again; then they are cancelled.
        #[arg(long, default_value = "10s", value_parser = eddy_core::job::span::Span::parse)]
        coordinator_timeout: eddy_core::job::span::Span,
        /// Serve the metrics of the attempts it runs for Prometheus on this address.
        #[arg(long)]
        metrics: Option<SocketAddr>,
    },
    /// Submit a job to a cluster with the components it names; prints its id.
    Submit {
        /// The job file (YAML). Paths in it (sinks, checkpoints) are the workers'.
        job: PathBuf,
        /// Directory the job's plugin paths are resolved against (overrides the job's
        /// `plugin-dir`).
        #[arg(long, env = "EDDY_PLUGIN_DIR")]
        plugin_dir: Option<PathBuf>,
        /// Start from this savepoint (or checkpoint) directory, as the workers see it.
        #[arg(long, value_name = "DIR")]
        restore: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List a cluster's jobs and their states.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a job: its state, and each vertex's rates, load and watermark.
    Status {
        /// The job's id.
        job: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Cancel a job: its running parts end at once, publishing nothing more.
    Cancel {
        /// The job's id.
        job: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Take a savepoint of a running job (it needs a `checkpoints` section) and wait for
    /// it; prints its directory, which `eddy submit --restore DIR` (or `eddy run
    /// --restore DIR`) starts from.
    Savepoint {
        /// The job's id.
        job: u64,
        /// Stop the job once the savepoint has completed.
        #[arg(long)]
        stop: bool,
        /// How long to wait for it.
        #[arg(long, default_value = "10m", value_parser = eddy_core::job::span::Span::parse)]
        wait: eddy_core::job::span::Span,
        #[command(flatten)]
        remote: Remote,
    },
    /// List a job's latest checkpoints and savepoints.
    Checkpoints {
        /// The job's id.
        job: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Make an API token: prints the token (give it to its user) and its SHA-256 (put
    /// it in the tenants file, under the tenant's `tokens` or `admin-tokens`).
    Token,
}

/// Native mode: the coordinator starts workers as jobs need slots.
#[derive(clap::Args)]
pub struct NativeArgs {
    /// Start workers as pods through the Kubernetes API: `kubernetes` (in a pod) or
    /// `kubernetes:http://api-server`.
    #[arg(long, value_parser = HaSpec::parse)]
    native: Option<HaSpec>,
    /// The image of the worker pods.
    #[arg(long, default_value = "eddy:0.1.0")]
    worker_image: String,
    /// Slots of each worker pod.
    #[arg(long, default_value_t = 2)]
    worker_slots: u32,
    /// Cores per slot of a worker pod (a Kubernetes quantity).
    #[arg(long, default_value = "1")]
    worker_cpu: String,
    /// Memory per slot of a worker pod, in MiB.
    #[arg(long, default_value_t = 1024)]
    worker_memory_mib: u64,
    /// The coordinators' address the worker pods register with (a Service).
    #[arg(long, default_value = "eddy-coordinator:6123")]
    workers_reach: String,
    /// How long a worker pod no job uses lives on.
    #[arg(long, default_value = "30s", value_parser = eddy_core::job::span::Span::parse)]
    worker_idle: eddy_core::job::span::Span,
    /// The coordinators' Deployment, which owns the worker pods (deleting it deletes
    /// them).
    #[arg(long)]
    owner_deployment: Option<String>,
}

impl NativeArgs {
    /// Native mode as asked, for cluster `cluster`.
    fn open(self, cluster: &str) -> Result<Option<Native>> {
        let server = match self.native {
            None => return Ok(None),
            Some(HaSpec::Kubernetes(server)) => server,
            Some(other) => bail!("--native {other:?}: native mode runs on kubernetes only"),
        };
        let template = PodTemplate {
            cluster: cluster.to_owned(),
            image: self.worker_image,
            coordinator: self.workers_reach,
            slots: self.worker_slots,
            cpu_per_slot: self.worker_cpu,
            memory_mib_per_slot: self.worker_memory_mib,
            owner: self.owner_deployment,
        };
        let pods = WorkerPods::connect(server.as_deref(), template)?;
        Ok(Some(Native::new(Arc::new(pods), self.worker_idle.0)))
    }
}

impl ClusterCommand {
    /// Runs the command; the roles run until the process is stopped.
    pub fn run(self) -> Result<()> {
        match self {
            ClusterCommand::Coordinator {
                listen,
                rest,
                dir,
                ha,
                cluster_id,
                lease,
                tenants,
                native,
            } => {
                let tenants = match tenants {
                    Some(file) => Tenants::load(&file)?,
                    None => Tenants::local(),
                };
                let store: Option<Arc<dyn HaStore>> =
                    match ha {
                        HaSpec::None => None,
                        HaSpec::Etcd(endpoints) => {
                            Some(Arc::new(Etcd::new(endpoints, &cluster_id, lease.0)))
                        }
                        HaSpec::Kubernetes(server) => Some(Arc::new(
                            eddy_kube::KubeStore::connect(server.as_deref(), &cluster_id, lease.0)?,
                        )),
                    };
                // A standby waits here, serving nothing, until it leads.
                let leader = match store {
                    None => None,
                    Some(store) => match Leader::campaign(store, &incarnation(), &crate::STOP)? {
                        Some(leader) => Some(leader),
                        None => return Ok(()),
                    },
                };
                let options = Options {
                    tenants,
                    leader: leader.clone(),
                    native: native.open(&cluster_id)?,
                };
                let coordinator = Coordinator::start(listen, &dir, options)?;
                let rest = Rest::start(coordinator.clone(), rest)?;
                // The addresses alone on stdout, for scripts that let it pick ports:
                // the workers' first, then the REST API's.
                println!("{}", coordinator.local_addr());
                println!("http://{}", rest.local_addr());
                let Some(leader) = leader else {
                    wait_for_stop();
                    return Ok(());
                };
                // A leader that lost its lease stops acting at once: the process ends,
                // and its supervisor starts it again as a standby.
                match leader.lost(&crate::STOP) {
                    Some(why) => bail!("lost the leadership of the cluster: {why}"),
                    None => {
                        leader.resign();
                        Ok(())
                    }
                }
            }
            ClusterCommand::Worker {
                coordinator,
                slots,
                id,
                dir,
                data,
                coordinator_timeout,
                metrics,
            } => {
                let id = id.unwrap_or_else(|| format!("worker-{}", std::process::id()));
                let config = WorkerConfig {
                    coordinators: coordinator,
                    id,
                    slots,
                    dir,
                    data,
                    coordinator_timeout: coordinator_timeout.0,
                };
                let exposition = Arc::new(Exposition::default());
                let _server = match metrics {
                    Some(addr) => {
                        let server = Server::bind(&[addr], exposition.mount(Router::default()))?;
                        let bound = server.local_addr(addr).unwrap_or(addr);
                        tracing::info!("Prometheus metrics on http://{bound}/metrics");
                        Some(server)
                    }
                    None => None,
                };
                let executor = LocalExecutor {
                    exposition: metrics.map(|_| exposition),
                };
                eddy_cluster::run_worker(&config, Arc::new(executor), &crate::STOP)?;
                Ok(())
            }
            ClusterCommand::Submit {
                job,
                plugin_dir,
                restore,
                remote,
            } => {
                let resume = resume_of(restore.as_deref().map(std::path::Path::new));
                let submission = client::submission(&job, plugin_dir.as_deref(), resume)?;
                let id = Client::new(&remote).submit(&submission)?;
                client::print(remote.json, &serde_json::json!({ "id": id }), |_| {
                    format!("{id}\n")
                });
                Ok(())
            }
            ClusterCommand::List { remote } => {
                let jobs = Client::new(&remote).jobs()?;
                client::print(remote.json, &jobs, client::jobs_table);
                Ok(())
            }
            ClusterCommand::Status { job, remote } => {
                let job = Client::new(&remote).job(job)?;
                client::print(remote.json, &job, client::status_table);
                Ok(())
            }
            ClusterCommand::Cancel { job, remote } => {
                let view = Client::new(&remote).cancel(job)?;
                client::print(remote.json, &view, |v| {
                    format!("job {} {}\n", v.id, v.state)
                });
                Ok(())
            }
            ClusterCommand::Savepoint {
                job,
                stop,
                wait,
                remote,
            } => {
                let savepoint = Client::new(&remote).savepoint(job, stop, wait.0)?;
                client::print(remote.json, &savepoint, |s| {
                    format!("{}\n", s.location.clone().unwrap_or_default())
                });
                Ok(())
            }
            ClusterCommand::Checkpoints { job, remote } => {
                let checkpoints = Client::new(&remote).checkpoints(job)?;
                client::print(remote.json, &checkpoints, client::checkpoints_table);
                Ok(())
            }
            ClusterCommand::Token => {
                let mut bytes = [0u8; 24];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut bytes))
                    .context("reading /dev/urandom")?;
                let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                println!("token:  {token}");
                println!("sha256: {}", eddy_core::sha256(token.as_bytes()));
                Ok(())
            }
        }
    }
}

/// Blocks until Ctrl-C.
pub fn wait_for_stop() {
    while !crate::STOP.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs attempts in this process, as `eddy run` runs a job, without its restarts.
pub struct LocalExecutor {
    /// Where the attempts' metrics are served, if they are.
    pub exposition: Option<Arc<Exposition>>,
}

impl Executor for LocalExecutor {
    fn run(&self, attempt: Attempt<'_>) -> Result<(), Failure> {
        let Attempt {
            job,
            plugins,
            resume,
            base,
            network,
            stop,
            cancel,
            started,
        } = attempt;
        let fatal = |message: String| Failure {
            message,
            class: ErrorClass::USER_FATAL,
        };
        let text = std::fs::read_to_string(job).map_err(|e| Failure {
            message: format!("{}: {e}", job.display()),
            class: ErrorClass::of_io(&e),
        })?;
        let job = Job::parse(&text, &as_seen(job, base), Some(plugins))
            .map_err(|e| fatal(e.to_string()))?;
        let storage = crate::checkpoint_storage(&job).map_err(|e| Failure {
            message: format!("{e:#}"),
            class: ErrorClass::EXTERNAL,
        })?;
        let restored =
            crate::restore_point(&job, storage.as_ref(), resume).map_err(|e| Failure {
                message: e.to_string(),
                class: e.class(),
            })?;
        let pools = Arc::new(Pools::new(&job.memory));
        let runtime =
            crate::runtime(&job, Some(pools.clone())).map_err(|e| fatal(format!("{e:#}")))?;
        let registry = crate::registry(&runtime);
        let state = crate::state_backend(&job, &pools);
        let clock = Arc::new(eddy_core::time::SystemClock);
        let failed = |e: eddy_core::RunError| Failure {
            message: e.to_string(),
            class: e.class(),
        };
        let options = BuildOptions {
            clock: Some(clock),
            restore: restored.as_ref(),
            state: Some(state),
            network,
            cancel: Some(cancel),
            checkpoints: storage,
            ..BuildOptions::default()
        };
        let dataflow =
            Dataflow::build_with_options(&job, &registry, pools, options).map_err(failed)?;
        if let Some(exposition) = &self.exposition {
            exposition.publish(&job.name, dataflow.metrics());
        }
        started(Live {
            metrics: dataflow.metrics(),
            savepoints: dataflow.savepoints(),
            savepoint_timeout: job
                .checkpoints
                .as_ref()
                .map_or(Duration::ZERO, |c| c.timeout()),
        });
        let summary = dataflow.run(stop).map_err(failed)?;
        tracing::info!(job = %job.name, "attempt finished in {:?}", summary.elapsed);
        Ok(())
    }
}

/// Where an attempt of `job` starts, as `Resume` says; `None` from its beginning.
pub fn resume_of(restore: Option<&std::path::Path>) -> Resume {
    match restore {
        None => Resume::Beginning,
        Some(dir) if dir == std::path::Path::new("latest") => Resume::Latest,
        Some(dir) => Resume::From(dir.to_owned()),
    }
}

/// This process's identity in leader elections: unique to this incarnation, so that a
/// restarted coordinator never takes itself for its predecessor.
fn incarnation() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "coordinator".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{host}-{}-{nanos}", std::process::id())
}
