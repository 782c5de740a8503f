//! Keyed state, timers and side outputs of process functions, owned by the host: each
//! subtask keeps them in a [`KeyedBackend`] (memory or RocksDB), and a function only
//! ever sees the state of the key being processed. The WebAssembly host functions and
//! natively compiled process functions act on the same [`KeyedState`].
//!
//! Each state of each key is one backend entry: its key is key group | key | state name
//! | kind, its value the time it was written (for TTL) and its contents.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::backend::{BackendError, HeapBackend, KeyedBackend, state_key};
use super::{Decoder, Encoder, StateEntry, StateError};
use crate::batch::{Batch, BatchOverflow, EventRef};
use crate::job::window::TimeDomain;
use crate::keygroup::key_group;
use crate::memory::Pools;

/// Kinds of state, the last byte of their keys.
const VALUE: u8 = 0;
const LIST: u8 = 1;
const MAP: u8 = 2;

/// Snapshot entries: the backend's, or the timers of one key group.
const STATE_ENTRY: u8 = b'S';
const TIMERS_ENTRY: u8 = b'T';

/// Key groups when no backend set them: the job default.
const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// A timer: when, domain code, key.
type TimerEntry = (i64, u8, Vec<u8>);

/// A map state's contents.
type MapContents = BTreeMap<Vec<u8>, Vec<u8>>;

/// Which state of the current key an operation acts on: the name the function gave
/// it and its time to live, borrowed from whatever handle the function holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateRef<'a> {
    /// The state's name, unique within the function.
    pub name: &'a str,
    /// Its time to live, in ms of processing time; `None`: it never expires.
    pub ttl_ms: Option<u64>,
}

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

impl Encode for [Vec<u8>] {
    fn encode(&self, e: &mut Encoder) {
        e.count(self.len());
        for item in self {
            e.bytes(item);
        }
    }
}

impl Encode for Vec<Vec<u8>> {
    fn encode(&self, e: &mut Encoder) {
        self.as_slice().encode(e);
    }
}

impl Contents for Vec<Vec<u8>> {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, StateError> {
        (0..d.count()?)
            .map(|_| d.bytes().map(<[u8]>::to_vec))
            .collect()
    }
}

impl Encode for MapContents {
    fn encode(&self, e: &mut Encoder) {
        e.count(self.len());
        for (k, v) in self {
            e.bytes(k).bytes(v);
        }
    }
}

impl Contents for MapContents {
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

/// A map state's entries, as (map key, value) pairs in key order.
pub type MapEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// Timers one advance of time may fire beyond those due when it began: registered, while
/// it fires them, for a time that has already passed.
pub const MAX_TIMERS_ADDED_PER_ADVANCE: usize = 10_000;

/// One advance of a time domain's clock, bounding the timers it fires.
#[derive(Debug)]
pub struct Advance {
    domain: TimeDomain,
    time: i64,
    /// Timers it may still fire.
    left: usize,
}

/// An advance of time kept firing timers registered for times already passed.
#[derive(Debug, thiserror::Error)]
#[error(
    "timers kept being registered for times already passed while {domain} time advanced \
     to {time}: more than {MAX_TIMERS_ADDED_PER_ADVANCE} fired beyond those that were due \
     (a timer that registers itself again at or before its own time loops forever)"
)]
pub struct TimerLoop {
    /// The time domain that advanced: `event` or `processing`.
    pub domain: &'static str,
    /// Where it advanced to.
    pub time: i64,
}

/// The keyed state of one process-function subtask, with the key and clocks of the
/// current call.
pub struct KeyedState {
    backend: Box<dyn KeyedBackend>,
    max_parallelism: u32,
    /// The key being processed.
    key: Vec<u8>,
    /// Processing time of the current call (ms).
    now: i64,
    /// The operator's watermark.
    watermark: i64,
    /// Registered timers: (time, 0 = event time / 1 = processing time, key).
    timers: BTreeSet<TimerEntry>,
    /// Side-output events since they were last taken, by tag.
    side: Vec<(String, Batch)>,
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
        TimeDomain::Event => 0,
        TimeDomain::Processing => 1,
    }
}

impl KeyedState {
    /// Empty state in memory, charged to `pools.managed`.
    pub fn new(pools: Option<Arc<Pools>>) -> Self {
        KeyedState::with_backend(Box::new(HeapBackend::new(pools)), DEFAULT_MAX_PARALLELISM)
    }

    /// Empty state kept in `backend`, keyed into `max_parallelism` key groups.
    pub fn with_backend(backend: Box<dyn KeyedBackend>, max_parallelism: u32) -> Self {
        KeyedState {
            backend,
            max_parallelism,
            key: Vec::new(),
            now: 0,
            watermark: i64::MIN,
            timers: BTreeSet::new(),
            side: Vec::new(),
            journal: Journal::default(),
        }
    }

    /// Keeps the state in `backend` from now on, keyed into `max_parallelism` key
    /// groups (a subtask's backend is known only once its step is).
    pub fn set_backend(&mut self, backend: Box<dyn KeyedBackend>, max_parallelism: u32) {
        self.backend = backend;
        self.max_parallelism = max_parallelism;
    }

    /// The key whose state the next operations act on.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Makes `key` the current key.
    pub fn set_key(&mut self, key: &[u8]) {
        self.key.clear();
        self.key.extend_from_slice(key);
    }

    /// Processing time of the current call (ms), which TTLs are measured against.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Sets the processing time of the current call (ms).
    pub fn set_now(&mut self, now: i64) {
        self.now = now;
    }

    /// The operator's watermark, as a function asks for it.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Event time has advanced to `watermark`.
    pub fn set_watermark(&mut self, watermark: i64) {
        self.watermark = watermark;
    }

    fn state_key(&self, state: StateRef<'_>, kind: u8) -> Vec<u8> {
        let group = key_group(&self.key, self.max_parallelism);
        state_key(group, &self.key, state.name, kind)
    }

    /// The current key's state, unless absent or older than its TTL (then removed).
    fn read<T: Contents>(
        &mut self,
        state: StateRef<'_>,
        kind: u8,
    ) -> Result<Option<T>, BackendError> {
        let key = self.state_key(state, kind);
        let Some(raw) = self.backend.get(&key)? else {
            return Ok(None);
        };
        let mut d = Decoder::new(&raw);
        let written = d.i64()?;
        let expired = state
            .ttl_ms
            .is_some_and(|t| self.now.saturating_sub(written) >= t as i64);
        if expired {
            self.write_raw(key, None)?;
            return Ok(None);
        }
        Ok(Some(T::decode(&mut d)?))
    }

    /// Sets (or with `None` clears) the current key's state, stamped now.
    fn write<T: Encode + ?Sized>(
        &mut self,
        state: StateRef<'_>,
        kind: u8,
        value: Option<&T>,
    ) -> Result<(), BackendError> {
        let key = self.state_key(state, kind);
        let bytes = value.map(|v| {
            let mut e = Encoder::new();
            e.i64(self.now);
            v.encode(&mut e);
            e.finish()
        });
        self.write_raw(key, bytes)
    }

    /// Writes a backend entry, remembering it as it was before the call's first change.
    fn write_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), BackendError> {
        if self.journal.active && self.journal.seen.insert(key.clone()) {
            let old = self.backend.get(&key)?;
            self.journal.undo.push((key.clone(), old));
        }
        match value {
            Some(v) => self.backend.put(&key, &v),
            None => self.backend.delete(&key),
        }
    }

    /// The current key's value state.
    pub fn value_get(&mut self, state: StateRef<'_>) -> Result<Option<Vec<u8>>, BackendError> {
        self.read(state, VALUE)
    }

    /// Sets the current key's value state.
    pub fn value_set(&mut self, state: StateRef<'_>, value: &[u8]) -> Result<(), BackendError> {
        self.write(state, VALUE, Some(value))
    }

    /// Clears the current key's value state.
    pub fn value_clear(&mut self, state: StateRef<'_>) -> Result<(), BackendError> {
        self.write::<[u8]>(state, VALUE, None)
    }

    /// The current key's list state (empty if absent).
    pub fn list_get(&mut self, state: StateRef<'_>) -> Result<Vec<Vec<u8>>, BackendError> {
        Ok(self.read(state, LIST)?.unwrap_or_default())
    }

    /// Appends to the current key's list state.
    pub fn list_add(&mut self, state: StateRef<'_>, value: &[u8]) -> Result<(), BackendError> {
        let mut list: Vec<Vec<u8>> = self.read(state, LIST)?.unwrap_or_default();
        list.push(value.to_vec());
        self.write(state, LIST, Some(&list))
    }

    /// Replaces the current key's list state.
    pub fn list_replace(
        &mut self,
        state: StateRef<'_>,
        values: &[Vec<u8>],
    ) -> Result<(), BackendError> {
        self.write(state, LIST, Some(values))
    }

    /// Clears the current key's list state.
    pub fn list_clear(&mut self, state: StateRef<'_>) -> Result<(), BackendError> {
        self.write::<[Vec<u8>]>(state, LIST, None)
    }

    /// The entry `key` of the current key's map state.
    pub fn map_get(
        &mut self,
        state: StateRef<'_>,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError> {
        let map: Option<MapContents> = self.read(state, MAP)?;
        Ok(map.and_then(|mut m| m.remove(key)))
    }

    /// Sets the entry `key` of the current key's map state.
    pub fn map_put(
        &mut self,
        state: StateRef<'_>,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), BackendError> {
        let mut map: MapContents = self.read(state, MAP)?.unwrap_or_default();
        map.insert(key.to_vec(), value.to_vec());
        self.write(state, MAP, Some(&map))
    }

    /// Removes the entry `key` of the current key's map state.
    pub fn map_remove(&mut self, state: StateRef<'_>, key: &[u8]) -> Result<(), BackendError> {
        let Some(mut map) = self.read::<MapContents>(state, MAP)? else {
            return Ok(());
        };
        if map.remove(key).is_some() {
            // An emptied map stays, as before: its TTL stamp is kept fresh.
            self.write(state, MAP, Some(&map))?;
        }
        Ok(())
    }

    /// Every entry of the current key's map state, in key order.
    pub fn map_entries(&mut self, state: StateRef<'_>) -> Result<MapEntries, BackendError> {
        let map: MapContents = self.read(state, MAP)?.unwrap_or_default();
        Ok(map.into_iter().collect())
    }

    /// Clears the current key's map state.
    pub fn map_clear(&mut self, state: StateRef<'_>) -> Result<(), BackendError> {
        self.write::<MapContents>(state, MAP, None)
    }

    /// Registers a timer of the current key at `timestamp` of `domain`.
    pub fn register_timer(&mut self, domain: TimeDomain, timestamp: i64) {
        let timer = (timestamp, domain_code(domain), self.key.clone());
        self.set_timer(timer, true);
    }

    /// Deletes the current key's timer at `timestamp` of `domain`, if registered.
    pub fn delete_timer(&mut self, domain: TimeDomain, timestamp: i64) {
        let timer = (timestamp, domain_code(domain), self.key.clone());
        self.set_timer(timer, false);
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

    /// Starts an advance of `domain`'s time to `time`: the timers due now fire, and at
    /// most [`MAX_TIMERS_ADDED_PER_ADVANCE`] more registered while it fires them for a
    /// time already passed (a timer that registers itself again would loop forever).
    pub fn advance(&self, domain: TimeDomain, time: i64) -> Advance {
        let code = domain_code(domain);
        let due = self
            .timers
            .iter()
            .take_while(|(t, _, _)| *t <= time)
            .filter(|(_, d, _)| *d == code)
            .count();
        Advance {
            domain,
            time,
            left: due + MAX_TIMERS_ADDED_PER_ADVANCE,
        }
    }

    /// The earliest timer due in `advance`, removed: its time and key; an error once
    /// the advance has fired all it may.
    pub fn pop_due_in(
        &mut self,
        advance: &mut Advance,
    ) -> Result<Option<(i64, Vec<u8>)>, TimerLoop> {
        let Some(due) = self.pop_due(advance.domain, advance.time) else {
            return Ok(None);
        };
        if advance.left == 0 {
            return Err(TimerLoop {
                domain: match advance.domain {
                    TimeDomain::Event => "event",
                    TimeDomain::Processing => "processing",
                },
                time: advance.time,
            });
        }
        advance.left -= 1;
        Ok(Some(due))
    }

    /// The earliest timer of `domain` due at `time`, removed: its time and key.
    pub fn pop_due(&mut self, domain: TimeDomain, time: i64) -> Option<(i64, Vec<u8>)> {
        let code = domain_code(domain);
        let due = self
            .timers
            .iter()
            .find(|(t, d, _)| *d == code && *t <= time)
            .cloned()?;
        self.set_timer(due.clone(), false);
        Some((due.0, due.2))
    }

    /// Sends `events` to the side output `tag`.
    pub fn emit_side_output(&mut self, tag: String, events: Batch) {
        self.side.push((tag, events));
    }

    /// Bytes of side-output events emitted and not yet taken.
    pub fn side_output_bytes(&self) -> usize {
        self.side.iter().map(|(_, b)| b.byte_size()).sum()
    }

    /// The side-output events emitted since the last call, by tag.
    pub fn take_side_outputs(&mut self) -> Vec<(String, Batch)> {
        std::mem::take(&mut self.side)
    }

    /// Starts a call whose effects can be undone.
    pub fn begin(&mut self) {
        self.journal = Journal {
            active: true,
            side: self.side.len(),
            ..Journal::default()
        };
    }

    /// The call succeeded: its effects stay.
    pub fn commit(&mut self) {
        self.journal = Journal::default();
    }

    /// The call failed: puts back what it changed and drops what it emitted.
    pub fn rollback(&mut self) {
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
    pub fn snapshot(&mut self, target: Option<&Path>) -> Result<Vec<StateEntry>, BackendError> {
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
    pub fn restore(&mut self, entries: Vec<StateEntry>, from: &Path) -> Result<(), BackendError> {
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
pub fn group_by_key(input: &Batch) -> BTreeMap<Vec<u8>, Batch> {
    let mut groups: BTreeMap<Vec<u8>, Batch> = BTreeMap::new();
    for i in 0..input.len() {
        let key = input.key(i).unwrap_or_default().to_vec();
        let _ = groups.entry(key).or_default().push_from(input, i);
    }
    groups
}

/// The latest timestamp among `events`, which the output of their call inherits.
pub fn latest_timestamp(events: &Batch) -> Option<i64> {
    events
        .timestamps
        .iter()
        .copied()
        .filter(|&t| t != crate::NO_TIMESTAMP)
        .max()
}

/// Appends a process function's output to `out`, keyed by `key` and stamped `ts`
/// where the function set neither.
pub fn append_keyed(
    out: &mut Batch,
    produced: &Batch,
    key: &[u8],
    ts: Option<i64>,
) -> Result<(), BatchOverflow> {
    for e in produced.iter() {
        out.push(EventRef {
            key: e.key.or(Some(key)),
            value: e.value,
            timestamp: e.timestamp.or(ts),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::entries_for;

    fn state(name: &str, ttl_ms: Option<u64>) -> StateRef<'_> {
        StateRef { name, ttl_ms }
    }

    fn at(key: &[u8]) -> KeyedState {
        let mut keyed = KeyedState::default();
        keyed.set_key(key);
        keyed
    }

    #[test]
    fn value_list_and_map_state_belong_to_the_current_key() {
        let mut keyed = at(b"a");
        let v = state("v", None);
        let l = state("l", None);
        let m = state("m", None);
        keyed.value_set(v, b"1").unwrap();
        keyed.list_add(l, b"x").unwrap();
        keyed.list_add(l, b"y").unwrap();
        keyed.map_put(m, b"k1", b"v1").unwrap();
        keyed.map_put(m, b"k2", b"v2").unwrap();
        keyed.map_remove(m, b"k1").unwrap();

        assert_eq!(keyed.value_get(v).unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(
            keyed.list_get(l).unwrap(),
            vec![b"x".to_vec(), b"y".to_vec()]
        );
        assert_eq!(keyed.map_get(m, b"k1").unwrap(), None);
        assert_eq!(
            keyed.map_entries(m).unwrap(),
            vec![(b"k2".to_vec(), b"v2".to_vec())]
        );

        keyed.set_key(b"b");
        assert_eq!(keyed.value_get(v).unwrap(), None, "another key's state");
        assert!(keyed.list_get(l).unwrap().is_empty());
        assert!(keyed.map_entries(m).unwrap().is_empty());

        keyed.set_key(b"a");
        keyed.list_replace(l, &[b"z".to_vec()]).unwrap();
        assert_eq!(keyed.list_get(l).unwrap(), vec![b"z".to_vec()]);
        keyed.value_clear(v).unwrap();
        keyed.list_clear(l).unwrap();
        keyed.map_clear(m).unwrap();
        assert_eq!(keyed.value_get(v).unwrap(), None);
        assert!(keyed.list_get(l).unwrap().is_empty());
        assert_eq!(keyed.map_get(m, b"k2").unwrap(), None);
    }

    #[test]
    fn states_of_one_name_but_different_kinds_are_apart() {
        let mut keyed = at(b"k");
        let s = state("s", None);
        keyed.value_set(s, b"v").unwrap();
        keyed.list_add(s, b"l").unwrap();
        assert_eq!(keyed.value_get(s).unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(keyed.list_get(s).unwrap(), vec![b"l".to_vec()]);
    }

    #[test]
    fn entries_expire_after_their_ttl_of_processing_time() {
        let mut keyed = at(b"k");
        let short = state("s", Some(500));
        let forever = state("s", None);
        keyed.set_now(1_000);
        keyed.value_set(short, b"v").unwrap();
        keyed.set_now(1_499);
        assert!(keyed.value_get(short).unwrap().is_some());
        keyed.set_now(99_999);
        assert!(
            keyed.value_get(forever).unwrap().is_some(),
            "no TTL, no expiry"
        );
        keyed.set_now(1_500);
        assert!(keyed.value_get(short).unwrap().is_none());
        assert!(
            keyed.value_get(forever).unwrap().is_none(),
            "an expired entry is removed"
        );
    }

    #[test]
    fn a_write_renews_the_ttl_stamp() {
        let mut keyed = at(b"k");
        let s = state("m", Some(100));
        keyed.set_now(0);
        keyed.map_put(s, b"a", b"1").unwrap();
        keyed.set_now(90);
        keyed.map_put(s, b"b", b"2").unwrap();
        keyed.set_now(150);
        assert_eq!(keyed.map_entries(s).unwrap().len(), 2);
        keyed.set_now(190);
        assert!(keyed.map_entries(s).unwrap().is_empty());
    }

    #[test]
    fn a_rolled_back_call_leaves_state_timers_and_side_outputs_as_they_were() {
        let mut keyed = at(b"k");
        let h = state("n", None);
        keyed.value_set(h, b"old").unwrap();
        keyed.register_timer(TimeDomain::Event, 3);
        keyed.emit_side_output("late".into(), Batch::default());
        keyed.begin();
        keyed.value_set(h, b"new").unwrap();
        keyed.value_set(h, b"newer").unwrap();
        keyed.register_timer(TimeDomain::Event, 5);
        keyed.delete_timer(TimeDomain::Event, 3);
        keyed.emit_side_output("late".into(), Batch::default());
        keyed.rollback();
        assert_eq!(keyed.value_get(h).unwrap().as_deref(), Some(&b"old"[..]));
        assert_eq!(
            keyed.timers.iter().collect::<Vec<_>>(),
            vec![&(3, 0, b"k".to_vec())]
        );
        assert_eq!(keyed.take_side_outputs().len(), 1);
    }

    #[test]
    fn a_committed_call_keeps_its_changes() {
        let mut keyed = at(b"k");
        let h = state("n", None);
        keyed.begin();
        keyed.value_set(h, b"kept").unwrap();
        keyed.register_timer(TimeDomain::Processing, 9);
        keyed.commit();
        keyed.rollback();
        assert_eq!(keyed.value_get(h).unwrap().as_deref(), Some(&b"kept"[..]));
        assert_eq!(keyed.timers.len(), 1);
    }

    #[test]
    fn timers_fire_per_domain_in_time_order() {
        let mut keyed = KeyedState::default();
        keyed.set_key(b"b");
        keyed.register_timer(TimeDomain::Event, 20);
        keyed.set_key(b"a");
        keyed.register_timer(TimeDomain::Event, 10);
        keyed.set_key(b"p");
        keyed.register_timer(TimeDomain::Processing, 5);
        assert_eq!(
            keyed.pop_due(TimeDomain::Event, 15),
            Some((10, b"a".to_vec()))
        );
        assert_eq!(keyed.pop_due(TimeDomain::Event, 15), None);
        assert_eq!(
            keyed.pop_due(TimeDomain::Processing, 5),
            Some((5, b"p".to_vec()))
        );
        assert_eq!(
            keyed.pop_due(TimeDomain::Event, 20),
            Some((20, b"b".to_vec()))
        );
        assert_eq!(keyed.pop_due(TimeDomain::Event, i64::MAX), None);
        // A timer that registers itself again for a time already passed is cut off.
        keyed.set_key(b"k");
        keyed.register_timer(TimeDomain::Event, 1);
        let mut advance = keyed.advance(TimeDomain::Event, 10);
        let mut fired = 0;
        let error = loop {
            match keyed.pop_due_in(&mut advance) {
                Ok(Some((ts, _))) => {
                    fired += 1;
                    keyed.register_timer(TimeDomain::Event, ts);
                }
                Ok(None) => panic!("the loop ended by itself"),
                Err(e) => break e,
            }
        };
        assert_eq!(fired, 1 + MAX_TIMERS_ADDED_PER_ADVANCE);
        assert!(
            error
                .to_string()
                .contains("while event time advanced to 10"),
            "{error}"
        );
    }

    #[test]
    fn snapshots_carry_state_and_timers_to_another_instance() {
        let mut keyed = KeyedState::default();
        let h = state("n", None);
        for key in [&b"a"[..], b"b", b"c"] {
            keyed.set_key(key);
            keyed.list_add(h, key).unwrap();
            keyed.register_timer(TimeDomain::Event, 7);
        }
        let entries = keyed.snapshot(None).unwrap();
        let mut restored = KeyedState::default();
        restored.restore(entries, Path::new(".")).unwrap();
        restored.set_key(b"b");
        assert_eq!(restored.list_get(h).unwrap(), vec![b"b".to_vec()]);
        assert_eq!(restored.timers, keyed.timers);
    }

    #[test]
    fn snapshots_split_by_key_group_ranges_when_rescaled() {
        const GROUPS: u32 = 16;
        let mut keyed = KeyedState::with_backend(Box::new(HeapBackend::new(None)), GROUPS);
        let h = state("n", None);
        let keys: Vec<Vec<u8>> = (0..40).map(|i| format!("key-{i}").into_bytes()).collect();
        for key in &keys {
            keyed.set_key(key);
            keyed.value_set(h, key).unwrap();
            keyed.register_timer(TimeDomain::Event, 1);
        }
        let entries = keyed.snapshot(None).unwrap();
        assert!(
            entries
                .iter()
                .all(|e| e.key_group.is_some_and(|g| g < GROUPS))
        );
        let mut owners = vec![0; keys.len()];
        for subtask in 0..3 {
            let mut part = KeyedState::with_backend(Box::new(HeapBackend::new(None)), GROUPS);
            part.restore(entries_for(&entries, subtask, 3, GROUPS), Path::new("."))
                .unwrap();
            let range = crate::keygroup::key_group_range(subtask, 3, GROUPS);
            for (i, key) in keys.iter().enumerate() {
                part.set_key(key);
                let owned = range.contains(&key_group(key, GROUPS));
                let value = part.value_get(h).unwrap();
                assert_eq!(value.is_some(), owned, "key {i} at subtask {subtask}");
                if owned {
                    assert_eq!(value.as_deref(), Some(key.as_slice()));
                    owners[i] += 1;
                }
            }
            assert!(
                part.timers
                    .iter()
                    .all(|t| range.contains(&key_group(&t.2, GROUPS)))
            );
        }
        assert!(
            owners.iter().all(|&n| n == 1),
            "each key restored exactly once"
        );
    }

    #[test]
    fn a_snapshot_entry_of_unknown_kind_is_an_error() {
        let mut keyed = KeyedState::default();
        let bad = StateEntry {
            key_group: Some(0),
            bytes: vec![b'?'],
        };
        assert!(keyed.restore(vec![bad], Path::new(".")).is_err());
        let truncated = StateEntry {
            key_group: Some(0),
            bytes: vec![TIMERS_ENTRY, 5, 0, 0, 0],
        };
        assert!(keyed.restore(vec![truncated], Path::new(".")).is_err());
    }

    #[test]
    fn process_output_is_keyed_and_stamped_where_unset() {
        let mut input = Batch::default();
        let events: [(&[u8], Option<i64>); 4] = [
            (b"b", Some(4)),
            (b"a", Some(9)),
            (b"b", Some(7)),
            (b"a", None),
        ];
        for (key, ts) in events {
            input
                .push(EventRef {
                    key: Some(key),
                    value: b"{}",
                    timestamp: ts,
                })
                .unwrap();
        }
        let groups = group_by_key(&input);
        assert_eq!(groups.keys().collect::<Vec<_>>(), vec![b"a", b"b"]);
        assert_eq!(latest_timestamp(&groups[&b"a".to_vec()]), Some(9));
        assert_eq!(latest_timestamp(&groups[&b"b".to_vec()]), Some(7));

        let mut produced = Batch::default();
        produced.push_value(b"plain").unwrap();
        produced
            .push(EventRef {
                key: Some(b"own"),
                value: b"set",
                timestamp: Some(1),
            })
            .unwrap();
        let mut out = Batch::default();
        append_keyed(&mut out, &produced, b"a", Some(9)).unwrap();
        assert_eq!(out.key(0), Some(&b"a"[..]));
        assert_eq!(out.event(0).timestamp, Some(9));
        assert_eq!(out.key(1), Some(&b"own"[..]));
        assert_eq!(out.event(1).timestamp, Some(1));
    }
}
