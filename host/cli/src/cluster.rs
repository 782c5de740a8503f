//! The cluster roles of the binary: `eddy coordinator`, `eddy worker`, and the client
//! commands `eddy submit` and `eddy jobs`. A worker runs each attempt it is given as
//! `eddy run` runs a job, once: restarts are the coordinator's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use eddy_cluster::wire::Failure;
use eddy_cluster::{Attempt, Coordinator, Executor, WorkerConfig, client};
use eddy_core::checkpoint::CheckpointError;
use eddy_core::memory::Pools;
use eddy_core::tenant::Tenants;
use eddy_core::{BuildOptions, Dataflow, ErrorClass, Job};

/// The cluster's commands.
#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Run a coordinator: it accepts jobs, schedules them onto workers' slots and
    /// restarts them from their latest checkpoint when a worker is lost.
    Coordinator {
        /// Address workers and clients connect to.
        #[arg(long, default_value = "127.0.0.1:6123")]
        listen: SocketAddr,
        /// Where it keeps components and job files.
        #[arg(long, default_value = "eddy-coordinator")]
        dir: PathBuf,
        /// Tenants and their quotas (YAML), `max-slots` holding cluster-wide; without
        /// it every tenant runs unrestricted.
        #[arg(long, env = "EDDY_TENANTS")]
        tenants: Option<PathBuf>,
    },
    /// Run a worker: it offers its slots to the coordinator and runs what it is given.
    Worker {
        /// The coordinator's address.
        #[arg(long)]
        coordinator: SocketAddr,
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
    },
    /// Submit a job to a coordinator, uploading the components it names; prints its id.
    Submit {
        /// The coordinator's address.
        #[arg(long)]
        coordinator: SocketAddr,
        /// Directory the job's plugin paths are resolved against.
        #[arg(long, env = "EDDY_PLUGIN_DIR", default_value = ".")]
        plugin_dir: PathBuf,
        /// The job file (YAML). Paths in it (sinks, checkpoints) are the workers'.
        job: PathBuf,
    },
    /// List a coordinator's jobs and their states.
    Jobs {
        /// The coordinator's address.
        #[arg(long)]
        coordinator: SocketAddr,
        /// As JSON, one job per line.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: its running parts end at once, publishing nothing more.
    Cancel {
        /// The coordinator's address.
        #[arg(long)]
        coordinator: SocketAddr,
        /// The job's id.
        job: u64,
    },
}

impl ClusterCommand {
    /// Runs the command; the roles run until the process is stopped.
    pub fn run(self) -> Result<()> {
        match self {
            ClusterCommand::Coordinator {
                listen,
                dir,
                tenants,
            } => {
                let tenants = match tenants {
                    Some(file) => Tenants::load(&file)?,
                    None => Tenants::local(),
                };
                let coordinator = Coordinator::start(listen, &dir, tenants)?;
                // The address alone on stdout, for scripts that let it pick a port.
                println!("{}", coordinator.local_addr());
                while !crate::STOP.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Ok(())
            }
            ClusterCommand::Worker {
                coordinator,
                slots,
                id,
                dir,
                data,
                coordinator_timeout,
            } => {
                let id = id.unwrap_or_else(|| format!("worker-{}", std::process::id()));
                let config = WorkerConfig {
                    coordinator,
                    id,
                    slots,
                    dir,
                    data,
                    coordinator_timeout: coordinator_timeout.0,
                };
                eddy_cluster::run_worker(&config, Arc::new(LocalExecutor), &crate::STOP)?;
                Ok(())
            }
            ClusterCommand::Submit {
                coordinator,
                plugin_dir,
                job,
            } => {
                let id = client::submit(coordinator, &job, &plugin_dir)?;
                println!("{id}");
                Ok(())
            }
            ClusterCommand::Cancel { coordinator, job } => {
                client::cancel(coordinator, job)?;
                Ok(())
            }
            ClusterCommand::Jobs { coordinator, json } => {
                for job in client::jobs(coordinator)? {
                    if json {
                        println!("{}", serde_json::to_string(&job)?);
                    } else {
                        println!(
                            "{:>4}  {:<20} {:<10} attempt {:<3} {}",
                            job.id,
                            job.name,
                            job.state,
                            job.attempt,
                            job.reason.unwrap_or_else(|| job.workers.join(","))
                        );
                    }
                }
                Ok(())
            }
        }
    }
}

/// Runs attempts in this process, as `eddy run` runs a job, without its restarts.
struct LocalExecutor;

impl Executor for LocalExecutor {
    fn run(&self, attempt: Attempt<'_>) -> Result<(), Failure> {
        let Attempt {
            job,
            plugins,
            restore_latest,
            network,
            stop,
            cancel,
        } = attempt;
        let fatal = |message: String| Failure {
            message,
            class: ErrorClass::USER_FATAL,
        };
        let job = Job::load(job, Some(plugins)).map_err(|e| fatal(e.to_string()))?;
        let storage = crate::checkpoint_storage(&job).map_err(|e| Failure {
            message: format!("{e:#}"),
            class: ErrorClass::EXTERNAL,
        })?;
        let restored = match (&storage, restore_latest) {
            (Some(storage), true) => match storage.latest() {
                Ok(restored) => Some(restored),
                Err(CheckpointError::NoneFound(_)) => None,
                Err(e) => {
                    return Err(Failure {
                        message: e.to_string(),
                        class: e.class(),
                    });
                }
            },
            _ => None,
        };
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
        let summary = dataflow.run(stop).map_err(failed)?;
        tracing::info!(job = %job.name, "attempt finished in {:?}", summary.elapsed);
        Ok(())
    }
}
