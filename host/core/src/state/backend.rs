//! Keyed state backends: where the host keeps the keyed state of a job's operators
//! (process functions, windows, joins, rolling aggregates), as ordered bytes whose keys
//! start with the key group (then the key, then the state's name), so that state can be
//! split by key group when a job is rescaled.
//!
//! [`HeapBackend`] keeps everything in memory, charged to managed memory, and writes it
//! whole into each checkpoint. The RocksDB backend (crate `eddy-state-rocksdb`) keeps
//! it on disk and checkpoints incrementally. A job opens every backend through one
//! [`BackendFactory`], which the dataflow hands to each stateful operator it builds.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use super::{Decoder, Encoder, StateEntry, StateError};
use crate::job::Job;
use crate::memory::Pools;

/// The first byte of a backend's snapshot entry: what follows.
pub mod format {
    /// Key-value pairs of one key group: readable by every backend.
    pub const PAIRS: u8 = 0;
    /// A RocksDB checkpoint directory.
    pub const ROCKSDB: u8 = 1;
}

/// A backend failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Managed memory is exhausted.
    #[error("keyed state: {0}; raise memory.managed in the job file")]
    Memory(String),
    /// The store refused.
    #[error("keyed state: {0}")]
    Store(String),
    /// A snapshot cannot be read.
    #[error(transparent)]
    Corrupt(#[from] StateError),
}

/// Ordered key-value state of one operator subtask.
pub trait KeyedBackend: Send {
    /// The value under `key`.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackendError>;
    /// Removes `key`.
    fn delete(&mut self, key: &[u8]) -> Result<(), BackendError>;
    /// The state for a checkpoint written into directory `target` (`None` for the final
    /// state of a finished task, which must be self-contained).
    fn snapshot(&mut self, target: Option<&Path>) -> Result<Vec<StateEntry>, BackendError>;
    /// Takes up checkpointed entries (of this subtask's key groups, or whole stores to
    /// filter) from the checkpoint in directory `from`.
    fn restore(&mut self, entries: Vec<StateEntry>, from: &Path) -> Result<(), BackendError>;
    /// Hands every entry to `visit`, in key order: operators that work on their state in
    /// memory read it back this way after a restore.
    fn scan(&mut self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), BackendError>;
    /// Whether the backend holds its state outside the heap between checkpoints and
    /// checkpoints only what changed (RocksDB): an operator caching its state in memory
    /// then writes back only the keys it changed, and otherwise writes all of it at each
    /// checkpoint without keeping a second copy in between.
    fn incremental(&self) -> bool {
        false
    }
}

/// Opens backends for the subtasks of a job's stateful steps: one factory per job, so
/// that its choice of backend holds for all of the job's keyed state.
pub trait BackendFactory: Send + Sync + std::fmt::Debug {
    /// A backend for subtask `subtask` of `parallelism` of step `step`.
    fn open(
        &self,
        job: &Job,
        step: &str,
        subtask: u32,
        parallelism: u32,
    ) -> Result<Box<dyn KeyedBackend>, BackendError>;
}

/// The key of a piece of state: key group (2 bytes, big-endian, so groups sort in
/// order), the key, the state's name and its kind.
pub fn state_key(group: u32, key: &[u8], name: &str, kind: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(11 + key.len() + name.len());
    out.extend_from_slice(&(group as u16).to_be_bytes());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(name.len() as u32).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(kind);
    out
}

/// The key inside a state key written by [`state_key`] (`None` if it is malformed).
pub fn key_of(state_key: &[u8]) -> Option<&[u8]> {
    let rest = state_key.get(2..)?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    rest.get(4..4usize.checked_add(len)?)
}

/// The key group a state key belongs to.
pub fn group_of(state_key: &[u8]) -> u32 {
    match state_key {
        [a, b, ..] => u32::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    }
}

/// The first state key of key group `group`, for range scans.
pub fn group_prefix(group: u32) -> [u8; 2] {
    (group as u16).to_be_bytes()
}

/// Encodes pairs of one key group as a portable snapshot entry.
pub fn pairs_entry<'a>(
    group: u32,
    pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
) -> StateEntry {
    let mut e = Encoder::new();
    e.u8(format::PAIRS).count(pairs.len());
    for (k, v) in pairs {
        e.bytes(k).bytes(v);
    }
    StateEntry {
        key_group: Some(group),
        bytes: e.finish(),
    }
}

/// Key-value pairs, as portable entries hold them.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A borrowed key-value pair.
type Pair<'a> = (&'a [u8], &'a [u8]);

/// Decodes a portable snapshot entry.
pub fn read_pairs(bytes: &[u8]) -> Result<Pairs, StateError> {
    let mut d = Decoder::new(bytes);
    if d.u8()? != format::PAIRS {
        return Err(StateError("not a key-value entry".into()));
    }
    let mut pairs = Vec::new();
    for _ in 0..d.count()? {
        pairs.push((d.bytes()?.to_vec(), d.bytes()?.to_vec()));
    }
    d.end()?;
    Ok(pairs)
}

/// Opens [`HeapBackend`]s: the default when a job names no state backend.
#[derive(Debug, Default)]
pub struct HeapFactory {
    pools: Option<Arc<Pools>>,
}

impl HeapFactory {
    /// Backends charging `pools.managed`, if given.
    pub fn new(pools: Option<Arc<Pools>>) -> Self {
        HeapFactory { pools }
    }
}

impl BackendFactory for HeapFactory {
    fn open(
        &self,
        _job: &Job,
        _step: &str,
        _subtask: u32,
        _parallelism: u32,
    ) -> Result<Box<dyn KeyedBackend>, BackendError> {
        Ok(Box::new(HeapBackend::new(self.pools.clone())))
    }
}

/// State in memory, charged to managed memory; every checkpoint holds all of it.
pub struct HeapBackend {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    pools: Option<Arc<Pools>>,
    charged: usize,
}

/// What an entry costs beyond its bytes (tree node, lengths).
const ENTRY_OVERHEAD: usize = 48;

impl HeapBackend {
    /// An empty backend charging `pools.managed`, if given.
    pub fn new(pools: Option<Arc<Pools>>) -> Self {
        HeapBackend {
            map: BTreeMap::new(),
            pools,
            charged: 0,
        }
    }

    fn recharge(&mut self, before: usize, after: usize) -> Result<(), BackendError> {
        if after > before {
            if let Some(pools) = &self.pools {
                pools
                    .managed
                    .try_reserve(after - before)
                    .map_err(|e| BackendError::Memory(e.to_string()))?;
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

    fn weight(key: &[u8], value: Option<&Vec<u8>>) -> usize {
        value.map_or(0, |v| key.len() + v.len() + ENTRY_OVERHEAD)
    }
}

impl Drop for HeapBackend {
    fn drop(&mut self) {
        if let Some(pools) = &self.pools {
            pools.managed.release(self.charged);
        }
    }
}

impl KeyedBackend for HeapBackend {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackendError> {
        let before = HeapBackend::weight(key, self.map.get(key));
        let after = key.len() + value.len() + ENTRY_OVERHEAD;
        self.recharge(before, after)?;
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), BackendError> {
        let before = HeapBackend::weight(key, self.map.get(key));
        self.map.remove(key);
        self.recharge(before, 0)
    }

    fn snapshot(&mut self, _target: Option<&Path>) -> Result<Vec<StateEntry>, BackendError> {
        let mut groups: BTreeMap<u32, Vec<Pair<'_>>> = BTreeMap::new();
        for (k, v) in &self.map {
            groups
                .entry(group_of(k))
                .or_default()
                .push((k.as_slice(), v.as_slice()));
        }
        Ok(groups
            .into_iter()
            .map(|(group, pairs)| pairs_entry(group, pairs.into_iter()))
            .collect())
    }

    fn restore(&mut self, entries: Vec<StateEntry>, _from: &Path) -> Result<(), BackendError> {
        for entry in entries {
            if entry.bytes.first() == Some(&format::ROCKSDB) {
                return Err(BackendError::Store(
                    "this state was checkpointed by the rocksdb backend: restore it with \
                     `state: { backend: rocksdb }`"
                        .into(),
                ));
            }
            for (k, v) in read_pairs(&entry.bytes)? {
                self.put(&k, &v)?;
            }
        }
        Ok(())
    }

    fn scan(&mut self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), BackendError> {
        for (k, v) in &self.map {
            visit(k, v);
        }
        Ok(())
    }
}

/// The key groups subtask `subtask` of `parallelism` owns, as state-key bounds.
pub fn key_bounds(range: Range<u32>) -> (Vec<u8>, Vec<u8>) {
    (
        group_prefix(range.start).to_vec(),
        if range.end > u32::from(u16::MAX) {
            vec![0xff; 3]
        } else {
            group_prefix(range.end).to_vec()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_snapshots_split_by_key_group_and_restore() {
        let mut a = HeapBackend::new(None);
        a.put(&state_key(3, b"k1", "s", 0), b"one").unwrap();
        a.put(&state_key(70, b"k2", "s", 0), b"two").unwrap();
        a.delete(&state_key(3, b"nothing", "s", 0)).unwrap();
        let entries = a.snapshot(None).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.key_group).collect::<Vec<_>>(),
            [Some(3), Some(70)]
        );
        let mut b = HeapBackend::new(None);
        let low: Vec<StateEntry> = crate::state::entries_for(&entries, 0, 2, 128);
        b.restore(low, Path::new(".")).unwrap();
        assert_eq!(
            b.get(&state_key(3, b"k1", "s", 0)).unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(b.get(&state_key(70, b"k2", "s", 0)).unwrap(), None);
        let mut seen = Vec::new();
        b.scan(&mut |k, v| seen.push((k.to_vec(), v.to_vec())))
            .unwrap();
        assert_eq!(seen, [(state_key(3, b"k1", "s", 0), b"one".to_vec())]);
    }

    #[test]
    fn the_key_comes_back_out_of_a_state_key() {
        let k = state_key(9, b"user-7", "window", 0);
        assert_eq!(key_of(&k), Some(&b"user-7"[..]));
        assert_eq!(group_of(&k), 9);
        assert_eq!(key_of(&k[..7]), None);
        assert_eq!(key_of(&[]), None);
    }
}
