//! The parallel engine through the real binary: identical keyed results at any
//! parallelism, backpressure from a slow sink with bounded memory, the plan, a clean
//! stop on Ctrl-C, and Prometheus metrics.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStderr, Command, Stdio};
use std::time::Duration;

use eddy_testkit::plugins::PLUGIN_DIR;

use crate::support::{ChildGuard, Scratch, command, eddy, text};

fn keyed_job(parallelism: u32) -> String {
    format!(
        "name: keyed-count
parallelism: {parallelism}
sources:
  - type: generator
    name: orders
    count: 5000
    seed: 9
steps:
  - name: big
    where: amount > 50
  - name: to-eur
    map: currency_convert.wasm
    params: {{ rates: {{ USD: 0.92, GBP: 1.17, JPY: 0.0062, CHF: 1.05 }} }}
  - name: by-customer
    key-by: customer
  - name: counts
    rolling: count
sinks:
  - type: stdout
"
    )
}

fn run_job(test: &str, job: &str) -> (String, String) {
    let scratch = Scratch::new(test);
    std::fs::write(scratch.0.join("job.yaml"), job).expect("write job");
    let out = eddy(&["run", "--plugin-dir", PLUGIN_DIR, "job.yaml"], &scratch.0);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{test}: {stderr}");
    (stdout, stderr)
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn keyed_count_is_identical_at_parallelism_1_2_and_4() {
    let (one, _) = run_job("keyed_p1", &keyed_job(1));
    let (two, _) = run_job("keyed_p2", &keyed_job(2));
    let (four, _) = run_job("keyed_p4", &keyed_job(4));
    assert_eq!(sorted_lines(&one), sorted_lines(&two));
    assert_eq!(sorted_lines(&one), sorted_lines(&four));

    // Independently: count the orders over 50 per customer from the unkeyed stream.
    let unkeyed = keyed_job(1).replace(
        "  - name: by-customer\n    key-by: customer\n  - name: counts\n    rolling: count\n",
        "",
    );
    let (orders, _) = run_job("keyed_reference", &unkeyed);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for line in orders.lines() {
        let order: serde_json::Value = serde_json::from_str(line).expect("JSON order");
        *expected
            .entry(order["customer"].as_str().expect("customer").to_owned())
            .or_default() += 1;
    }
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for line in one.lines() {
        let row: serde_json::Value = serde_json::from_str(line).expect("JSON count");
        let key = row["key"].as_str().expect("key").to_owned();
        let count = row["count"].as_u64().expect("count");
        let seen = last.entry(key).or_default();
        assert_eq!(count, *seen + 1, "counts of a key go up by one: {line}");
        *seen = count;
    }
    assert_eq!(last, expected);
    assert!(expected.values().sum::<u64>() > 4000);
}

#[test]
fn a_slow_sink_backpressures_with_bounded_network_memory() {
    let scratch = Scratch::new("slow_sink");
    let events = 40_000;
    let job = format!(
        "name: slow-sink
parallelism: 2
memory: {{ process: 256mb, network: 1mb }}
sources:
  - type: generator
    count: {events}
steps:
  - name: to-eur
    map: currency_convert.wasm
    params: {{ rates: {{ USD: 0.92, GBP: 1.17, JPY: 0.0062, CHF: 1.05 }} }}
sinks:
  - type: stdout
"
    );
    std::fs::write(scratch.0.join("job.yaml"), job).expect("write job");
    let mut child = command(&["run", "--plugin-dir", PLUGIN_DIR, "job.yaml"], &scratch.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start eddy");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut child = ChildGuard(child);
    let mut lines = 0usize;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stdout.read(&mut chunk).expect("read");
        if n == 0 {
            break;
        }
        lines += chunk[..n].iter().filter(|&&b| b == b'\n').count();
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut err = String::new();
    stderr.read_to_string(&mut err).expect("read stderr");
    let status = child.0.wait().expect("eddy ends");
    let stderr = err;
    assert!(status.success(), "{stderr}");
    assert_eq!(lines, events, "records were lost or duplicated");
    let peaks = stderr
        .lines()
        .find(|l| l.contains("memory peaks:"))
        .expect("summary has peaks");
    let network = peaks.split("network ").nth(1).expect("network peak");
    let (peak, cap) = network.split_once(" of ").expect("peak of cap");
    let bytes = |s: &str| {
        let s = s.split(',').next().unwrap_or(s).trim();
        eddy_core::job::memory::ByteSize::parse(&s.replace(' ', ""))
            .expect("size")
            .0
    };
    assert!(
        bytes(peak) <= bytes(cap),
        "network pool over its cap: {peaks}"
    );
    assert!(bytes(peak) > 0, "the network pool was never used: {peaks}");
    let map_row = stderr
        .lines()
        .find(|l| l.contains("step   to-eur"))
        .expect("map row");
    assert!(
        !map_row.contains("backpressured    0.000 s"),
        "no backpressure seen: {map_row}"
    );
}

#[test]
fn plan_shows_chains_and_exchanges() {
    let scratch = Scratch::new("plan");
    std::fs::write(scratch.0.join("job.yaml"), keyed_job(2)).expect("write job");
    let out = eddy(
        &["plan", "--plugin-dir", PLUGIN_DIR, "job.yaml"],
        &scratch.0,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let expected = "job \"keyed-count\": 3 stage(s), 5 task(s), max-parallelism 128, batch-size 256
memory: process 1.0 GiB = network 102.4 MiB + managed 307.2 MiB + wasm 409.6 MiB + host
stage 1 ×2: source orders (×2) → big [where] → to-eur [map currency_convert.wasm] → by-customer [key-by customer]
  ⇓ hash by key into 128 key groups
stage 2 ×2: counts [rolling count]
  ⇓ rebalance
stage 3 ×1: sink stdout
";
    assert_eq!(stdout, expected);
}

#[test]
fn ctrl_c_drains_and_publishes_an_unbounded_job() {
    let scratch = Scratch::new("ctrl_c");
    let job = "name: forever
metrics: { prometheus: '127.0.0.1:0' }
sources:
  - type: generator
    rate: 2000
steps:
  - name: to-eur
    map: currency_convert.wasm
    params: { rates: { USD: 0.92, GBP: 1.17, JPY: 0.0062, CHF: 1.05 } }
sinks:
  - type: file
    path: out.jsonl
";
    let (mut child, stderr, addr) = serve(&scratch, job);
    std::thread::sleep(Duration::from_millis(500));
    let body = scrape(&addr);
    assert!(
        body.contains("eddy_records_out_total{tenant=\"default\",job=\"forever\",step=\"to-eur\",subtask=\"0\"}"),
        "{body}"
    );
    assert!(
        body.contains("eddy_plugin_calls_total{tenant=\"default\",job=\"forever\",step=\"to-eur\",plugin=\"currency_convert.wasm\",subtask=\"0\"}"),
        "{body}"
    );
    assert!(
        body.contains(
            "eddy_pool_capacity_bytes{tenant=\"default\",job=\"forever\",pool=\"network\"}"
        ),
        "{body}"
    );

    interrupt(&mut child, stderr);
    let written = std::fs::read_to_string(scratch.0.join("out.jsonl")).expect("output published");
    assert!(
        written.lines().count() > 100,
        "only {} lines",
        written.lines().count()
    );
    assert!(written.ends_with('\n'));
}

/// Runs `job` in `scratch` until interrupted; returns eddy, its log, and the address of
/// the metrics endpoint from the line eddy logs when it serves the job's metrics.
fn serve(scratch: &Scratch, job: &str) -> (ChildGuard, BufReader<ChildStderr>, String) {
    std::fs::write(scratch.0.join("job.yaml"), job).expect("write job");
    let mut child = command(&["run", "--plugin-dir", PLUGIN_DIR, "job.yaml"], &scratch.0)
        .env("EDDY_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start eddy");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let child = ChildGuard(child);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("read stderr") > 0,
            "eddy exited before serving metrics"
        );
        if let Some(rest) = line.split("http://").nth(1) {
            let addr = rest.split("/metrics").next().unwrap_or_default().to_owned();
            return (child, stderr, addr);
        }
    }
}

/// Sends eddy Ctrl-C and waits for a clean exit; returns the rest of its log.
fn interrupt(child: &mut ChildGuard, mut stderr: impl Read) -> String {
    let status = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .expect("send SIGINT");
    assert!(status.success());
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    let exit = child.0.wait().expect("eddy ends");
    assert!(exit.success(), "{rest}");
    rest
}

/// The response to one `GET /metrics` on `addr`, headers included.
fn scrape(addr: &str) -> String {
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to metrics");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("request");
    let mut body = String::new();
    conn.read_to_string(&mut body).expect("response");
    body
}

#[test]
fn metrics_a_plugin_reports_are_served_and_summarized() {
    let scratch = Scratch::new("plugin_metrics");
    let job = "name: chatty
metrics: { prometheus: '127.0.0.1:0' }
sources:
  - type: generator
    shape: sentences
    rate: 2000
steps:
  - name: split
    flat-map: word_split.wasm
sinks:
  - type: discard
";
    let (mut child, stderr, addr) = serve(&scratch, job);

    let labels =
        "tenant=\"default\",job=\"chatty\",step=\"split\",plugin=\"word_split.wasm\",subtask=\"0\"";
    let words = format!("eddy_plugin_counter_total{{{labels},metric=\"words\"}} ");
    let most = format!("eddy_plugin_gauge{{{labels},metric=\"most-words\"}} ");
    let value = |body: &str, series: &str| -> Option<f64> {
        let line = body.lines().find(|l| l.starts_with(series))?;
        line[series.len()..].trim().parse().ok()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let body = loop {
        let body = scrape(&addr);
        if value(&body, &words).is_some_and(|n| n > 0.0) {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no words counted in time:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        body.starts_with("HTTP/1.1 200 OK\r\n")
            && body.contains("Content-Type: application/openmetrics-text"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE eddy_plugin_counter counter"),
        "{body}"
    );
    assert!(body.contains("# TYPE eddy_plugin_gauge gauge"), "{body}");
    assert!(
        value(&body, &most).is_some_and(|n| n >= 1.0),
        "no most-words gauge:\n{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    let rest = interrupt(&mut child, stderr);
    let reported = rest
        .lines()
        .find(|l| l.trim_start().starts_with("counters: words "))
        .unwrap_or_else(|| panic!("no reported metrics in the summary:\n{rest}"));
    assert!(reported.contains("gauges: most-words "), "{reported}");
}
