//! The cluster roles of the binary: `eddy coordinator`, `eddy worker`, and the client
//! commands `eddy submit` and `eddy jobs`. A worker runs each attempt it is given as
//! `eddy run` runs a job, once: restarts are the coordinator's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use eddy_cluster::wire::Failure;
use eddy_cluster::{Attempt, Coordinator, Executor, WorkerConfig, client};
use eddy_core::checkpoint::{CheckpointError, Storage};
use eddy_core::memory::Pools;
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
}

impl ClusterCommand {
    /// Runs the command; the roles run until the process is stopped.
    pub fn run(self) -> Result<()> {
        match self {
            ClusterCommand::Coordinator { listen, dir } => {
                let coordinator = Coordinator::start(listen, &dir)?;
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
            } => {
                let id = id.unwrap_or_else(|| format!("worker-{}", std::process::id()));
                let config = WorkerConfig {
                    coordinator,
                    id,
                    slots,
                    dir,
                    data,
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
        let restored = match (&job.checkpoints, restore_latest) {
            (Some(c), true) => {
                let storage =
                    Storage::new(c.dir.clone().unwrap_or_default(), &job.name, c.retain());
                match storage.latest() {
                    Ok(restored) => Some(restored),
                    Err(CheckpointError::NoneFound(_)) => None,
                    Err(e) => {
                        return Err(Failure {
                            message: e.to_string(),
                            class: e.class(),
                        });
                    }
                }
            }
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
            ..BuildOptions::default()
        };
        let dataflow =
            Dataflow::build_with_options(&job, &registry, pools, options).map_err(failed)?;
        let summary = dataflow.run(stop).map_err(failed)?;
        tracing::info!(job = %job.name, "attempt finished in {:?}", summary.elapsed);
        Ok(())
    }
}
