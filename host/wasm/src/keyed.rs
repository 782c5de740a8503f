//! Keyed state, timers and side outputs of process-function instances: what the
//! `state`, `timers` and `side-output` imports act on. The host owns all of it, in a
//! [`KeyedBackend`] (memory or RocksDB); the plugin only ever sees the state of the key
//! being processed.
//!
//! Each state of each key is one backend entry: its key is key group | key | state name
//! | kind, its value the time it was written (for TTL) and its contents.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use eddy_core::Batch;
use eddy_core::exchange::key_group;
use eddy_core::memory::Pools;
use eddy_core::state::backend::{BackendError, HeapBackend, KeyedBackend, state_key};
use eddy_core::state::{Decoder, Encoder, StateEntry, StateError};
use wasmtime::component::Resource;

use crate::bindings::base::eddy::plugin::types::TimeDomain;
use crate::bindings::process::eddy::plugin::{side_output, state, timers};
use crate::host::HostState;

/// A state handle: which state, and its time to live.
#[derive(Clone, Debug)]
pub struct StateHandle {
    name: String,
    ttl_ms: Option<u64>,
}

/// Kinds of state, the last byte of their keys.
const VALUE: u8 = 0;
const LIST: u8 = 1;
const MAP: u8 = 2;

/// Snapshot entries: the backend's, or the timers of one key group.
const STATE_ENTRY: u8 = b'S';
const TIMERS_ENTRY: u8 = b'T';

/// A timer: when, domain code, key.
type TimerEntry = (i64, u8, Vec<u8>);

/// The contents of one kind of state, as stored.
trait Contents: Sized {
    fn encode(&self, e: &mut Encoder);
    fn decode(d: &mut Decoder<'_>) -> Result<Self, StateError>;
}

impl Contents for Vec<u8> {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(self);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, StateError> {
        Ok(d.bytes()?.to_vec())
    }
}

impl Contents for Vec<Vec<u8>> {
    fn encode(&self, e: &mut Encoder) {
        e.count(self.len());
        for item in self {
            e.bytes(item);
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, StateError> {
        (0..d.count()?)
            .map(|_| d.bytes().map(<[u8]>::to_vec))
            .collect()
    }
}

impl Contents for BTreeMap<Vec<u8>, Vec<u8>> {
    fn encode(&self, e: &mut Encoder) {
        e.count(self.len());
        for (k, v) in self {
            e.bytes(k).bytes(v);
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, StateError> {
        let mut map = BTreeMap::new();
        for _ in 0..d.count()? {
            map.insert(d.bytes()?.to_vec(), d.bytes()?.to_vec());
        }
        Ok(map)
    }
}

/// What the current call changed, so that a failed call leaves no trace: its writes,
/// timers and side outputs are undone before the events are tried again.
#[derive(Debug, Default)]
struct Journal {
    active: bool,
    seen: HashSet<Vec<u8>>,
    /// Backend entries as they were before the call's first change (`None`: absent).
    undo: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Timers added (`true`) or removed (`false`), in order.
    timers: Vec<(bool, TimerEntry)>,
    side: usize,
}

/// The keyed state of one instance, with the key and clocks of the current call.
pub struct KeyedState {
    backend: Box<dyn KeyedBackend>,
    max_parallelism: u32,
    /// The key being processed.
    pub(crate) key: Vec<u8>,
    /// Processing time of the current call (ms).
    pub(crate) now: i64,
    /// The operator's watermark.
    pub(crate) watermark: i64,
    /// Registered timers: (time, 0 = event time / 1 = processing time, key).
    timers: BTreeSet<TimerEntry>,
    /// Side-output events of the current call, by tag.
    pub(crate) side: Vec<(String, Batch)>,
    journal: Journal,
}

impl std::fmt::Debug for KeyedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedState")
            .field("key", &self.key)
            .field("timers", &self.timers.len())
            .finish_non_exhaustive()
    }
}

impl Default for KeyedState {
    fn default() -> Self {
        KeyedState::new(None)
    }
}

fn domain_code(domain: TimeDomain) -> u8 {
    match domain {
        TimeDomain::EventTime => 0,
        TimeDomain::ProcessingTime => 1,
    }
}

fn trap(e: impl std::fmt::Display) -> wasmtime::Error {
    wasmtime::Error::msg(e.to_string())
}

impl KeyedState {
    /// Empty state in memory, charged to `pools.managed`.
    pub(crate) fn new(pools: Option<std::sync::Arc<Pools>>) -> Self {
        KeyedState {
            backend: Box::new(HeapBackend::new(pools)),
            max_parallelism: 128,
            key: Vec::new(),
            now: 0,
            watermark: i64::MIN,
            timers: BTreeSet::new(),
            side: Vec::new(),
            journal: Journal::default(),
        }
    }

    /// Keeps the state in `backend`, keyed into `max_parallelism` key groups.
    pub(crate) fn set_backend(&mut self, backend: Box<dyn KeyedBackend>, max_parallelism: u32) {
        self.backend = backend;
        self.max_parallelism = max_parallelism;
    }

    fn state_key(&self, h: &StateHandle, kind: u8) -> Vec<u8> {
        let group = key_group(&self.key, self.max_parallelism);
        state_key(group, &self.key, &h.name, kind)
    }

    /// The current key's state `h`, unless absent or older than its TTL (then removed).
    fn read<T: Contents>(&mut self, h: &StateHandle, kind: u8) -> wasmtime::Result<Option<T>> {
        let key = self.state_key(h, kind);
        let Some(raw) = self.backend.get(&key).map_err(trap)? else {
            return Ok(None);
        };
        let mut d = Decoder::new(&raw);
        let written = d.i64().map_err(trap)?;
        let expired = h
            .ttl_ms
            .is_some_and(|t| self.now.saturating_sub(written) >= t as i64);
        if expired {
            self.write_raw(key, None)?;
            return Ok(None);
        }
        Ok(Some(T::decode(&mut d).map_err(trap)?))
    }

    /// Sets (or with `None` clears) the current key's state `h`, stamped now.
    fn write<T: Contents>(
        &mut self,
        h: &StateHandle,
        kind: u8,
        value: Option<&T>,
    ) -> wasmtime::Result<()> {
        let key = self.state_key(h, kind);
        let bytes = value.map(|v| {
            let mut e = Encoder::new();
            e.i64(self.now);
            v.encode(&mut e);
            e.finish()
        });
        self.write_raw(key, bytes)
    }

    /// Writes a backend entry, remembering it as it was before the call's first change.
    fn write_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> wasmtime::Result<()> {
        if self.journal.active && self.journal.seen.insert(key.clone()) {
            let old = self.backend.get(&key).map_err(trap)?;
            self.journal.undo.push((key.clone(), old));
        }
        match value {
            Some(v) => self.backend.put(&key, &v),
            None => self.backend.delete(&key),
        }
        .map_err(trap)
    }

    /// Adds (`true`) or removes a timer, remembering the change for an undo.
    fn set_timer(&mut self, timer: TimerEntry, add: bool) {
        let changed = if add {
            self.timers.insert(timer.clone())
        } else {
            self.timers.remove(&timer)
        };
        if changed && self.journal.active {
            self.journal.timers.push((add, timer));
        }
    }

    /// The earliest timer of `domain` due at `time`, removed.
    pub(crate) fn pop_due(&mut self, domain: TimeDomain, time: i64) -> Option<(i64, Vec<u8>)> {
        let code = domain_code(domain);
        let due = self
            .timers
            .iter()
            .find(|(t, d, _)| *d == code && *t <= time)
            .cloned()?;
        self.set_timer(due.clone(), false);
        Some((due.0, due.2))
    }

    /// Starts a call whose effects can be undone.
    pub(crate) fn begin(&mut self) {
        self.journal = Journal {
            active: true,
            side: self.side.len(),
            ..Journal::default()
        };
    }

    /// The call succeeded: its effects stay.
    pub(crate) fn commit(&mut self) {
        self.journal = Journal::default();
    }

    /// The call failed: puts back what it changed and drops what it emitted.
    pub(crate) fn rollback(&mut self) {
        let journal = std::mem::take(&mut self.journal);
        for (key, old) in journal.undo.into_iter().rev() {
            let undone = match old {
                Some(v) => self.backend.put(&key, &v),
                None => self.backend.delete(&key),
            };
            if let Err(e) = undone {
                tracing::error!("cannot undo a failed call's state change: {e}");
            }
        }
        for (added, timer) in journal.timers.into_iter().rev() {
            if added {
                self.timers.remove(&timer);
            } else {
                self.timers.insert(timer);
            }
        }
        self.side.truncate(journal.side);
    }

    /// The backend's snapshot and the timers, for checkpoint directory `target`.
    pub(crate) fn snapshot(
        &mut self,
        target: Option<&Path>,
    ) -> Result<Vec<StateEntry>, BackendError> {
        let mut entries: Vec<StateEntry> = self
            .backend
            .snapshot(target)?
            .into_iter()
            .map(|mut e| {
                e.bytes.insert(0, STATE_ENTRY);
                e
            })
            .collect();
        let mut groups: BTreeMap<u32, Vec<&TimerEntry>> = BTreeMap::new();
        for timer in &self.timers {
            groups
                .entry(key_group(&timer.2, self.max_parallelism))
                .or_default()
                .push(timer);
        }
        for (group, timers) in groups {
            let mut e = Encoder::new();
            e.u8(TIMERS_ENTRY).count(timers.len());
            for (time, domain, key) in timers {
                e.i64(*time).u8(*domain).bytes(key);
            }
            entries.push(StateEntry {
                key_group: Some(group),
                bytes: e.finish(),
            });
        }
        Ok(entries)
    }

    /// Takes up checkpointed state and timers from the checkpoint in `from`.
    pub(crate) fn restore(
        &mut self,
        entries: Vec<StateEntry>,
        from: &Path,
    ) -> Result<(), BackendError> {
        let mut state = Vec::new();
        for mut entry in entries {
            match entry.bytes.first() {
                Some(&STATE_ENTRY) => {
                    entry.bytes.remove(0);
                    state.push(entry);
                }
                Some(&TIMERS_ENTRY) => {
                    let mut d = Decoder::new(&entry.bytes[1..]);
                    for _ in 0..d.count()? {
                        let timer = (d.i64()?, d.u8()?, d.bytes()?.to_vec());
                        self.timers.insert(timer);
                    }
                    d.end()?;
                }
                _ => return Err(StateError("unknown keyed-state entry".into()).into()),
            }
        }
        self.backend.restore(state, from)
    }
}

fn handle(state: &HostState, r: &Resource<StateHandle>) -> wasmtime::Result<StateHandle> {
    Ok(state.table.get(r)?.clone())
}

impl state::Host for HostState {}

impl state::HostValueState for HostState {
    fn new(
        &mut self,
        name: String,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Resource<StateHandle>> {
        Ok(self.table.push(StateHandle { name, ttl_ms })?)
    }

    fn get(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<Option<Vec<u8>>> {
        let h = handle(self, &r)?;
        self.keyed.read::<Vec<u8>>(&h, VALUE)
    }

    fn set(&mut self, r: Resource<StateHandle>, value: Vec<u8>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.write(&h, VALUE, Some(&value))
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.write::<Vec<u8>>(&h, VALUE, None)
    }

    fn drop(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl state::HostListState for HostState {
    fn new(
        &mut self,
        name: String,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Resource<StateHandle>> {
        Ok(self.table.push(StateHandle { name, ttl_ms })?)
    }

    fn get(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<Vec<Vec<u8>>> {
        let h = handle(self, &r)?;
        Ok(self.keyed.read(&h, LIST)?.unwrap_or_default())
    }

    fn add(&mut self, r: Resource<StateHandle>, value: Vec<u8>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        let mut list: Vec<Vec<u8>> = self.keyed.read(&h, LIST)?.unwrap_or_default();
        list.push(value);
        self.keyed.write(&h, LIST, Some(&list))
    }

    fn replace(&mut self, r: Resource<StateHandle>, values: Vec<Vec<u8>>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.write(&h, LIST, Some(&values))
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.write::<Vec<Vec<u8>>>(&h, LIST, None)
    }

    fn drop(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

/// A map state's contents.
type MapContents = BTreeMap<Vec<u8>, Vec<u8>>;

impl state::HostMapState for HostState {
    fn new(
        &mut self,
        name: String,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Resource<StateHandle>> {
        Ok(self.table.push(StateHandle { name, ttl_ms })?)
    }

    fn get(&mut self, r: Resource<StateHandle>, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        let h = handle(self, &r)?;
        let map: Option<MapContents> = self.keyed.read(&h, MAP)?;
        Ok(map.and_then(|mut m| m.remove(&key)))
    }

    fn put(
        &mut self,
        r: Resource<StateHandle>,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        let mut map: MapContents = self.keyed.read(&h, MAP)?.unwrap_or_default();
        map.insert(key, value);
        self.keyed.write(&h, MAP, Some(&map))
    }

    fn remove(&mut self, r: Resource<StateHandle>, key: Vec<u8>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        let Some(mut map) = self.keyed.read::<MapContents>(&h, MAP)? else {
            return Ok(());
        };
        if map.remove(&key).is_some() {
            // An emptied map stays, as before: its TTL stamp is kept fresh.
            self.keyed.write(&h, MAP, Some(&map))?;
        }
        Ok(())
    }

    fn entries(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let h = handle(self, &r)?;
        let map: MapContents = self.keyed.read(&h, MAP)?.unwrap_or_default();
        Ok(map.into_iter().collect())
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.write::<MapContents>(&h, MAP, None)
    }

    fn drop(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl timers::Host for HostState {
    fn register(&mut self, domain: TimeDomain, timestamp: i64) -> wasmtime::Result<()> {
        let timer = (timestamp, domain_code(domain), self.keyed.key.clone());
        self.keyed.set_timer(timer, true);
        Ok(())
    }

    fn delete(&mut self, domain: TimeDomain, timestamp: i64) -> wasmtime::Result<()> {
        let timer = (timestamp, domain_code(domain), self.keyed.key.clone());
        self.keyed.set_timer(timer, false);
        Ok(())
    }

    fn current_watermark(&mut self) -> wasmtime::Result<i64> {
        Ok(self.keyed.watermark)
    }

    fn current_processing_time(&mut self) -> wasmtime::Result<i64> {
        Ok(self.keyed.now)
    }
}

impl side_output::Host for HostState {
    fn emit(&mut self, tag: String, events: crate::bindings::WitBatch) -> wasmtime::Result<()> {
        self.keyed.side.push((tag, Batch::from(events)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_ttl_of_processing_time() {
        let mut keyed = KeyedState {
            key: b"k".to_vec(),
            ..KeyedState::default()
        };
        let short = StateHandle {
            name: "s".into(),
            ttl_ms: Some(500),
        };
        let forever = StateHandle {
            name: "s".into(),
            ttl_ms: None,
        };
        keyed.now = 1_000;
        keyed.write(&short, VALUE, Some(&b"v".to_vec())).unwrap();
        keyed.now = 1_499;
        assert!(keyed.read::<Vec<u8>>(&short, VALUE).unwrap().is_some());
        keyed.now = 99_999;
        assert!(
            keyed.read::<Vec<u8>>(&forever, VALUE).unwrap().is_some(),
            "no TTL, no expiry"
        );
        keyed.now = 1_500;
        assert!(keyed.read::<Vec<u8>>(&short, VALUE).unwrap().is_none());
        assert!(
            keyed.read::<Vec<u8>>(&forever, VALUE).unwrap().is_none(),
            "an expired entry is removed"
        );
    }

    #[test]
    fn a_rolled_back_call_leaves_state_and_timers_as_they_were() {
        let mut keyed = KeyedState {
            key: b"k".to_vec(),
            ..KeyedState::default()
        };
        let h = StateHandle {
            name: "n".into(),
            ttl_ms: None,
        };
        keyed.write(&h, VALUE, Some(&b"old".to_vec())).unwrap();
        keyed.begin();
        keyed.write(&h, VALUE, Some(&b"new".to_vec())).unwrap();
        keyed.write(&h, VALUE, Some(&b"newer".to_vec())).unwrap();
        keyed.set_timer((5, 0, b"k".to_vec()), true);
        keyed.rollback();
        assert_eq!(
            keyed.read::<Vec<u8>>(&h, VALUE).unwrap().as_deref(),
            Some(&b"old"[..])
        );
        assert!(keyed.timers.is_empty());
    }

    #[test]
    fn snapshots_carry_state_and_timers_to_another_instance() {
        let mut keyed = KeyedState::default();
        let h = StateHandle {
            name: "n".into(),
            ttl_ms: None,
        };
        for key in [&b"a"[..], b"b", b"c"] {
            keyed.key = key.to_vec();
            keyed.write(&h, LIST, Some(&vec![key.to_vec()])).unwrap();
            keyed.set_timer((7, 0, key.to_vec()), true);
        }
        let entries = keyed.snapshot(None).unwrap();
        let mut restored = KeyedState::default();
        restored.restore(entries, Path::new(".")).unwrap();
        restored.key = b"b".to_vec();
        assert_eq!(
            restored.read::<Vec<Vec<u8>>>(&h, LIST).unwrap(),
            Some(vec![b"b".to_vec()])
        );
        assert_eq!(restored.timers.len(), 3);
    }

    #[test]
    fn timers_fire_per_domain_in_time_order() {
        let mut keyed = KeyedState::default();
        keyed.timers.insert((20, 0, b"b".to_vec()));
        keyed.timers.insert((10, 0, b"a".to_vec()));
        keyed.timers.insert((5, 1, b"p".to_vec()));
        assert_eq!(
            keyed.pop_due(TimeDomain::EventTime, 15),
            Some((10, b"a".to_vec()))
        );
        assert_eq!(keyed.pop_due(TimeDomain::EventTime, 15), None);
        assert_eq!(
            keyed.pop_due(TimeDomain::ProcessingTime, 5),
            Some((5, b"p".to_vec()))
        );
        assert_eq!(
            keyed.pop_due(TimeDomain::EventTime, 20),
            Some((20, b"b".to_vec()))
        );
    }
}
