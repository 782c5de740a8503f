//! What a plugin's language costs: the same two plugins written in Rust, Python,
//! JavaScript and C (the twins under `plugins/`, built from source by the test kit) run
//! the same jobs. For each language: component size, compile time (uncached), instance
//! start (instantiate + `open`), and per-event cost in a map job (`currency-convert`)
//! and a keyed process-function job (`order-summary`: map state, a timer per bucket).
//!
//! The cost of a plugin is the time spent inside its calls (the host counts it per
//! instance: boundary crossings, the plugin's code and its state calls), per event of
//! the job; the job's wall time would hide it, as steps run in threads of their own.
//!
//! Run: `cargo bench -p eddy-bench --bench polyglot` (`-- --events N`, default 1,000,000,
//! a tenth of it for the interpreted languages; `-- --json`).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eddy_core::Registry;
use eddy_core::job::sandbox::Sandbox;
use eddy_core::memory::Pools;

use eddy_core::{Dataflow, Job};
use eddy_testkit::jobs::orders_source;
use eddy_testkit::plugins::{
    CURRENCY_CONVERT, CURRENCY_CONVERT_C, CURRENCY_CONVERT_JS, CURRENCY_CONVERT_PY, ORDER_SUMMARY,
    ORDER_SUMMARY_C, ORDER_SUMMARY_JS, ORDER_SUMMARY_PY,
};
use eddy_wasm::bindings::map::MapPlugin;
use eddy_wasm::{InstanceInfo, Runtime, RuntimeConfig};

/// Language, its `currency-convert` and its `order-summary` component, and whether it
/// is interpreted (those run a tenth of the events, so the bench ends in minutes).
const LANGS: [(&str, &str, &str, bool); 4] = [
    ("rust", CURRENCY_CONVERT, ORDER_SUMMARY, false),
    ("c", CURRENCY_CONVERT_C, ORDER_SUMMARY_C, false),
    ("js", CURRENCY_CONVERT_JS, ORDER_SUMMARY_JS, true),
    ("python", CURRENCY_CONVERT_PY, ORDER_SUMMARY_PY, true),
];

const RATES: &str = "{ target: EUR, rates: { USD: 0.92, GBP: 1.17, JPY: 0.0062, CHF: 1.05 } }";

/// A job over `events` generated orders with `steps` between the source and the sink.
fn job(events: u64, steps: &str) -> String {
    let source = orders_source(events, 3, &[]);
    format!(
        "name: polyglot
memory: {{ process: 2gb }}
sources:
{source}steps:
  - key-by: customer
{steps}sinks:
  - type: discard
"
    )
}

fn map_step(plugin: &str) -> String {
    format!("  - name: to-eur\n    map: {plugin}\n    params: {RATES}\n")
}

fn process_step(plugin: &str) -> String {
    format!("  - name: summary\n    process: {plugin}\n    params: {{ big: 1.0e12 }}\n")
}

/// Nanoseconds per event spent inside the plugin's calls, best of `rounds`, and the peak
/// WASM memory.
fn run(text: &str, rounds: u32) -> (f64, usize) {
    let dir = std::env::temp_dir().join(format!("eddy-bench-polyglot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("job.yaml");
    std::fs::write(&file, text).expect("write job");
    let job = Job::load(&file, None).expect("job");
    let mut best = f64::MAX;
    let mut wasm_peak = 0;
    for _ in 0..rounds {
        let pools = Arc::new(Pools::new(&job.memory));
        let runtime = Runtime::new(&RuntimeConfig {
            pools: Some(pools.clone()),
            ..RuntimeConfig::default()
        })
        .expect("runtime");
        let dataflow =
            Dataflow::build(&job, &runtime.register(Registry::builtin()), pools).expect("dataflow");
        let metrics = dataflow.metrics();
        let summary = dataflow.run(&AtomicBool::new(false)).expect("run");
        let events = summary.sources.iter().map(|s| s.records_out).sum::<u64>();
        let inside: u64 = metrics
            .plugins
            .iter()
            .map(|p| p.counters.cpu_ns.load(Ordering::Relaxed))
            .sum();
        best = best.min(inside as f64 / events.max(1) as f64);
        wasm_peak = summary
            .pools
            .iter()
            .find(|(name, _, _)| *name == "wasm")
            .map_or(0, |p| p.1);
    }
    let _ = std::fs::remove_dir_all(&dir);
    (best, wasm_peak)
}

/// Compile time without the cache, and the mean of instantiate + `open`.
fn start_times(plugin: &str) -> (Duration, Duration) {
    let runtime = Runtime::new(&RuntimeConfig {
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .expect("engine");
    let start = Instant::now();
    let loaded = runtime.load(Path::new(plugin)).expect("plugin loads");
    let compile = start.elapsed();
    let prepared = runtime.prepare::<MapPlugin>(&loaded).expect("map world");
    let info = InstanceInfo {
        job: "bench".into(),
        step: "to-eur".into(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        params_json: serde_json::json!({"rates": {"USD": 0.92}}).to_string(),
        sandbox: Sandbox::default(),
    };
    let mut n = 0u32;
    let start = Instant::now();
    while n < 2000 && (n < 20 || start.elapsed() < Duration::from_millis(500)) {
        let mut op = runtime
            .instantiate::<MapPlugin>(&loaded, &prepared, info.clone())
            .expect("instantiate");
        op.open().expect("open");
        black_box(op);
        n += 1;
    }
    (compile, start.elapsed() / n)
}

/// One language's figures.
struct Row {
    lang: &'static str,
    events: u64,
    size: u64,
    compile: Duration,
    start: Duration,
    map_ns: f64,
    process_ns: f64,
    wasm_peak: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let events: u64 = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(1_000_000);
    let interpreted = events / 10;
    let mut rows = Vec::new();
    for (lang, map, process, slow) in LANGS {
        let n = if slow { interpreted } else { events };
        let size = std::fs::metadata(map).map_or(0, |m| m.len());
        let (compile, start) = start_times(map);
        let (map_ns, wasm_peak) = run(&job(n, &map_step(map)), 2);
        let (process_ns, _) = run(&job(n, &process_step(process)), 2);
        rows.push(Row {
            lang,
            events: n,
            size,
            compile,
            start,
            map_ns,
            process_ns,
            wasm_peak,
        });
    }
    let rust = (rows[0].map_ns, rows[0].process_ns);
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "lang": r.lang, "events": r.events, "component_bytes": r.size,
                    "compile_s": r.compile.as_secs_f64(), "start_us": r.start.as_secs_f64() * 1e6,
                    "map_ns_per_event": r.map_ns, "map_vs_rust": r.map_ns / rust.0,
                    "process_ns_per_event": r.process_ns, "process_vs_rust": r.process_ns / rust.1,
                    "wasm_memory_peak": r.wasm_peak,
                })
            })
            .collect();
        let doc = serde_json::json!({ "languages": rows });
        println!("{doc}");
        return;
    }
    println!("time inside the plugins' calls per event of generated orders");
    println!(
        "{:<7} {:>8} {:>10} {:>10} {:>10} {:>12} {:>9} {:>12} {:>9} {:>10}",
        "lang",
        "events",
        "size KiB",
        "compile s",
        "start µs",
        "map ns/ev",
        "vs Rust",
        "process ns",
        "vs Rust",
        "wasm MiB"
    );
    for r in &rows {
        println!(
            "{:<7} {:>8} {:>10.0} {:>10.2} {:>10.1} {:>12.0} {:>9.2} {:>12.0} {:>9.2} {:>10.1}",
            r.lang,
            r.events,
            r.size as f64 / 1024.0,
            r.compile.as_secs_f64(),
            r.start.as_secs_f64() * 1e6,
            r.map_ns,
            r.map_ns / rust.0,
            r.process_ns,
            r.process_ns / rust.1,
            r.wasm_peak as f64 / (1024.0 * 1024.0)
        );
    }
}
