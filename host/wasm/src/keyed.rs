//! Keyed state, timers and side outputs of process-function instances: what the
//! `state`, `timers` and `side-output` imports act on. The host owns all of it; the
//! plugin only ever sees the state of the key being processed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use eddy_core::Batch;
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

#[derive(Clone, Debug)]
struct Stamped<T> {
    value: T,
    written: i64,
}

/// The keyed state of one instance, with the key and clocks of the current call.
#[derive(Debug, Default)]
pub struct KeyedState {
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
    timers: BTreeSet<(i64, u8, Vec<u8>)>,
    /// Side-output events of the current call, by tag.
    pub(crate) side: Vec<(String, Batch)>,
}

fn domain_code(domain: TimeDomain) -> u8 {
    match domain {
        TimeDomain::EventTime => 0,
        TimeDomain::ProcessingTime => 1,
    }
}

impl KeyedState {
    fn live<T>(
        map: &mut Table<T>,
        id: StateId,
        ttl: Option<u64>,
        now: i64,
    ) -> Option<&mut Stamped<T>> {
        let expired = map
            .get(&id)
            .is_some_and(|s| ttl.is_some_and(|t| now.saturating_sub(s.written) >= t as i64));
        if expired {
            map.remove(&id);
        }
        map.get_mut(&id)
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
        self.timers.remove(&due);
        Some((due.0, due.2))
    }
}

type Result<T> = wasmtime::Result<T>;

fn handle(state: &HostState, r: &Resource<StateHandle>) -> Result<StateHandle> {
    Ok(state.table.get(r)?.clone())
}

impl state::Host for HostState {}

impl HostState {
    /// The current key's entry of state `h` in `map`, expired entries removed.
    fn current<'a, T>(
        keyed: &'a mut KeyedState,
        pick: fn(&mut KeyedState) -> &mut Table<T>,
        h: &StateHandle,
    ) -> Option<&'a mut Stamped<T>> {
        let id = keyed.id(h);
        let now = keyed.now;
        KeyedState::live(pick(keyed), id, h.ttl_ms, now)
    }
}

impl state::HostValueState for HostState {
    fn new(&mut self, name: String, ttl_ms: Option<u64>) -> Result<Resource<StateHandle>> {
        Ok(self.table.push(StateHandle { name, ttl_ms })?)
    }

    fn get(&mut self, r: Resource<StateHandle>) -> Result<Option<Vec<u8>>> {
        let h = handle(self, &r)?;
        Ok(Self::current(&mut self.keyed, |k| &mut k.values, &h).map(|s| s.value.clone()))
    }

    fn set(&mut self, r: Resource<StateHandle>, value: Vec<u8>) -> Result<()> {
        let h = handle(self, &r)?;
        let id = self.keyed.id(&h);
        let written = self.keyed.now;
        self.keyed.values.insert(id, Stamped { value, written });
        Ok(())
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> Result<()> {
        let h = handle(self, &r)?;
        let id = self.keyed.id(&h);
        self.keyed.values.remove(&id);
        Ok(())
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
        Ok(Self::current(&mut self.keyed, |k| &mut k.lists, &h)
            .map(|s| s.value.clone())
            .unwrap_or_default())
    }

    fn add(&mut self, r: Resource<StateHandle>, value: Vec<u8>) -> Result<()> {
        let h = handle(self, &r)?;
        let now = self.keyed.now;
        match Self::current(&mut self.keyed, |k| &mut k.lists, &h) {
            Some(s) => {
                s.value.push(value);
                s.written = now;
            }
            None => {
                let id = self.keyed.id(&h);
                self.keyed.lists.insert(
                    id,
                    Stamped {
                        value: vec![value],
                        written: now,
                    },
                );
            }
        }
        Ok(())
    }

    fn replace(&mut self, r: Resource<StateHandle>, values: Vec<Vec<u8>>) -> Result<()> {
        let h = handle(self, &r)?;
        let id = self.keyed.id(&h);
        let written = self.keyed.now;
        self.keyed.lists.insert(
            id,
            Stamped {
                value: values,
                written,
            },
        );
        Ok(())
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> Result<()> {
        let h = handle(self, &r)?;
        let id = self.keyed.id(&h);
        self.keyed.lists.remove(&id);
        Ok(())
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
        Ok(Self::current(&mut self.keyed, |k| &mut k.maps, &h)
            .and_then(|s| s.value.get(&key).cloned()))
    }

    fn put(&mut self, r: Resource<StateHandle>, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let h = handle(self, &r)?;
        let now = self.keyed.now;
        match Self::current(&mut self.keyed, |k| &mut k.maps, &h) {
            Some(s) => {
                s.value.insert(key, value);
                s.written = now;
            }
            None => {
                let id = self.keyed.id(&h);
                let value = BTreeMap::from([(key, value)]);
                self.keyed.maps.insert(
                    id,
                    Stamped {
                        value,
                        written: now,
                    },
                );
            }
        }
        Ok(())
    }

    fn remove(&mut self, r: Resource<StateHandle>, key: Vec<u8>) -> Result<()> {
        let h = handle(self, &r)?;
        if let Some(s) = Self::current(&mut self.keyed, |k| &mut k.maps, &h) {
            s.value.remove(&key);
        }
        Ok(())
    }

    fn entries(&mut self, r: Resource<StateHandle>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let h = handle(self, &r)?;
        Ok(Self::current(&mut self.keyed, |k| &mut k.maps, &h)
            .map(|s| {
                s.value
                    .iter()
                    .map(|(a, b)| (a.clone(), b.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> Result<()> {
        let h = handle(self, &r)?;
        let id = self.keyed.id(&h);
        self.keyed.maps.remove(&id);
        Ok(())
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
        assert!(KeyedState::live(&mut map, id.clone(), Some(500), 1_499).is_some());
        assert!(
            KeyedState::live(&mut map, id.clone(), None, 99_999).is_some(),
            "no TTL, no expiry"
        );
        assert!(KeyedState::live(&mut map, id.clone(), Some(500), 1_500).is_none());
        assert!(map.is_empty(), "an expired entry is removed");
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
