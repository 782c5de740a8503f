//! A keyed job split over two "workers" (two dataflows, two data planes on localhost)
//! gives the output the whole job gives in one dataflow, and a slow sink on one holds
//! back the source on the other.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eddy_core::connectors::{Connector, Opening};
use eddy_core::job::SinkSpec;
use eddy_core::job::memory::{ByteSize, MemoryBudget};
use eddy_core::memory::Pools;
use eddy_core::metrics::Role;
use eddy_core::sink::{Committer, Connected, Sink, SinkError};
use eddy_core::{Batch, BuildOptions, Dataflow, Job, Registry, RunError};
use eddy_net::{DataPlane, Placement};

fn job(dir: &Path) -> Job {
    job_with(dir, "")
}

/// The job with `extra` top-level lines.
fn job_with(dir: &Path, extra: &str) -> Job {
    let text = format!(
        "name: spanning
parallelism: 4
{extra}
sources:
  - type: generator
    shape: orders
    count: 20000
    seed: 3
    parallelism: 4
    rate: {rate}
steps:
  - key-by: customer
  - name: per-customer
    rolling: count
sinks:
  - type: file
    path: {}
",
        dir.join("out.jsonl").display(),
        rate = if extra.is_empty() { 1_000_000 } else { 10_000 },
    );
    Job::parse(&text, &dir.join("job.yaml"), None).expect("job")
}

fn pools() -> Arc<Pools> {
    pools_with_network(32 << 20)
}

fn pools_with_network(network: usize) -> Arc<Pools> {
    Arc::new(Pools::new(&MemoryBudget {
        process: ByteSize(1 << 30),
        network: ByteSize(network),
        managed: ByteSize(64 << 20),
        wasm: ByteSize(1 << 20),
    }))
}

fn sorted(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .expect("output")
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("eddy-net-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    dir
}

/// The placements of a job split over two data planes, slots 0 and 2 on `a` and 1 and
/// 3 on `b`: every hash exchange crosses.
fn split() -> (Placement, Placement) {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let a = Arc::new(DataPlane::bind("a", 1, any).expect("bind a"));
    let b = Arc::new(DataPlane::bind("b", 1, any).expect("bind b"));
    let slots = vec![
        ("a".to_owned(), a.local_addr()),
        ("b".to_owned(), b.local_addr()),
        ("a".to_owned(), a.local_addr()),
        ("b".to_owned(), b.local_addr()),
    ];
    (
        Placement::new(a, "a", slots.clone(), 7),
        Placement::new(b, "b", slots, 7),
    )
}

/// Runs `job` as two parts (see [`split`]).
fn run_split(job: &Job, registry: &Registry<'_>) {
    let (on_a, on_b) = split();
    let build = |network: &Placement| {
        let options = BuildOptions {
            network: Some(network),
            ..BuildOptions::default()
        };
        Dataflow::build_with_options(job, registry, pools(), options).expect("build a part")
    };
    let (part_a, part_b) = (build(&on_a), build(&on_b));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let ran_b = s.spawn(|| part_b.run(&stop));
        part_a.run(&stop).expect("part a");
        ran_b.join().expect("part b thread").expect("part b");
    });
}

#[test]
fn a_checkpointed_job_over_two_workers_completes_checkpoints_of_both_parts() {
    let registry = Registry::builtin();
    let split = scratch("checkpointed");
    let checkpoints = format!(
        "checkpoints: {{ interval: 50ms, dir: {} }}",
        split.join("checkpoints").display()
    );
    let job = job_with(&split, &checkpoints);
    run_split(&job, &registry);
    let whole = scratch("checkpointed_whole");
    Dataflow::build(&job_with(&whole, ""), &registry, pools())
        .expect("build")
        .run(&AtomicBool::new(false))
        .expect("run");
    assert_eq!(
        sorted(&split.join("out.jsonl")),
        sorted(&whole.join("out.jsonl"))
    );
    // The last checkpoint (the final one) names the files of all eight tasks of both
    // parts plus the sink's, each written by the part that runs it.
    let storage = eddy_core::checkpoint::Storage::new(split.join("checkpoints"), "spanning", 3);
    let restored = storage.latest().expect("a completed checkpoint");
    let mut names = restored.task_names().to_vec();
    names.sort();
    assert_eq!(
        names,
        [
            "stage1-0", "stage1-1", "stage1-2", "stage1-3", "stage2-0", "stage2-1", "stage2-2",
            "stage2-3", "stage3-0"
        ]
    );
    assert!(restored.id > 2, "only {} checkpoints", restored.id);
    let _ = std::fs::remove_dir_all(&whole);
    let _ = std::fs::remove_dir_all(&split);
}

#[test]
fn a_keyed_job_over_two_workers_gives_the_output_of_one_process() {
    let registry = Registry::builtin();
    let whole = scratch("whole");
    let stop = AtomicBool::new(false);
    Dataflow::build(&job(&whole), &registry, pools())
        .expect("build")
        .run(&stop)
        .expect("run");
    let expected = sorted(&whole.join("out.jsonl"));
    assert_eq!(expected.len(), 20000);

    let split = scratch("split");
    run_split(&job(&split), &registry);
    assert_eq!(sorted(&split.join("out.jsonl")), expected);
    let _ = std::fs::remove_dir_all(&whole);
    let _ = std::fs::remove_dir_all(&split);
}

/// A `discard` sink that takes 10 µs per event and counts what it took: the slow
/// consumer of the backpressure test.
struct Slow(Arc<AtomicU64>);

impl Connector for Slow {
    fn sink(&self, _at: &Opening<'_>, _spec: &SinkSpec) -> Result<Connected, SinkError> {
        Ok((Box::new(SlowSink(self.0.clone())), Box::new(Nothing)))
    }
}

struct SlowSink(Arc<AtomicU64>);

impl Sink for SlowSink {
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        std::thread::sleep(Duration::from_micros(10) * batch.len() as u32);
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn prepare(&mut self, _checkpoint: u64) -> Result<Vec<u8>, SinkError> {
        Ok(Vec::new())
    }
    fn publish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

struct Nothing;

impl Committer for Nothing {
    fn commit(&mut self, _prepared: &[u8]) -> Result<(), SinkError> {
        Ok(())
    }
}

#[test]
fn a_slow_sink_on_one_worker_holds_back_the_source_on_the_other() {
    const EVENTS: u64 = 5_000_000;
    // The slow consumer takes this many before the source on the other side is looked
    // at; flow control must keep what that source sent beyond it under `IN_FLIGHT`.
    const TAKEN: u64 = 50_000;
    const IN_FLIGHT: u64 = 250_000;
    let dir = scratch("backpressure");
    let text = format!(
        "name: backpressure
parallelism: 2
memory: {{ network: 2mb }}
sources:
  - type: generator
    shape: orders
    count: {EVENTS}
    parallelism: 2
steps:
  - key-by: customer
  - name: per-customer
    rolling: count
sinks:
  - type: discard
"
    );
    let job = Job::parse(&text, &dir.join("job.yaml"), None).expect("job");
    let taken = Arc::new(AtomicU64::new(0));
    let slow = Slow(taken.clone());
    let registry = Registry::builtin().connector("discard", &slow);
    let (on_a, on_b) = split();
    let build = |network: &Placement| {
        let options = BuildOptions {
            network: Some(network),
            ..BuildOptions::default()
        };
        Dataflow::build_with_options(&job, &registry, pools_with_network(2 << 20), options)
            .expect("build a part")
    };
    // The sink runs in slot 0, on `a`; source subtask 1 runs on `b`.
    let (part_a, part_b) = (build(&on_a), build(&on_b));
    let (cancel_a, cancel_b) = (part_a.canceller(), part_b.canceller());
    let metrics_b = part_b.metrics();
    let sent_by_b = || {
        metrics_b
            .totals(Role::Source)
            .iter()
            .map(|t| t.records_out)
            .sum::<u64>()
    };
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let ran_a = s.spawn(|| part_a.run(&stop));
        let ran_b = s.spawn(|| part_b.run(&stop));
        let deadline = Instant::now() + Duration::from_secs(60);
        while taken.load(Ordering::Relaxed) < TAKEN && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (sent, took) = (sent_by_b(), taken.load(Ordering::Relaxed));
        // Both parts end at once when cancelled, even with senders waiting for credit.
        cancel_a.store(true, Ordering::SeqCst);
        cancel_b.store(true, Ordering::SeqCst);
        assert!(matches!(ran_a.join(), Ok(Err(RunError::Cancelled))));
        assert!(matches!(ran_b.join(), Ok(Err(RunError::Cancelled))));
        assert!(took >= TAKEN, "the sink took only {took} events");
        assert!(
            sent <= took + IN_FLIGHT,
            "the source on b sent {sent} events while the sink on a took {took}"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}
