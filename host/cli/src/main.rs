//! The `eddy` command: validate and run stream processing jobs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use clap::{Parser, Subcommand};
use eddy_core::{Job, Pipeline, RunSummary};
use eddy_wasm::{Runtime, RuntimeConfig};

/// Eddy runs stream processing jobs whose operators are sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "eddy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a job file and its plugins without running anything.
    Validate {
        /// The job file (YAML).
        job: PathBuf,
        /// Directory that plugin paths are resolved against (overrides the job's `plugin-dir`).
        #[arg(long, env = "EDDY_PLUGIN_DIR")]
        plugin_dir: Option<PathBuf>,
    },
    /// Run a job until its input ends.
    Run {
        /// The job file (YAML).
        job: PathBuf,
        /// Directory that plugin paths are resolved against (overrides the job's `plugin-dir`).
        #[arg(long, env = "EDDY_PLUGIN_DIR")]
        plugin_dir: Option<PathBuf>,
        /// Do not print the summary at the end.
        #[arg(long, short)]
        quiet: bool,
    },
}

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
        Command::Validate { job, plugin_dir } => {
            let job = Job::load(&job, plugin_dir.as_deref())?;
            let runtime = Runtime::new(&RuntimeConfig::default())?;
            for step in &job.steps {
                let plugin = runtime
                    .load(&step.plugin)
                    .map_err(|e| eddy_core::OperatorError::new(&step.name, e))?;
                runtime
                    .prepare(&plugin, step.kind)
                    .map_err(|e| eddy_core::OperatorError::new(&step.name, e))?;
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
        Command::Run {
            job,
            plugin_dir,
            quiet,
        } => {
            let job = Job::load(&job, plugin_dir.as_deref())?;
            let runtime = Runtime::new(&RuntimeConfig::default())?;
            let pipeline = Pipeline::build(&job, &runtime)?;
            let stop = AtomicBool::new(false);
            let summary = pipeline.run(&stop)?;
            if !quiet {
                print_summary(&job.file, &summary);
            }
            Ok(())
        }
    }
}

fn print_summary(file: &Path, summary: &RunSummary) {
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    eprintln!("{}: finished in {:.3} s", file.display(), secs);
    let rows = summary
        .sources
        .iter()
        .map(|m| ("source", m))
        .chain(summary.steps.iter().map(|m| ("step", m)))
        .chain(summary.sinks.iter().map(|m| ("sink", m)));
    for (role, m) in rows {
        let count = if role == "sink" {
            m.records_in
        } else {
            m.records_out
        };
        eprintln!(
            "  {role:<6} {:<20} in {:>10}  out {:>10}  busy {:>8.3} s  {:>12.0} events/s",
            m.name,
            m.records_in,
            m.records_out,
            m.busy.as_secs_f64(),
            count as f64 / secs
        );
    }
}
