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
use eddy_core::exec::exchange::key_group;
use eddy_core::keygroup::key_group;
use eddy_core::memory::Pools;
use eddy_core::state::backend::{BackendError, HeapBackend, KeyedBackend, state_key};
use eddy_core::state::{Decoder, Encoder, StateEntry, StateError};
use wasmtime::component::Resource;

use crate::bindings::base::eddy::plugin::types::TimeDomain;
use crate::bindings::process::eddy::plugin::{side_output, state, timers};
use crate::host::HostState;

/// A state handle: which state, and its time to live (the same record a natively
/// compiled process function names its state with).
pub use eddy_sdk::keyed::native::StateId as StateHandle;

/// Kinds of state, the last byte of their keys.
const VALUE: u8 = 0;
const LIST: u8 = 1;
const MAP: u8 = 2;

/// Snapshot entries: the backend's, or the timers of one key group.
const STATE_ENTRY: u8 = b'S';
const TIMERS_ENTRY: u8 = b'T';

/// A timer: when, domain code, key.
type TimerEntry = (i64, u8, Vec<u8>);

/// How contents of state are written.
trait Encode {
    fn encode(&self, e: &mut Encoder);
}

/// The contents of one kind of state, as stored.
trait Contents: Encode + Sized {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, StateError>;
}

impl Encode for [u8] {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(self);
    }
}

impl Encode for Vec<u8> {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(self);
    }
}

impl Contents for Vec<u8> {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, StateError> {
        Ok(d.bytes()?.to_vec())
    }
}

impl Encode for Vec<Vec<u8>> {
    fn encode(&self, e: &mut Encoder) {
        e.count(self.len());
        for item in self {
            e.bytes(item);
        }
    }
}

impl Contents for Vec<Vec<u8>> {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, StateError> {
        (0..d.count()?)
            .map(|_| d.bytes().map(<[u8]>::to_vec))
            .collect()
    }
}

impl Encode for BTreeMap<Vec<u8>, Vec<u8>> {
    fn encode(&self, e: &mut Encoder) {
        e.count(self.len());
        for (k, v) in self {
            e.bytes(k).bytes(v);
        }
    }
}

impl Contents for BTreeMap<Vec<u8>, Vec<u8>> {
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
    /// A native call's failed state access (components trap instead).
    failed: Option<String>,
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
            failed: None,
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
    fn write<T: Encode + ?Sized>(
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

/// The events of `input` by key, in key order: a process function sees each key's
/// events of a batch in one call.
pub(crate) fn group_by_key(input: &Batch) -> BTreeMap<Vec<u8>, Batch> {
    let mut groups: BTreeMap<Vec<u8>, Batch> = BTreeMap::new();
    for i in 0..input.len() {
        let key = input.key(i).unwrap_or_default().to_vec();
        let _ = groups.entry(key).or_default().push_from(input, i);
    }
    groups
}

/// The latest timestamp among `events`, which the output of their call inherits.
pub(crate) fn latest_timestamp(events: &Batch) -> Option<i64> {
    events
        .timestamps
        .iter()
        .copied()
        .filter(|&t| t != eddy_core::NO_TIMESTAMP)
        .max()
}

/// Appends a process function's output to `out`, keyed by `key` and stamped `ts`
/// where the function set neither.
pub(crate) fn append_keyed(
    out: &mut Batch,
    produced: &Batch,
    key: &[u8],
    ts: Option<i64>,
) -> Result<(), eddy_core::batch::BatchOverflow> {
    for e in produced.iter() {
        out.push(eddy_core::EventRef {
            key: e.key.or(Some(key)),
            value: e.value,
            timestamp: e.timestamp.or(ts),
        })?;
    }
    Ok(())
}

/// A map state's contents.
type MapContents = BTreeMap<Vec<u8>, Vec<u8>>;

/// The operations of the `state` and `timers` imports, on the current key: what the
/// WIT host functions and the native twins' host both call.
impl KeyedState {
    fn value_get(&mut self, h: &StateHandle) -> wasmtime::Result<Option<Vec<u8>>> {
        self.read(h, VALUE)
    }

    fn value_set(&mut self, h: &StateHandle, value: &[u8]) -> wasmtime::Result<()> {
        self.write(h, VALUE, Some(value))
    }

    fn value_clear(&mut self, h: &StateHandle) -> wasmtime::Result<()> {
        self.write::<[u8]>(h, VALUE, None)
    }

    fn list_get(&mut self, h: &StateHandle) -> wasmtime::Result<Vec<Vec<u8>>> {
        Ok(self.read(h, LIST)?.unwrap_or_default())
    }

    fn list_add(&mut self, h: &StateHandle, value: &[u8]) -> wasmtime::Result<()> {
        let mut list: Vec<Vec<u8>> = self.read(h, LIST)?.unwrap_or_default();
        list.push(value.to_vec());
        self.write(h, LIST, Some(&list))
    }

    fn list_replace(&mut self, h: &StateHandle, values: &Vec<Vec<u8>>) -> wasmtime::Result<()> {
        self.write(h, LIST, Some(values))
    }

    fn list_clear(&mut self, h: &StateHandle) -> wasmtime::Result<()> {
        self.write::<Vec<Vec<u8>>>(h, LIST, None)
    }

    fn map_get(&mut self, h: &StateHandle, key: &[u8]) -> wasmtime::Result<Option<Vec<u8>>> {
        let map: Option<MapContents> = self.read(h, MAP)?;
        Ok(map.and_then(|mut m| m.remove(key)))
    }

    fn map_put(&mut self, h: &StateHandle, key: &[u8], value: &[u8]) -> wasmtime::Result<()> {
        let mut map: MapContents = self.read(h, MAP)?.unwrap_or_default();
        map.insert(key.to_vec(), value.to_vec());
        self.write(h, MAP, Some(&map))
    }

    fn map_remove(&mut self, h: &StateHandle, key: &[u8]) -> wasmtime::Result<()> {
        let Some(mut map) = self.read::<MapContents>(h, MAP)? else {
            return Ok(());
        };
        if map.remove(key).is_some() {
            // An emptied map stays, as before: its TTL stamp is kept fresh.
            self.write(h, MAP, Some(&map))?;
        }
        Ok(())
    }

    fn map_entries(&mut self, h: &StateHandle) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let map: MapContents = self.read(h, MAP)?.unwrap_or_default();
        Ok(map.into_iter().collect())
    }

    fn map_clear(&mut self, h: &StateHandle) -> wasmtime::Result<()> {
        self.write::<MapContents>(h, MAP, None)
    }

    /// Registers (`add`) or deletes a timer of the current key.
    fn timer(&mut self, domain: TimeDomain, timestamp: i64, add: bool) {
        let timer = (timestamp, domain_code(domain), self.key.clone());
        self.set_timer(timer, add);
    }
}

fn handle(state: &HostState, r: &Resource<StateHandle>) -> wasmtime::Result<StateHandle> {
    Ok(state.table.get(r)?.clone())
}

fn new_handle(
    state: &mut HostState,
    name: String,
    ttl_ms: Option<u64>,
) -> wasmtime::Result<Resource<StateHandle>> {
    Ok(state.table.push(StateHandle { name, ttl_ms })?)
}

fn drop_handle(state: &mut HostState, r: Resource<StateHandle>) -> wasmtime::Result<()> {
    state.table.delete(r)?;
    Ok(())
}

impl state::Host for HostState {}

impl state::HostValueState for HostState {
    fn new(&mut self, name: String, ttl: Option<u64>) -> wasmtime::Result<Resource<StateHandle>> {
        new_handle(self, name, ttl)
    }

    fn get(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<Option<Vec<u8>>> {
        let h = handle(self, &r)?;
        self.keyed.value_get(&h)
    }

    fn set(&mut self, r: Resource<StateHandle>, value: Vec<u8>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.value_set(&h, &value)
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.value_clear(&h)
    }

    fn drop(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        drop_handle(self, r)
    }
}

impl state::HostListState for HostState {
    fn new(&mut self, name: String, ttl: Option<u64>) -> wasmtime::Result<Resource<StateHandle>> {
        new_handle(self, name, ttl)
    }

    fn get(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<Vec<Vec<u8>>> {
        let h = handle(self, &r)?;
        self.keyed.list_get(&h)
    }

    fn add(&mut self, r: Resource<StateHandle>, value: Vec<u8>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.list_add(&h, &value)
    }

    fn replace(&mut self, r: Resource<StateHandle>, values: Vec<Vec<u8>>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.list_replace(&h, &values)
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.list_clear(&h)
    }

    fn drop(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        drop_handle(self, r)
    }
}

impl state::HostMapState for HostState {
    fn new(&mut self, name: String, ttl: Option<u64>) -> wasmtime::Result<Resource<StateHandle>> {
        new_handle(self, name, ttl)
    }

    fn get(&mut self, r: Resource<StateHandle>, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        let h = handle(self, &r)?;
        self.keyed.map_get(&h, &key)
    }

    fn put(
        &mut self,
        r: Resource<StateHandle>,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.map_put(&h, &key, &value)
    }

    fn remove(&mut self, r: Resource<StateHandle>, key: Vec<u8>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.map_remove(&h, &key)
    }

    fn entries(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let h = handle(self, &r)?;
        self.keyed.map_entries(&h)
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        let h = handle(self, &r)?;
        self.keyed.map_clear(&h)
    }

    fn drop(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        drop_handle(self, r)
    }
}

impl timers::Host for HostState {
    fn register(&mut self, domain: TimeDomain, timestamp: i64) -> wasmtime::Result<()> {
        self.keyed.timer(domain, timestamp, true);
        Ok(())
    }

    fn delete(&mut self, domain: TimeDomain, timestamp: i64) -> wasmtime::Result<()> {
        self.keyed.timer(domain, timestamp, false);
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

/// The host of natively compiled process functions: the same state, timers and side
/// outputs as a component's. A failed access is kept in `failed` and fails the call.
impl eddy_sdk::keyed::native::KeyedHost for KeyedState {
    fn value_get(&mut self, h: &StateHandle) -> Option<Vec<u8>> {
        let got = KeyedState::value_get(self, h);
        self.note(got).flatten()
    }
    fn value_set(&mut self, h: &StateHandle, value: &[u8]) {
        let done = KeyedState::value_set(self, h, value);
        self.note(done);
    }
    fn value_clear(&mut self, h: &StateHandle) {
        let done = KeyedState::value_clear(self, h);
        self.note(done);
    }
    fn list_get(&mut self, h: &StateHandle) -> Vec<Vec<u8>> {
        let got = KeyedState::list_get(self, h);
        self.note(got).unwrap_or_default()
    }
    fn list_add(&mut self, h: &StateHandle, value: &[u8]) {
        let done = KeyedState::list_add(self, h, value);
        self.note(done);
    }
    fn list_clear(&mut self, h: &StateHandle) {
        let done = KeyedState::list_clear(self, h);
        self.note(done);
    }
    fn map_get(&mut self, h: &StateHandle, key: &[u8]) -> Option<Vec<u8>> {
        let got = KeyedState::map_get(self, h, key);
        self.note(got).flatten()
    }
    fn map_put(&mut self, h: &StateHandle, key: &[u8], value: &[u8]) {
        let done = KeyedState::map_put(self, h, key, value);
        self.note(done);
    }
    fn map_remove(&mut self, h: &StateHandle, key: &[u8]) {
        let done = KeyedState::map_remove(self, h, key);
        self.note(done);
    }
    fn map_entries(&mut self, h: &StateHandle) -> Vec<(Vec<u8>, Vec<u8>)> {
        let got = KeyedState::map_entries(self, h);
        self.note(got).unwrap_or_default()
    }
    fn map_clear(&mut self, h: &StateHandle) {
        let done = KeyedState::map_clear(self, h);
        self.note(done);
    }
    fn register_timer(&mut self, domain: eddy_sdk::TimeDomain, timestamp: i64) {
        self.timer(wit_domain(domain), timestamp, true);
    }
    fn delete_timer(&mut self, domain: eddy_sdk::TimeDomain, timestamp: i64) {
        self.timer(wit_domain(domain), timestamp, false);
    }
    fn watermark(&mut self) -> i64 {
        self.watermark
    }
    fn processing_time(&mut self) -> i64 {
        self.now
    }
    fn side_output(&mut self, tag: &str, events: Batch) {
        self.side.push((tag.to_owned(), events));
    }
}

/// The WIT's time domain for the SDK's.
pub(crate) fn wit_domain(domain: eddy_sdk::TimeDomain) -> TimeDomain {
    match domain {
        eddy_sdk::TimeDomain::EventTime => TimeDomain::EventTime,
        eddy_sdk::TimeDomain::ProcessingTime => TimeDomain::ProcessingTime,
    }
}

impl KeyedState {
    /// Keeps the first failure of a native call's state access.
    fn note<T>(&mut self, result: wasmtime::Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.failed.get_or_insert_with(|| e.to_string());
                None
            }
        }
    }

    /// The failure of the native call that just ended, if a state access failed.
    pub(crate) fn take_failure(&mut self) -> Option<String> {
        self.failed.take()
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
