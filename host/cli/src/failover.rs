//! `eddy bench failover`: how long a cluster job is without output after its worker is
//! killed. It starts a coordinator and two workers (this binary, as child processes),
//! submits a checkpointed job, kills the job's worker with SIGKILL at random moments and
//! measures from each kill to the next output the job commits, then prints the figures.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{Client, Remote};
use anyhow::{Context as _, Result, bail};

/// What to measure.
#[derive(clap::Args)]
pub struct FailoverArgs {
    /// Kills to measure.
    #[arg(long, default_value_t = 5)]
    kills: u32,
    /// Checkpoint interval of the job (output is committed at checkpoints).
    #[arg(long, default_value = "100ms")]
    checkpoint_interval: String,
    /// The restart strategy's delay.
    #[arg(long, default_value = "100ms")]
    restart_delay: String,
    /// Directory of the example plugins.
    #[arg(long, default_value = "plugins/dist")]
    plugin_dir: PathBuf,
    /// Parallelism of the job; above 2 it spans both workers (2 slots each).
    #[arg(long, default_value_t = 2)]
    parallelism: u32,
}

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the benchmark and prints one line per kill and a summary.
pub fn failover(args: &FailoverArgs) -> Result<()> {
    let exe = std::env::current_exe()?;
    let scratch = std::env::temp_dir().join(format!("eddy-failover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let role = |args: &[&str], log: &str| -> Result<Child> {
        let log = std::fs::File::create(scratch.join(log))?;
        Ok(Command::new(&exe)
            .args(args)
            .current_dir(&scratch)
            .env("EDDY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?)
    };
    let mut coordinator = Guard(role(
        &[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            "coordinator",
            "--rest",
            "127.0.0.1:0",
        ],
        "coordinator.log",
    )?);
    // The coordinator prints the workers' address, then the REST API's.
    let mut stdout = BufReader::new(coordinator.0.stdout.take().context("coordinator stdout")?);
    let (mut addr, mut rest) = (String::new(), String::new());
    stdout.read_line(&mut addr)?;
    stdout.read_line(&mut rest)?;
    let addr: SocketAddr = addr.trim().parse().context("the coordinator's address")?;
    let rest = Remote {
        cluster: rest.trim().to_owned(),
        token: None,
        json: false,
    };
    let worker = |id: &str| -> Result<Guard> {
        let a = addr.to_string();
        let args = [
            "worker",
            "--coordinator",
            &a,
            "--slots",
            "2",
            "--id",
            id,
            "--dir",
            id,
        ];
        Ok(Guard(role(&args, &format!("{id}.log"))?))
    };
    let mut workers = vec![
        ("a".to_owned(), worker("a")?),
        ("b".to_owned(), worker("b")?),
    ];
    let out = scratch.join("out.jsonl");
    let job = scratch.join("failover.yaml");
    std::fs::write(&job, job_yaml(&scratch, args))?;
    let client = Client::new(&rest);
    let submission = crate::client::submission(
        &job,
        Some(&args.plugin_dir),
        eddy_cluster::Resume::Beginning,
    )?;
    let id = client.submit(&submission)?;
    let mut seed = 17u64;
    let mut figures = Vec::new();
    for kill in 0..args.kills {
        let on = wait_running(&client, id)?;
        // A spanning job loses each of its workers in turn.
        let running = on[kill as usize % on.len()].clone();
        // Some output first, then a kill at a random moment.
        let committed = size(&out);
        wait_until(Duration::from_secs(30), || size(&out) > committed)?;
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((seed >> 33) % 300));
        let before = size(&out);
        let Some(index) = workers.iter().position(|(w, _)| *w == running) else {
            bail!("job {id} runs on unknown worker {running}");
        };
        let killed = Instant::now();
        drop(workers.remove(index));
        // A replacement joins at once, as a supervisor would restart it (a job that
        // spans both workers waits for it).
        workers.push((running.clone(), worker(&running)?));
        // The next output committed after the kill comes from the restarted attempt.
        wait_until(Duration::from_secs(60), || size(&out) > before)?;
        let gap = killed.elapsed();
        println!(
            "kill {}: first committed output {:.0} ms after the kill",
            kill + 1,
            gap.as_secs_f64() * 1e3
        );
        figures.push(gap);
    }
    figures.sort();
    if let (Some(min), Some(max)) = (figures.first(), figures.last()) {
        let median = figures[figures.len() / 2];
        println!(
            "kill -9 to first committed output over {} kills at parallelism {}: min {:.0} ms, \
             median {:.0} ms, max {:.0} ms (checkpoints every {}, restart delay {})",
            figures.len(),
            args.parallelism,
            min.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            args.checkpoint_interval,
            args.restart_delay
        );
    }
    drop(workers);
    drop(coordinator);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// A long-running checkpointed job: paced orders, converted, counted per customer.
fn job_yaml(dir: &Path, args: &FailoverArgs) -> String {
    format!(
        "name: failover
parallelism: {}
checkpoints: {{ interval: {}, dir: {} }}
restart: {{ attempts: 1000, delay: {} }}
sources:
  - type: generator
    shape: orders
    count: 100000000
    rate: 2000
    parallelism: {}
steps:
  - name: to-eur
    map: currency_convert.wasm
    params: {{ rates: {{ USD: 0.92, GBP: 1.17, JPY: 0.0062, CHF: 1.05 }} }}
  - key-by: customer
  - rolling: count
sinks:
  - type: file
    path: {}
",
        args.parallelism,
        args.checkpoint_interval,
        dir.join("checkpoints").display(),
        args.restart_delay,
        args.parallelism,
        dir.join("out.jsonl").display()
    )
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn wait_until(bound: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + bound;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// The workers job `id` runs on, once it runs.
fn wait_running(client: &Client, id: u64) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = client.jobs()?;
        let job = jobs
            .iter()
            .find(|j| j.id == id)
            .context("the job is gone")?;
        match (job.state.as_str(), job.workers.is_empty()) {
            ("running", false) => return Ok(job.workers.clone()),
            ("failed", _) => bail!("the job failed: {}", job.reason.clone().unwrap_or_default()),
            _ if Instant::now() > deadline => bail!("the job does not run: {job:?}"),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}
