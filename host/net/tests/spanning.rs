//! A keyed job split over two "workers" (two dataflows, two data planes on localhost)
//! gives the output the whole job gives in one dataflow.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use eddy_core::job::memory::{ByteSize, MemoryBudget};
use eddy_core::memory::Pools;
use eddy_core::{BuildOptions, Dataflow, Job, Registry};
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
    Arc::new(Pools::new(&MemoryBudget {
        process: ByteSize(1 << 30),
        network: ByteSize(32 << 20),
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

/// Runs `job` as two parts, slots 0 and 2 on one data plane and 1 and 3 on another:
/// every hash exchange crosses.
fn run_split(job: &Job, registry: &Registry<'_>) {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let a = Arc::new(DataPlane::bind("a", 1, any).expect("bind a"));
    let b = Arc::new(DataPlane::bind("b", 1, any).expect("bind b"));
    let slots = vec![
        ("a".to_owned(), a.local_addr()),
        ("b".to_owned(), b.local_addr()),
        ("a".to_owned(), a.local_addr()),
        ("b".to_owned(), b.local_addr()),
    ];
    let on_a = Placement::new(a.clone(), "a", slots.clone(), 7);
    let on_b = Placement::new(b.clone(), "b", slots, 7);
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
