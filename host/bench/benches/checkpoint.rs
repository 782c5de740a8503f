//! What exactly-once costs:
//! 1. throughput of a stateful WASM job (map → keyed process function → 2PC file sink)
//!    without checkpoints, and with checkpoints every second on each state backend;
//! 2. RocksDB with about 1 GB of keyed state: duration and size of a full checkpoint,
//!    then of an incremental one after 1% of the keys changed;
//! 3. the time from restarting a killed job to its first processed record.
//!
//! Every measurement runs in a fresh child process (this binary re-executed).
//! Run: `cargo bench -p eddy-bench --bench checkpoint`
//! (`-- --events N --state-mb M` to change the sizes).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use eddy_core::Registry;
use eddy_core::checkpoint::Storage;
use eddy_core::job::state::BackendKind;
use eddy_core::memory::Pools;
use eddy_core::metrics::Role;
use eddy_core::state::backend::{BackendFactory, HeapFactory, KeyedBackend, state_key};
use eddy_core::time::SystemClock;
use eddy_core::{Dataflow, Job};
use eddy_state_rocksdb::{RocksBackend, RocksFactory};
use eddy_testkit::jobs::{ORDER_STEPS, orders_source};
use eddy_wasm::{Runtime, RuntimeConfig};

fn job(dir: &Path, events: u64, backend: &str, checkpoints: bool) -> String {
    let checkpoints = if checkpoints {
        format!(
            "checkpoints: {{ interval: 1s, dir: {} }}",
            dir.join("chk").display()
        )
    } else {
        String::new()
    };
    format!(
        "name: checkpointed
state: {{ backend: {backend}, dir: {state} }}
{checkpoints}
sources:
{source}steps:
{ORDER_STEPS}sinks:
  - type: file
    path: {out}
",
        source = orders_source(events, 3, &[]),
        state = dir.join("state").display(),
        out = dir.join("out.jsonl").display(),
    )
}

/// A job's pieces: its definition, WASM runtime, memory pools and state backend.
type Loaded = (Job, Runtime, Arc<Pools>, Arc<dyn BackendFactory>);

fn load(dir: &Path, text: &str) -> Loaded {
    let (job, runtime, pools) = eddy_bench::load(&dir.join("job.yaml"), text, |_| RuntimeConfig {
        max_instances: 4,
        max_memory_bytes: 64 << 20,
        ..RuntimeConfig::default()
    });
    let state: Arc<dyn BackendFactory> = match job.state.backend {
        BackendKind::Rocksdb => Arc::new(RocksFactory),
        BackendKind::Memory => Arc::new(HeapFactory::new(Some(pools.clone()))),
    };
    (job, runtime, pools, state)
}

/// The job's dataflow, with its state in `state`.
fn dataflow(loaded: Loaded) -> Dataflow {
    let (job, runtime, pools, state) = loaded;
    Dataflow::build_with(
        &job,
        &runtime.register(Registry::builtin()),
        pools,
        state,
        Arc::new(SystemClock),
        None,
    )
    .expect("dataflow")
}

/// Child: runs the job once; prints events per second and checkpoints taken.
fn throughput(dir: &Path, events: u64, backend: &str, checkpoints: bool) {
    let dataflow = dataflow(load(dir, &job(dir, events, backend, checkpoints)));
    let start = Instant::now();
    let summary = dataflow.run(&AtomicBool::new(false)).expect("run");
    let secs = start.elapsed().as_secs_f64();
    let taken = summary.checkpoint.map_or(0, |(id, _)| id);
    println!(
        "{}",
        serde_json::json!({ "rate": events as f64 / secs, "seconds": secs, "checkpoints": taken })
    );
}

/// Child: runs the job with checkpoints until the parent kills it.
fn doomed(dir: &Path, events: u64, backend: &str) {
    let dataflow = dataflow(load(dir, &job(dir, events, backend, true)));
    println!("started");
    let _ = dataflow.run(&AtomicBool::new(false));
}

/// Child: restores the latest checkpoint; prints when the first record after the
/// sources was processed, in ms since this process started.
fn restore(dir: &Path, events: u64, backend: &str, started: Instant) {
    let (job, runtime, pools, state) = load(dir, &job(dir, events, backend, true));
    let storage = Storage::new(dir.join("chk"), &job.name, 3);
    let restored = storage.latest().expect("a checkpoint");
    let dataflow = Dataflow::build_with(
        &job,
        &runtime.register(Registry::builtin()),
        pools,
        state,
        Arc::new(SystemClock),
        Some(&restored),
    )
    .expect("dataflow");
    let metrics = dataflow.metrics();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let _ = dataflow.run(&stop);
        });
        loop {
            let steps = metrics.totals(Role::Step);
            if steps.first().is_some_and(|t| t.records_in > 0) {
                println!(
                    "{}",
                    serde_json::json!({ "first_record_ms": started.elapsed().as_secs_f64() * 1e3 })
                );
                std::process::exit(0);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    });
}

/// Bytes of the files under `dir`, and of those whose inode is not in `seen`.
fn sizes(dir: &Path, seen: &HashSet<u64>) -> (u64, u64, HashSet<u64>) {
    let (mut total, mut new, mut inodes) = (0, 0, HashSet::new());
    for entry in std::fs::read_dir(dir).expect("checkpoint dir").flatten() {
        let meta = entry.metadata().expect("metadata");
        total += meta.len();
        if !seen.contains(&meta.ino()) {
            new += meta.len();
        }
        inodes.insert(meta.ino());
    }
    (total, new, inodes)
}

/// Child: about `mb` MiB of keyed state in RocksDB, a full and an incremental
/// checkpoint.
fn rocksdb_state(dir: &Path, mb: u64) {
    const VALUE: usize = 1024;
    let keys = mb * 1024;
    let mut db = RocksBackend::open(dir.join("db"), "bench".into(), 0..128).expect("open");
    let mut value = vec![0u8; VALUE];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut fill = |db: &mut RocksBackend, k: u64| {
        for chunk in value.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let key = format!("key-{k}");
        let group = eddy_core::keygroup::key_group(key.as_bytes(), 128);
        db.put(&state_key(group, key.as_bytes(), "s", 0), &value)
            .expect("put");
    };
    let t = Instant::now();
    for k in 0..keys {
        fill(&mut db, k);
    }
    let fill_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    db.snapshot(Some(&dir.join("chk-1"))).expect("checkpoint");
    let full_secs = t.elapsed().as_secs_f64();
    let (full, _, seen) = sizes(&dir.join("chk-1/rocksdb-bench"), &HashSet::new());
    for k in (0..keys).step_by(100) {
        fill(&mut db, k);
    }
    let t = Instant::now();
    db.snapshot(Some(&dir.join("chk-2"))).expect("checkpoint");
    let incremental_secs = t.elapsed().as_secs_f64();
    let (total, new, _) = sizes(&dir.join("chk-2/rocksdb-bench"), &seen);
    println!(
        "{}",
        serde_json::json!({ "keys": keys, "fill_s": fill_secs, "full_s": full_secs,
            "full_bytes": full, "incremental_s": incremental_secs,
            "incremental_total_bytes": total, "incremental_new_bytes": new })
    );
}

fn child_json(args: &[String]) -> serde_json::Value {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe).args(args).output().expect("run child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.trim_ascii()).expect("child JSON")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eddy-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    dir
}

fn main() {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let events: u64 = arg("--events")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let state_mb: u64 = arg("--state-mb")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    if let Some(mode) = arg("--child") {
        let dir = PathBuf::from(arg("--dir").expect("--dir"));
        let backend = arg("--backend").unwrap_or_else(|| "memory".into());
        match mode.as_str() {
            "plain" => throughput(&dir, events, &backend, false),
            "checkpoints" => throughput(&dir, events, &backend, true),
            "doomed" => doomed(&dir, events, &backend),
            "restore" => restore(&dir, events, &backend, started),
            "rocksdb" => rocksdb_state(&dir, state_mb),
            other => panic!("unknown child mode {other}"),
        }
        return;
    }
    let run = |mode: &str, backend: &str, dir: &Path| {
        child_json(
            &[
                "--child",
                mode,
                "--backend",
                backend,
                "--dir",
                &dir.display().to_string(),
                "--events",
                &events.to_string(),
                "--state-mb",
                &state_mb.to_string(),
            ]
            .map(String::from),
        )
    };

    println!(
        "1. throughput: generator → wasm map → key-by → wasm process (map state, timers) → file sink, {events} events, P=1"
    );
    for backend in ["memory", "rocksdb"] {
        let plain = run("plain", backend, &scratch(&format!("plain-{backend}")));
        let base = plain["rate"].as_f64().unwrap_or(1.0);
        let r = run("checkpoints", backend, &scratch(backend));
        let rate = r["rate"].as_f64().unwrap_or(0.0);
        println!(
            "   {backend:<7} state: no checkpoints {base:>9.0} events/s, every 1 s {rate:>9.0} events/s ({:.2}x, {} checkpoints)",
            rate / base,
            r["checkpoints"]
        );
    }

    println!("2. RocksDB with {state_mb} MiB of keyed state (1 KiB values, random bytes)");
    let dir = scratch("rocksdb");
    let r = run("rocksdb", "rocksdb", &dir);
    let mib = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0) / (1 << 20) as f64;
    println!(
        "   filled {} keys in {:.1} s",
        r["keys"],
        r["fill_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "   full checkpoint:        {:>7.2} s, {:>8.1} MiB",
        r["full_s"].as_f64().unwrap_or(0.0),
        mib(&r["full_bytes"])
    );
    println!(
        "   incremental (1% keys):  {:>7.2} s, {:>8.1} MiB new of {:.1} MiB referenced",
        r["incremental_s"].as_f64().unwrap_or(0.0),
        mib(&r["incremental_new_bytes"]),
        mib(&r["incremental_total_bytes"])
    );
    let _ = std::fs::remove_dir_all(&dir);

    println!("3. restart after kill -9 → first processed record");
    for backend in ["memory", "rocksdb"] {
        let dir = scratch(&format!("restart-{backend}"));
        let exe = std::env::current_exe().expect("own path");
        let mut doomed = Command::new(&exe)
            .args(["--child", "doomed", "--backend", backend, "--dir"])
            .arg(&dir)
            .args(["--events", "100000000"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("child");
        let mut line = String::new();
        if let Some(out) = doomed.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        std::thread::sleep(Duration::from_millis(3500));
        let _ = doomed.kill();
        let _ = doomed.wait();
        let t = Instant::now();
        let r = child_json(
            &[
                "--child",
                "restore",
                "--backend",
                backend,
                "--dir",
                &dir.display().to_string(),
                "--events",
                "100000000",
            ]
            .map(String::from),
        );
        println!(
            "   {backend:<7}: {:>6.1} ms from process start ({:.1} ms from spawn)",
            r["first_record_ms"].as_f64().unwrap_or(0.0),
            t.elapsed().as_secs_f64() * 1e3
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
