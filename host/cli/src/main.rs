//! The `eddy` command: validate, plan and run stream processing jobs.
#![allow(
    clippy::print_stdout,
    reason = "a command prints its results on stdout"
)]

mod bench;
mod client;
mod cluster;
mod embedded;
mod endpoint;
mod failover;
mod project;
mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use eddy_cluster::Resume;
use eddy_core::checkpoint::objects::Mirror;
use eddy_core::checkpoint::storage;
use eddy_core::checkpoint::{CheckpointError, Restored, Storage};
use eddy_core::exec::plan::{Plan, PlanView};
use eddy_core::exec::supervise::{Supervised, supervise};
use eddy_core::job::memory::ByteSize;
use eddy_core::job::state::BackendKind;
use eddy_core::memory::Pools;
use eddy_core::state::backend::{BackendFactory, HeapFactory};
use eddy_core::tenant::Tenants;
use eddy_core::{BuildOptions, Dataflow, Job, Registry};
use eddy_kafka::Kafka;
use eddy_state_rocksdb::RocksFactory;
use eddy_wasm::{Runtime, RuntimeConfig};

/// Eddy runs stream processing jobs whose operators are sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "eddy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct JobArgs {
    /// The job file (YAML).
    job: PathBuf,
    #[command(flatten)]
    env: Env,
}

/// Where jobs find their plugins and their tenants' quotas.
#[derive(clap::Args)]
struct Env {
    /// Directory that plugin paths are resolved against (overrides the job's `plugin-dir`).
    #[arg(long, env = "EDDY_PLUGIN_DIR")]
    plugin_dir: Option<PathBuf>,
    /// Tenants and their quotas (YAML); without it every tenant runs unrestricted.
    #[arg(long, env = "EDDY_TENANTS")]
    tenants: Option<PathBuf>,
}

impl Env {
    /// Loads `file` and admits it under its tenant's quotas.
    fn load(&self, file: &Path) -> Result<Job> {
        let job = Job::load(file, self.plugin_dir.as_deref())?;
        let tenants = match &self.tenants {
            Some(path) => Tenants::load(path)?,
            None => Tenants::local(),
        };
        tenants.admit(&job)?;
        Ok(job)
    }
}

impl JobArgs {
    fn load(&self) -> Result<Job> {
        self.env.load(&self.job)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check a job file and its plugins without running anything.
    Validate(JobArgs),
    /// Print how a job runs: stages, chained operators, exchanges, parallelism, memory.
    Plan(JobArgs),
    /// Run jobs until their input ends (Ctrl-C ends the input early and drains); several
    /// jobs run side by side in one process, each in its own sandboxes and pools.
    Run {
        /// The job files (YAML).
        #[arg(required = true)]
        jobs: Vec<PathBuf>,
        #[command(flatten)]
        env: Env,
        /// Do not print the summary at the end.
        #[arg(long, short)]
        quiet: bool,
        /// Print a live status line every second (default: when stderr is a terminal).
        #[arg(long)]
        status: bool,
        /// Resume from a checkpoint or savepoint directory, or from the job's latest
        /// completed checkpoint when no directory is given (starting from the beginning
        /// when it has none yet: one command for a supervisor to run every time).
        #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "latest")]
        restore: Option<PathBuf>,
        /// Run the jobs in a cluster embedded in this process and serve its REST API and
        /// web dashboard on this address (it prints where); `eddy savepoint`, `eddy
        /// status` and the others then work on them.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8081")]
        ui: Option<std::net::SocketAddr>,
    },
    /// Create a plugin project: its code, job file, sample events, expected output and a
    /// unit test (`eddy new --lang python shout`; languages: rust, python, js, c).
    New {
        /// The plugin's name, also its directory.
        name: String,
        /// The language.
        #[arg(long, default_value = "rust", value_parser = |s: &str| s.parse::<eddy_toolchain::Lang>())]
        lang: eddy_toolchain::Lang,
        /// What the plugin is: a map, or a keyed process function with state and timers.
        #[arg(long, value_enum, default_value = "map")]
        kind: project::Kind,
        /// The Eddy checkout whose SDK and WIT the project builds against (default: the
        /// one this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the component of the plugin project in the current directory.
    Build,
    /// Run the project's job with its component and compare the output with
    /// `expected.jsonl`.
    Test,
    /// Measure Eddy: `eddy bench nexmark --query q5 --events 10000000 --parallelism 2`.
    #[command(subcommand)]
    Bench(BenchCommand),
    #[command(flatten)]
    Cluster(Box<cluster::ClusterCommand>),
}

/// The benchmarks.
#[derive(Subcommand)]
enum BenchCommand {
    /// A Nexmark query on the built-in generator: throughput, latency, memory, digest.
    Nexmark(bench::NexmarkArgs),
    /// A cluster job's time without output after `kill -9` of its worker.
    Failover(failover::FailoverArgs),
}

/// Set by Ctrl-C: sources stop, what is in flight drains, sinks finish.
static STOP: AtomicBool = AtomicBool::new(false);

/// Smallest linear memory share a plugin instance can work with.
const MIN_INSTANCE_MEMORY: usize = 4 << 20;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDDY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Our errors carry their causes in their messages; print the top one only.
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Validate(args) => {
            let job = args.load()?;
            Plan::new(&job)?;
            let runtime = runtime(&job, None)?;
            for plugin in job.plugins() {
                let err = |e| eddy_core::OperatorError::new(&plugin.step.name, e);
                let loaded = runtime.load(plugin.path).map_err(err)?;
                runtime.check(&loaded, plugin.kind).map_err(err)?;
            }
            for c in job.connectors() {
                let err = |e| anyhow::anyhow!("{:?}: {e}", c.name);
                let loaded = runtime.load(c.plugin).map_err(err)?;
                runtime.check(&loaded, c.kind).map_err(err)?;
            }
            eprintln!(
                "{}: job {:?} is valid: {} source(s), {} step(s), {} sink(s)",
                job.file.display(),
                job.name,
                job.sources.len(),
                job.steps.len(),
                job.sinks.len()
            );
            Ok(())
        }
        Command::Bench(BenchCommand::Nexmark(args)) => bench::nexmark(&args),
        Command::Bench(BenchCommand::Failover(args)) => failover::failover(&args),
        Command::New {
            name,
            lang,
            kind,
            sdk,
        } => project::new(&name, lang, kind, sdk.as_deref()),
        Command::Build => project::build(),
        Command::Test => project::test(),
        Command::Cluster(command) => command.run(),
        Command::Plan(args) => {
            let job = args.load()?;
            let plan = Plan::new(&job)?;
            print!(
                "{}",
                PlanView {
                    job: &job,
                    plan: &plan
                }
            );
            Ok(())
        }
        Command::Run {
            jobs,
            env,
            quiet,
            status,
            restore,
            ui,
        } => {
            let loaded = jobs
                .iter()
                .map(|file| env.load(file))
                .collect::<Result<Vec<_>>>()?;
            if loaded.len() > 1 && restore.as_ref().is_some_and(|r| r != Path::new("latest")) {
                bail!("--restore DIR names one job's checkpoint: run one job with it");
            }
            let resume = cluster::resume_of(restore.as_deref());
            ctrlc::set_handler(|| {
                if STOP.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
                eprintln!("\nstopping: draining in-flight events (Ctrl-C again to quit at once)");
            })?;
            if let Some(addr) = ui {
                return embedded::run(&jobs, &loaded, &env, addr, &resume);
            }
            let jobs = loaded;
            let live =
                (status || std::io::IsTerminal::is_terminal(&std::io::stderr())) && jobs.len() == 1;
            let endpoint = endpoint::Endpoint::start(&jobs)?;
            let endpoint = &endpoint;
            let outcomes: Vec<Result<()>> = std::thread::scope(|scope| {
                let handles: Vec<_> = jobs
                    .iter()
                    .map(|job| {
                        let resume = &resume;
                        scope.spawn(move || run_job(job, resume, quiet, live, endpoint))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("the job thread panicked")))
                    })
                    .collect()
            });
            let mut failed = 0;
            for (job, outcome) in jobs.iter().zip(outcomes) {
                if let Err(e) = outcome {
                    failed += 1;
                    let e = anyhow::anyhow!("job {:?} (tenant {}): {e}", job.name, job.tenant);
                    if jobs.len() == 1 {
                        return Err(e);
                    }
                    eprintln!("error: {e}");
                }
            }
            if failed > 0 {
                bail!("{failed} of {} jobs failed", jobs.len());
            }
            Ok(())
        }
    }
}

/// Builds and runs one job to its end; the engine's supervisor restarts it from its
/// latest checkpoint after a failure a restart can get past, as its strategy allows.
fn run_job(
    job: &Job,
    resume: &Resume,
    quiet: bool,
    live: bool,
    endpoint: &endpoint::Endpoint,
) -> Result<()> {
    let storage = checkpoint_storage(job)?;
    if *resume == Resume::Latest && storage.is_none() {
        bail!(
            "job {:?} has no `checkpoints` section, so there is no latest checkpoint to \
             restore; name a checkpoint directory",
            job.name
        );
    }
    let restored = restore_point(job, storage.as_ref(), resume)?;
    let pools = Arc::new(Pools::new(&job.memory));
    let runtime = runtime(job, Some(pools.clone()))?;
    let registry = registry(&runtime);
    let build = |restored: Option<&Restored>| {
        let options = BuildOptions {
            restore: restored,
            state: Some(state_backend(job, &pools)),
            checkpoints: storage.clone(),
            ..BuildOptions::default()
        };
        Dataflow::build_with_options(job, &registry, pools.clone(), options)
    };
    // Each attempt's dataflow: serve its metrics and status while it runs.
    let started = |dataflow: &Dataflow| -> Result<_> {
        let metrics = dataflow.metrics();
        endpoint.publish(job, &metrics);
        Ok(LiveStatus(live.then(|| status::spawn(metrics.clone()))))
    };
    let Supervised {
        summary, metrics, ..
    } = supervise(job, storage.as_ref(), restored, &STOP, build, started)?;
    if let Some(savepoint) = &summary.stopped {
        eprintln!(
            "{}: stopped with savepoint {}",
            job.file.display(),
            savepoint.display()
        );
    }
    if !quiet {
        status::print_summary(&job.file, &summary, job.memory.process);
        status::print_checkpoints(&metrics);
        status::print_plugins(&metrics);
    }
    Ok(())
}

/// One attempt's live status line, ended when the attempt ends.
struct LiveStatus(Option<status::Live>);

impl Drop for LiveStatus {
    fn drop(&mut self) {
        if let Some(live) = self.0.take() {
            live.stop();
        }
    }
}

/// What a run of `job` resumes from, as `resume` says: a savepoint or checkpoint
/// directory, or the latest checkpoint in `storage` (none yet: the beginning).
pub(crate) fn restore_point(
    job: &Job,
    storage: Option<&Storage>,
    resume: &Resume,
) -> Result<Option<Restored>, CheckpointError> {
    match (resume, storage) {
        (Resume::Beginning, _) | (Resume::Latest, None) => Ok(None),
        (Resume::From(dir), storage) => {
            let restored = storage::load(dir)?;
            match storage {
                Some(storage) => storage.named(restored).map(Some),
                None => Ok(Some(restored)),
            }
        }
        (Resume::Latest, Some(storage)) => match storage.latest() {
            Ok(restored) => Ok(Some(restored)),
            // What a supervisor's one fixed command meets on a first start, or after a
            // kill before the first checkpoint completed: nothing was committed yet.
            Err(CheckpointError::NoneFound(dir)) => {
                tracing::warn!(
                    job = %job.name,
                    "no completed checkpoint in {} yet: starting from the beginning",
                    dir.display()
                );
                Ok(None)
            }
            Err(e) => Err(e),
        },
    }
}

/// The WASM runtime sized for `job`: every plugin subtask gets an equal share of the
/// job's WASM memory, charged to `pools` when running.
pub(crate) fn runtime(job: &Job, pools: Option<Arc<Pools>>) -> Result<Runtime> {
    let instances: u32 = job
        .plugins()
        .iter()
        .map(|p| p.step.parallelism)
        .sum::<u32>()
        + job.connectors().iter().map(|c| c.instances).sum::<u32>();
    let share = job.memory.wasm.0 / instances.max(1) as usize;
    if instances > 0 && share < MIN_INSTANCE_MEMORY {
        bail!(
            "{}: memory.wasm ({}) gives each of the {instances} plugin instances {}, below the \
             minimum of {}; raise memory.wasm or lower the plugin steps' parallelism",
            job.file.display(),
            job.memory.wasm,
            ByteSize(share),
            ByteSize(MIN_INSTANCE_MEMORY)
        );
    }
    Ok(Runtime::new(&RuntimeConfig {
        max_instances: instances.max(1),
        max_memory_bytes: share.min(4 << 30),
        pools,
        fuel: job.steps.iter().any(|s| s.sandbox.fuel.is_some()),
        max_stack: job.max_stack.0,
        ..RuntimeConfig::default()
    })?)
}

/// Everything this binary can build a job from: the core's connectors and operators,
/// plugins on `runtime` (which is also the `plugin` connector), and Kafka.
pub(crate) fn registry(runtime: &Runtime) -> Registry<'_> {
    runtime
        .register(Registry::builtin())
        .connector("kafka", &Kafka)
}

/// Where `job`'s checkpoints go: its checkpoint directory, or its prefix in an object
/// store, staged in a directory of this process's own beside the job's state (on the
/// same file system, so RocksDB checkpoints by hard links).
pub(crate) fn checkpoint_storage(job: &Job) -> Result<Option<Storage>> {
    let Some(spec) = &job.checkpoints else {
        return Ok(None);
    };
    let Some(url) = spec.objects_url() else {
        let dir = spec.dir.clone().unwrap_or_default();
        return Ok(Some(Storage::new(dir, &job.name, spec.retain())));
    };
    let store = eddy_objects::S3::open(url)
        .with_context(|| format!("{}: checkpoints.dir", job.file.display()))?;
    static STAGED: AtomicU64 = AtomicU64::new(0);
    let state = job
        .state
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".eddy/state"));
    let stem = format!("{}.staged-", job.name);
    remove_stale_staging(state.parent().unwrap_or(Path::new(".")), &stem);
    let staging = state.with_file_name(format!(
        "{stem}{}-{}",
        std::process::id(),
        STAGED.fetch_add(1, Ordering::Relaxed)
    ));
    let mirror = Arc::new(Mirror::new(Arc::new(store), staging));
    Ok(Some(Storage::in_objects(mirror, &job.name, spec.retain())))
}

/// Removes the staging directories `<stem><pid>-<n>` in `dir` of processes that are
/// gone (killed before they could remove their own).
fn remove_stale_staging(dir: &Path, stem: &str) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in listing.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(stem)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            tracing::debug!("removing {name}, staged by a process that is gone");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The backend of all of `job`'s keyed state: its `state` section's, in memory charged
/// to `pools` by default.
pub(crate) fn state_backend(job: &Job, pools: &Arc<Pools>) -> Arc<dyn BackendFactory> {
    match job.state.backend {
        BackendKind::Memory => Arc::new(HeapFactory::new(Some(pools.clone()))),
        BackendKind::Rocksdb => Arc::new(RocksFactory),
    }
}
