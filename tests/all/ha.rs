//! High availability of the coordinator against a real etcd and against the FAKE
//! Kubernetes API server (in-tree: no real one runs here), with the real kube-rs
//! client: standbys take over from a killed leader, a new coordinator recovers the
//! jobs when every one was lost, and a job that ended leaves nothing behind in the
//! store; a deposed leader's writes are fenced off.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use eddy_testkit::etcd::EtcdServer;
use eddy_testkit::kube_fake::FakeApiServer;

use crate::cluster::{Cluster, append_log, job_at, reference_at, test_log};
use crate::recovery::{Delays, completed, sorted_lines};
use crate::support::{ChildGuard, Scratch, command, free_addr};

/// Where the coordinators of cluster `ha` elect their leader.
enum Store {
    Etcd(EtcdServer),
    /// The FAKE Kubernetes API server.
    Kubernetes(FakeApiServer),
}

impl Store {
    /// The coordinators' `--ha` argument.
    fn arg(&self) -> String {
        match self {
            Store::Etcd(etcd) => format!("etcd:{}", etcd.endpoint),
            Store::Kubernetes(fake) => format!("kubernetes:{}", fake.url),
        }
    }

    /// The job pointers kept, by key.
    fn pointers(&self) -> Vec<String> {
        match self {
            Store::Etcd(etcd) => etcd
                .keys("/eddy/ha/jobs/")
                .iter()
                .map(|k| k.trim_start_matches("/eddy/ha/").to_owned())
                .collect(),
            Store::Kubernetes(fake) => {
                let map = fake.object("default", "configmaps", "eddy-ha-ha");
                let data = map.map(|m| m["binaryData"].clone()).unwrap_or_default();
                let keys = data
                    .as_object()
                    .map(|d| d.keys().cloned().collect::<Vec<_>>());
                keys.unwrap_or_default()
                    .into_iter()
                    .filter_map(|k| k.strip_prefix("jobs.").map(|id| format!("jobs/{id}")))
                    .collect()
            }
        }
    }
}

/// A coordinator of cluster `ha`, sharing `dir/coordinator` with the others, on
/// addresses picked beforehand (a standby serves nothing until it leads).
struct Candidate {
    name: &'static str,
    listen: String,
    rest: String,
}

impl Candidate {
    fn new(name: &'static str) -> Candidate {
        Candidate {
            name,
            listen: free_addr(),
            rest: free_addr(),
        }
    }

    fn start(&self, dir: &Path, store: &Store) -> ChildGuard {
        let ha = store.arg();
        let args = [
            "coordinator",
            "--listen",
            &self.listen,
            "--rest",
            &self.rest,
            "--dir",
            "coordinator",
            "--ha",
            &ha,
            "--cluster-id",
            "ha",
            "--lease",
            "2s",
        ];
        ChildGuard(
            command(&args, dir)
                .env("EDDY_LOG", test_log())
                .stdout(Stdio::null())
                .stderr(append_log(dir, self.name))
                .spawn()
                .expect("start a coordinator"),
        )
    }

    fn url(&self) -> String {
        format!("http://{}", self.rest)
    }

    /// Waits until it leads (its API answers), within `bound`; how long that took.
    fn wait_to_lead(&self, bound: Duration) -> Duration {
        let started = Instant::now();
        while ureq::get(format!("{}/api/v1/overview", self.url()))
            .call()
            .is_err()
        {
            assert!(
                started.elapsed() < bound,
                "{} did not lead within {bound:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        started.elapsed()
    }
}

#[test]
fn standby_coordinators_take_over_and_a_new_one_recovers_the_jobs_exactly_once_with_etcd() {
    takeover("ha_takeover_etcd", &Store::Etcd(EtcdServer::start()));
}

#[test]
fn standby_coordinators_take_over_and_a_new_one_recovers_the_jobs_exactly_once_with_kubernetes() {
    takeover(
        "ha_takeover_kubernetes",
        &Store::Kubernetes(FakeApiServer::start()),
    );
}

/// Kills the leader under a running job (a standby takes over), then every
/// coordinator (a new one recovers the job), and checks the output and the cleanup.
fn takeover(test: &str, store: &Store) {
    let expected = reference_at(4);
    let scratch = Scratch::new(test);
    let dir = &scratch.0;
    let (a, b, c) = (
        Candidate::new("ca"),
        Candidate::new("cb"),
        Candidate::new("cc"),
    );
    let first = a.start(dir, store);
    a.wait_to_lead(Duration::from_secs(30));
    let standby = b.start(dir, store);
    let workers_reach = [&a, &b, &c].map(|c| c.listen.clone()).join(",");
    let mut cluster = Cluster::of(dir, first, &workers_reach, &a.url());
    cluster.worker("w1", 2);
    cluster.worker("w2", 2);
    std::fs::write(dir.join("job.yaml"), job_at(dir, 4, Some(2000), true)).expect("job");
    let id = cluster.submit(&dir.join("job.yaml"));
    assert_eq!(
        store.pointers(),
        [format!("jobs/{id}")],
        "the job's pointer is kept"
    );
    cluster.wait_for(id, "running", Duration::from_secs(30));

    // The leader is killed: the standby takes over and the job goes on.
    let mut delays = Delays(5);
    let before = completed(dir);
    cluster.kill_coordinator_after_a_checkpoint(&mut delays, || completed(dir));
    let killed = Instant::now();
    let took = b.wait_to_lead(Duration::from_secs(30));
    cluster.switch_to(standby, &b.url());
    cluster.wait_for(id, "running", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed(dir) <= before + 1 {
        assert!(
            Instant::now() < deadline,
            "no checkpoint after the takeover"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "{test}: the standby led {took:?} after the kill; the next checkpoint completed \
         {:?} after the kill",
        killed.elapsed()
    );

    // Every coordinator is lost; a new one recovers the job.
    let now = completed(dir);
    cluster.kill_coordinator_after_a_checkpoint(&mut delays, || completed(dir));
    assert!(completed(dir) > now);
    let third = c.start(dir, store);
    c.wait_to_lead(Duration::from_secs(30));
    cluster.switch_to(third, &c.url());
    let done = cluster.wait_for(id, "finished", Duration::from_secs(120));
    // Two attempts more, the job's restart strategy untouched: a coordinator's loss is
    // not the job's failure.
    assert_eq!(done["attempt"], 2, "{done}");
    assert_eq!(
        sorted_lines(&dir.join("out.jsonl")),
        expected,
        "{}",
        cluster.logs()
    );

    // It ended: its pointer and files are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.pointers().is_empty() {
        assert!(Instant::now() < deadline, "the job's pointer stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!dir.join("coordinator/jobs").join(id.to_string()).exists());
}

#[test]
fn a_deposed_leaders_writes_are_fenced_off_by_etcd() {
    use eddy_cluster::ha::{Etcd, HaError, HaStore};
    let etcd = EtcdServer::start();
    let store = |_| Etcd::new(vec![etcd.endpoint.clone()], "fence", Duration::from_secs(2));
    let (a, b) = (store(0), store(1));
    let first = a.try_lead("a").expect("etcd").expect("a leads");
    assert_eq!(b.try_lead("b").expect("etcd"), None, "one leader at a time");
    a.put(first, "jobs/1", b"a's").expect("the leader writes");
    // a's lease ends (as when it stops renewing); b is elected.
    a.resign(first);
    let second = b.try_lead("b").expect("etcd").expect("b leads");
    assert!(second.0 > first.0, "epochs grow: {first:?} then {second:?}");
    for written in [a.put(first, "jobs/1", b"stale"), a.delete(first, "jobs/1")] {
        assert!(matches!(written, Err(HaError::NotLeader(_))), "{written:?}");
    }
    assert!(matches!(a.renew(first), Err(HaError::NotLeader(_))));
    b.put(second, "jobs/2", b"b's")
        .expect("the new leader writes");
    let kept = b.list("jobs/").expect("etcd");
    assert_eq!(
        kept,
        [
            ("jobs/1".to_owned(), b"a's".to_vec()),
            ("jobs/2".to_owned(), b"b's".to_vec())
        ]
    );
}

#[test]
fn a_leader_that_cannot_renew_its_lease_stops_leading_within_it() {
    use eddy_cluster::ha::{Etcd, Leader};
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let etcd = EtcdServer::start();
    let lease = Duration::from_secs(4);
    let store = Arc::new(Etcd::new(vec![etcd.endpoint.clone()], "renew", lease));
    let stop = AtomicBool::new(false);
    let leader = Leader::campaign(store, "a", &stop)
        .expect("etcd")
        .expect("it leads");
    std::thread::sleep(lease);
    assert!(!leader.is_lost(), "a leader that renews keeps leading");
    // The store becomes unreachable: the leader must give up before its lease can
    // have run out and a standby been elected.
    drop(etcd);
    let cut = Instant::now();
    let why = leader.lost(&stop).expect("the leadership is lost");
    assert!(
        cut.elapsed() < lease,
        "lost after {:?}: {why}",
        cut.elapsed()
    );
    assert!(
        leader.put("jobs/1", b"x").is_err(),
        "a lost leader writes nothing"
    );
}

#[test]
fn a_deposed_leaders_writes_are_fenced_off_in_the_kubernetes_configmap() {
    use eddy_cluster::ha::{HaError, HaStore};
    use eddy_kube::KubeStore;
    let fake = FakeApiServer::start();
    let lease = Duration::from_secs(1);
    let store = |_| KubeStore::connect(Some(&fake.url), "fence", lease).expect("a client");
    let (a, b, c) = (store(0), store(1), store(2));
    let first = a.try_lead("a").expect("the API").expect("a leads");
    assert_eq!(
        b.try_lead("b").expect("the API"),
        None,
        "one leader at a time"
    );
    a.put(first, "jobs/1", b"a's").expect("the leader writes");
    a.renew(first).expect("the leader renews");
    // a stops renewing: b, watching, takes over once the record stayed the same for a
    // whole lease by b's clock.
    assert_eq!(b.try_lead("b").expect("the API"), None);
    std::thread::sleep(lease + Duration::from_millis(200));
    let second = b.try_lead("b").expect("the API").expect("b leads");
    assert!(second.0 > first.0, "epochs grow: {first:?} then {second:?}");
    for written in [
        a.put(first, "jobs/1", b"stale"),
        a.delete(first, "jobs/1"),
        a.renew(first),
    ] {
        assert!(matches!(written, Err(HaError::NotLeader(_))), "{written:?}");
    }
    b.put(second, "jobs/2", b"b's")
        .expect("the new leader writes");
    assert_eq!(
        c.list("jobs/").expect("the API"),
        [
            ("jobs/1".to_owned(), b"a's".to_vec()),
            ("jobs/2".to_owned(), b"b's".to_vec())
        ]
    );
    // A leader that resigns hands over at once.
    b.resign(second);
    let third = c.try_lead("c").expect("the API").expect("c leads at once");
    assert!(third.0 > second.0);
}
