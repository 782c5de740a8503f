//! What exactly-once costs with Kafka on both ends: a bounded Kafka source → WASM map
//! (`currency-convert`) → Kafka sink, at least once and then exactly once (1 s
//! checkpoints, one transaction per checkpoint), against the same input in one run.
//! The broker is the test broker, in its own process on loopback.
//!
//! Run: `cargo bench -p eddy-bench --bench kafka` (`-- --events N` to change the size).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use eddy_core::Dataflow;
use eddy_core::Registry;
use eddy_kafka::Kafka;
use eddy_testkit::jobs::TO_EUR;
use eddy_testkit::kafka::Broker;
use eddy_wasm::RuntimeConfig;

/// Runs job text `text` in `dir` to its end; returns its wall time in seconds.
fn run(dir: &Path, name: &str, text: &str) -> f64 {
    let file = dir.join(format!("{name}.yaml"));
    let (job, runtime, pools) = eddy_bench::load(&file, text, |_| RuntimeConfig {
        max_instances: 4,
        max_memory_bytes: 64 << 20,
        ..RuntimeConfig::default()
    });
    let registry = runtime
        .register(Registry::builtin())
        .connector("kafka", &Kafka);
    let dataflow = Dataflow::build(&job, &registry, pools).expect("dataflow");
    let start = Instant::now();
    dataflow.run(&AtomicBool::new(false)).expect("run");
    start.elapsed().as_secs_f64()
}

fn copy_job(bootstrap: &str, dir: &Path, output: &str, guarantee: &str) -> String {
    let checkpoints = if guarantee == "exactly-once" {
        format!(
            "checkpoints: {{ interval: 1s, dir: {} }}",
            dir.join(format!("chk-{output}")).display()
        )
    } else {
        String::new()
    };
    format!(
        "name: copy-{output}
{checkpoints}
sources:
  - type: kafka
    bootstrap: {bootstrap}
    topics: [orders]
    bounded: true
steps:
{TO_EUR}sinks:
  - type: kafka
    bootstrap: {bootstrap}
    topic: {output}
    guarantee: {guarantee}
"
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(500_000);
    let dir = std::env::temp_dir().join(format!("eddy-bench-kafka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let broker = Broker::start(&dir);
    for topic in ["orders", "alo", "eos"] {
        broker.create_topic(topic, 1);
    }
    let fill = format!(
        "name: fill
sources:
  - type: generator
    shape: orders
    count: {events}
sinks:
  - type: kafka
    bootstrap: {}
    topic: orders
",
        broker.bootstrap
    );
    let secs = run(&dir, "fill", &fill);
    println!(
        "generator → Kafka (at least once):          {:>9.0} events/s",
        events as f64 / secs
    );
    let alo = run(
        &dir,
        "alo",
        &copy_job(&broker.bootstrap, &dir, "alo", "at-least-once"),
    );
    let eos = run(
        &dir,
        "eos",
        &copy_job(&broker.bootstrap, &dir, "eos", "exactly-once"),
    );
    let (alo_rate, eos_rate) = (events as f64 / alo, events as f64 / eos);
    println!("Kafka → WASM map → Kafka, at least once:   {alo_rate:>9.0} events/s");
    println!(
        "Kafka → WASM map → Kafka, exactly once:    {eos_rate:>9.0} events/s (1 s checkpoints)"
    );
    println!(
        "exactly once / at least once:              {:>9.2}×",
        eos_rate / alo_rate
    );
    let committed = broker.read_committed("eos").len();
    assert_eq!(committed as u64, events, "exactly-once output is complete");
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
