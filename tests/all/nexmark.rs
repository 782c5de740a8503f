//! The built-in Nexmark generator through the real binary: the source emits exactly the
//! reference generator's events at any parallelism, and its date_time is the event
//! time that windows use (checked against a straightforward count).

use std::collections::BTreeMap;

use eddy_core::nexmark::{DEFAULT_EVENT_RATE, Nexmark};

use crate::support::{Scratch, eddy, text};

/// Runs a Nexmark job with `steps` at `parallelism` over `count` events; the output
/// lines, sorted.
fn run(test: &str, parallelism: u32, count: u64, steps: &str) -> Vec<String> {
    let scratch = Scratch::new(test);
    let job = format!(
        "name: nexmark
parallelism: {parallelism}
sources:
  - type: generator
    shape: nexmark
    count: {count}
    event-time: {{ max-out-of-orderness: 4s }}
{steps}
sinks:
  - type: file
    path: out.jsonl
"
    );
    std::fs::write(scratch.0.join("job.yaml"), job).expect("write job");
    let out = eddy(&["run", "-q", "job.yaml"], &scratch.0);
    assert!(out.status.success(), "{}", text(&out).1);
    let mut lines: Vec<String> = std::fs::read_to_string(scratch.0.join("out.jsonl"))
        .expect("output")
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[test]
fn the_nexmark_source_emits_the_reference_events_at_any_parallelism() {
    let generator = Nexmark::new(DEFAULT_EVENT_RATE);
    let mut expected: Vec<String> = (0..2000)
        .map(|n| {
            let mut line = Vec::new();
            generator.write_event(n, &mut line);
            String::from_utf8(line).expect("UTF-8")
        })
        .collect();
    expected.sort();
    assert_eq!(run("nexmark-p1", 1, 2000, ""), expected);
    assert_eq!(run("nexmark-p3", 3, 2000, ""), expected);
}

#[test]
fn nexmark_date_time_drives_event_time_windows() {
    let count = 30_000;
    let steps = "steps:
  - where: bid.price > 0
  - key-by: bid.auction
  - window: { tumbling: 1s, aggregate: { bids: count } }";
    // The same count, straightforwardly: bids per auction and second of date_time.
    let generator = Nexmark::new(DEFAULT_EVENT_RATE);
    let mut expected: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for n in 0..count {
        let mut line = Vec::new();
        generator.write_event(n, &mut line);
        let event: serde_json::Value = serde_json::from_slice(&line).expect("JSON");
        if let Some(bid) = event.get("bid") {
            let second = bid["date_time"].as_i64().expect("date_time") / 1000 * 1000;
            *expected
                .entry((bid["auction"].to_string(), second))
                .or_default() += 1;
        }
    }
    let windows = |lines: Vec<String>| -> BTreeMap<(String, i64), u64> {
        lines
            .iter()
            .map(|l| {
                let w: serde_json::Value = serde_json::from_str(l).expect("window JSON");
                let key = match &w["key"] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let start = w["window_start"].as_i64().expect("window_start");
                ((key, start), w["bids"].as_u64().expect("count"))
            })
            .collect()
    };
    let p1 = windows(run("nexmark-windows-p1", 1, count, steps));
    assert_eq!(p1, expected);
    assert_eq!(
        windows(run("nexmark-windows-p2", 2, count, steps)),
        expected
    );
}
