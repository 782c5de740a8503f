//! Checkpoints in object storage, for processes that share no disk. Each process
//! writes its checkpoint files locally, as it does for a directory, and uploads them
//! before it acknowledges; the leader uploads `_metadata` last, so a checkpoint is
//! complete in the store exactly when that object exists. RocksDB's SST files are
//! immutable and hard-linked from one checkpoint to the next: a file this process
//! uploaded for an earlier checkpoint is copied inside the store, never sent again.

use std::collections::HashMap;
use std::fmt::Debug;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::files::{FileId, Found};
use super::storage::CheckpointError;

/// An object store refused or failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ObjectError(pub String);

/// The operations checkpoints need from an object store (S3 and compatible ones), on
/// keys relative to the job's prefix. Implemented outside the core, which stays free
/// of HTTP clients.
pub trait ObjectStorage: Send + Sync + Debug {
    /// Where the objects are, for messages (`s3://bucket/prefix`).
    fn url(&self) -> &str;
    /// Stores the contents of local `file` under `key`.
    fn upload(&self, file: &Path, key: &str) -> Result<(), ObjectError>;
    /// Copies object `from` to `to` inside the store.
    fn copy(&self, from: &str, to: &str) -> Result<(), ObjectError>;
    /// Writes object `key` to local `file`.
    fn download(&self, key: &str, file: &Path) -> Result<(), ObjectError>;
    /// Every key that starts with `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError>;
    /// Deletes `keys` (missing ones are no error).
    fn delete(&self, keys: &[String]) -> Result<(), ObjectError>;
}

/// Transfers of one process, counted for logs and tests.
#[derive(Debug, Default)]
pub struct Transfers {
    /// Files sent to the store.
    pub uploaded: AtomicU64,
    /// Bytes sent to the store.
    pub uploaded_bytes: AtomicU64,
    /// Files copied inside the store instead of sent again.
    pub copied: AtomicU64,
}

/// A job's checkpoints in an object store, staged in a local directory.
#[derive(Debug)]
pub struct Mirror {
    store: Arc<dyn ObjectStorage>,
    /// Where this process's checkpoint files are written before they are uploaded;
    /// removed when the mirror is dropped.
    staging: PathBuf,
    /// The key each local file was last stored under.
    stored: Mutex<HashMap<FileId, String>>,
    /// What this process transferred.
    pub transfers: Transfers,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.staging);
    }
}

impl Mirror {
    /// Checkpoints in `store`, staged under `staging`.
    pub fn new(store: Arc<dyn ObjectStorage>, staging: PathBuf) -> Mirror {
        Mirror {
            store,
            staging,
            stored: Mutex::default(),
            transfers: Transfers::default(),
        }
    }

    /// The local directory checkpoint files are written to.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// Where the objects are.
    pub fn url(&self) -> &str {
        self.store.url()
    }

    fn remote(&self, key: &str) -> impl FnOnce(ObjectError) -> CheckpointError + '_ {
        let at = format!("{}/{key}", self.store.url());
        move |e| CheckpointError::Remote { at, message: e.0 }
    }

    fn stored(&self) -> std::sync::MutexGuard<'_, HashMap<FileId, String>> {
        self.stored.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Uploads those of `files` (the complete files of local checkpoint directory
    /// `name`) that are not in the store yet.
    pub(crate) fn push(&self, name: &str, files: &[Found]) -> Result<(), CheckpointError> {
        for Found { relative, path, id } in files {
            let key = format!("{name}/{relative}");
            let before = self.stored().get(id).cloned();
            match before {
                Some(k) if k == key => continue,
                Some(k) if self.store.copy(&k, &key).is_ok() => {
                    self.transfers.copied.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    self.store.upload(path, &key).map_err(self.remote(&key))?;
                    self.transfers.uploaded.fetch_add(1, Ordering::Relaxed);
                    self.transfers
                        .uploaded_bytes
                        .fetch_add(id.len(), Ordering::Relaxed);
                }
            }
            self.stored().insert(*id, key);
        }
        Ok(())
    }

    /// Stores local file `file` of checkpoint `name` (its metadata, last).
    pub fn put(&self, name: &str, file: &str) -> Result<(), CheckpointError> {
        let key = format!("{name}/{file}");
        let path = self.staging.join(name).join(file);
        self.store.upload(&path, &key).map_err(self.remote(&key))?;
        self.transfers.uploaded.fetch_add(1, Ordering::Relaxed);
        let bytes = fs::metadata(&path).map_or(0, |m| m.len());
        self.transfers
            .uploaded_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// The checkpoint directories in the store, each with whether it holds `file`.
    pub fn names(&self, file: &str) -> Result<HashMap<String, bool>, CheckpointError> {
        let mut names: HashMap<String, bool> = HashMap::new();
        for key in self.store.list("").map_err(self.remote(""))? {
            if let Some((name, rest)) = key.split_once('/') {
                *names.entry(name.to_owned()).or_default() |= rest == file;
            }
        }
        Ok(names)
    }

    /// Downloads checkpoint `name` into a fresh local directory (replacing the one a
    /// previous restore used: RocksDB took its files by hard links) and returns it.
    pub fn fetch(&self, name: &str) -> Result<PathBuf, CheckpointError> {
        let restore = self.staging.join("restore");
        if let Err(error) = fs::remove_dir_all(&restore)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            return Err(CheckpointError::Io {
                path: restore,
                error,
            });
        }
        let dir = restore.join(name);
        let prefix = format!("{name}/");
        for key in self.store.list(&prefix).map_err(self.remote(&prefix))? {
            let Some(relative) = key.strip_prefix(&prefix) else {
                continue;
            };
            let file = dir.join(relative);
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent).map_err(|error| CheckpointError::Io {
                    path: parent.to_owned(),
                    error,
                })?;
            }
            self.store
                .download(&key, &file)
                .map_err(self.remote(&key))?;
        }
        Ok(dir)
    }

    /// Deletes checkpoint `name` from the store.
    pub fn delete(&self, name: &str) -> Result<(), CheckpointError> {
        let prefix = format!("{name}/");
        let keys = self.store.list(&prefix).map_err(self.remote(&prefix))?;
        self.store.delete(&keys).map_err(self.remote(&prefix))?;
        self.stored().retain(|_, key| !key.starts_with(&prefix));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::checkpoint::{Storage, TaskSnapshot};

    /// An object store in memory, standing in for S3 where the logic above is tested
    /// alone (the real store is tested end to end against an S3-compatible server).
    #[derive(Debug, Default)]
    struct InMemory(Mutex<BTreeMap<String, Vec<u8>>>);

    impl InMemory {
        fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
            self.0.lock().unwrap()
        }
    }

    impl ObjectStorage for InMemory {
        fn url(&self) -> &str {
            "mem://test"
        }
        fn upload(&self, file: &Path, key: &str) -> Result<(), ObjectError> {
            let bytes = fs::read(file).map_err(|e| ObjectError(e.to_string()))?;
            self.map().insert(key.to_owned(), bytes);
            Ok(())
        }
        fn copy(&self, from: &str, to: &str) -> Result<(), ObjectError> {
            let bytes = self.map().get(from).cloned();
            let bytes = bytes.ok_or_else(|| ObjectError(format!("{from} not found")))?;
            self.map().insert(to.to_owned(), bytes);
            Ok(())
        }
        fn download(&self, key: &str, file: &Path) -> Result<(), ObjectError> {
            let bytes = self.map().get(key).cloned();
            let bytes = bytes.ok_or_else(|| ObjectError(format!("{key} not found")))?;
            fs::write(file, bytes).map_err(|e| ObjectError(e.to_string()))
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
            Ok(self
                .map()
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect())
        }
        fn delete(&self, keys: &[String]) -> Result<(), ObjectError> {
            let mut map = self.map();
            for k in keys {
                map.remove(k);
            }
            Ok(())
        }
    }

    fn snapshot(pos: u8) -> TaskSnapshot {
        TaskSnapshot {
            sources: vec![("in".into(), 0, vec![pos])],
            ..TaskSnapshot::default()
        }
    }

    #[test]
    fn files_shared_between_checkpoints_are_sent_once_and_old_checkpoints_deleted() {
        let staging =
            std::env::temp_dir().join(format!("eddy-objects-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        let store = Arc::new(InMemory::default());
        let mirror = Arc::new(Mirror::new(store.clone(), staging.clone()));
        let storage = Storage::in_objects(mirror.clone(), "j", 1);
        // A database file, hard-linked into each checkpoint as RocksDB does.
        let live = staging.join("live.sst");
        fs::create_dir_all(&staging).unwrap();
        fs::write(&live, b"immutable").unwrap();
        for id in 1..=3 {
            let db = storage.checkpoint_dir(id, false).join("rocksdb-x");
            fs::create_dir_all(&db).unwrap();
            fs::hard_link(&live, db.join("000001.sst")).unwrap();
            // Being written by RocksDB: not uploaded yet.
            fs::create_dir_all(storage.checkpoint_dir(id, false).join("rocksdb-y.tmp")).unwrap();
            let f = storage
                .write_task(id, false, "t", &snapshot(id as u8))
                .unwrap();
            storage.complete(id, false, 128, vec![f]).unwrap();
        }
        // The database file went up once and was copied twice; three snapshot files and
        // three metadata files.
        assert_eq!(mirror.transfers.uploaded.load(Ordering::Relaxed), 1 + 3 + 3);
        assert_eq!(mirror.transfers.copied.load(Ordering::Relaxed), 2);
        let keys: Vec<String> = store.map().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "chk-3/_metadata",
                "chk-3/rocksdb-x/000001.sst",
                "chk-3/t.state"
            ]
        );
        // Only the latest checkpoint's staged files remain.
        assert!(!storage.checkpoint_dir(2, false).exists());
        // Another process (a new mirror, nothing staged) restores from the store.
        let other = Storage::in_objects(
            Arc::new(Mirror::new(store.clone(), staging.join("other"))),
            "j",
            1,
        );
        let latest = other.latest().unwrap();
        assert_eq!(latest.id, 3);
        assert_eq!(latest.source_position("in", 0), Some(&[3u8][..]));
        assert_eq!(
            fs::read(latest.path.join("rocksdb-x/000001.sst")).unwrap(),
            b"immutable"
        );
        assert_eq!(other.next_id().unwrap(), 4);
        // A checkpoint started and never completed is not restored.
        other.write_task(4, false, "t", &snapshot(4)).unwrap();
        assert_eq!(storage.latest().unwrap().id, 3);
        // The staging directory goes with the mirror.
        drop((storage, mirror));
        assert!(!staging.exists());
    }
}
