//! The coordinators' high-availability store on Kubernetes, as Flink keeps its
//! JobManager's: one ConfigMap per cluster (`eddy-<cluster>-ha`) whose annotation
//! records the leader (client-go's ConfigMap lock: holder, lease duration, transitions)
//! and whose data holds the job pointers.
//!
//! Every write replaces the ConfigMap with the `resourceVersion` it was read at, after
//! checking in that same read that this incarnation still holds the leadership of its
//! epoch (the number of transitions when it won). The check and the version travel in
//! one write: once a successor has taken the ConfigMap over, the deposed leader's write
//! fails with 409, its re-read shows another holder, and the write is refused.
//!
//! A candidate takes the leadership when the record names no holder (the leader
//! resigned) or has not changed for a whole lease by the candidate's own clock (as
//! client-go judges expiry: no clocks are compared across machines).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use eddy_cluster::ha::{Epoch, HaError, HaStore};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};

use crate::client::{Kube, status};

/// The annotation holding the leader record (client-go's ConfigMap lock).
const LEADER: &str = "control-plane.alpha.kubernetes.io/leader";
/// How often a write that lost a race with this leader's own writes is tried again.
const CONFLICT_RETRIES: usize = 10;

/// Who leads, as the annotation records it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaderRecord {
    holder_identity: String,
    lease_duration_seconds: u64,
    /// Changes on every renewal, so that standbys see the leader alive.
    renew_time_ms: u64,
    leader_transitions: u64,
}

/// A cluster's high-availability store in a ConfigMap.
pub struct KubeStore {
    kube: Kube,
    api: Api<ConfigMap>,
    name: String,
    lease: Duration,
    /// This incarnation's identity, once it campaigned.
    me: Mutex<String>,
    /// The leader record last seen and when it was first seen as it is.
    seen: Mutex<Option<(LeaderRecord, Instant)>>,
}

/// A pointer key as a ConfigMap key (`[-._a-zA-Z0-9]`): `/` becomes `.`.
fn data_key(key: &str) -> String {
    key.replace('/', ".")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl KubeStore {
    /// The store of cluster `cluster` through the API server at `server` (see
    /// [`Kube::connect`]), with leases of `lease`.
    pub fn connect(
        server: Option<&str>,
        cluster: &str,
        lease: Duration,
    ) -> Result<KubeStore, HaError> {
        let lease = lease.max(Duration::from_secs(1));
        // A call that hangs must not keep a leader from seeing its lease run out.
        let kube = Kube::connect(server, lease / 8).map_err(|e| HaError::Store {
            store: format!("kubernetes {}", e.server),
            message: e.message,
        })?;
        Ok(KubeStore {
            api: Api::namespaced(kube.client.clone(), &kube.namespace),
            kube,
            name: format!("eddy-{cluster}-ha"),
            lease,
            me: Mutex::default(),
            seen: Mutex::default(),
        })
    }

    fn error(&self, message: String) -> HaError {
        HaError::Store {
            store: self.describe(),
            message,
        }
    }

    fn get(&self) -> Result<Option<ConfigMap>, HaError> {
        self.kube
            .block_on(self.api.get_opt(&self.name))
            .map_err(|e| self.error(format!("reading ConfigMap {}: {e}", self.name)))
    }

    fn record(&self, map: &ConfigMap) -> Result<LeaderRecord, HaError> {
        match map
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEADER))
        {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| self.error(format!("the leader record {text:?}: {e}"))),
            None => Ok(LeaderRecord::default()),
        }
    }

    fn annotate(map: &mut ConfigMap, record: &LeaderRecord) {
        let text = serde_json::to_string(record).unwrap_or_default();
        map.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(LEADER.into(), text);
    }

    /// Replaces the ConfigMap as read; `Ok(false)` when it changed since (409).
    fn replace(&self, map: &ConfigMap) -> Result<bool, HaError> {
        let pp = PostParams::default();
        match self.kube.block_on(self.api.replace(&self.name, &pp, map)) {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(409) => Ok(false),
            Err(e) => Err(self.error(format!("writing ConfigMap {}: {e}", self.name))),
        }
    }

    /// Applies `change` to the ConfigMap while this incarnation leads at `epoch`,
    /// re-reading after each conflict.
    fn fenced(&self, epoch: Epoch, change: impl Fn(&mut ConfigMap)) -> Result<(), HaError> {
        let me = self.me.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for _ in 0..CONFLICT_RETRIES {
            let Some(mut map) = self.get()? else {
                return Err(HaError::NotLeader(format!(
                    "ConfigMap {} is gone",
                    self.name
                )));
            };
            let record = self.record(&map)?;
            if record.holder_identity != me || record.leader_transitions != epoch.0 {
                return Err(HaError::NotLeader(format!(
                    "ConfigMap {} names {:?} (transition {}) as the leader",
                    self.name, record.holder_identity, record.leader_transitions
                )));
            }
            change(&mut map);
            if self.replace(&map)? {
                return Ok(());
            }
        }
        Err(self.error(format!(
            "ConfigMap {} kept changing under {CONFLICT_RETRIES} writes",
            self.name
        )))
    }

    /// Whether `record`'s holder has let its lease run out: it named nobody, or it
    /// has not changed for a whole lease since this candidate first saw it.
    fn expired(&self, record: &LeaderRecord) -> bool {
        if record.holder_identity.is_empty() {
            return true;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.as_ref() {
            Some((last, since)) if last == record => {
                since.elapsed() > Duration::from_secs(record.lease_duration_seconds)
            }
            _ => {
                *seen = Some((record.clone(), Instant::now()));
                false
            }
        }
    }
}

impl HaStore for KubeStore {
    fn describe(&self) -> String {
        format!("kubernetes {}", self.kube.server)
    }

    fn try_lead(&self, me: &str) -> Result<Option<Epoch>, HaError> {
        *self.me.lock().unwrap_or_else(|p| p.into_inner()) = me.to_owned();
        let mut won = LeaderRecord {
            holder_identity: me.to_owned(),
            lease_duration_seconds: self.lease.as_secs(),
            renew_time_ms: now_ms(),
            leader_transitions: 1,
        };
        let Some(mut map) = self.get()? else {
            let mut map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            };
            Self::annotate(&mut map, &won);
            let pp = PostParams::default();
            return match self.kube.block_on(self.api.create(&pp, &map)) {
                Ok(_) => Ok(Some(Epoch(1))),
                Err(e) if status(&e) == Some(409) => Ok(None),
                Err(e) => Err(self.error(format!("creating ConfigMap {}: {e}", self.name))),
            };
        };
        let record = self.record(&map)?;
        if !self.expired(&record) {
            return Ok(None);
        }
        won.leader_transitions = record.leader_transitions + 1;
        Self::annotate(&mut map, &won);
        Ok(self.replace(&map)?.then_some(Epoch(won.leader_transitions)))
    }

    fn renew(&self, epoch: Epoch) -> Result<(), HaError> {
        self.fenced(epoch, |map| {
            let mut record = self.record(map).unwrap_or_default();
            record.renew_time_ms = now_ms();
            Self::annotate(map, &record);
        })
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn put(&self, epoch: Epoch, key: &str, value: &[u8]) -> Result<(), HaError> {
        self.fenced(epoch, |map| {
            map.binary_data
                .get_or_insert_with(BTreeMap::new)
                .insert(data_key(key), ByteString(value.to_vec()));
        })
    }

    fn delete(&self, epoch: Epoch, key: &str) -> Result<(), HaError> {
        self.fenced(epoch, |map| {
            if let Some(data) = map.binary_data.as_mut() {
                data.remove(&data_key(key));
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, HaError> {
        let prefix = data_key(prefix);
        let map = self.get()?.unwrap_or_default();
        Ok(map
            .binary_data
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.replace('.', "/"), v.0))
            .collect())
    }

    fn resign(&self, epoch: Epoch) {
        let resigned = self.fenced(epoch, |map| {
            let mut record = self.record(map).unwrap_or_default();
            record.holder_identity.clear();
            Self::annotate(map, &record);
        });
        if let Err(e) = resigned {
            tracing::warn!("cannot give the leadership up: {e}");
        }
    }
}
