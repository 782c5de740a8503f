//! The etcd store, spoken over etcd's HTTP/JSON gateway (`/v3/...`), which every etcd
//! since 3.4 serves on its client port: no gRPC stack to build.
//!
//! The leader holds `/eddy/<cluster>/leader`, created in a transaction only if absent
//! and bound to its lease; the key's create revision is the leader's epoch. Each of
//! its writes is a transaction comparing that create revision: once the lease ran out
//! and another created the key again, the comparison fails and so does the write.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{Epoch, HaError, HaStore};

/// A cluster's coordinators' store in etcd.
pub struct Etcd {
    endpoints: Vec<String>,
    prefix: String,
    lease: Duration,
    agent: ureq::Agent,
    /// The lease this process campaigns and leads with.
    lease_id: Mutex<Option<String>>,
}

impl Etcd {
    /// The store of cluster `cluster` in the etcd at `endpoints`, with leases of
    /// `lease` (whole seconds, at least one).
    pub fn new(endpoints: Vec<String>, cluster: &str, lease: Duration) -> Etcd {
        let lease = lease.max(Duration::from_secs(1));
        // A call that hangs must not keep a leader from seeing its lease run out.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(lease / 8))
            .build()
            .into();
        Etcd {
            endpoints,
            prefix: format!("/eddy/{cluster}/"),
            lease,
            agent,
            lease_id: Mutex::default(),
        }
    }

    fn error(&self, message: String) -> HaError {
        HaError::Store {
            store: self.describe(),
            message,
        }
    }

    /// Posts `body` to `path` on the first endpoint that answers.
    fn call(&self, path: &str, body: &Value) -> Result<Value, HaError> {
        let mut last = String::new();
        for endpoint in &self.endpoints {
            let response = self
                .agent
                .post(format!("{endpoint}/v3/{path}"))
                .send_json(body);
            let mut response = match response {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{endpoint}: {e}");
                    continue;
                }
            };
            let status = response.status();
            let text = response
                .body_mut()
                .read_to_string()
                .map_err(|e| self.error(format!("{endpoint}: {e}")))?;
            if !status.is_success() {
                return Err(self.error(format!("{endpoint}/v3/{path}: {status}: {text}")));
            }
            return serde_json::from_str(&text)
                .map_err(|e| self.error(format!("{endpoint}/v3/{path}: {e}: {text}")));
        }
        Err(self.error(last))
    }

    fn key(&self, key: &str) -> String {
        B64.encode(format!("{}{key}", self.prefix))
    }

    /// A live lease of this process: the one it has, or a new one.
    fn live_lease(&self) -> Result<String, HaError> {
        let mut held = self.lease_id.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = held.as_ref()
            && self.keep_alive(id)?
        {
            return Ok(id.clone());
        }
        let granted = self.call("lease/grant", &json!({ "TTL": self.lease.as_secs() }))?;
        let id = text(&granted["ID"])
            .ok_or_else(|| self.error(format!("no lease granted: {granted}")))?;
        *held = Some(id.clone());
        Ok(id)
    }

    /// Renews lease `id`; whether it was still alive.
    fn keep_alive(&self, id: &str) -> Result<bool, HaError> {
        let answer = self.call("lease/keepalive", &json!({ "ID": id }))?;
        Ok(number(&answer["result"]["TTL"]).is_some_and(|ttl| ttl > 0))
    }

    /// Runs `operation` if the leader key was created at `epoch`.
    fn fenced(&self, epoch: Epoch, operation: Value) -> Result<(), HaError> {
        let answer = self.call(
            "kv/txn",
            &json!({
                "compare": [{
                    "key": self.key("leader"),
                    "target": "CREATE",
                    "result": "EQUAL",
                    "create_revision": epoch.0.to_string(),
                }],
                "success": [operation],
            }),
        )?;
        if answer["succeeded"].as_bool() == Some(true) {
            Ok(())
        } else {
            Err(HaError::NotLeader(format!(
                "the leadership of epoch {} has passed on",
                epoch.0
            )))
        }
    }
}

/// An int64 of etcd's JSON (a string).
fn number(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
}

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::to_owned)
        .or_else(|| v.as_i64().map(|n| n.to_string()))
}

impl HaStore for Etcd {
    fn describe(&self) -> String {
        format!("etcd {}", self.endpoints.join(","))
    }

    fn try_lead(&self, me: &str) -> Result<Option<Epoch>, HaError> {
        let lease = self.live_lease()?;
        let leader = self.key("leader");
        let answer = self.call(
            "kv/txn",
            &json!({
                "compare": [{
                    "key": leader,
                    "target": "CREATE",
                    "result": "EQUAL",
                    "create_revision": "0",
                }],
                "success": [{ "request_put": {
                    "key": leader,
                    "value": B64.encode(me),
                    "lease": lease,
                }}],
            }),
        )?;
        if answer["succeeded"].as_bool() != Some(true) {
            return Ok(None);
        }
        // The transaction's revision is the key's create revision.
        number(&answer["header"]["revision"])
            .and_then(|r| u64::try_from(r).ok())
            .map(|r| Some(Epoch(r)))
            .ok_or_else(|| self.error(format!("no revision in {answer}")))
    }

    fn renew(&self, epoch: Epoch) -> Result<(), HaError> {
        let id = self
            .lease_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(id) = id else {
            return Err(HaError::NotLeader("it holds no lease".into()));
        };
        if !self.keep_alive(&id)? {
            return Err(HaError::NotLeader(format!("its lease {id} ran out")));
        }
        // The lease lives: the key it holds must be the one created at `epoch`.
        let answer = self.call("kv/range", &json!({ "key": self.key("leader") }))?;
        let created = number(&answer["kvs"][0]["create_revision"]);
        if created != i64::try_from(epoch.0).ok() {
            return Err(HaError::NotLeader(format!(
                "the leader key was created at revision {created:?}, not {}",
                epoch.0
            )));
        }
        Ok(())
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn put(&self, epoch: Epoch, key: &str, value: &[u8]) -> Result<(), HaError> {
        let put = json!({ "request_put": { "key": self.key(key), "value": B64.encode(value) } });
        self.fenced(epoch, put)
    }

    fn delete(&self, epoch: Epoch, key: &str) -> Result<(), HaError> {
        self.fenced(
            epoch,
            json!({ "request_delete_range": { "key": self.key(key) } }),
        )
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, HaError> {
        let start = format!("{}{prefix}", self.prefix);
        // Every key beginning with `start`: up to the next prefix of the same length.
        let mut end = start.clone().into_bytes();
        if let Some(last) = end.last_mut() {
            *last = last.saturating_add(1);
        }
        let answer = self.call(
            "kv/range",
            &json!({ "key": B64.encode(&start), "range_end": B64.encode(&end) }),
        )?;
        let empty = Vec::new();
        let kvs = answer["kvs"].as_array().unwrap_or(&empty);
        let decode = |v: &Value| B64.decode(v.as_str().unwrap_or_default());
        kvs.iter()
            .map(|kv| {
                let key = decode(&kv["key"]).map_err(|e| self.error(format!("a key: {e}")))?;
                let value =
                    decode(&kv["value"]).map_err(|e| self.error(format!("a value: {e}")))?;
                let key = String::from_utf8_lossy(&key);
                let key = key.strip_prefix(&self.prefix).unwrap_or(&key).to_owned();
                Ok((key, value))
            })
            .collect()
    }

    fn resign(&self, _: Epoch) {
        let id = self
            .lease_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(id) = id
            && let Err(e) = self.call("lease/revoke", &json!({ "ID": id }))
        {
            tracing::warn!("cannot give the leadership up: {e}");
        }
    }
}
