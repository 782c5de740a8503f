//! Kafka connectors against a real Kafka-protocol broker, which each test starts in a
//! process of its own: exactly-once output across SIGKILLs of the job and a restart of
//! the broker, an idle partition, a partition added while running, malformed records,
//! and a fallback to an older checkpoint refused where it would publish twice.

use std::time::{Duration, Instant};

use eddy_testkit::jobs::{ORDER_STEPS, PER_MINUTE};
use eddy_testkit::kafka::{Broker, Record};
use eddy_testkit::plugins::PLUGIN_DIR;

use crate::support::{ChildGuard, Scratch, command, eddy, text};

/// Orders from the built-in generator, keyed by customer, into `topic`.
fn fill(broker: &Broker, dir: &std::path::Path, topic: &str, count: u64) {
    let job = format!(
        "name: fill-{topic}
sources:
  - type: generator
    shape: orders
    count: {count}
    seed: 11
steps:
  - key-by: customer
sinks:
  - type: kafka
    bootstrap: {bootstrap}
    topic: {topic}
",
        bootstrap = broker.bootstrap
    );
    let file = format!("fill-{topic}.yaml");
    write_job(dir, &file, &job);
    let out = eddy(&["run", "-q", &file], dir);
    assert!(out.status.success(), "{}", text(&out).1);
}

/// Kafka → WASM map → keyed WASM process function → keyed event-time window → Kafka,
/// exactly once.
fn windowed_job(broker: &Broker, input: &str, output: &str, max_rate: Option<u32>) -> String {
    let rate = max_rate
        .map(|r| format!("max-rate: {r}"))
        .unwrap_or_default();
    format!(
        "name: kafka-{output}
parallelism: 2
checkpoints: {{ interval: 100ms, dir: checkpoints-{output} }}
restart: {{ strategy: fixed-delay, attempts: 20, delay: 200ms }}
sources:
  - type: kafka
    name: orders
    bootstrap: {bootstrap}
    topics: [{input}]
    bounded: true
    {rate}
    event-time: {{ field: ts, max-out-of-orderness: 5s }}
steps:
{ORDER_STEPS}{PER_MINUTE}sinks:
  - type: kafka
    bootstrap: {bootstrap}
    topic: {output}
    guarantee: exactly-once
",
        bootstrap = broker.bootstrap
    )
}

fn write_job(dir: &std::path::Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).expect("write job");
}

/// Fills topic `orders` (with `partitions` partitions) with `count` orders, and returns
/// what one uninterrupted run of the windowed job commits, sorted.
fn reference(broker: &Broker, dir: &std::path::Path, partitions: i32, count: u64) -> Vec<String> {
    broker.create_topic("orders", partitions);
    broker.create_topic("reference", 1);
    fill(broker, dir, "orders", count);
    write_job(
        dir,
        "reference.yaml",
        &windowed_job(broker, "orders", "reference", None),
    );
    run_to_end(dir, "reference.yaml", "reference");
    sorted(broker.read_committed("reference"))
}

/// Starts job `text` in `dir` without waiting for it; it is killed when dropped.
fn spawn(dir: &std::path::Path, text: &str) -> ChildGuard {
    write_job(dir, "job.yaml", text);
    let child = command(&["run", "-q", "job.yaml"], dir)
        .spawn()
        .expect("start eddy");
    ChildGuard(child)
}

/// Writes `values` into partition `partition` of `topic`, unkeyed.
fn produce_to(broker: &Broker, topic: &str, partition: i32, values: &[String]) {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record::value(Some(partition), v.as_bytes()))
        .collect();
    broker.produce(topic, &records);
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

/// `eddy run` arguments for job file `job` in `dir`, resuming from its latest
/// checkpoint (in `checkpoints-<output>`) if there is one.
fn run_args<'a>(dir: &std::path::Path, job: &'a str, output: &str) -> Vec<&'a str> {
    let resume = std::fs::read_dir(dir.join(format!("checkpoints-{output}")))
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.path().join("_metadata").exists())
        })
        .unwrap_or(false);
    let mut args = vec!["run", "-q", "--plugin-dir", PLUGIN_DIR, job];
    if resume {
        args.push("--restore");
    }
    args
}

/// Runs job file `job` (writing topic `output`) in `dir` to its end.
fn run_to_end(dir: &std::path::Path, job: &str, output: &str) {
    let out = eddy(&run_args(dir, job, output), dir);
    assert!(out.status.success(), "{}", text(&out).1);
}

/// A deterministic stream of kill delays (xorshift), so a failure can be replayed.
fn delays(seed: u64) -> impl Iterator<Item = Duration> {
    let mut x = seed.max(1);
    std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some(Duration::from_millis(250 + x % 400))
    })
}

#[test]
fn kafka_exactly_once_output_survives_sigkill() {
    let scratch = Scratch::new("kafka-kills");
    let broker = Broker::start(&scratch.0);
    let reference = reference(&broker, &scratch.0, 3, 30_000);
    assert!(reference.len() > 100, "{} windows", reference.len());
    broker.create_topic("killed", 2);

    // Paced so that it is still running at every kill.
    write_job(
        &scratch.0,
        "killed.yaml",
        &windowed_job(&broker, "orders", "killed", Some(2000)),
    );
    let kills = std::env::var("EDDY_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(10);
    let mut killed = 0;
    for delay in delays(0x5eed).take(kills) {
        let child = command(&run_args(&scratch.0, "killed.yaml", "killed"), &scratch.0)
            .spawn()
            .expect("start eddy");
        let mut guard = ChildGuard(child);
        std::thread::sleep(delay);
        let finished = guard.0.try_wait().expect("poll eddy").is_some();
        assert!(!finished, "the paced job ended before kill {killed}");
        guard.0.kill().expect("SIGKILL");
        let _ = guard.0.wait();
        killed += 1;
    }
    run_to_end(&scratch.0, "killed.yaml", "killed");
    let got = sorted(broker.read_committed("killed"));
    assert_eq!(
        got.len(),
        reference.len(),
        "after {killed} kills: committed records differ in number"
    );
    assert_eq!(got, reference, "after {killed} kills");
}

#[test]
fn kafka_job_recovers_from_a_broker_restart() {
    let scratch = Scratch::new("kafka-broker-restart");
    let mut broker = Broker::start(&scratch.0);
    if !broker.is_local() {
        return;
    }
    let reference = reference(&broker, &scratch.0, 2, 12_000);
    broker.create_topic("restarted", 1);
    write_job(
        &scratch.0,
        "job.yaml",
        &windowed_job(&broker, "orders", "restarted", Some(2000)),
    );
    let mut cmd = command(
        &["run", "-q", "--plugin-dir", PLUGIN_DIR, "job.yaml"],
        &scratch.0,
    );
    let child = cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start eddy");
    let mut guard = ChildGuard(child);
    std::thread::sleep(Duration::from_millis(1200));
    broker.restart();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("poll eddy") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not end after the broker restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the job failed after the broker restart");
    assert_eq!(sorted(broker.read_committed("restarted")), reference);
}

#[test]
fn kafka_idle_partition_does_not_hold_windows_back() {
    let scratch = Scratch::new("kafka-idle");
    let broker = Broker::start(&scratch.0);
    broker.create_topic("events", 2);
    broker.create_topic("counts", 1);
    // Partition 1 stays empty; partition 0 spans five minutes of event time, read
    // over 1.5 s, so that it is still active when partition 1 turns idle.
    let values: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"k":"a","ts":{}}}"#, i * 1000))
        .collect();
    produce_to(&broker, "events", 0, &values);
    let job = format!(
        "name: idle
sources:
  - type: kafka
    bootstrap: {bootstrap}
    topics: [events]
    max-rate: 200
    event-time: {{ field: ts, idle-timeout: 300ms }}
steps:
  - key-by: k
  - window:
      tumbling: 1m
      aggregate: {{ n: count }}
sinks:
  - type: kafka
    bootstrap: {bootstrap}
    topic: counts
",
        bootstrap = broker.bootstrap
    );
    let _job = spawn(&scratch.0, &job);
    // Minutes 0..3 close while the job still runs, since the empty partition is idle.
    let counts = broker.wait_for("counts", 4, Duration::from_secs(30));
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.iter().all(|c| c.contains(r#""n":60"#)), "{counts:?}");
}

#[test]
fn kafka_partition_added_while_running_is_read() {
    let scratch = Scratch::new("kafka-new-partition");
    let broker = Broker::start(&scratch.0);
    broker.create_topic("grow", 1);
    broker.create_topic("copied", 1);
    let first: Vec<String> = (0..10).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    produce_to(&broker, "grow", 0, &first);
    let job = format!(
        "name: grow
sources:
  - type: kafka
    bootstrap: {bootstrap}
    topics: [grow]
    partition-discovery: 200ms
steps:
  - where: n >= 0
sinks:
  - type: kafka
    bootstrap: {bootstrap}
    topic: copied
",
        bootstrap = broker.bootstrap
    );
    let _job = spawn(&scratch.0, &job);
    assert_eq!(
        broker.wait_for("copied", 10, Duration::from_secs(30)).len(),
        10
    );
    broker.add_partitions("grow", 2);
    let second: Vec<String> = (10..20).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    produce_to(&broker, "grow", 1, &second);
    let copied = broker.wait_for("copied", 20, Duration::from_secs(30));
    let mut expected: Vec<String> = first.into_iter().chain(second).collect();
    expected.sort();
    assert_eq!(sorted(copied), expected);
}

#[test]
fn kafka_malformed_records_fail_clearly_or_go_to_dead_letters() {
    let scratch = Scratch::new("kafka-malformed");
    let broker = Broker::start(&scratch.0);
    broker.create_topic("mixed", 1);
    let records: Vec<Record> = [&br#"{"n":1}"#[..], b"{not json", br#"{"n":3}"#, b"{last"]
        .iter()
        .map(|v| Record {
            key: Some("k".into()),
            ..Record::value(Some(0), *v)
        })
        .collect();
    broker.produce("mixed", &records);
    let job = |policy: &str| {
        format!(
            "name: malformed
sources:
  - type: kafka
    bootstrap: {bootstrap}
    topics: [mixed]
    bounded: true
    on-error: {policy}
steps:
  - where: n > 0
dead-letter:
  type: file
  path: dead.jsonl
sinks:
  - type: file
    path: out.jsonl
",
            bootstrap = broker.bootstrap
        )
    };
    write_job(&scratch.0, "fail.yaml", &job("fail"));
    let out = eddy(&["run", "-q", "fail.yaml"], &scratch.0);
    let stderr = text(&out).1;
    assert!(!out.status.success());
    assert!(
        stderr.contains("mixed/0 offset 1: malformed JSON"),
        "{stderr}"
    );

    write_job(&scratch.0, "dead.yaml", &job("dead-letter"));
    let out = eddy(&["run", "-q", "dead.yaml"], &scratch.0);
    assert!(out.status.success(), "{}", text(&out).1);
    let output = std::fs::read_to_string(scratch.0.join("out.jsonl")).expect("output");
    assert_eq!(output, "{\"n\":1}\n{\"n\":3}\n");
    let dead = std::fs::read_to_string(scratch.0.join("dead.jsonl")).expect("dead letters");
    assert!(
        dead.contains("{not json")
            && dead.contains("mixed/0 offset 1")
            && dead.contains("offset 3"),
        "{dead}"
    );
}

#[test]
fn kafka_carries_keys_headers_and_timestamps_and_starts_where_asked() {
    let scratch = Scratch::new("kafka-start");
    let broker = Broker::start(&scratch.0);
    broker.create_topic("raw", 1);
    let records: Vec<Record> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            key: Some(format!("k{i}")),
            headers: vec![("origin".into(), format!("h{i}"))],
            timestamp: Some(1000 * (i as i64 + 1)),
            ..Record::value(Some(0), v.as_bytes())
        })
        .collect();
    broker.produce("raw", &records);
    broker.commit_offset("readers", "raw", 0, 2);
    let copy = |output: &str, start: &str| {
        broker.create_topic(output, 1);
        let job = format!(
            "name: copy-{output}
sources:
  - type: kafka
    bootstrap: {bootstrap}
    topics: [raw]
    group: readers
    format: raw
    bounded: true
    start-from: {start}
sinks:
  - type: kafka
    bootstrap: {bootstrap}
    topic: {output}
",
            bootstrap = broker.bootstrap
        );
        write_job(&scratch.0, "copy.yaml", &job);
        let out = eddy(&["run", "-q", "copy.yaml"], &scratch.0);
        assert!(out.status.success(), "{}", text(&out).1);
        broker.read_records(output)
    };
    let all = copy("all", "earliest");
    assert_eq!(all, records, "key, value, headers and timestamp go through");
    let values = |rs: Vec<Record>| -> Vec<String> {
        rs.into_iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect()
    };
    assert_eq!(values(copy("since", "{ timestamp: 2000 }")), ["b", "c"]);
    assert_eq!(values(copy("committed", "committed")), ["c"]);
    assert!(copy("latest", "latest").is_empty());
}

#[test]
fn kafka_output_is_not_published_twice_by_falling_back_to_an_older_checkpoint() {
    let scratch = Scratch::new("kafka-fallback");
    let dir = &scratch.0;
    let broker = Broker::start(dir);
    broker.create_topic("orders", 3);
    broker.create_topic("fallback", 2);
    fill(&broker, dir, "orders", 30_000);
    write_job(
        dir,
        "fallback.yaml",
        &windowed_job(&broker, "orders", "fallback", Some(2000)),
    );
    let checkpoints = dir.join("checkpoints-fallback");
    let completed = || -> Vec<u64> {
        let mut ids: Vec<u64> = std::fs::read_dir(&checkpoints)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().join("_metadata").exists())
                    .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    };
    let mut child = ChildGuard(
        command(&run_args(dir, "fallback.yaml", "fallback"), dir)
            .spawn()
            .expect("start eddy"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while completed().len() < 3 {
        assert!(Instant::now() < deadline, "no checkpoints");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.0.kill().expect("SIGKILL");
    let _ = child.0.wait();
    let committed = sorted(broker.read_committed("fallback"));
    let ids = completed();
    let (older, latest) = (ids[ids.len() - 2], ids[ids.len() - 1]);
    // Damage the latest checkpoint: the fallback to the one before would publish what
    // was committed for the latest a second time, so it is refused.
    let state = std::fs::read_dir(checkpoints.join(format!("chk-{latest}")))
        .expect("checkpoint")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "state"))
        .expect("a task snapshot");
    let mut bytes = std::fs::read(&state).expect("snapshot");
    bytes[0] ^= 0x5a;
    std::fs::write(&state, bytes).expect("damage");
    let older_dir = checkpoints.join(format!("chk-{older}"));
    let older_arg = older_dir.to_string_lossy().into_owned();
    for restore in [None, Some(older_arg.as_str())] {
        let mut args = vec!["run", "-q", "--plugin-dir", PLUGIN_DIR, "fallback.yaml"];
        args.extend(["--restore"].into_iter().chain(restore));
        let out = eddy(&args, dir);
        let stderr = text(&out).1;
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("checkpoint {latest} is newer"))
                && stderr.contains("cannot be taken back"),
            "{stderr}"
        );
    }
    assert_eq!(sorted(broker.read_committed("fallback")), committed);
}
