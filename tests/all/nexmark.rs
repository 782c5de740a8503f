//! The built-in Nexmark generator through the real binary: the source emits exactly the
//! reference generator's events at any parallelism, and its date_time is the event
//! time that windows use (checked against a straightforward count).

use std::collections::BTreeMap;

use eddy_core::nexmark::{DEFAULT_EVENT_RATE, Nexmark};

use crate::support::{Scratch, eddy, plugin_dir, text};

/// Runs a Nexmark job with `steps` at `parallelism` over `count` events; the output
/// lines, sorted.
fn run(test: &str, parallelism: u32, count: u64, steps: &str) -> Vec<String> {
    let source = format!("type: generator\n    shape: nexmark\n    count: {count}");
    run_with(test, parallelism, &source, steps)
}

/// Runs `source` (its YAML, indented for a list item) and `steps` into a file sink.
fn run_with(test: &str, parallelism: u32, source: &str, steps: &str) -> Vec<String> {
    let scratch = Scratch::with_plugins(test);
    let job = format!(
        "name: nexmark
parallelism: {parallelism}
sources:
  - {source}
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
    // The WASM source plugin is the same generator.
    for (splits, parallelism) in [(1, 1), (4, 2)] {
        let source = format!(
            "type: plugin\n    plugin: nexmark_source.wasm\n    params: {{ count: 2000, splits: {splits} }}"
        );
        let test = format!("nexmark-plugin-{splits}-{parallelism}");
        assert_eq!(run_with(&test, parallelism, &source, ""), expected);
    }
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

/// Runs the query job `plugins/nexmark/queries/<query>.yaml` on `count` events at
/// `parallelism` and returns its final rows (sorted) and its summary.
fn run_query(query: &str, count: u64, parallelism: u32) -> (Vec<String>, serde_json::Value) {
    let scratch = Scratch::with_plugins(&format!("nexmark-{query}-p{parallelism}"));
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plugins/nexmark/queries")
        .join(format!("{query}.yaml"));
    let job = std::fs::read_to_string(file).expect("query job file");
    let job = job
        .replace(
            "plugin-dir: ../../dist\n",
            &format!("parallelism: {parallelism}\n"),
        )
        .replace("count: 1000000", &format!("count: {count}"))
        .replace(
            &format!("path: out/{query}.json"),
            "path: out/summary.json\n    rows: out/rows.tsv",
        );
    std::fs::write(scratch.0.join("job.yaml"), job).expect("write job");
    let out = eddy(&["run", "-q", "job.yaml"], &scratch.0);
    assert!(out.status.success(), "{query}: {}", text(&out).1);
    let rows = std::fs::read_to_string(scratch.0.join("out/rows.tsv")).expect("rows");
    let summary = std::fs::read_to_string(scratch.0.join("out/summary.json")).expect("summary");
    (
        rows.lines().map(str::to_owned).collect(),
        serde_json::from_str(&summary).expect("summary JSON"),
    )
}

/// The straightforward reference: every query computed over the whole event list at
/// once, with Flink SQL's semantics as NEXMARK.md states them.
mod reference {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use serde_json::Value;

    /// The generator's first `count` events, by kind.
    pub struct Events {
        pub persons: Vec<Value>,
        pub auctions: Vec<Value>,
        pub bids: Vec<Value>,
    }

    pub fn events(count: u64) -> Events {
        let generator = eddy_core::nexmark::Nexmark::new(eddy_core::nexmark::DEFAULT_EVENT_RATE);
        let mut e = Events {
            persons: Vec::new(),
            auctions: Vec::new(),
            bids: Vec::new(),
        };
        for n in 0..count {
            let mut line = Vec::new();
            generator.write_event(n, &mut line);
            let v: Value = serde_json::from_slice(&line).expect("event JSON");
            for (kind, list) in [
                ("person", &mut e.persons),
                ("auction", &mut e.auctions),
                ("bid", &mut e.bids),
            ] {
                if let Some(inner) = v.get(kind) {
                    list.push(inner.clone());
                }
            }
        }
        e
    }

    fn int(v: &Value, field: &str) -> i64 {
        v[field].as_i64().expect(field)
    }

    fn string(v: &Value, field: &str) -> String {
        let s = v[field].as_str().expect(field);
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    }

    pub fn q0(e: &Events) -> Vec<String> {
        e.bids
            .iter()
            .map(|b| {
                let (a, br, p, t) = (
                    int(b, "auction"),
                    int(b, "bidder"),
                    int(b, "price"),
                    int(b, "date_time"),
                );
                format!("{a}\t{br}\t{p}\t{t}\t{}", string(b, "extra"))
            })
            .collect()
    }

    pub fn q1(e: &Events) -> Vec<String> {
        e.bids
            .iter()
            .map(|b| {
                let cents = int(b, "price") * 908;
                let (a, br, t) = (int(b, "auction"), int(b, "bidder"), int(b, "date_time"));
                let price = format!("{}.{:03}", cents / 1000, cents % 1000);
                format!("{a}\t{br}\t{price}\t{t}\t{}", string(b, "extra"))
            })
            .collect()
    }

    pub fn q2(e: &Events) -> Vec<String> {
        e.bids
            .iter()
            .filter(|b| int(b, "auction") % 123 == 0)
            .map(|b| format!("{}\t{}", int(b, "auction"), int(b, "price")))
            .collect()
    }

    pub fn q3(e: &Events) -> Vec<String> {
        let people: HashMap<i64, &Value> = e
            .persons
            .iter()
            .filter(|p| ["OR", "ID", "CA"].contains(&p["state"].as_str().expect("state")))
            .map(|p| (int(p, "id"), p))
            .collect();
        e.auctions
            .iter()
            .filter(|a| int(a, "category") == 10)
            .filter_map(|a| {
                let p = people.get(&int(a, "seller"))?;
                Some(format!(
                    "{}\t{}\t{}\t{}",
                    string(p, "name"),
                    string(p, "city"),
                    string(p, "state"),
                    int(a, "id")
                ))
            })
            .collect()
    }

    pub fn q4(e: &Events) -> Vec<String> {
        let mut bids: HashMap<i64, Vec<&Value>> = HashMap::new();
        for b in &e.bids {
            bids.entry(int(b, "auction")).or_default().push(b);
        }
        let mut per_category: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for a in &e.auctions {
            let (start, end) = (int(a, "date_time"), int(a, "expires"));
            let max = bids
                .get(&int(a, "id"))
                .into_iter()
                .flatten()
                .filter(|b| (start..=end).contains(&int(b, "date_time")))
                .map(|b| int(b, "price"))
                .max();
            if let Some(max) = max {
                per_category
                    .entry(int(a, "category"))
                    .or_default()
                    .push(max);
            }
        }
        per_category
            .into_iter()
            .map(|(c, maxima)| {
                let avg = maxima.iter().sum::<i64>() / maxima.len() as i64;
                format!("{c}\t{avg}")
            })
            .collect()
    }

    pub fn q5(e: &Events) -> Vec<String> {
        let mut counts: BTreeMap<i64, BTreeMap<i64, u64>> = BTreeMap::new();
        for b in &e.bids {
            let t = int(b, "date_time");
            let last_start = t - t.rem_euclid(2000);
            let mut start = last_start;
            while start > t - 10_000 {
                *counts
                    .entry(start)
                    .or_default()
                    .entry(int(b, "auction"))
                    .or_default() += 1;
                start -= 2000;
            }
        }
        let mut rows = Vec::new();
        for per_auction in counts.values() {
            let max = per_auction.values().max().copied().unwrap_or(0);
            for (auction, n) in per_auction {
                if *n == max {
                    rows.push(format!("{auction}\t{n}"));
                }
            }
        }
        rows
    }

    pub fn q7(e: &Events) -> Vec<String> {
        let mut max: BTreeMap<i64, i64> = BTreeMap::new();
        for b in &e.bids {
            let t = int(b, "date_time");
            let end = t - t.rem_euclid(10_000) + 10_000;
            let m = max.entry(end).or_insert(i64::MIN);
            *m = (*m).max(int(b, "price"));
        }
        let mut rows = Vec::new();
        for (end, m) in max {
            for b in &e.bids {
                let t = int(b, "date_time");
                if int(b, "price") == m && end - 10_000 <= t && t <= end {
                    rows.push(format!(
                        "{}\t{}\t{}\t{t}\t{}",
                        int(b, "auction"),
                        m,
                        int(b, "bidder"),
                        string(b, "extra")
                    ));
                }
            }
        }
        rows
    }

    pub fn q8(e: &Events) -> Vec<String> {
        let window = |v: &Value| {
            let t = int(v, "date_time");
            t - t.rem_euclid(10_000)
        };
        let sellers: BTreeSet<(i64, i64)> = e
            .auctions
            .iter()
            .map(|a| (int(a, "seller"), window(a)))
            .collect();
        let people: BTreeSet<(i64, String, i64)> = e
            .persons
            .iter()
            .map(|p| (int(p, "id"), string(p, "name"), window(p)))
            .collect();
        people
            .into_iter()
            .filter(|(id, _, w)| sellers.contains(&(*id, *w)))
            .map(|(id, name, w)| format!("{id}\t{name}\t{w}"))
            .collect()
    }
}

/// 13 s of event time: two q7/q8 windows and a dozen q5 windows, the last ones
/// partial (the final watermark fires them).
const QUERY_EVENTS: u64 = 130_000;

/// Runs `query` at parallelism 1 and 2 and checks its rows and digest against the
/// straightforward implementation.
fn check_query(query: &str, straightforward: fn(&reference::Events) -> Vec<String>) {
    static EVENTS: std::sync::OnceLock<reference::Events> = std::sync::OnceLock::new();
    let events = EVENTS.get_or_init(|| reference::events(QUERY_EVENTS));
    let mut expected = straightforward(events);
    expected.sort();
    assert!(!expected.is_empty(), "{query}: the reference has rows");
    let mut digest = eddy_core::connectors::digest::Digest::default();
    for row in &expected {
        digest.apply(row, 1);
    }
    for parallelism in [1, 2] {
        let (rows, summary) = run_query(query, QUERY_EVENTS, parallelism);
        assert_eq!(
            rows.len(),
            expected.len(),
            "{query} at P={parallelism}: row count"
        );
        assert_eq!(rows, expected, "{query} at P={parallelism}");
        assert_eq!(summary["rows"], expected.len(), "{query}");
        assert_eq!(summary["digest"], digest.hex(), "{query}");
    }
}

macro_rules! query_tests {
    ($($name:ident: $query:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check_query(stringify!($query), reference::$query);
        }
    )*};
}

query_tests! {
    nexmark_q0_passes_every_bid_through: q0,
    nexmark_q1_converts_prices_exactly: q1,
    nexmark_q2_selects_auctions: q2,
    nexmark_q3_joins_local_sellers_with_their_auctions: q3,
    nexmark_q4_averages_winning_bids_per_category: q4,
    nexmark_q5_finds_the_hottest_auctions_per_hop_window: q5,
    nexmark_q7_finds_the_highest_bids_per_window: q7,
    nexmark_q8_finds_new_users_who_sell: q8,
}

/// `eddy bench nexmark --json` for `query`, from the repository root.
fn bench(query: &str, extra: &[&str]) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut args = vec![
        "bench",
        "nexmark",
        "--query",
        query,
        "--events",
        "60000",
        "--json",
        "--plugin-dir",
        plugin_dir(),
    ];
    args.extend_from_slice(extra);
    let out = eddy(&args, root);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{query} {extra:?}: {stderr}");
    serde_json::from_str(stdout.trim()).expect("one JSON object")
}

#[test]
fn native_twins_and_components_give_the_same_digest_for_every_query() {
    for query in ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8"] {
        let wasm = bench(query, &[]);
        let native = bench(query, &["--native"]);
        assert_eq!(wasm["native"], false);
        assert_eq!(native["native"], true);
        assert_eq!(wasm["events"], 60000, "{query}");
        assert!(wasm["rows"].as_i64().expect("rows") > 0, "{query}");
        assert_eq!(wasm["digest"], native["digest"], "{query}");
        assert_eq!(wasm["rows"], native["rows"], "{query}");
        for key in ["events_per_s", "events_per_cpu_s", "peak_rss_mib"] {
            assert!(wasm[key].as_f64().expect(key) > 0.0, "{query}: {key}");
        }
    }
}

#[test]
fn a_benchmark_with_checkpoints_and_parallelism_keeps_the_digest() {
    let plain = bench("q4", &[]);
    let checkpointed = bench(
        "q4",
        &["--parallelism", "2", "--checkpoint-interval", "100ms"],
    );
    assert_eq!(plain["digest"], checkpointed["digest"]);
    assert_eq!(checkpointed["parallelism"], 2);
    assert!(checkpointed["latency_p99_ms"].as_f64().is_some());
}

#[test]
fn bench_rejects_an_unknown_query_by_name() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = eddy(
        &[
            "bench",
            "nexmark",
            "--query",
            "q6",
            "--plugin-dir",
            plugin_dir(),
        ],
        root,
    );
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(stderr.contains("unknown query \"q6\""), "{stderr}");
}

#[test]
fn q4_on_the_wasm_source_is_exactly_once_across_kills() {
    let count = 60_000;
    let scratch = Scratch::with_plugins("nexmark-q4-kills");
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/nexmark/queries/q4.yaml");
    let job = std::fs::read_to_string(file)
        .expect("q4 job file")
        .replace(
            "plugin-dir: ../../dist\n",
            "parallelism: 2\ncheckpoints: { interval: 100ms, dir: checkpoints }\n",
        )
        .replace(
            "type: generator\n    shape: nexmark\n    count: 1000000",
            &format!(
                "type: plugin\n    plugin: nexmark_source.wasm\n    \
                 params: {{ count: {count}, splits: 2, rate: 5000 }}"
            ),
        )
        .replace(
            "path: out/q4.json",
            "path: out/summary.json\n    rows: out/rows.tsv",
        );
    std::fs::write(scratch.0.join("job.yaml"), job).expect("write job");
    let mut expected = reference::q4(&reference::events(count));
    expected.sort();
    let mut delays = crate::recovery::Delays(7);
    for _ in 0..4 {
        let mut child = crate::recovery::start(&scratch.0);
        std::thread::sleep(std::time::Duration::from_millis(delays.next_ms(300, 900)));
        if child.0.try_wait().expect("wait").is_some() {
            break;
        }
        child.0.kill().expect("SIGKILL");
        let _ = child.0.wait();
    }
    crate::recovery::finish(&scratch.0);
    let rows = std::fs::read_to_string(scratch.0.join("out/rows.tsv")).expect("rows");
    assert_eq!(rows.lines().collect::<Vec<_>>(), expected);
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scratch.0.join("out/summary.json")).expect("summary"),
    )
    .expect("summary JSON");
    let mut digest = eddy_core::connectors::digest::Digest::default();
    for row in &expected {
        digest.apply(row, 1);
    }
    assert_eq!(summary["digest"], digest.hex());
}
