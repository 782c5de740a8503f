//! Keyed state, timers and side outputs of process-function instances: what the
//! `state`, `timers` and `side-output` imports act on. The host owns all of it; the
//! plugin only ever sees the state of the key being processed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use eddy_core::Batch;
use eddy_core::exchange::key_group;
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

/// Which state of which key: (state name, key).
type StateId = (String, Vec<u8>);
/// Entries of one kind of state.
type Table<T> = HashMap<StateId, Stamped<T>>;
/// Entries as they were before a call changed them (`None`: absent).
type UndoLog<T> = Vec<(StateId, Option<Stamped<T>>)>;
/// A timer: when, domain code, key.
type TimerEntry = (i64, u8, Vec<u8>);

#[derive(Clone, Debug)]
struct Stamped<T> {
    value: T,
    written: i64,
}

/// What an entry of state weighs in managed memory.
trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for Vec<u8> {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weigh for Vec<Vec<u8>> {
    fn weight(&self) -> usize {
        self.iter().map(|v| v.len() + 8).sum()
    }
}

impl Weigh for BTreeMap<Vec<u8>, Vec<u8>> {
    fn weight(&self) -> usize {
        self.iter().map(|(k, v)| k.len() + v.len() + 16).sum()
    }
}

/// Bytes an entry costs beyond its contents (name, key, bookkeeping).
fn entry_weight<T: Weigh>(id: &StateId, value: &T) -> usize {
    id.0.len() + id.1.len() + 64 + value.weight()
}

/// One kind of state: where its table and its undo records live.
trait Kind {
    type T: Weigh + Clone;
    const CODE: u8;
    fn table(k: &mut KeyedState) -> &mut Table<Self::T>;
    fn log(j: &mut Journal) -> &mut UndoLog<Self::T>;
}

struct Values;
struct Lists;
struct Maps;

impl Kind for Values {
    type T = Vec<u8>;
    const CODE: u8 = 0;
    fn table(k: &mut KeyedState) -> &mut Table<Vec<u8>> {
        &mut k.values
    }
    fn log(j: &mut Journal) -> &mut UndoLog<Vec<u8>> {
        &mut j.values
    }
}

impl Kind for Lists {
    type T = Vec<Vec<u8>>;
    const CODE: u8 = 1;
    fn table(k: &mut KeyedState) -> &mut Table<Vec<Vec<u8>>> {
        &mut k.lists
    }
    fn log(j: &mut Journal) -> &mut UndoLog<Vec<Vec<u8>>> {
        &mut j.lists
    }
}

impl Kind for Maps {
    type T = BTreeMap<Vec<u8>, Vec<u8>>;
    const CODE: u8 = 2;
    fn table(k: &mut KeyedState) -> &mut Table<Self::T> {
        &mut k.maps
    }
    fn log(j: &mut Journal) -> &mut UndoLog<Self::T> {
        &mut j.maps
    }
}

/// What the current call changed, so that a failed call leaves no trace: its writes,
/// timers and side outputs are undone before the events are tried again.
#[derive(Debug, Default)]
struct Journal {
    active: bool,
    seen: std::collections::HashSet<(u8, StateId)>,
    values: UndoLog<Vec<u8>>,
    lists: UndoLog<Vec<Vec<u8>>>,
    maps: UndoLog<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Timers added (`true`) or removed (`false`), in order.
    timers: Vec<(bool, TimerEntry)>,
    side: usize,
    charged: usize,
}

/// The keyed state of one instance, with the key and clocks of the current call.
#[derive(Debug, Default)]
pub struct KeyedState {
    /// The pools whose managed memory the state is charged to.
    pub(crate) pools: Option<std::sync::Arc<eddy_core::memory::Pools>>,
    /// Bytes charged so far.
    charged: usize,
    /// The key being processed.
    pub(crate) key: Vec<u8>,
    /// Processing time of the current call (ms).
    pub(crate) now: i64,
    /// The operator's watermark.
    pub(crate) watermark: i64,
    values: Table<Vec<u8>>,
    lists: Table<Vec<Vec<u8>>>,
    maps: Table<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Registered timers: (time, 0 = event time / 1 = processing time, key).
    timers: BTreeSet<TimerEntry>,
    /// Side-output events of the current call, by tag.
    pub(crate) side: Vec<(String, Batch)>,
    journal: Journal,
}

fn domain_code(domain: TimeDomain) -> u8 {
    match domain {
        TimeDomain::EventTime => 0,
        TimeDomain::ProcessingTime => 1,
    }
}

impl KeyedState {
    /// Empty state charged to `pools.managed`.
    pub(crate) fn new(pools: Option<std::sync::Arc<eddy_core::memory::Pools>>) -> Self {
        let mut state = KeyedState::default();
        state.pools = pools;
        state
    }

    fn live<'a, T: Weigh>(
        map: &'a mut Table<T>,
        id: StateId,
        ttl: Option<u64>,
        now: i64,
        freed: &mut usize,
    ) -> Option<&'a mut Stamped<T>> {
        let expired = map
            .get(&id)
            .is_some_and(|s| ttl.is_some_and(|t| now.saturating_sub(s.written) >= t as i64));
        if expired && let Some(gone) = map.remove(&id) {
            *freed += entry_weight(&id, &gone.value);
        }
        map.get_mut(&id)
    }

    /// Adjusts the managed memory charged for an entry that went from `before` to
    /// `after` bytes; more memory than the pool has is an error that traps the plugin.
    fn recharge(&mut self, before: usize, after: usize) -> wasmtime::Result<()> {
        if after > before {
            if let Some(pools) = &self.pools {
                pools.managed.try_reserve(after - before).map_err(|e| {
                    wasmtime::Error::msg(format!(
                        "keyed state: {e}; raise memory.managed in the job file"
                    ))
                })?;
            }
            self.charged += after - before;
        } else {
            let freed = (before - after).min(self.charged);
            if let Some(pools) = &self.pools {
                pools.managed.release(freed);
            }
            self.charged -= freed;
        }
        Ok(())
    }

    fn id(&self, handle: &StateHandle) -> StateId {
        (handle.name.clone(), self.key.clone())
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
}

/// One key's state, gathered from the tables for a checkpoint entry.
#[derive(Default)]
struct KeyParts<'a> {
    values: Vec<(&'a str, &'a Stamped<Vec<u8>>)>,
    lists: Vec<(&'a str, &'a Stamped<Vec<Vec<u8>>>)>,
    maps: Vec<(&'a str, &'a Stamped<<Maps as Kind>::T>)>,
    timers: Vec<(i64, u8)>,
}

impl KeyedState {
    /// Every key's state and timers, one entry per key in the key's group.
    pub(crate) fn snapshot(&self, max_parallelism: u32) -> Vec<StateEntry> {
        let mut keys: BTreeMap<&[u8], KeyParts<'_>> = BTreeMap::new();
        for ((name, key), v) in &self.values {
            keys.entry(key).or_default().values.push((name, v));
        }
        for ((name, key), v) in &self.lists {
            keys.entry(key).or_default().lists.push((name, v));
        }
        for ((name, key), v) in &self.maps {
            keys.entry(key).or_default().maps.push((name, v));
        }
        for (time, domain, key) in &self.timers {
            keys.entry(key).or_default().timers.push((*time, *domain));
        }
        keys.into_iter()
            .map(|(key, parts)| {
                let mut e = Encoder::new();
                e.bytes(key).count(parts.values.len());
                for (name, v) in parts.values {
                    e.bytes(name.as_bytes()).i64(v.written).bytes(&v.value);
                }
                e.count(parts.lists.len());
                for (name, v) in parts.lists {
                    e.bytes(name.as_bytes()).i64(v.written).count(v.value.len());
                    for item in &v.value {
                        e.bytes(item);
                    }
                }
                e.count(parts.maps.len());
                for (name, v) in parts.maps {
                    e.bytes(name.as_bytes()).i64(v.written).count(v.value.len());
                    for (k, item) in &v.value {
                        e.bytes(k).bytes(item);
                    }
                }
                e.count(parts.timers.len());
                for (time, domain) in parts.timers {
                    e.i64(time).u8(domain);
                }
                StateEntry {
                    key_group: Some(key_group(key, max_parallelism)),
                    bytes: e.finish(),
                }
            })
            .collect()
    }

    /// Takes up checkpointed entries, charging them to managed memory.
    pub(crate) fn restore(&mut self, entries: Vec<StateEntry>) -> wasmtime::Result<()> {
        for entry in entries {
            let charge = self
                .restore_entry(&entry.bytes)
                .map_err(|e| wasmtime::Error::msg(format!("checkpoint state: {e}")))?;
            self.recharge(0, charge)?;
        }
        Ok(())
    }

    /// Adds one key's entry; returns the weight it adds.
    fn restore_entry(&mut self, bytes: &[u8]) -> std::result::Result<usize, StateError> {
        let mut d = Decoder::new(bytes);
        let key = d.bytes()?.to_vec();
        let mut weight = 0;
        for _ in 0..d.count()? {
            let id = (d.str()?.to_owned(), key.clone());
            let written = d.i64()?;
            let value = d.bytes()?.to_vec();
            weight += entry_weight(&id, &value);
            self.values.insert(id, Stamped { value, written });
        }
        for _ in 0..d.count()? {
            let id = (d.str()?.to_owned(), key.clone());
            let written = d.i64()?;
            let value = (0..d.count()?)
                .map(|_| d.bytes().map(<[u8]>::to_vec))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            weight += entry_weight(&id, &value);
            self.lists.insert(id, Stamped { value, written });
        }
        for _ in 0..d.count()? {
            let id = (d.str()?.to_owned(), key.clone());
            let written = d.i64()?;
            let mut value = BTreeMap::new();
            for _ in 0..d.count()? {
                value.insert(d.bytes()?.to_vec(), d.bytes()?.to_vec());
            }
            weight += entry_weight(&id, &value);
            self.maps.insert(id, Stamped { value, written });
        }
        for _ in 0..d.count()? {
            self.timers.insert((d.i64()?, d.u8()?, key.clone()));
        }
        d.end()?;
        Ok(weight)
    }
}

type Result<T> = wasmtime::Result<T>;

fn handle(state: &HostState, r: &Resource<StateHandle>) -> Result<StateHandle> {
    Ok(state.table.get(r)?.clone())
}

impl state::Host for HostState {}

impl Drop for KeyedState {
    fn drop(&mut self) {
        if let Some(pools) = &self.pools {
            pools.managed.release(self.charged);
        }
    }
}

impl KeyedState {
    /// Runs `change` on the current key's entry of state `h` (expired ones removed first)
    /// and charges the difference to managed memory; remembers the entry as it was
    /// before the call's first change, to undo a failed call.
    fn update<K: Kind, R>(
        &mut self,
        h: &StateHandle,
        change: impl FnOnce(&mut Table<K::T>, &StateId, i64) -> R,
    ) -> wasmtime::Result<R> {
        let id = self.id(h);
        let now = self.now;
        if self.journal.active && self.journal.seen.insert((K::CODE, id.clone())) {
            let old = K::table(self).get(&id).cloned();
            K::log(&mut self.journal).push((id.clone(), old));
        }
        let mut freed = 0;
        let table = K::table(self);
        KeyedState::live(table, id.clone(), h.ttl_ms, now, &mut freed);
        let before = table.get(&id).map_or(0, |s| entry_weight(&id, &s.value));
        let result = change(table, &id, now);
        let after = table.get(&id).map_or(0, |s| entry_weight(&id, &s.value));
        self.recharge(before + freed, after)?;
        Ok(result)
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

    /// Starts a call whose effects can be undone.
    pub(crate) fn begin(&mut self) {
        self.journal = Journal {
            active: true,
            side: self.side.len(),
            charged: self.charged,
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
        fn restore<T>(table: &mut Table<T>, log: UndoLog<T>) {
            for (id, old) in log {
                match old {
                    Some(entry) => table.insert(id, entry),
                    None => table.remove(&id),
                };
            }
        }
        restore(&mut self.values, journal.values);
        restore(&mut self.lists, journal.lists);
        restore(&mut self.maps, journal.maps);
        for (added, timer) in journal.timers.into_iter().rev() {
            if added {
                self.timers.remove(&timer);
            } else {
                self.timers.insert(timer);
            }
        }
        self.side.truncate(journal.side);
        // Restoring entries restores their weight: settle the pool on the old charge.
        let _ = self.recharge(self.charged, journal.charged);
    }
}

impl state::HostValueState for HostState {
    fn new(&mut self, name: String, ttl_ms: Option<u64>) -> Result<Resource<StateHandle>> {
        Ok(self.table.push(StateHandle { name, ttl_ms })?)
    }

    fn get(&mut self, r: Resource<StateHandle>) -> Result<Option<Vec<u8>>> {
        let h = handle(self, &r)?;
        self.keyed
            .update::<Values, _>(&h, |t, id, _| t.get(id).map(|s| s.value.clone()))
    }

    fn set(&mut self, r: Resource<StateHandle>, value: Vec<u8>) -> Result<()> {
        let h = handle(self, &r)?;
        self.keyed.update::<Values, _>(&h, |t, id, now| {
            t.insert(
                id.clone(),
                Stamped {
                    value,
                    written: now,
                },
            );
        })
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> Result<()> {
        let h = handle(self, &r)?;
        self.keyed.update::<Values, _>(&h, |t, id, _| {
            t.remove(id);
        })
    }

    fn drop(&mut self, r: Resource<StateHandle>) -> Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl state::HostListState for HostState {
    fn new(&mut self, name: String, ttl_ms: Option<u64>) -> Result<Resource<StateHandle>> {
        Ok(self.table.push(StateHandle { name, ttl_ms })?)
    }

    fn get(&mut self, r: Resource<StateHandle>) -> Result<Vec<Vec<u8>>> {
        let h = handle(self, &r)?;
        self.keyed.update::<Lists, _>(&h, |t, id, _| {
            t.get(id).map(|s| s.value.clone()).unwrap_or_default()
        })
    }

    fn add(&mut self, r: Resource<StateHandle>, value: Vec<u8>) -> Result<()> {
        let h = handle(self, &r)?;
        self.keyed.update::<Lists, _>(&h, |t, id, now| {
            let entry = t.entry(id.clone()).or_insert(Stamped {
                value: Vec::new(),
                written: now,
            });
            entry.value.push(value);
            entry.written = now;
        })
    }

    fn replace(&mut self, r: Resource<StateHandle>, values: Vec<Vec<u8>>) -> Result<()> {
        let h = handle(self, &r)?;
        self.keyed.update::<Lists, _>(&h, |t, id, now| {
            t.insert(
                id.clone(),
                Stamped {
                    value: values,
                    written: now,
                },
            );
        })
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> Result<()> {
        let h = handle(self, &r)?;
        self.keyed.update::<Lists, _>(&h, |t, id, _| {
            t.remove(id);
        })
    }

    fn drop(&mut self, r: Resource<StateHandle>) -> Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl state::HostMapState for HostState {
    fn new(&mut self, name: String, ttl_ms: Option<u64>) -> Result<Resource<StateHandle>> {
        Ok(self.table.push(StateHandle { name, ttl_ms })?)
    }

    fn get(&mut self, r: Resource<StateHandle>, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        let h = handle(self, &r)?;
        self.keyed.update::<Maps, _>(&h, |t, id, _| {
            t.get(id).and_then(|s| s.value.get(&key).cloned())
        })
    }

    fn put(&mut self, r: Resource<StateHandle>, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let h = handle(self, &r)?;
        self.keyed.update::<Maps, _>(&h, |t, id, now| {
            let entry = t.entry(id.clone()).or_insert(Stamped {
                value: BTreeMap::new(),
                written: now,
            });
            entry.value.insert(key, value);
            entry.written = now;
        })
    }

    fn remove(&mut self, r: Resource<StateHandle>, key: Vec<u8>) -> Result<()> {
        let h = handle(self, &r)?;
        self.keyed.update::<Maps, _>(&h, |t, id, _| {
            if let Some(s) = t.get_mut(id) {
                s.value.remove(&key);
            }
        })
    }

    fn entries(&mut self, r: Resource<StateHandle>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let h = handle(self, &r)?;
        self.keyed.update::<Maps, _>(&h, |t, id, _| {
            t.get(id)
                .map(|s| {
                    s.value
                        .iter()
                        .map(|(a, b)| (a.clone(), b.clone()))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> Result<()> {
        let h = handle(self, &r)?;
        self.keyed.update::<Maps, _>(&h, |t, id, _| {
            t.remove(id);
        })
    }

    fn drop(&mut self, r: Resource<StateHandle>) -> Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl timers::Host for HostState {
    fn register(&mut self, domain: TimeDomain, timestamp: i64) -> Result<()> {
        let key = self.keyed.key.clone();
        self.keyed
            .timers
            .insert((timestamp, domain_code(domain), key));
        Ok(())
    }

    fn delete(&mut self, domain: TimeDomain, timestamp: i64) -> Result<()> {
        let key = self.keyed.key.clone();
        self.keyed
            .timers
            .remove(&(timestamp, domain_code(domain), key));
        Ok(())
    }

    fn current_watermark(&mut self) -> Result<i64> {
        Ok(self.keyed.watermark)
    }

    fn current_processing_time(&mut self) -> Result<i64> {
        Ok(self.keyed.now)
    }
}

impl side_output::Host for HostState {
    fn emit(&mut self, tag: String, events: crate::bindings::WitBatch) -> Result<()> {
        self.keyed.side.push((tag, Batch::from(events)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_ttl_of_processing_time() {
        let mut map: Table<Vec<u8>> = HashMap::new();
        let id = ("s".to_string(), b"k".to_vec());
        map.insert(
            id.clone(),
            Stamped {
                value: b"v".to_vec(),
                written: 1_000,
            },
        );
        let mut freed = 0;
        assert!(KeyedState::live(&mut map, id.clone(), Some(500), 1_499, &mut freed).is_some());
        let no_ttl = KeyedState::live(&mut map, id.clone(), None, 99_999, &mut freed);
        assert!(no_ttl.is_some(), "no TTL, no expiry");
        assert_eq!(freed, 0);
        assert!(KeyedState::live(&mut map, id.clone(), Some(500), 1_500, &mut freed).is_none());
        assert!(map.is_empty(), "an expired entry is removed");
        assert_eq!(freed, 1 + 1 + 64 + 1, "and its memory is freed");
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
