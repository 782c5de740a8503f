//! The keyed state of a built-in operator (window, join, rolling aggregate) in the job's
//! [`KeyedBackend`]: one backend entry per key, under [`state_key`] of the key's group,
//! the key and the operator's state name, holding the operator's encoding of that key's
//! state. This is the one codec path by which those operators' per-key state reaches
//! checkpoints, so that the job's backend (memory or RocksDB) holds it and a restore at
//! another parallelism splits it by key group like any keyed state.
//!
//! The operators work on their state in memory (windows are on the hot path) and the
//! store is written back at checkpoints: with an incremental backend only the keys
//! changed since the last checkpoint, which stay in the backend in between (on disk,
//! checkpointed as RocksDB checkpoints); with the heap backend all of them, taken out
//! again once the snapshot is written, so that the state is not held twice.

use std::collections::HashSet;
use std::path::Path;

use super::backend::{BackendError, KeyedBackend, key_of, state_key};
use super::{StateEntry, StateError};
use crate::keygroup::key_group;

/// Snapshot entries of a store: the backend's own, and the operator's operator-wide ones.
const BACKEND_ENTRY: u8 = b'S';
const OPERATOR_ENTRY: u8 = b'O';

/// The kind byte of built-in operators' state keys.
const KIND: u8 = 0;

/// What a restore gives back to the operator owning the store.
#[derive(Debug, Default)]
pub struct RestoredState {
    /// The operator-wide entries (such as its watermark), as the operator wrote them.
    pub operator: Vec<StateEntry>,
    /// Each key's state as the operator encoded it, in state-key order.
    pub keys: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The per-key state of one built-in operator subtask in its keyed backend.
pub struct KeyedStore {
    backend: Box<dyn KeyedBackend>,
    /// The state's name in its keys (the kind of operator).
    name: &'static str,
    max_parallelism: u32,
    /// Whether the backend keeps state between checkpoints (see
    /// [`KeyedBackend::incremental`]).
    incremental: bool,
    /// Keys changed since the last checkpoint (kept for incremental backends only).
    dirty: HashSet<Vec<u8>>,
}

impl std::fmt::Debug for KeyedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStore")
            .field("name", &self.name)
            .field("incremental", &self.incremental)
            .field("dirty", &self.dirty.len())
            .finish_non_exhaustive()
    }
}

impl KeyedStore {
    /// A store named `name` in `backend`, keyed into `max_parallelism` key groups.
    pub fn new(backend: Box<dyn KeyedBackend>, name: &'static str, max_parallelism: u32) -> Self {
        KeyedStore {
            incremental: backend.incremental(),
            backend,
            name,
            max_parallelism,
            dirty: HashSet::new(),
        }
    }

    /// Notes that `key`'s state changed since the last checkpoint.
    #[inline]
    pub fn touch(&mut self, key: &[u8]) {
        if self.incremental && !self.dirty.contains(key) {
            self.dirty.insert(key.to_vec());
        }
    }

    /// The backend key of `key`'s state.
    fn backend_key(&self, key: &[u8]) -> Vec<u8> {
        state_key(key_group(key, self.max_parallelism), key, self.name, KIND)
    }

    /// Writes the operator's state into the backend and snapshots it for checkpoint
    /// directory `target` (`None`: portable, self-contained entries), followed by the
    /// operator's own operator-wide entries `operator`.
    ///
    /// `live` lists every key holding state; `encode` gives a key's encoded state, or
    /// `None` if it holds none any more.
    pub fn snapshot<'k>(
        &mut self,
        target: Option<&Path>,
        live: impl Iterator<Item = &'k [u8]>,
        mut encode: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, StateError>,
        operator: Vec<StateEntry>,
    ) -> Result<Vec<StateEntry>, BackendError> {
        let mut written = Vec::new();
        if self.incremental {
            for key in std::mem::take(&mut self.dirty) {
                let k = self.backend_key(&key);
                match encode(&key)? {
                    Some(value) => self.backend.put(&k, &value)?,
                    None => self.backend.delete(&k)?,
                }
            }
        } else {
            for key in live {
                if let Some(value) = encode(key)? {
                    let k = self.backend_key(key);
                    self.backend.put(&k, &value)?;
                    written.push(k);
                }
            }
        }
        let snapshot = self.backend.snapshot(target);
        // The heap holds the state between checkpoints in the operator alone.
        for k in &written {
            self.backend.delete(k)?;
        }
        let mut entries = snapshot?;
        for e in &mut entries {
            e.bytes.insert(0, BACKEND_ENTRY);
        }
        entries.extend(operator.into_iter().map(|mut e| {
            e.bytes.insert(0, OPERATOR_ENTRY);
            e
        }));
        Ok(entries)
    }

    /// Takes up the entries a [`KeyedStore::snapshot`] wrote, from the checkpoint in
    /// directory `from`: the operator gets back its operator-wide entries and every key's
    /// state now in the backend.
    pub fn restore(
        &mut self,
        entries: Vec<StateEntry>,
        from: &Path,
    ) -> Result<RestoredState, BackendError> {
        let mut restored = RestoredState::default();
        let mut state = Vec::new();
        for mut entry in entries {
            let tag = entry.bytes.first().copied();
            match tag {
                Some(BACKEND_ENTRY) => {
                    entry.bytes.remove(0);
                    state.push(entry);
                }
                Some(OPERATOR_ENTRY) => {
                    entry.bytes.remove(0);
                    restored.operator.push(entry);
                }
                _ => return Err(StateError("unknown operator state entry".into()).into()),
            }
        }
        self.backend.restore(state, from)?;
        let mut pairs = Vec::new();
        let mut malformed = false;
        self.backend.scan(&mut |k, v| match key_of(k) {
            Some(key) => pairs.push((k.to_vec(), key.to_vec(), v.to_vec())),
            None => malformed = true,
        })?;
        if malformed {
            return Err(StateError("a state key without its key".into()).into());
        }
        for (k, key, value) in pairs {
            if !self.incremental {
                self.backend.delete(&k)?;
            }
            restored.keys.push((key, value));
        }
        Ok(restored)
    }
}

/// A heap backend shared with the test that made it and saying it is incremental,
/// standing in for RocksDB in unit tests of the operators using a store.
#[cfg(test)]
pub(crate) struct SharedIncremental(
    pub std::sync::Arc<std::sync::Mutex<super::backend::HeapBackend>>,
);

#[cfg(test)]
impl SharedIncremental {
    /// A new backend, and the handle the test inspects it by.
    pub(crate) fn new() -> (
        Self,
        std::sync::Arc<std::sync::Mutex<super::backend::HeapBackend>>,
    ) {
        let shared = std::sync::Arc::new(std::sync::Mutex::new(super::backend::HeapBackend::new(
            None,
        )));
        (SharedIncremental(shared.clone()), shared)
    }

    /// The keys (of the operators' own) and values the backend holds now.
    pub(crate) fn contents(
        shared: &std::sync::Mutex<super::backend::HeapBackend>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        shared
            .lock()
            .unwrap()
            .scan(&mut |k, v| out.push((key_of(k).unwrap().to_vec(), v.to_vec())))
            .unwrap();
        out
    }
}

#[cfg(test)]
impl KeyedBackend for SharedIncremental {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.0.lock().unwrap().get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackendError> {
        self.0.lock().unwrap().put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), BackendError> {
        self.0.lock().unwrap().delete(key)
    }
    fn snapshot(&mut self, target: Option<&Path>) -> Result<Vec<StateEntry>, BackendError> {
        self.0.lock().unwrap().snapshot(target)
    }
    fn restore(&mut self, entries: Vec<StateEntry>, from: &Path) -> Result<(), BackendError> {
        self.0.lock().unwrap().restore(entries, from)
    }
    fn scan(&mut self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), BackendError> {
        self.0.lock().unwrap().scan(visit)
    }
    fn incremental(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::backend::HeapBackend;
    use crate::state::entries_for;
    use std::collections::BTreeMap;

    fn snapshot(
        store: &mut KeyedStore,
        state: &BTreeMap<Vec<u8>, Vec<u8>>,
        keys: &[&[u8]],
    ) -> Vec<StateEntry> {
        for k in keys {
            store.touch(k);
        }
        store
            .snapshot(
                None,
                state.keys().map(Vec::as_slice),
                |k| Ok(state.get(k).cloned()),
                vec![crate::state::watermark_entry(42)],
            )
            .unwrap()
    }

    fn state(pairs: &[(&str, &str)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn per_key_state_round_trips_and_splits_by_key_group() {
        for incremental in [false, true] {
            let backend: Box<dyn KeyedBackend> = if incremental {
                Box::new(SharedIncremental::new().0)
            } else {
                Box::new(HeapBackend::new(None))
            };
            let mut store = KeyedStore::new(backend, "window", 128);
            let keys: Vec<String> = (0..40).map(|i| format!("key-{i}")).collect();
            let mut live = BTreeMap::new();
            for (i, k) in keys.iter().enumerate() {
                live.insert(k.as_bytes().to_vec(), vec![i as u8]);
            }
            let touched: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            let entries = snapshot(&mut store, &live, &touched);
            // Per key group (the heap's portable form), plus the watermark.
            assert!(entries.iter().filter(|e| e.key_group.is_some()).count() > 1);

            let mut total = BTreeMap::new();
            for subtask in 0..3 {
                let mut part = KeyedStore::new(Box::new(HeapBackend::new(None)), "window", 128);
                let mine = entries_for(&entries, subtask, 3, 128);
                let back = part.restore(mine, Path::new(".")).unwrap();
                assert_eq!(back.operator.len(), 1);
                assert_eq!(
                    crate::state::restore_watermark(i64::MIN, &back.operator[0]).unwrap(),
                    42
                );
                let range = crate::keygroup::key_group_range(subtask, 3, 128);
                for (k, v) in back.keys {
                    assert!(range.contains(&key_group(&k, 128)));
                    assert!(total.insert(k, v).is_none(), "a key restored twice");
                }
                // The heap keeps no second copy once the operator has its state.
                let mut left = 0;
                part.backend.scan(&mut |_, _| left += 1).unwrap();
                assert_eq!(left, 0);
            }
            assert_eq!(total, live, "incremental: {incremental}");
        }
    }

    #[test]
    fn an_incremental_backend_gets_only_changed_keys_and_keeps_them() {
        let (backend, shared) = SharedIncremental::new();
        let mut store = KeyedStore::new(Box::new(backend), "join", 128);
        let first = state(&[("a", "1"), ("b", "2")]);
        snapshot(&mut store, &first, &[b"a", b"b"]);
        // `b` went away and `c` came; `a` is unchanged and not touched.
        let second = state(&[("a", "1"), ("c", "3")]);
        let entries = snapshot(&mut store, &second, &[b"b", b"c"]);
        let mut stored = SharedIncremental::contents(&shared);
        stored.sort();
        assert_eq!(stored, second.clone().into_iter().collect::<Vec<_>>());

        let mut back = KeyedStore::new(Box::new(HeapBackend::new(None)), "join", 128);
        let restored = back.restore(entries, Path::new(".")).unwrap();
        let keys: BTreeMap<_, _> = restored.keys.into_iter().collect();
        assert_eq!(keys, second);
    }

    #[test]
    fn a_foreign_entry_is_an_error() {
        let mut store = KeyedStore::new(Box::new(HeapBackend::new(None)), "rolling", 128);
        let entry = StateEntry {
            key_group: Some(1),
            bytes: vec![7, 1, 2],
        };
        assert!(store.restore(vec![entry], Path::new(".")).is_err());
    }
}
