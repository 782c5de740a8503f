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
    let text = format!(
        "name: spanning
parallelism: 4
sources:
  - type: generator
    shape: orders
    count: 20000
    seed: 3
    parallelism: 4
steps:
  - key-by: customer
  - name: per-customer
    rolling: count
sinks:
  - type: file
    path: {}
",
        dir.join("out.jsonl").display()
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
    let job = job(&split);
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let a = Arc::new(DataPlane::bind("a", 1, any).expect("bind a"));
    let b = Arc::new(DataPlane::bind("b", 1, any).expect("bind b"));
    // Slots 0 and 2 on a, 1 and 3 on b: every hash exchange crosses.
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
        Dataflow::build_with_options(&job, &registry, pools(), options).expect("build a part")
    };
    let (part_a, part_b) = (build(&on_a), build(&on_b));
    std::thread::scope(|s| {
        let ran_b = s.spawn(|| part_b.run(&stop));
        part_a.run(&stop).expect("part a");
        ran_b.join().expect("part b thread").expect("part b");
    });
    assert_eq!(sorted(&split.join("out.jsonl")), expected);
    let _ = std::fs::remove_dir_all(&whole);
    let _ = std::fs::remove_dir_all(&split);
}
