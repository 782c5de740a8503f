//! Throughput of a keyed WASM pipeline at parallelism 1 and 2, and peak RSS against the
//! configured memory budget. Each configuration runs in a fresh child process (this
//! binary re-executed with `--child P`) so that RSS belongs to that run alone.
//!
//! Run: `cargo bench -p eddy-bench --bench engine` (`-- --events N` to change the size).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use eddy_core::Dataflow;
use eddy_core::Registry;
use eddy_testkit::jobs::TO_EUR;
use eddy_wasm::RuntimeConfig;

const BUDGET: &str = "512mb";

fn job(parallelism: u32, events: u64) -> String {
    format!(
        "name: keyed-wasm
parallelism: {parallelism}
memory: {{ process: {BUDGET} }}
sources:
  - type: generator
    count: {events}
    seed: 1
steps:
  - name: big
    where: amount > 10
{TO_EUR}  - key-by: customer
  - rolling: count
sinks:
  - type: discard
"
    )
}

fn peak_rss() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<usize>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

fn child(parallelism: u32, events: u64) {
    let dir = std::env::temp_dir().join(format!("eddy-bench-engine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("job.yaml");
    let (job, runtime, pools) =
        eddy_bench::load(&file, &job(parallelism, events), |job| RuntimeConfig {
            max_instances: parallelism,
            max_memory_bytes: job.memory.wasm.0 / parallelism as usize,
            ..RuntimeConfig::default()
        });
    let dataflow =
        Dataflow::build(&job, &runtime.register(Registry::builtin()), pools).expect("dataflow");
    let start = Instant::now();
    let summary = dataflow.run(&AtomicBool::new(false)).expect("run");
    let secs = start.elapsed().as_secs_f64();
    let written: u64 = summary.sinks.iter().map(|s| s.records_in).sum();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{}",
        serde_json::json!({ "parallelism": parallelism, "events": events, "written": written,
            "seconds": secs, "peak_rss": peak_rss(), "budget": job.memory.process.0 })
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let events = arg("--events").unwrap_or(1_000_000);
    if let Some(p) = arg("--child") {
        child(p as u32, events);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let mut rows = Vec::new();
    for p in [1u32, 2] {
        let out = Command::new(&exe)
            .args(["--child", &p.to_string(), "--events", &events.to_string()])
            .output()
            .expect("run child");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let row: serde_json::Value =
            serde_json::from_slice(out.stdout.trim_ascii()).expect("child JSON");
        rows.push(row);
    }
    println!(
        "keyed WASM pipeline (where → wasm map → key-by → rolling count), {events} events, budget {BUDGET}"
    );
    println!(
        "{:>3} {:>14} {:>10} {:>12}",
        "P", "events/s", "seconds", "peak RSS"
    );
    let rate = |r: &serde_json::Value| {
        r["events"].as_f64().unwrap_or(0.0) / r["seconds"].as_f64().unwrap_or(1.0)
    };
    for r in &rows {
        println!(
            "{:>3} {:>14.0} {:>10.2} {:>9.1} MiB",
            r["parallelism"],
            rate(r),
            r["seconds"].as_f64().unwrap_or(0.0),
            r["peak_rss"].as_f64().unwrap_or(0.0) / (1 << 20) as f64
        );
    }
    println!("scaling P=2 / P=1: {:.2}x", rate(&rows[1]) / rate(&rows[0]));
}
