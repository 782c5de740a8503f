//! The embedded RocksDB state backend: a job's keyed state (process functions',
//! windows', joins' and rolling aggregates') on local disk, with incremental checkpoints.
//!
//! Each operator subtask has its own database in the job's state directory. A checkpoint
//! flushes it and asks RocksDB for a checkpoint inside the checkpoint's directory: SST
//! files are immutable and hard-linked, so an SST unchanged since the last checkpoint is
//! the same file on disk in both — every checkpoint is complete, yet only new SSTs cost
//! space and time. Writes skip RocksDB's log: what was not checkpointed is replayed from
//! the sources after a failure anyway.
//!
//! Restoring at the same parallelism links the checkpoint's files back into place;
//! at another parallelism each subtask opens the former databases read-only and copies
//! the key groups it now owns (keys start with their key group, so that is a range scan).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use eddy_core::Job;
use eddy_core::keygroup::key_group_range;
use eddy_core::state::backend::{
    BackendError, BackendFactory, KeyedBackend, Pairs, format, group_of, group_prefix, pairs_entry,
    read_pairs,
};
use eddy_core::state::{Decoder, Encoder, StateEntry, StateError};
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

/// Opens RocksDB backends in each job's state directory.
#[derive(Debug, Default)]
pub struct RocksFactory;

impl BackendFactory for RocksFactory {
    fn open(
        &self,
        job: &Job,
        step: &str,
        subtask: u32,
        parallelism: u32,
    ) -> Result<Box<dyn KeyedBackend>, BackendError> {
        let root = job
            .state
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".eddy/state"));
        let name = format!("{}-{subtask}", sanitize(step));
        let range = key_group_range(subtask, parallelism, job.max_parallelism);
        Ok(Box::new(RocksBackend::open(root.join(&name), name, range)?))
    }
}

/// A file-name-safe form of a step name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn store(context: &str) -> impl FnOnce(rocksdb::Error) -> BackendError + '_ {
    move |e| BackendError::Store(format!("{context}: {e}"))
}

fn io(context: &Path) -> impl FnOnce(std::io::Error) -> BackendError + '_ {
    move |e| BackendError::Store(format!("{}: {e}", context.display()))
}

/// The keyed state of one operator subtask in its own database.
pub struct RocksBackend {
    db: Option<DB>,
    dir: PathBuf,
    /// Names this subtask's databases inside checkpoints.
    name: String,
    /// The key groups this subtask owns.
    range: Range<u32>,
    write: WriteOptions,
}

fn options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_write_buffer_size(16 << 20);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts
}

impl RocksBackend {
    /// A fresh database in `dir` (whatever was there is removed: state comes back from
    /// checkpoints), for the key groups `range`.
    pub fn open(dir: PathBuf, name: String, range: Range<u32>) -> Result<Self, BackendError> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let db = DB::open(&options(), &dir).map_err(store("cannot open RocksDB"))?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(RocksBackend {
            db: Some(db),
            dir,
            name,
            range,
            write,
        })
    }

    fn db(&self) -> Result<&DB, BackendError> {
        self.db
            .as_ref()
            .ok_or_else(|| BackendError::Store("the database is closed".into()))
    }

    /// The directory inside a checkpoint that holds this subtask's database.
    fn checkpoint_name(&self) -> String {
        format!("rocksdb-{}", self.name)
    }

    /// Replaces the (empty) database by the checkpointed one in `src`.
    fn adopt(&mut self, src: &Path) -> Result<(), BackendError> {
        self.db = None;
        std::fs::remove_dir_all(&self.dir).map_err(io(&self.dir))?;
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        for entry in std::fs::read_dir(src).map_err(io(src))? {
            let entry = entry.map_err(io(src))?;
            let to = self.dir.join(entry.file_name());
            let linked = entry.file_name().to_string_lossy().ends_with(".sst")
                && std::fs::hard_link(entry.path(), &to).is_ok();
            if !linked {
                std::fs::copy(entry.path(), &to).map_err(io(&to))?;
            }
        }
        self.db = Some(DB::open(&options(), &self.dir).map_err(store("cannot open RocksDB"))?);
        Ok(())
    }

    /// Copies the entries of this subtask's key groups from the database in `src`.
    fn copy_range(&self, src: &Path, from: Range<u32>) -> Result<(), BackendError> {
        let start = self.range.start.max(from.start);
        let end = self.range.end.min(from.end);
        if start >= end {
            return Ok(());
        }
        let old = DB::open_for_read_only(&Options::default(), src, false)
            .map_err(store("cannot open the checkpointed database"))?;
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        let first = group_prefix(start);
        for item in old.iterator(IteratorMode::From(&first, Direction::Forward)) {
            let (k, v) = item.map_err(store("cannot read the checkpointed database"))?;
            if group_of(&k) >= end {
                break;
            }
            batch.put(k, v);
            if batch.len() >= 10_000 {
                db.write_opt(std::mem::take(&mut batch), &self.write)
                    .map_err(store("cannot write"))?;
            }
        }
        db.write_opt(batch, &self.write)
            .map_err(store("cannot write"))
    }

    fn is_empty(&self) -> Result<bool, BackendError> {
        Ok(self.db()?.iterator(IteratorMode::Start).next().is_none())
    }
}

impl Drop for RocksBackend {
    fn drop(&mut self) {
        self.db = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl KeyedBackend for RocksBackend {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.db()?.get(key).map_err(store("cannot read"))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackendError> {
        self.db()?
            .put_opt(key, value, &self.write)
            .map_err(store("cannot write"))
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), BackendError> {
        self.db()?
            .delete_opt(key, &self.write)
            .map_err(store("cannot write"))
    }

    fn snapshot(&mut self, target: Option<&Path>) -> Result<Vec<StateEntry>, BackendError> {
        let db = self.db()?;
        let Some(target) = target else {
            // A finished task's final state: self-contained pairs per key group.
            let mut groups: BTreeMap<u32, Pairs> = BTreeMap::new();
            for item in db.iterator(IteratorMode::Start) {
                let (k, v) = item.map_err(store("cannot read"))?;
                groups
                    .entry(group_of(&k))
                    .or_default()
                    .push((k.to_vec(), v.to_vec()));
            }
            return Ok(groups
                .iter()
                .map(|(g, pairs)| {
                    pairs_entry(*g, pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
                })
                .collect());
        };
        std::fs::create_dir_all(target).map_err(io(target))?;
        let name = self.checkpoint_name();
        let path = target.join(&name);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        }
        rocksdb::checkpoint::Checkpoint::new(db)
            .and_then(|c| c.create_checkpoint(&path))
            .map_err(store("cannot checkpoint RocksDB"))?;
        let mut e = Encoder::new();
        e.u8(format::ROCKSDB)
            .bytes(name.as_bytes())
            .u32(self.range.start)
            .u32(self.range.end);
        Ok(vec![StateEntry {
            key_group: None,
            bytes: e.finish(),
        }])
    }

    fn restore(&mut self, entries: Vec<StateEntry>, from: &Path) -> Result<(), BackendError> {
        let mut databases = Vec::new();
        for entry in entries {
            match entry.bytes.first() {
                Some(&format::ROCKSDB) => {
                    let mut d = Decoder::new(&entry.bytes[1..]);
                    let name = d.str()?.to_owned();
                    let range = d.u32()?..d.u32()?;
                    d.end()?;
                    databases.push((from.join(name), range));
                }
                _ => {
                    for (k, v) in read_pairs(&entry.bytes)? {
                        self.put(&k, &v)?;
                    }
                }
            }
        }
        for (path, _) in &databases {
            if !path.is_dir() {
                return Err(StateError(format!("{} is missing", path.display())).into());
            }
        }
        if let [(path, range)] = databases.as_slice()
            && *range == self.range
            && self.is_empty()?
        {
            return self.adopt(path);
        }
        for (path, range) in databases {
            self.copy_range(&path, range)?;
        }
        Ok(())
    }

    fn scan(&mut self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), BackendError> {
        for item in self.db()?.iterator(IteratorMode::Start) {
            let (k, v) = item.map_err(store("cannot read"))?;
            visit(&k, &v);
        }
        Ok(())
    }

    fn incremental(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::state::backend::state_key;
    use eddy_core::state::entries_for;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("eddy-rocks-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn fill(b: &mut RocksBackend, groups: Range<u32>) {
        for g in groups {
            b.put(
                &state_key(g, format!("k{g}").as_bytes(), "s", 0),
                &g.to_le_bytes(),
            )
            .unwrap();
        }
    }

    #[test]
    fn a_checkpoint_restores_whole_or_split_by_key_group() {
        let root = temp("split");
        let mut a = RocksBackend::open(root.join("a"), "a".into(), 0..128).unwrap();
        fill(&mut a, 0..128);
        let chk = root.join("chk-1");
        let entries = a.snapshot(Some(&chk)).unwrap();
        assert!(entries.iter().all(|e| e.key_group.is_none()));

        // Same key groups: the files are adopted.
        let mut same = RocksBackend::open(root.join("same"), "same".into(), 0..128).unwrap();
        same.restore(entries.clone(), &chk).unwrap();
        let key = state_key(77, b"k77", "s", 0);
        assert_eq!(same.get(&key).unwrap(), Some(77u32.to_le_bytes().to_vec()));

        // Rescaled to three: each takes exactly its own key groups.
        let mut total = 0;
        for i in 0..3 {
            let range = key_group_range(i, 3, 128);
            let mut part =
                RocksBackend::open(root.join(format!("p{i}")), format!("p{i}"), range.clone())
                    .unwrap();
            part.restore(entries_for(&entries, i, 3, 128), &chk)
                .unwrap();
            for g in 0..128 {
                let key = state_key(g, format!("k{g}").as_bytes(), "s", 0);
                let found = part.get(&key).unwrap().is_some();
                assert_eq!(found, range.contains(&g), "group {g} in part {i}");
                total += usize::from(found);
            }
        }
        assert_eq!(total, 128);
        drop((a, same));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn unchanged_files_are_shared_between_checkpoints() {
        use std::os::unix::fs::MetadataExt;
        let root = temp("incremental");
        let mut b = RocksBackend::open(root.join("db"), "db".into(), 0..128).unwrap();
        fill(&mut b, 0..64);
        b.snapshot(Some(&root.join("chk-1"))).unwrap();
        fill(&mut b, 64..128);
        b.snapshot(Some(&root.join("chk-2"))).unwrap();
        let inodes = |chk: &str| -> Vec<u64> {
            std::fs::read_dir(root.join(chk).join("rocksdb-db"))
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".sst"))
                .map(|e| e.metadata().unwrap().ino())
                .collect()
        };
        let (first, second) = (inodes("chk-1"), inodes("chk-2"));
        assert!(!first.is_empty());
        assert!(
            first.iter().all(|i| second.contains(i)),
            "{first:?} {second:?}"
        );
        assert!(second.len() > first.len());
        drop(b);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn final_state_is_self_contained_pairs() {
        let root = temp("final");
        let mut b = RocksBackend::open(root.join("db"), "db".into(), 0..128).unwrap();
        fill(&mut b, 10..13);
        let entries = b.snapshot(None).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.key_group).collect::<Vec<_>>(),
            [Some(10), Some(11), Some(12)]
        );
        let mut heap = eddy_core::state::backend::HeapBackend::new(None);
        heap.restore(entries, &root).unwrap();
        assert!(heap.get(&state_key(11, b"k11", "s", 0)).unwrap().is_some());
        drop(b);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
