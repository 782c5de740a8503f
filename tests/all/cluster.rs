//! The session cluster with real processes: a coordinator and workers as child
//! processes on localhost, jobs submitted to it, workers killed with `kill -9`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use eddy_testkit::jobs::{ORDER_STEPS, PER_MINUTE, orders_source};
use eddy_testkit::plugins::PLUGIN_DIR;

use crate::recovery::{Delays, completed, sorted_lines};
use crate::support::{ChildGuard, Scratch, command, eddy, text};

/// The orders job at parallelism 2 with every path absolute under `dir`, as workers
/// that share a volume see it.
fn job(dir: &Path, rate: Option<u32>, checkpoints: bool) -> String {
    job_at(dir, 2, rate, checkpoints)
}

/// The orders job at `parallelism`.
fn job_at(dir: &Path, parallelism: u32, rate: Option<u32>, checkpoints: bool) -> String {
    let rate = rate.map(|r| format!("rate: {r}")).unwrap_or_default();
    let checkpoints = if checkpoints {
        format!(
            "checkpoints: {{ interval: 100ms, dir: {} }}\nrestart: {{ attempts: 100, delay: 50ms }}",
            dir.join("checkpoints").display()
        )
    } else {
        String::new()
    };
    let sources = format!("parallelism: {parallelism}");
    let source = orders_source(40000, 5, &[&sources, &rate]);
    format!(
        "name: cluster
parallelism: {parallelism}
{checkpoints}
sources:
{source}steps:
{ORDER_STEPS}{PER_MINUTE}sinks:
  - type: file
    path: {}
",
        dir.join("out.jsonl").display()
    )
}

/// A running cluster: its coordinator's address and its processes.
struct Cluster {
    addr: String,
    dir: std::path::PathBuf,
    coordinator: ChildGuard,
    workers: Vec<(String, ChildGuard)>,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let mut coordinator = ChildGuard(
            command(
                &[
                    "coordinator",
                    "--listen",
                    "127.0.0.1:0",
                    "--dir",
                    "coordinator",
                ],
                dir,
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the coordinator"),
        );
        let stdout = coordinator.0.stdout.take().expect("stdout");
        let mut addr = String::new();
        BufReader::new(stdout)
            .read_line(&mut addr)
            .expect("the coordinator's address");
        Cluster {
            addr: addr.trim().to_owned(),
            dir: dir.to_owned(),
            coordinator,
            workers: Vec::new(),
        }
    }

    /// Starts worker `id` with `slots` slots (a new incarnation if it ran before).
    fn worker(&mut self, id: &str, slots: u32) {
        let slots = slots.to_string();
        let log = std::fs::File::create(self.dir.join(format!("{id}.log"))).expect("log");
        let child = command(
            &[
                "worker",
                "--coordinator",
                &self.addr,
                "--slots",
                &slots,
                "--id",
                id,
                "--dir",
                id,
            ],
            &self.dir,
        )
        .env("EDDY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a worker");
        self.workers.retain(|(w, _)| w != id);
        self.workers.push((id.to_owned(), ChildGuard(child)));
    }

    /// Kills worker `id` with SIGKILL.
    fn kill(&mut self, id: &str) {
        if let Some((_, child)) = self.workers.iter_mut().find(|(w, _)| w == id) {
            child.0.kill().expect("SIGKILL");
            let _ = child.0.wait();
        }
    }

    fn submit(&self, job: &Path) -> u64 {
        let out = eddy(
            &[
                "submit",
                "--coordinator",
                &self.addr,
                "--plugin-dir",
                PLUGIN_DIR,
            ]
            .into_iter()
            .chain([job.to_str().expect("path")])
            .collect::<Vec<_>>(),
            &self.dir,
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "submit failed: {stderr}");
        stdout.trim().parse().expect("a job id")
    }

    /// Job `id` as `eddy jobs --json` shows it.
    fn job(&self, id: u64) -> serde_json::Value {
        let out = eddy(&["jobs", "--coordinator", &self.addr, "--json"], &self.dir);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "jobs failed: {stderr}");
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|j| j["id"] == id)
            .expect("the job is listed")
    }

    /// Waits until job `id` is in `state`, within `bound`; returns its view.
    fn wait_for(&self, id: u64, state: &str, bound: Duration) -> serde_json::Value {
        let deadline = Instant::now() + bound;
        loop {
            let job = self.job(id);
            if job["state"] == state {
                return job;
            }
            let logs = self.logs();
            assert!(job["state"] != "failed", "the job failed: {job}\n{logs}");
            assert!(
                Instant::now() < deadline,
                "job never {state}: {job}\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Cluster {
    /// What the workers logged, for failure messages.
    fn logs(&self) -> String {
        self.workers
            .iter()
            .map(|(w, _)| {
                let log = std::fs::read_to_string(self.dir.join(format!("{w}.log")));
                format!("--- {w}\n{}", log.unwrap_or_default())
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.workers.clear();
        let _ = self.coordinator.0.kill();
    }
}

/// The job's output when `eddy run` runs it without checkpoints, sorted.
fn reference() -> Vec<String> {
    reference_at(2)
}

/// The output of the job at `parallelism` when `eddy run` runs it, sorted.
fn reference_at(parallelism: u32) -> Vec<String> {
    let scratch = Scratch::new(&format!("cluster_reference_{parallelism}"));
    let job = job_at(&scratch.0, parallelism, None, false);
    std::fs::write(scratch.0.join("job.yaml"), job).expect("job");
    let out = eddy(
        &["run", "-q", "--plugin-dir", PLUGIN_DIR, "job.yaml"],
        &scratch.0,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    sorted_lines(&scratch.0.join("out.jsonl"))
}

#[test]
fn a_killed_worker_fails_over_from_the_latest_checkpoint_and_the_output_stays_exactly_once() {
    let expected = reference();
    assert!(expected.len() > 100, "the job must produce enough rows");
    let scratch = Scratch::new("cluster_failover");
    let dir = &scratch.0;
    let mut cluster = Cluster::start(dir);
    cluster.worker("w1", 2);
    cluster.worker("w2", 2);
    std::fs::write(dir.join("job.yaml"), job(dir, Some(4000), true)).expect("job");
    let id = cluster.submit(&dir.join("job.yaml"));
    let mut delays = Delays(11);
    for kill in 0..10 {
        let running = cluster.wait_for(id, "running", Duration::from_secs(30));
        let worker = running["workers"][0].as_str().expect("a worker").to_owned();
        // Let it complete a checkpoint of its own, then kill it at a random moment.
        let before = completed(dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        while completed(dir) <= before {
            assert!(
                Instant::now() < deadline,
                "no checkpoint completed (kill {kill})\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(delays.next_ms(0, 300)));
        assert_eq!(
            cluster.job(id)["state"],
            "running",
            "the job ended before kill {kill}"
        );
        cluster.kill(&worker);
        // A replacement of the same identity registers as a new incarnation.
        cluster.worker(&worker, 2);
        let seen = sorted_lines(&dir.join("out.jsonl"));
        let mut dedup = seen.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), seen.len(), "duplicates after kill {kill}");
        assert!(
            seen.iter().all(|l| expected.binary_search(l).is_ok()),
            "a committed row that the uninterrupted run does not produce (kill {kill})"
        );
    }
    let done = cluster.wait_for(id, "finished", Duration::from_secs(120));
    assert!(done["restarts"].as_u64() >= Some(10), "{done}");
    assert_eq!(sorted_lines(&dir.join("out.jsonl")), expected);
}

#[test]
fn a_job_that_needs_more_slots_than_there_are_waits_with_its_reason_until_a_worker_joins() {
    let scratch = Scratch::new("cluster_waiting");
    let dir = &scratch.0;
    let mut cluster = Cluster::start(dir);
    cluster.worker("small", 1);
    std::fs::write(dir.join("job.yaml"), job(dir, None, false)).expect("job");
    let id = cluster.submit(&dir.join("job.yaml"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let waiting = loop {
        let job = cluster.job(id);
        if job["reason"]
            .as_str()
            .is_some_and(|r| r.contains("free slots: small: 1"))
        {
            break job;
        }
        assert!(Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(waiting["state"], "waiting");
    assert_eq!(
        waiting["reason"],
        "needs 2 slot(s) in all; free slots: small: 1"
    );
    cluster.worker("big", 2);
    let done = cluster.wait_for(id, "finished", Duration::from_secs(60));
    assert_eq!(done["restarts"], 0);
    assert!(!sorted_lines(&dir.join("out.jsonl")).is_empty());
}

#[test]
fn a_job_file_with_an_error_is_refused_at_submit_with_its_position() {
    let scratch = Scratch::new("cluster_refused");
    let dir = &scratch.0;
    let cluster = Cluster::start(dir);
    std::fs::write(
        dir.join("bad.yaml"),
        "name: bad\nsources: [{type: generator, count: 1}]\nsteps:\n  - map: nowhere.wasm\nsinks: [{type: stdout}]\n",
    )
    .expect("job");
    let out = eddy(
        &[
            "submit",
            "--coordinator",
            &cluster.addr,
            "--plugin-dir",
            PLUGIN_DIR,
            "bad.yaml",
        ],
        dir,
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("nowhere.wasm"), "{stderr}");
    assert!(stderr.contains("bad.yaml:4:"), "{stderr}");
}

#[test]
fn a_keyed_job_spanning_two_workers_gives_the_output_of_eddy_run() {
    let expected = reference_at(4);
    assert!(expected.len() > 100, "the job must produce enough rows");
    let scratch = Scratch::new("cluster_spanning");
    let dir = &scratch.0;
    let mut cluster = Cluster::start(dir);
    cluster.worker("w1", 2);
    cluster.worker("w2", 2);
    // Parallelism 4 on two workers of two slots: its hash exchanges cross the network.
    std::fs::write(dir.join("job.yaml"), job_at(dir, 4, Some(20000), false)).expect("job");
    let id = cluster.submit(&dir.join("job.yaml"));
    let running = cluster.wait_for(id, "running", Duration::from_secs(30));
    assert_eq!(
        running["workers"],
        serde_json::json!(["w1", "w2"]),
        "{running}"
    );
    cluster.wait_for(id, "finished", Duration::from_secs(60));
    assert_eq!(sorted_lines(&dir.join("out.jsonl")), expected);
}

#[test]
fn a_worker_lost_under_a_spanning_job_cancels_its_other_part_and_frees_the_slots() {
    let scratch = Scratch::new("cluster_span_lost");
    let dir = &scratch.0;
    let mut cluster = Cluster::start(dir);
    cluster.worker("w1", 2);
    cluster.worker("w2", 2);
    // Paced to run for about twenty seconds, far longer than the test waits.
    std::fs::write(dir.join("job.yaml"), job_at(dir, 4, Some(500), false)).expect("job");
    let id = cluster.submit(&dir.join("job.yaml"));
    cluster.wait_for(id, "running", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill("w2");
    // Without checkpoints there is nothing to restart from: the job fails at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let job = cluster.job(id);
        if job["state"] == "failed" {
            break job;
        }
        assert!(Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("worker w2 was lost"), "{reason}");
    // w1's part was cancelled, so its two slots take the next job.
    std::fs::write(dir.join("small.yaml"), job(dir, None, false)).expect("job");
    let next = cluster.submit(&dir.join("small.yaml"));
    let running = cluster.wait_for(next, "finished", Duration::from_secs(60));
    assert_eq!(running["restarts"], 0);
    let log = std::fs::read_to_string(dir.join("w1.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("attempt 0 of job {id} failed here")),
        "{log}"
    );
}

#[test]
fn a_checkpointed_job_spanning_two_workers_fails_over_exactly_once_when_either_is_killed() {
    let expected = reference_at(4);
    assert!(expected.len() > 100, "the job must produce enough rows");
    let scratch = Scratch::new("cluster_span_failover");
    let dir = &scratch.0;
    let mut cluster = Cluster::start(dir);
    cluster.worker("w1", 2);
    cluster.worker("w2", 2);
    // Parallelism 4 on two workers of two slots: it spans both, its checkpoints led
    // by slot 0's worker.
    std::fs::write(dir.join("job.yaml"), job_at(dir, 4, Some(2000), true)).expect("job");
    let id = cluster.submit(&dir.join("job.yaml"));
    let mut delays = Delays(23);
    for kill in 0..6 {
        let running = cluster.wait_for(id, "running", Duration::from_secs(30));
        assert_eq!(
            running["workers"],
            serde_json::json!(["w1", "w2"]),
            "{running}"
        );
        let before = completed(dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        while completed(dir) <= before {
            assert!(
                Instant::now() < deadline,
                "no checkpoint completed (kill {kill})\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(delays.next_ms(0, 300)));
        assert_eq!(
            cluster.job(id)["state"],
            "running",
            "the job ended before kill {kill}"
        );
        // The leader and the follower in turn.
        let victim = if kill % 2 == 0 { "w1" } else { "w2" };
        cluster.kill(victim);
        cluster.worker(victim, 2);
        let seen = sorted_lines(&dir.join("out.jsonl"));
        let mut dedup = seen.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), seen.len(), "duplicates after kill {kill}");
        assert!(
            seen.iter().all(|l| expected.binary_search(l).is_ok()),
            "a committed row that the uninterrupted run does not produce (kill {kill})"
        );
    }
    let done = cluster.wait_for(id, "finished", Duration::from_secs(120));
    assert!(done["restarts"].as_u64() >= Some(6), "{done}");
    assert_eq!(sorted_lines(&dir.join("out.jsonl")), expected);
}
