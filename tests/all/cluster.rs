//! The session cluster with real processes: a coordinator and workers as child
//! processes on localhost, jobs submitted to it, workers killed with `kill -9`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use eddy_testkit::jobs::{ORDER_STEPS, PER_MINUTE, orders_source};
use eddy_testkit::plugins::PLUGIN_DIR;
use eddy_testkit::s3::S3Server;

use crate::recovery::{Delays, assert_exact_so_far, completed, sorted_lines};
use crate::support::{ChildGuard, Scratch, command, eddy, text};

/// The orders job at parallelism 2 with every path absolute under `dir`, as workers
/// that share a volume see it.
pub(crate) fn job(dir: &Path, rate: Option<u32>, checkpoints: bool) -> String {
    job_at(dir, 2, rate, checkpoints)
}

/// The orders job at `parallelism`.
pub(crate) fn job_at(dir: &Path, parallelism: u32, rate: Option<u32>, checkpoints: bool) -> String {
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

/// A running cluster: its coordinator's addresses and its processes.
pub(crate) struct Cluster {
    addr: String,
    /// The REST API's URL.
    pub(crate) rest: String,
    /// The API token the client commands use, if the cluster needs one.
    pub(crate) token: Option<String>,
    dir: std::path::PathBuf,
    coordinator: ChildGuard,
    workers: Vec<(String, ChildGuard)>,
    /// The workers' environment.
    env: Vec<(&'static str, String)>,
    /// More arguments of every worker.
    worker_args: Vec<String>,
}

/// Starts a coordinator listening on `listen` for workers and on `rest` for clients;
/// returns it, its workers' address and its REST API's URL.
fn coordinator(
    dir: &Path,
    listen: &str,
    rest: &str,
    extra: &[&str],
) -> (ChildGuard, String, String) {
    let rest = rest.trim_start_matches("http://");
    let args: Vec<&str> = ["coordinator", "--listen", listen, "--rest", rest]
        .into_iter()
        .chain(["--dir", "coordinator"])
        .chain(extra.iter().copied())
        .collect();
    let mut coordinator = ChildGuard(
        command(&args, dir)
            .env("EDDY_LOG", test_log())
            .stdout(Stdio::piped())
            .stderr(append_log(dir, "coordinator"))
            .spawn()
            .expect("start the coordinator"),
    );
    let mut stdout = BufReader::new(coordinator.0.stdout.take().expect("stdout"));
    let (mut addr, mut url) = (String::new(), String::new());
    stdout
        .read_line(&mut addr)
        .expect("the coordinator's address");
    stdout.read_line(&mut url).expect("the REST API's URL");
    (coordinator, addr.trim().to_owned(), url.trim().to_owned())
}

/// The log level of the cluster's processes: `EDDY_TEST_LOG`, or info.
pub(crate) fn test_log() -> String {
    std::env::var("EDDY_TEST_LOG").unwrap_or_else(|_| "info".into())
}

/// Process `name`'s log in `dir`: every incarnation's, one after the other.
pub(crate) fn append_log(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .expect("log")
}

impl Cluster {
    pub(crate) fn start(dir: &Path) -> Cluster {
        Cluster::start_with(dir, &[])
    }

    /// Starts the coordinator with `extra` arguments.
    pub(crate) fn start_with(dir: &Path, extra: &[&str]) -> Cluster {
        let (coordinator, addr, rest) = coordinator(dir, "127.0.0.1:0", "127.0.0.1:0", extra);
        Cluster::of(dir, coordinator, &addr, &rest)
    }

    /// A cluster whose coordinator runs as `coordinator`: workers reach it at `addr`
    /// (one address or several, comma-separated), people at `rest`.
    pub(crate) fn of(dir: &Path, coordinator: ChildGuard, addr: &str, rest: &str) -> Cluster {
        Cluster {
            addr: addr.to_owned(),
            rest: rest.to_owned(),
            token: None,
            dir: dir.to_owned(),
            coordinator,
            workers: Vec::new(),
            env: Vec::new(),
            worker_args: Vec::new(),
        }
    }

    /// Replaces the coordinator the cluster is reached through (the old one is
    /// killed if it still runs).
    pub(crate) fn switch_to(&mut self, coordinator: ChildGuard, rest: &str) {
        self.coordinator = coordinator;
        self.rest = rest.to_owned();
    }

    /// A cluster of two workers, `w1` and `w2`, of two slots each.
    fn of_two(dir: &Path) -> Cluster {
        let mut cluster = Cluster::start(dir);
        cluster.worker("w1", 2);
        cluster.worker("w2", 2);
        cluster
    }

    /// Writes `text` as job file `name.yaml` and submits it.
    pub(crate) fn submit_text(&self, name: &str, text: &str) -> u64 {
        let file = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&file, text).expect("job");
        self.submit(&file)
    }

    /// Runs the job at `parallelism` to its end, into `quick.jsonl`, and checks its
    /// output: the cluster has room for it.
    fn run_quick(&self, parallelism: u32) -> u64 {
        let text = job_at(&self.dir, parallelism, None, false).replace("out.jsonl", "quick.jsonl");
        let id = self.submit_text("quick", &text);
        self.wait_for(id, "finished", Duration::from_secs(60));
        assert_eq!(
            sorted_lines(&self.dir.join("quick.jsonl")),
            reference_at(parallelism)
        );
        id
    }

    /// Kills the coordinator with SIGKILL and starts a new one on the same address.
    fn restart_coordinator(&mut self) {
        self.kill_coordinator();
        let (coordinator, _, _) = coordinator(&self.dir, &self.addr, &self.rest, &[]);
        self.coordinator = coordinator;
    }

    /// Waits until a checkpoint completes beyond what `completed` says now, lets the
    /// job run on for a random moment, then kills the coordinator with SIGKILL.
    pub(crate) fn kill_coordinator_after_a_checkpoint(
        &mut self,
        delays: &mut Delays,
        completed: impl Fn() -> u64,
    ) {
        self.run_past_a_checkpoint(delays, completed, "before the coordinator's kill");
        self.kill_coordinator();
    }

    /// Waits until a checkpoint completes beyond what `completed` (the newest completed
    /// checkpoint's id) says now, then lets the job run on for a random moment.
    fn run_past_a_checkpoint(&self, delays: &mut Delays, completed: impl Fn() -> u64, when: &str) {
        let before = completed();
        let deadline = Instant::now() + Duration::from_secs(30);
        while completed() <= before {
            assert!(
                Instant::now() < deadline,
                "no checkpoint completed {when}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(delays.next_ms(0, 300)));
    }

    /// Kills the coordinator with SIGKILL.
    fn kill_coordinator(&mut self) {
        let _ = self.coordinator.0.kill();
        let _ = self.coordinator.0.wait();
    }

    /// Starts worker `id` with `slots` slots (a new incarnation if it ran before).
    pub(crate) fn worker(&mut self, id: &str, slots: u32) {
        let slots = slots.to_string();
        let log = append_log(&self.dir, id);
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
            ]
            .into_iter()
            .chain(self.worker_args.iter().map(String::as_str))
            .collect::<Vec<_>>(),
            &self.dir,
        )
        .env("EDDY_LOG", test_log())
        .envs(self.env.clone())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a worker");
        self.workers.retain(|(w, _)| w != id);
        self.workers.push((id.to_owned(), ChildGuard(child)));
    }

    /// Waits until job `id` completes a checkpoint beyond what `completed` (the newest
    /// completed checkpoint's id) says now, lets it run on for a random moment, then
    /// kills worker `victim` with SIGKILL and starts its replacement: kill `kill`.
    pub(crate) fn kill_after_a_checkpoint(
        &mut self,
        id: u64,
        victim: &str,
        kill: u32,
        delays: &mut Delays,
        completed: impl Fn() -> u64,
    ) {
        self.run_past_a_checkpoint(delays, completed, &format!("(kill {kill})"));
        assert_eq!(
            self.job(id)["state"],
            "running",
            "the job ended before kill {kill}"
        );
        self.kill(victim);
        self.worker(victim, 2);
    }

    /// Kills worker `id` with SIGKILL.
    pub(crate) fn kill(&mut self, id: &str) {
        if let Some((_, child)) = self.workers.iter_mut().find(|(w, _)| w == id) {
            child.0.kill().expect("SIGKILL");
            let _ = child.0.wait();
        }
    }

    pub(crate) fn submit(&self, job: &Path) -> u64 {
        let out = self.try_submit(job);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "submit failed: {stderr}");
        stdout.trim().parse().expect("a job id")
    }

    /// What `eddy submit` answers for `job`.
    fn try_submit(&self, job: &Path) -> std::process::Output {
        let job = job.to_str().expect("path");
        self.client(&["submit", "--plugin-dir", PLUGIN_DIR, job])
    }

    /// Runs client command `args` against the cluster, with its token.
    pub(crate) fn client(&self, args: &[&str]) -> std::process::Output {
        let mut args = args.to_vec();
        args.extend(["--cluster", &self.rest]);
        if let Some(token) = &self.token {
            args.extend(["--token", token]);
        }
        eddy(&args, &self.dir)
    }

    /// What the REST API answers to `GET path`, with the cluster's token.
    pub(crate) fn api(&self, path: &str) -> serde_json::Value {
        let mut request = ureq::get(format!("{}{path}", self.rest));
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        json(request.call())
    }

    /// What the REST API answers to `POST path` with the JSON `body`.
    fn api_post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let mut request = ureq::post(format!("{}{path}", self.rest));
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        json(request.send_json(body))
    }

    /// Job `id` as `eddy list --json` shows it.
    pub(crate) fn job(&self, id: u64) -> serde_json::Value {
        let out = self.client(&["list", "--json"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "list failed: {stderr}");
        let jobs: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("JSON");
        jobs.into_iter()
            .find(|j| j["id"] == id)
            .expect("the job is listed")
    }

    /// Waits until job `id` is in `state`, within `bound`; returns its view.
    pub(crate) fn wait_for(&self, id: u64, state: &str, bound: Duration) -> serde_json::Value {
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
    pub(crate) fn logs(&self) -> String {
        std::iter::once("coordinator")
            .chain(self.workers.iter().map(|(w, _)| w.as_str()))
            .map(|w| {
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
pub(crate) fn reference_at(parallelism: u32) -> Vec<String> {
    // Tests run side by side: each computes its reference in a scratch of its own.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = Scratch::new(&format!("cluster_reference_{parallelism}_{run}"));
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
    let mut cluster = Cluster::of_two(dir);
    std::fs::write(dir.join("job.yaml"), job(dir, Some(4000), true)).expect("job");
    let id = cluster.submit(&dir.join("job.yaml"));
    let mut delays = Delays(11);
    for kill in 0..10 {
        let running = cluster.wait_for(id, "running", Duration::from_secs(30));
        let worker = running["workers"][0].as_str().expect("a worker").to_owned();
        // A replacement of the same identity registers as a new incarnation.
        cluster.kill_after_a_checkpoint(id, &worker, kill, &mut delays, || completed(dir));
        assert_exact_so_far(&dir.join("out.jsonl"), &expected, kill);
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
    let out = cluster.try_submit(&dir.join("bad.yaml"));
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
    let cluster = Cluster::of_two(dir);
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
    let mut cluster = Cluster::of_two(dir);
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
    span_failover("cluster_span_failover", None, 6);
}

#[test]
fn a_spanning_job_with_checkpoints_in_s3_fails_over_exactly_once() {
    span_failover("cluster_span_s3", Some(S3Server::start("eddy")), 4);
}

/// Kills either worker of a job that spans two, `kills` times: checkpoints in a shared
/// directory, or in `s3`.
fn span_failover(test: &str, s3: Option<S3Server>, kills: u32) {
    let expected = reference_at(4);
    assert!(expected.len() > 100, "the job must produce enough rows");
    let scratch = Scratch::new(test);
    let dir = &scratch.0;
    let mut cluster = Cluster::start(dir);
    cluster.env = s3.as_ref().map(S3Server::env).unwrap_or_default();
    cluster.worker("w1", 2);
    cluster.worker("w2", 2);
    // Parallelism 4 on two workers of two slots: it spans both, its checkpoints led
    // by slot 0's worker.
    let mut text = job_at(dir, 4, Some(2000), true);
    if s3.is_some() {
        let local = dir.join("checkpoints").display().to_string();
        text = text.replace(&local, "s3://eddy/cluster");
    }
    std::fs::write(dir.join("job.yaml"), text).expect("job");
    let id = cluster.submit(&dir.join("job.yaml"));
    let completed = |dir: &Path| match &s3 {
        Some(s3) => s3
            .keys("cluster/")
            .iter()
            .filter_map(|k| {
                k.strip_suffix("/_metadata")?
                    .strip_prefix("cluster/chk-")?
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or(0),
        None => completed(dir),
    };
    let mut delays = Delays(23);
    for kill in 0..kills {
        let running = cluster.wait_for(id, "running", Duration::from_secs(30));
        assert_eq!(
            running["workers"],
            serde_json::json!(["w1", "w2"]),
            "{running}"
        );
        // The leader and the follower in turn.
        let victim = if kill % 2 == 0 { "w1" } else { "w2" };
        cluster.kill_after_a_checkpoint(id, victim, kill, &mut delays, || completed(dir));
        assert_exact_so_far(&dir.join("out.jsonl"), &expected, kill);
    }
    let done = cluster.wait_for(id, "finished", Duration::from_secs(120));
    assert!(
        done["restarts"].as_u64() >= Some(u64::from(kills)),
        "{done}"
    );
    let got = sorted_lines(&dir.join("out.jsonl"));
    let missing: Vec<&String> = expected
        .iter()
        .filter(|r| !got.contains(r))
        .take(3)
        .collect();
    assert!(
        got == expected,
        "{} rows of {} (missing, e.g. {missing:?}); the job: {done}\n{}",
        got.len(),
        expected.len(),
        cluster.logs()
    );
}

#[test]
fn a_tenants_slot_and_memory_quotas_hold_across_the_cluster() {
    let scratch = Scratch::new("cluster_tenant_quotas");
    let dir = &scratch.0;
    std::fs::write(
        dir.join("tenants.yaml"),
        format!(
            "admin-tokens: [{}]\ntenants:\n  acme: {{ max-slots: 2 }}\n  beta: {{ max-memory: 1536mb }}\n",
            eddy_core::sha256(b"admin-secret")
        ),
    )
    .expect("tenants");
    let mut cluster = Cluster::start_with(dir, &["--tenants", "tenants.yaml"]);
    cluster.token = Some("admin-secret".into());
    cluster.worker("w1", 4);
    // Pairs of jobs of two slots and the default 1 GiB budget each: the worker has room
    // for both, the tenant for one.
    let tenant_job = |name: &str, tenant: &str, rate: u32| {
        let text = job(dir, Some(rate), false)
            .replace("name: cluster", &format!("name: {name}\ntenant: {tenant}"))
            .replace("out.jsonl", &format!("{name}.jsonl"));
        cluster.submit_text(name, &text)
    };
    for (tenant, quota) in [
        (
            "acme",
            "needs 2 slot(s); tenant \"acme\" holds 2 of its 2 (max-slots)",
        ),
        (
            "beta",
            "needs 1.0 GiB of memory on 1 worker(s); tenant \"beta\" holds 1.0 GiB of its \
             1.5 GiB (max-memory)",
        ),
    ] {
        let first = tenant_job(&format!("{tenant}-first"), tenant, 10000);
        cluster.wait_for(first, "running", Duration::from_secs(30));
        let second = tenant_job(&format!("{tenant}-second"), tenant, 1_000_000);
        let waiting = cluster.job(second);
        assert_eq!(waiting["state"], "waiting", "{waiting}");
        assert_eq!(waiting["reason"], quota);
        cluster.wait_for(first, "finished", Duration::from_secs(60));
        cluster.wait_for(second, "finished", Duration::from_secs(60));
    }
    // A tenant the file does not list is refused at submit.
    let stranger = job(dir, None, false).replace("name: cluster", "name: stranger\ntenant: nobody");
    std::fs::write(dir.join("stranger.yaml"), stranger).expect("job");
    let out = cluster.try_submit(&dir.join("stranger.yaml"));
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("unknown tenant \"nobody\""),
        "{}",
        text(&out).1
    );
}

#[test]
fn a_worker_that_loses_its_coordinator_cancels_its_attempts_and_joins_the_next_one() {
    let scratch = Scratch::new("cluster_coordinator_lost");
    let dir = &scratch.0;
    let mut cluster = Cluster::start(dir);
    cluster.worker_args = vec!["--coordinator-timeout".into(), "1s".into()];
    cluster.worker("w1", 2);
    // A job that would run for minutes.
    let slow = cluster.submit_text("slow", &job(dir, Some(200), false));
    cluster.wait_for(slow, "running", Duration::from_secs(30));
    cluster.kill_coordinator();
    let log = dir.join("w1.log");
    let logged = |what: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches(what)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while logged("cancelling the attempts here") == 0 || logged("failed here") == 0 {
        assert!(
            Instant::now() < deadline,
            "the attempt was not cancelled\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A new coordinator on the same address: the worker registers with it.
    cluster.restart_coordinator();
    let deadline = Instant::now() + Duration::from_secs(20);
    while logged("registered with") < 2 {
        assert!(
            Instant::now() < deadline,
            "the worker did not register again\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.run_quick(2);
}

#[test]
fn a_cancelled_job_ends_on_every_worker_and_frees_its_slots() {
    let scratch = Scratch::new("cluster_cancel");
    let dir = &scratch.0;
    let cluster = Cluster::of_two(dir);
    // Spanning both workers, for minutes.
    let slow = cluster.submit_text("slow", &job_at(dir, 4, Some(200), true));
    cluster.wait_for(slow, "running", Duration::from_secs(30));
    let cancel = |id: u64| cluster.client(&["cancel", &id.to_string()]);
    let out = cancel(slow);
    assert!(out.status.success(), "{}", text(&out).1);
    cluster.wait_for(slow, "cancelled", Duration::from_secs(30));
    // Its slots are free again: a job needing all four runs.
    let quick = cluster.run_quick(4);
    // An ended job cannot be cancelled.
    let out = cancel(quick);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("has ended: finished"),
        "{}",
        text(&out).1
    );
}

/// The JSON body of a successful answer.
fn json(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> serde_json::Value {
    response
        .expect("the API answers")
        .body_mut()
        .read_json()
        .expect("JSON")
}

/// Polls `check` until it gives a value, within `bound`.
pub(crate) fn eventually<T>(
    what: &str,
    bound: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_api_shows_a_job_live_with_its_checkpoints_savepoints_failures_and_workers() {
    let scratch = Scratch::new("cluster_api");
    let dir = &scratch.0;
    let mut cluster = Cluster::start(dir);
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    cluster.worker_args = vec!["--metrics".into(), metrics.to_string()];
    cluster.worker("w1", 2);
    let id = cluster.submit_text("live", &job(dir, Some(500), true));
    let bound = Duration::from_secs(60);
    let job_path = format!("/api/v1/jobs/{id}");

    // The graph, live: records flowing through each vertex, event time advancing.
    let detail = eventually("records/s and a watermark on the graph", bound, || {
        let detail = cluster.api(&job_path);
        let vertices = detail["graph"]["vertices"].as_array()?.clone();
        let to_eur = vertices.iter().find(|v| v["name"] == "to-eur")?;
        let flowing = to_eur["records-out-per-s"].as_f64()? > 0.0;
        let watermark = vertices
            .iter()
            .any(|v| v["watermark-ms"].as_i64().is_some());
        (flowing && watermark).then_some(detail)
    });
    assert_eq!(detail["state"], "running", "{detail}");
    let edges = detail["graph"]["edges"].as_array().expect("edges");
    assert!(edges.iter().any(|e| e["exchange"] == "hash"), "{detail}");
    for vertex in detail["graph"]["vertices"].as_array().expect("vertices") {
        // Every step at the job's parallelism; its file sink writes one file.
        let parallelism = if vertex["role"] == "sink" { 1 } else { 2 };
        assert_eq!(vertex["parallelism"], parallelism, "{vertex}");
        let busy = vertex["busy"].as_f64().expect("busy");
        assert!((0.0..=1.0).contains(&busy), "{vertex}");
    }

    // The cluster and its worker: slots, the job, memory pools, Prometheus metrics.
    let overview = cluster.api("/api/v1/overview");
    assert_eq!(
        (
            &overview["workers"],
            &overview["slots-total"],
            &overview["slots-free"]
        ),
        (&1.into(), &2.into(), &0.into()),
        "{overview}"
    );
    assert_eq!(overview["jobs"]["running"], 1, "{overview}");
    let workers = cluster.api("/api/v1/workers");
    let w1 = &workers[0];
    assert_eq!(
        (&w1["id"], &w1["jobs"]),
        (&"w1".into(), &serde_json::json!([id])),
        "{workers}"
    );
    let pools = w1["pools"].as_array().expect("pools");
    assert!(
        pools.iter().any(|p| p["capacity"].as_u64() > Some(0)),
        "{workers}"
    );
    let scraped = ureq::get(format!("http://{metrics}/metrics"))
        .call()
        .expect("the worker's metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    assert!(scraped.contains("job=\"cluster\""), "{scraped}");

    // The checkpoint history.
    let checkpoint = eventually("a completed checkpoint", bound, || {
        let history = cluster.api(&format!("{job_path}/checkpoints"));
        history
            .as_array()?
            .iter()
            .find(|c| c["state"] == "completed")
            .cloned()
    });
    assert_eq!(checkpoint["kind"], "checkpoint", "{checkpoint}");
    assert!(checkpoint["size-bytes"].as_u64() > Some(0), "{checkpoint}");
    assert!(checkpoint["trigger-ms"].as_u64() > Some(0), "{checkpoint}");

    // A savepoint: asynchronous, and a retried request gets the same one.
    let request = serde_json::json!({ "request-id": "release-7" });
    let first = cluster.api_post(&format!("{job_path}/savepoints"), request.clone());
    let again = cluster.api_post(&format!("{job_path}/savepoints"), request);
    assert_eq!(
        (&first["state"], &again),
        (&"pending".into(), &first),
        "{first}"
    );
    let trigger = first["trigger"].as_str().expect("a trigger id");
    let savepoint = eventually("the savepoint completed", bound, || {
        let now = cluster.api(&format!("{job_path}/savepoints/{trigger}"));
        assert_ne!(now["state"], "failed", "{now}");
        (now["state"] == "completed").then_some(now)
    });
    let location = savepoint["location"].as_str().expect("its directory");
    assert!(
        Path::new(location).join("_metadata").is_file(),
        "{savepoint}"
    );
    let listed = cluster.api(&format!("{job_path}/savepoints"));
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // A lost worker is an exception of the job, with its cause.
    cluster.kill("w1");
    cluster.worker("w1", 2);
    let exceptions = eventually("the failure listed", bound, || {
        let exceptions = cluster.api(&format!("{job_path}/exceptions"));
        (!exceptions.as_array()?.is_empty()).then_some(exceptions)
    });
    let failure = &exceptions[0];
    assert_eq!(
        (&failure["worker"], &failure["attempt"]),
        (&"w1".into(), &0.into()),
        "{failure}"
    );
    assert!(
        failure["message"]
            .as_str()
            .unwrap_or_default()
            .contains("worker w1 was lost"),
        "{failure}"
    );

    // Stopped with a savepoint from the command line: the job ends, naming it.
    cluster.wait_for(id, "running", bound);
    let out = cluster.client(&["savepoint", &id.to_string(), "--stop"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}\n{}", cluster.logs());
    cluster.wait_for(id, "finished", bound);
    let detail = cluster.api(&job_path);
    assert_eq!(
        detail["stopped-with"].as_str(),
        Some(stdout.trim()),
        "{detail}"
    );
    let out = cluster.client(&["checkpoints", &id.to_string()]);
    assert!(text(&out).0.contains("savepoint"), "{}", text(&out).0);
}
