//! Native mode against the FAKE Kubernetes API server (in-tree: no real one runs
//! here): the coordinator creates worker pods as a job needs slots, replaces one whose
//! worker died, and deletes them once idle. A fake kubelet here runs what each pod
//! names as a process on this host (the pods share its network) and kills it when its
//! pod is deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_testkit::kube_fake::FakeApiServer;
use serde_json::{Value, json};

use crate::cluster::{Cluster, append_log, eventually, job_at, reference_at, test_log};
use crate::recovery::sorted_lines;
use crate::support::{ChildGuard, Scratch, command, free_addr};

/// Runs the pods of the fake API server as processes.
struct FakeKubelet {
    running: Arc<Mutex<BTreeMap<String, ChildGuard>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What pod `pod` runs, on this host: its container's arguments, its data plane on a
/// free loopback port and its directory under `dir`.
fn start_pod(dir: &Path, name: &str, pod: &Value) -> ChildGuard {
    let args: Vec<String> = pod["spec"]["containers"][0]["args"]
        .as_array()
        .expect("the container's args")
        .iter()
        .filter_map(Value::as_str)
        .map(|a| match a {
            _ if a.starts_with("--data=") => "--data=127.0.0.1:0".to_owned(),
            _ if a.starts_with("--dir=") => format!("--dir={name}"),
            _ => a.replace("$(POD_NAME)", name),
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ChildGuard(
        command(&args, dir)
            .env("EDDY_LOG", test_log())
            .stdout(Stdio::null())
            .stderr(append_log(dir, name))
            .spawn()
            .expect("start a pod's worker"),
    )
}

impl FakeKubelet {
    fn start(fake: Arc<FakeApiServer>, dir: PathBuf) -> FakeKubelet {
        let running: Arc<Mutex<BTreeMap<String, ChildGuard>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (pods, stopping) = (running.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Pods it ran, whether or not their process still runs (a dead pod stays).
            let mut seen = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                let wanted = fake.objects("default", "pods");
                let mut running = pods.lock().expect("pods");
                running.retain(|name, _| wanted.contains_key(name));
                for (name, pod) in &wanted {
                    if !seen.contains(name) {
                        seen.push(name.clone());
                        running.insert(name.clone(), start_pod(&dir, name, pod));
                    }
                }
                drop(running);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        FakeKubelet {
            running,
            stop,
            thread: Some(thread),
        }
    }

    /// Kills pod `name`'s process with SIGKILL, as when its node dies.
    fn kill(&self, name: &str) {
        if let Some(mut child) = self.running.lock().expect("pods").remove(name) {
            let _ = child.0.kill();
            let _ = child.0.wait();
        }
    }

    /// The pods whose process runs.
    fn running(&self) -> Vec<String> {
        self.running.lock().expect("pods").keys().cloned().collect()
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.running.lock().map(|mut r| r.clear()).ok();
    }
}

#[test]
fn native_mode_creates_worker_pods_for_a_job_replaces_a_dead_one_and_deletes_them_idle() {
    let expected = reference_at(4);
    let scratch = Scratch::new("native_kubernetes");
    let dir = &scratch.0;
    let fake = Arc::new(FakeApiServer::start());
    let owner = json!({ "apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": { "name": "eddy-coordinator" } });
    fake.put("default", "deployments", "eddy-coordinator", owner);
    let (listen, rest) = (free_addr(), free_addr());
    let native = format!("kubernetes:{}", fake.url);
    let args = [
        "coordinator",
        "--listen",
        &listen,
        "--rest",
        &rest,
        "--dir",
        "coordinator",
        "--cluster-id",
        "native",
        "--native",
        &native,
        "--worker-slots",
        "2",
        "--workers-reach",
        &listen,
        "--worker-idle",
        "1s",
        "--owner-deployment",
        "eddy-coordinator",
    ];
    let coordinator = ChildGuard(
        command(&args, dir)
            .env("EDDY_LOG", test_log())
            .stdout(Stdio::null())
            .stderr(append_log(dir, "coordinator"))
            .spawn()
            .expect("start the coordinator"),
    );
    let cluster = Cluster::of(dir, coordinator, &listen, &format!("http://{rest}"));
    let kubelet = FakeKubelet::start(fake.clone(), dir.clone());
    eventually("the coordinator serves", Duration::from_secs(30), || {
        ureq::get(format!("http://{rest}/api/v1/overview"))
            .call()
            .ok()
    });
    assert!(fake.objects("default", "pods").is_empty(), "no job, no pod");

    // A job needing 4 slots: two pods of 2.
    std::fs::write(dir.join("job.yaml"), job_at(dir, 4, Some(2000), true)).expect("job");
    let id = cluster.submit(&dir.join("job.yaml"));
    cluster.wait_for(id, "running", Duration::from_secs(60));
    let pods = fake.objects("default", "pods");
    assert_eq!(pods.len(), 2, "{pods:?}");
    let uid = fake
        .object("default", "deployments", "eddy-coordinator")
        .expect("owner")["metadata"]["uid"]
        .clone();
    for pod in pods.values() {
        assert_eq!(pod["metadata"]["labels"]["eddy.dev/cluster"], "native");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], uid);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "2000m"
        );
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"]["memory"],
            "2048Mi"
        );
    }

    // One pod's worker dies: the coordinator deletes that pod and asks for another.
    let victim = pods.keys().next().expect("a pod").clone();
    kubelet.kill(&victim);
    eventually("a replacement pod", Duration::from_secs(60), || {
        let pods = fake.objects("default", "pods");
        (!pods.contains_key(&victim) && pods.len() == 2).then_some(())
    });
    let done = cluster.wait_for(id, "finished", Duration::from_secs(120));
    assert!(done["restarts"].as_u64() >= Some(1), "{done}");
    assert_eq!(
        sorted_lines(&dir.join("out.jsonl")),
        expected,
        "{}",
        cluster.logs()
    );

    // Nothing left to run: the idle pods are deleted, and their workers end.
    eventually("the idle pods deleted", Duration::from_secs(30), || {
        fake.objects("default", "pods").is_empty().then_some(())
    });
    eventually("no worker left", Duration::from_secs(10), || {
        kubelet.running().is_empty().then_some(())
    });
}

#[test]
fn worker_pods_are_created_listed_and_deleted_through_the_api() {
    use eddy_cluster::provision::Provisioner;
    use eddy_kube::{PodTemplate, WorkerPods};
    let fake = FakeApiServer::start();
    let template = PodTemplate {
        cluster: "pods".into(),
        image: "eddy:test".into(),
        coordinator: "eddy-coordinator:6123".into(),
        slots: 3,
        cpu_per_slot: "500m".into(),
        memory_mib_per_slot: 512,
        owner: None,
    };
    let pods = WorkerPods::connect(Some(&fake.url), template).expect("a client");
    let a = pods.start().expect("created");
    let b = pods.start().expect("created");
    assert_ne!(a, b);
    let mut listed = pods.existing().expect("listed");
    listed.sort();
    assert_eq!(listed, [a.clone(), b.clone()]);
    pods.stop(&a).expect("deleted");
    pods.stop(&a).expect("deleting a deleted pod is no error");
    assert_eq!(pods.existing().expect("listed"), std::slice::from_ref(&b));
    let pod = fake.object("default", "pods", &b).expect("the pod");
    let requests = &pod["spec"]["containers"][0]["resources"]["requests"];
    assert_eq!(requests["cpu"], "1500m");
    assert_eq!(requests["memory"], "1536Mi");
}
