//! High availability of the coordinator without ZooKeeper: one leader among a
//! cluster's coordinators, elected through a lease in a store that outlives them, and
//! the pointers from which a new leader recovers the jobs. The stores: none, etcd
//! (here), Kubernetes (the `eddy-kube` crate, which keeps the client out of this one).
//!
//! Every process incarnation campaigns under an identity of its own. The winner's
//! epoch fences each of its writes: the store applies a write only while the
//! leadership it was won with still holds, so a deposed leader's write fails instead
//! of overwriting its successor's. A leader that cannot renew its lease in time stops
//! acting at once ([`Leader::lost`]). The store holds pointers only (a job's record
//! file, its attempt, whether its cleanup is under way); the data lives in the
//! coordinators' shared directory and in the checkpoint storage.

mod etcd;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use etcd::Etcd;

/// Why the high-availability store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// The store cannot be reached or answered with an error.
    #[error("high-availability store {store}: {message}")]
    Store {
        /// Which store.
        store: String,
        /// What went wrong.
        message: String,
    },
    /// This coordinator no longer leads: another may have been elected.
    #[error("this coordinator no longer leads the cluster: {0}")]
    NotLeader(String),
}

/// A term of leadership: it fences every write made in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch(pub u64);

/// Where a cluster's coordinators elect their leader and keep their pointers.
pub trait HaStore: Send + Sync {
    /// What the store is, for messages.
    fn describe(&self) -> String;

    /// Tries once to become the leader as `me`; the epoch won, or `None` while
    /// another leads.
    fn try_lead(&self, me: &str) -> Result<Option<Epoch>, HaError>;

    /// Keeps the leadership of `epoch` for another lease term.
    fn renew(&self, epoch: Epoch) -> Result<(), HaError>;

    /// How long a leader that stopped renewing keeps the leadership.
    fn lease(&self) -> Duration;

    /// Writes `value` under `key` if `epoch` still leads.
    fn put(&self, epoch: Epoch, key: &str, value: &[u8]) -> Result<(), HaError>;

    /// Removes `key` if `epoch` still leads.
    fn delete(&self, epoch: Epoch, key: &str) -> Result<(), HaError>;

    /// Every key under `prefix` and its value.
    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, HaError>;

    /// Gives the leadership of `epoch` up, so that a standby need not wait for the
    /// lease to run out.
    fn resign(&self, epoch: Epoch);
}

/// How often a candidate tries again while another leads.
const CAMPAIGN_RETRY: Duration = Duration::from_millis(200);

/// The leadership this process holds: renewed on a thread of its own until lost.
#[derive(Clone)]
pub struct Leader {
    store: Arc<dyn HaStore>,
    epoch: Epoch,
    me: String,
    /// Set once the leadership is lost; waited on by [`Leader::lost`].
    gone: Arc<(Mutex<Option<String>>, Condvar)>,
}

impl std::fmt::Debug for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leader")
            .field("store", &self.store.describe())
            .field("epoch", &self.epoch)
            .field("me", &self.me)
            .finish()
    }
}

impl Leader {
    /// Campaigns as `me` until this process leads (`None` if `stop` is set first),
    /// then keeps renewing the lease.
    pub fn campaign(
        store: Arc<dyn HaStore>,
        me: &str,
        stop: &AtomicBool,
    ) -> Result<Option<Leader>, HaError> {
        let mut waiting = false;
        let epoch = loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            match store.try_lead(me) {
                Ok(Some(epoch)) => break epoch,
                Ok(None) => {
                    if !waiting {
                        tracing::info!(me, "standing by: another coordinator leads");
                        waiting = true;
                    }
                }
                Err(e) => tracing::warn!("cannot campaign for leadership: {e}"),
            }
            std::thread::sleep(CAMPAIGN_RETRY);
        };
        tracing::info!(me, epoch = epoch.0, store = %store.describe(), "leading the cluster");
        let leader = Leader {
            store,
            epoch,
            me: me.to_owned(),
            gone: Arc::default(),
        };
        let renewing = leader.clone();
        std::thread::Builder::new()
            .name("eddy-lease".into())
            .spawn(move || renewing.keep())
            .map_err(|e| HaError::Store {
                store: leader.store.describe(),
                message: format!("cannot start the lease thread: {e}"),
            })?;
        Ok(Some(leader))
    }

    /// Renews the lease four times per term. The leadership counts as lost once a
    /// renewal is refused, or once three quarters of a term have passed since the
    /// last one that succeeded was asked for: the lease may run out soon after, and a
    /// successor lead. (Calls to the store time out well within a quarter.)
    fn keep(&self) {
        let lease = self.store.lease();
        let every = lease / 4;
        let mut renewed = Instant::now();
        loop {
            std::thread::sleep(every);
            if self.is_lost() {
                return;
            }
            let asked = Instant::now();
            match self.store.renew(self.epoch) {
                Ok(()) => renewed = asked,
                Err(HaError::NotLeader(why)) => return self.lose(why),
                Err(e) => tracing::warn!("cannot renew the leadership: {e}"),
            }
            if renewed.elapsed() >= lease * 3 / 4 {
                return self.lose(format!("the lease was not renewed for {lease:?}"));
            }
        }
    }

    fn lose(&self, why: String) {
        tracing::error!(me = %self.me, epoch = self.epoch.0, "lost the leadership: {why}");
        let (lost, changed) = &*self.gone;
        lost.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        changed.notify_all();
    }

    /// Whether the leadership is lost.
    pub fn is_lost(&self) -> bool {
        self.gone
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Waits until the leadership is lost or `stop` is set; why it was lost.
    pub fn lost(&self, stop: &AtomicBool) -> Option<String> {
        let (lost, changed) = &*self.gone;
        let mut why = lost.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(why) = why.as_ref() {
                return Some(why.clone());
            }
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            why = changed
                .wait_timeout(why, Duration::from_millis(100))
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
    }

    /// The epoch this leadership was won with.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Writes `value` under `key`, fenced by this leadership.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), HaError> {
        self.fenced(|| self.store.put(self.epoch, key, value))
    }

    /// Removes `key`, fenced by this leadership.
    pub fn delete(&self, key: &str) -> Result<(), HaError> {
        self.fenced(|| self.store.delete(self.epoch, key))
    }

    /// Every key under `prefix` and its value.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, HaError> {
        self.store.list(prefix)
    }

    /// Runs a write unless the leadership is lost; a write the store fenced off loses
    /// it.
    fn fenced(&self, write: impl FnOnce() -> Result<(), HaError>) -> Result<(), HaError> {
        if let Some(why) = self
            .gone
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(HaError::NotLeader(why));
        }
        let written = write();
        if let Err(HaError::NotLeader(why)) = &written {
            self.lose(why.clone());
        }
        written
    }

    /// Gives the leadership up (a clean shutdown), so that a standby takes over at once.
    pub fn resign(&self) {
        self.lose("it resigned".into());
        self.store.resign(self.epoch);
    }
}

/// Which store a coordinator's high availability uses, as the command line names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HaSpec {
    /// One coordinator, nothing kept.
    None,
    /// etcd at these endpoints (`http://host:port`).
    Etcd(Vec<String>),
    /// A ConfigMap of the Kubernetes cluster: through this API server URL, or the
    /// configuration the environment gives (a pod's service account).
    Kubernetes(Option<String>),
}

impl HaSpec {
    /// Reads `none`, `etcd:http://host:port[,http://host:port…]` or
    /// `kubernetes[:http://host:port]`.
    pub fn parse(text: &str) -> Result<HaSpec, String> {
        match text.split_once(':') {
            _ if text == "none" => Ok(HaSpec::None),
            _ if text == "kubernetes" => Ok(HaSpec::Kubernetes(None)),
            Some(("kubernetes", server)) if server.starts_with("http") => Ok(HaSpec::Kubernetes(
                Some(server.trim_end_matches('/').to_owned()),
            )),
            Some(("etcd", endpoints)) => {
                let endpoints: Vec<String> = endpoints
                    .split(',')
                    .map(|e| e.trim().trim_end_matches('/').to_owned())
                    .filter(|e| !e.is_empty())
                    .collect();
                if endpoints.is_empty() || endpoints.iter().any(|e| !e.starts_with("http://")) {
                    return Err(format!(
                        "{text:?}: etcd needs its endpoints as http://host:port, comma-separated"
                    ));
                }
                Ok(HaSpec::Etcd(endpoints))
            }
            _ => Err(format!(
                "{text:?} is not a high-availability store: use none, etcd:http://host:port \
                 or kubernetes[:http://api-server]"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_named_on_the_command_line() {
        assert_eq!(HaSpec::parse("none"), Ok(HaSpec::None));
        assert_eq!(
            HaSpec::parse("etcd:http://a:2379, http://b:2379/"),
            Ok(HaSpec::Etcd(vec![
                "http://a:2379".into(),
                "http://b:2379".into()
            ]))
        );
        assert_eq!(HaSpec::parse("kubernetes"), Ok(HaSpec::Kubernetes(None)));
        assert_eq!(
            HaSpec::parse("kubernetes:http://127.0.0.1:8001/"),
            Ok(HaSpec::Kubernetes(Some("http://127.0.0.1:8001".into())))
        );
        assert!(HaSpec::parse("etcd:").is_err());
        assert!(HaSpec::parse("etcd:a:2379").is_err());
        assert!(HaSpec::parse("zookeeper:a").is_err());
    }
}
