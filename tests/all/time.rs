//! Event time through the real binary: an idle input does not stall the watermark,
//! windows give the same results at any parallelism, and a rerun is byte-identical.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use eddy_testkit::plugins::PLUGIN_DIR;

use crate::support::{ChildGuard, Scratch, command, eddy, text};

const EVENTS: &str =
    "{\"k\":\"a\",\"t\":1000}\n{\"k\":\"b\",\"t\":1500}\n{\"k\":\"a\",\"t\":2500}\n";
const RESULTS: [&str; 3] = [
    "{\"key\":\"a\",\"window_start\":1000,\"window_end\":2000,\"n\":1}",
    "{\"key\":\"b\",\"window_start\":1000,\"window_end\":2000,\"n\":1}",
    "{\"key\":\"a\",\"window_start\":2000,\"window_end\":3000,\"n\":1}",
];

/// Runs a job whose second source is stdin, kept open and silent; returns the lines
/// the job wrote within `wait`, then closes stdin and checks the job ends cleanly.
fn with_silent_stdin(test: &str, idle_timeout: &str, wait: Duration) -> Vec<String> {
    let scratch = Scratch::new(test);
    std::fs::write(scratch.0.join("in.jsonl"), EVENTS).expect("input");
    let job = format!(
        "name: idle\nsources:\n  - type: file\n    path: in.jsonl\n    event-time: {{ field: t }}\n  - type: stdin\n    event-time: {{ field: t{idle_timeout} }}\nsteps:\n  - key-by: k\n  - window: {{ tumbling: 1s, aggregate: {{ n: count }} }}\nsinks:\n  - type: stdout\n"
    );
    std::fs::write(scratch.0.join("job.yaml"), job).expect("job");
    let child = command(&["run", "--quiet", "job.yaml"], &scratch.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start eddy");
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + wait;
    while seen.len() < RESULTS.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    drop(child.0.stdin.take());
    let status = child.0.wait().expect("eddy ends");
    assert!(status.success());
    seen
}

#[test]
fn an_idle_input_does_not_stall_the_watermark() {
    let seen = with_silent_stdin("idle", ", idle-timeout: 300ms", Duration::from_secs(20));
    assert_eq!(
        seen, RESULTS,
        "windows must fire while stdin is open but idle"
    );
}

#[test]
fn without_idleness_a_silent_input_holds_the_windows_back() {
    let seen = with_silent_stdin("not_idle", "", Duration::from_secs(1));
    assert!(
        seen.is_empty(),
        "windows fired although stdin holds the watermark: {seen:?}"
    );
}

fn generated_windows(test: &str, parallelism: u32) -> String {
    let scratch = Scratch::new(&format!("{test}_p{parallelism}"));
    let job = format!(
        "name: windows\nparallelism: {parallelism}\nsources:\n  - type: generator\n    count: 20000\n    seed: 3\n    event-time: {{ field: ts }}\nsteps:\n  - key-by: customer\n  - window:\n      sliding: {{ size: 20s, slide: 5s }}\n      aggregate: {{ orders: count, largest: {{ max: amount }}, smallest: {{ min: amount }} }}\n      function: {{ plugin: distinct_count.wasm, params: {{ field: currency }}, output: currencies }}\nsinks:\n  - type: stdout\n"
    );
    std::fs::write(scratch.0.join("job.yaml"), job).expect("job");
    let out = eddy(
        &["run", "--quiet", "--plugin-dir", PLUGIN_DIR, "job.yaml"],
        &scratch.0,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    stdout
}

#[test]
fn windows_are_identical_at_parallelism_1_and_2() {
    let sorted = |s: String| {
        let mut lines: Vec<String> = s.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    let one = sorted(generated_windows("parallel", 1));
    assert!(one.len() > 1000, "{} windows", one.len());
    assert_eq!(one, sorted(generated_windows("parallel", 2)));
    let total: u64 = one
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["orders"]
                .as_u64()
                .expect("count")
        })
        .sum();
    assert_eq!(total, 4 * 20000, "every order is in four sliding windows");
    assert!(
        one.iter().all(|l| l.contains("\"currencies\":")),
        "the WASM function's field is in every row"
    );
}

#[test]
fn the_same_event_time_job_twice_gives_byte_identical_output() {
    let first = generated_windows("rerun_a", 1);
    assert_eq!(first, generated_windows("rerun_b", 1));
}

#[test]
fn processing_time_windows_fire_by_the_clock_and_lose_nothing() {
    let scratch = Scratch::new("processing_time");
    let job = "name: processing\nsources:\n  - type: generator\n    count: 1000\n    rate: 4000\nsteps:\n  - key-by: currency\n  - window: { tumbling: 100ms, time: processing, aggregate: { n: count } }\nsinks:\n  - type: stdout\n";
    std::fs::write(scratch.0.join("job.yaml"), job).expect("job");
    let out = eddy(&["run", "--quiet", "job.yaml"], &scratch.0);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let total: u64 = rows.iter().map(|r| r["n"].as_u64().expect("count")).sum();
    assert_eq!(total, 1000);
    assert!(
        rows.iter()
            .all(|r| r["window_end"].as_i64() == r["window_start"].as_i64().map(|s| s + 100))
    );
    let windows: std::collections::BTreeSet<i64> = rows
        .iter()
        .filter_map(|r| r["window_start"].as_i64())
        .collect();
    assert!(
        windows.len() >= 2,
        "a quarter-second run spans several 100 ms windows: {windows:?}"
    );
}

#[test]
fn joins_give_the_same_pairs_at_parallelism_2() {
    for (case, file) in [
        ("plugins/jobs", "new-users"),
        ("tests/cases/interval-join", "job"),
    ] {
        let folder = eddy_testkit::repo_root().join(case);
        let scratch = Scratch::with_case(&format!("{file}_p2"), &folder);
        let job = std::fs::read_to_string(scratch.0.join(format!("{file}.yaml"))).expect("job");
        let job = job.replacen("sources:", "parallelism: 2\nsources:", 1);
        std::fs::write(scratch.0.join("p2.yaml"), job).expect("job");
        let out = eddy(&["run", "--quiet", "p2.yaml"], &scratch.0);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{case}: {stderr}");
        let expected =
            std::fs::read_to_string(folder.join(format!("{file}.expected"))).expect("expected");
        let sorted = |s: &str| {
            let mut lines: Vec<&str> = s.lines().collect();
            lines.sort_unstable();
            lines.join("\n")
        };
        assert_eq!(sorted(&stdout), sorted(&expected), "{case}");
    }
}
