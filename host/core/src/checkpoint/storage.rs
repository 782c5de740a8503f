//! Checkpoints on disk: `chk-<id>/` (or `savepoint-<id>/`) holding one snapshot file
//! per task and a `_metadata` file written last, atomically (write, fsync, rename,
//! fsync the directory). A directory without metadata never completed and is ignored;
//! a file whose size or CRC differs from the metadata (task snapshots and RocksDB's
//! files alike), or that is missing, makes the checkpoint corrupt.
//! In object storage ([`super::objects`]) the same layout is staged locally and
//! uploaded, `_metadata` last.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::files::{FileSum, Sums, complete_files};
use super::objects::Mirror;
use super::snapshot::{Flight, TaskSnapshot};
use crate::error::ErrorClass;
use crate::state::StateEntry;

/// Name of the file whose presence makes a checkpoint complete.
const METADATA: &str = "_metadata";
/// Version of the metadata format.
const FORMAT: u32 = 1;

/// A checkpoint cannot be written or restored.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file system refused.
    #[error("checkpoint storage: {path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The object store holding the checkpoints refused or failed.
    #[error("checkpoint storage: {at}: {message}")]
    Remote {
        /// The object (or prefix).
        at: String,
        /// What went wrong.
        message: String,
    },
    /// A checkpoint's files are damaged or incomplete.
    #[error("checkpoint {path} is corrupt: {message}")]
    Corrupt {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The checkpoint cannot restore this job.
    #[error("cannot restore {path}: {message}")]
    Incompatible {
        /// The checkpoint directory.
        path: PathBuf,
        /// Why not.
        message: String,
    },
    /// `--restore` found nothing to restore.
    #[error("no completed checkpoint in {0}")]
    NoneFound(PathBuf),
    /// Every completed checkpoint retained is damaged.
    #[error("every retained checkpoint in {path} is damaged: {damaged}")]
    AllDamaged {
        /// Where the checkpoints are.
        path: PathBuf,
        /// What is wrong with each, newest first.
        damaged: String,
    },
}

impl CheckpointError {
    /// Whether a restart can get past this error: storage that failed to write may
    /// work again, a corrupt or incompatible checkpoint stays so.
    pub fn class(&self) -> ErrorClass {
        match self {
            CheckpointError::Io { .. } | CheckpointError::Remote { .. } => ErrorClass::EXTERNAL,
            CheckpointError::Corrupt { .. }
            | CheckpointError::Incompatible { .. }
            | CheckpointError::NoneFound(_)
            | CheckpointError::AllDamaged { .. } => ErrorClass::USER_FATAL,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |error| CheckpointError::Io {
        path: path.to_owned(),
        error,
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Metadata {
    format: u32,
    id: u64,
    job: String,
    savepoint: bool,
    /// Wall-clock time of completion, ms since the epoch.
    completed_ms: u64,
    max_parallelism: u32,
    tasks: Vec<TaskFile>,
}

/// One task's snapshot file, as the metadata records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TaskFile {
    file: String,
    bytes: u64,
    crc32: u32,
    /// The other files the task's snapshot refers to (its RocksDB databases').
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    files: Vec<FileSum>,
}

/// The checkpoint directory of one job, or its prefix in an object store.
#[derive(Clone, Debug)]
pub struct Storage {
    /// Where checkpoint files are written (staged, with an object store).
    dir: PathBuf,
    job: String,
    retain: usize,
    objects: Option<Arc<Mirror>>,
    sums: Arc<Mutex<Sums>>,
}

/// A checkpoint or savepoint that was started.
struct Entry {
    id: u64,
    savepoint: bool,
    /// Its directory's name.
    name: String,
    /// Whether its metadata was written.
    complete: bool,
}

/// A checkpoint read back: every task's snapshot, indexed for restoring.
#[derive(Debug)]
pub struct Restored {
    /// Its id.
    pub id: u64,
    /// Its directory.
    pub path: PathBuf,
    /// The key groups its keyed state is organized in.
    pub max_parallelism: u32,
    /// A newer completed checkpoint it was chosen over (that one was damaged, or an
    /// older one was named): output committed for that one is committed already.
    pub passed_over: Option<u64>,
    snapshots: Vec<TaskSnapshot>,
    /// The task each snapshot is of.
    tasks: Vec<String>,
}

impl Restored {
    /// The position of subtask `subtask` of source `name`.
    pub fn source_position(&self, name: &str, subtask: u32) -> Option<&[u8]> {
        self.snapshots
            .iter()
            .flat_map(|s| &s.sources)
            .find(|(n, i, _)| n == name && *i == subtask)
            .map(|(_, _, p)| p.as_slice())
    }

    /// How many subtasks of source `name` the checkpoint has positions for.
    pub fn source_subtasks(&self, name: &str) -> usize {
        self.snapshots
            .iter()
            .flat_map(|s| &s.sources)
            .filter(|(n, _, _)| n == name)
            .count()
    }

    /// The state entries of step `name` over all of its subtasks.
    pub fn step_entries(&self, name: &str) -> Vec<StateEntry> {
        self.snapshots
            .iter()
            .flat_map(|s| &s.steps)
            .filter(|(n, _)| n == name)
            .flat_map(|(_, entries)| entries.iter().cloned())
            .collect()
    }

    /// The in-flight messages task `task` recorded (an unaligned checkpoint).
    pub fn in_flight(&self, task: &str) -> &[(Flight, u32, Vec<crate::exec::channel::Message>)] {
        self.tasks
            .iter()
            .position(|t| t == task)
            .map_or(&[], |i| self.snapshots[i].channels.as_slice())
    }

    /// The tasks the checkpoint has snapshots of.
    pub fn task_names(&self) -> &[String] {
        &self.tasks
    }

    /// Whether any task recorded in-flight messages.
    pub fn has_in_flight(&self) -> bool {
        self.snapshots.iter().any(|s| !s.channels.is_empty())
    }

    /// What sink `name` prepared for this checkpoint.
    pub fn sink_prepared(&self, name: &str) -> Option<&[u8]> {
        self.snapshots
            .iter()
            .flat_map(|s| &s.sinks)
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_slice())
    }
}

fn parse_id(name: &str) -> Option<(u64, bool)> {
    if let Some(id) = name.strip_prefix("chk-") {
        return id.parse().ok().map(|id| (id, false));
    }
    name.strip_prefix("savepoint-")
        .and_then(|id| id.parse().ok())
        .map(|id| (id, true))
}

fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Storage {
    /// Checkpoints of job `job` under `dir`, keeping the newest `retain` completed ones.
    pub fn new(dir: PathBuf, job: &str, retain: usize) -> Self {
        Storage {
            dir,
            job: job.to_owned(),
            retain,
            objects: None,
            sums: Arc::default(),
        }
    }

    /// Checkpoints of job `job` in an object store, staged through `mirror`.
    pub fn in_objects(mirror: Arc<Mirror>, job: &str, retain: usize) -> Self {
        Storage {
            dir: mirror.staging().to_owned(),
            job: job.to_owned(),
            retain,
            objects: Some(mirror),
            sums: Arc::default(),
        }
    }

    /// What this storage transferred to its object store, if it has one.
    pub fn objects(&self) -> Option<&Mirror> {
        self.objects.as_deref()
    }

    /// Where the checkpoints are, for messages.
    fn location(&self) -> PathBuf {
        match &self.objects {
            Some(m) => PathBuf::from(m.url()),
            None => self.dir.clone(),
        }
    }

    /// The directory of checkpoint (or savepoint) `id`.
    pub fn checkpoint_dir(&self, id: u64, savepoint: bool) -> PathBuf {
        self.dir.join(Storage::name(id, savepoint))
    }

    /// Every checkpoint and savepoint started, by id.
    fn entries(&self) -> Result<Vec<Entry>, CheckpointError> {
        let names = match &self.objects {
            Some(mirror) => mirror.names(METADATA)?.into_iter().collect(),
            None => local_names(&self.dir)?
                .into_iter()
                .map(|name| {
                    let complete = self.dir.join(&name).join(METADATA).exists();
                    (name, complete)
                })
                .collect::<Vec<_>>(),
        };
        let mut found: Vec<Entry> = names
            .into_iter()
            .filter_map(|(name, complete)| {
                let (id, savepoint) = parse_id(&name)?;
                Some(Entry {
                    id,
                    savepoint,
                    name,
                    complete,
                })
            })
            .collect();
        found.sort_by_key(|e| (e.id, e.savepoint));
        Ok(found)
    }

    /// An id above every checkpoint ever started here, so that a new run never writes
    /// into an old checkpoint's directory.
    pub fn next_id(&self) -> Result<u64, CheckpointError> {
        Ok(self.entries()?.last().map_or(1, |e| e.id + 1))
    }

    /// The name of checkpoint `id`'s directory.
    fn name(id: u64, savepoint: bool) -> String {
        let kind = if savepoint { "savepoint" } else { "chk" };
        format!("{kind}-{id}")
    }

    /// Writes task `task`'s snapshot for checkpoint `id` and fsyncs it; with an object
    /// store, uploads it and the other finished files of the checkpoint (the task's
    /// RocksDB files among them).
    pub fn write_task(
        &self,
        id: u64,
        savepoint: bool,
        task: &str,
        snapshot: &TaskSnapshot,
    ) -> Result<TaskFile, CheckpointError> {
        let dir = self.checkpoint_dir(id, savepoint);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let file = format!("{task}.state");
        let path = dir.join(&file);
        let bytes = snapshot.encode();
        File::create(&path)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
            .map_err(io(&path))?;
        let name = Storage::name(id, savepoint);
        // Every file of the task is complete by now (RocksDB renames its checkpoint
        // into place when done); files of other tasks found complete too are recorded
        // with this one.
        let found = complete_files(&dir)?;
        let files = self
            .sums
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .new_files(&name, &found)?;
        if let Some(mirror) = &self.objects {
            mirror.push(&name, &found)?;
            self.prune_staged(id);
        }
        Ok(TaskFile {
            file,
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
            files,
        })
    }

    /// Completes checkpoint `id` by writing its metadata atomically, then deletes
    /// checkpoints beyond the retained ones; returns its directory.
    pub fn complete(
        &self,
        id: u64,
        savepoint: bool,
        max_parallelism: u32,
        tasks: Vec<TaskFile>,
    ) -> Result<PathBuf, CheckpointError> {
        let dir = self.checkpoint_dir(id, savepoint);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let name = Storage::name(id, savepoint);
        if let Some(mirror) = &self.objects {
            mirror.push(&name, &complete_files(&dir)?)?;
        }
        let metadata = Metadata {
            format: FORMAT,
            id,
            job: self.job.clone(),
            savepoint,
            completed_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            max_parallelism,
            tasks,
        };
        let json = serde_json::to_vec_pretty(&metadata).map_err(|e| CheckpointError::Corrupt {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        let staging = dir.join("_metadata.tmp");
        File::create(&staging)
            .and_then(|mut f| f.write_all(&json).and_then(|()| f.sync_all()))
            .map_err(io(&staging))?;
        let path = dir.join(METADATA);
        fs::rename(&staging, &path).map_err(io(&path))?;
        sync_dir(&dir)?;
        if let Some(mirror) = &self.objects {
            mirror.put(&name, METADATA)?;
        }
        if !savepoint {
            self.prune(id)?;
        }
        Ok(dir)
    }

    /// Deletes the directory of a checkpoint that will not complete.
    pub fn abandon(&self, id: u64, savepoint: bool) {
        let dir = self.checkpoint_dir(id, savepoint);
        if let Err(e) = fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot delete abandoned checkpoint {}: {e}", dir.display());
        }
        if let Some(mirror) = &self.objects
            && let Err(e) = mirror.delete(&Storage::name(id, savepoint))
        {
            tracing::warn!("cannot delete abandoned checkpoint: {e}");
        }
    }

    /// Deletes the staged copies of checkpoints before `id`: they are in the store.
    fn prune_staged(&self, id: u64) {
        for name in local_names(&self.dir).unwrap_or_default() {
            if let Some((old, false)) = parse_id(&name)
                && old < id
                && let Err(e) = fs::remove_dir_all(self.dir.join(&name))
            {
                tracing::warn!("cannot delete staged checkpoint {name}: {e}");
            }
        }
    }

    /// Keeps the newest `retain` completed checkpoints up to `latest`; deletes older
    /// ones and unfinished ones started before it.
    fn prune(&self, latest: u64) -> Result<(), CheckpointError> {
        let mut completed = 0;
        for entry in self.entries()?.into_iter().rev() {
            if entry.savepoint || entry.id > latest {
                continue;
            }
            if entry.complete && completed < self.retain {
                completed += 1;
                continue;
            }
            let deleted = match &self.objects {
                Some(mirror) => mirror.delete(&entry.name).map_err(|e| e.to_string()),
                None => fs::remove_dir_all(self.dir.join(&entry.name)).map_err(|e| e.to_string()),
            };
            if let Err(e) = deleted {
                tracing::warn!("cannot delete old checkpoint {}: {e}", entry.name);
            }
        }
        if self.objects.is_some() {
            self.prune_staged(latest + 1);
        }
        Ok(())
    }

    /// `restored`, named by the user, with the newest completed checkpoint here that is
    /// newer than it.
    pub fn named(&self, restored: Restored) -> Result<Restored, CheckpointError> {
        let newest = self
            .entries()?
            .into_iter()
            .filter(|e| e.complete && !e.savepoint && e.id > restored.id)
            .map(|e| e.id)
            .max();
        Ok(Restored {
            passed_over: newest,
            ..restored
        })
    }

    /// The newest completed checkpoint (not savepoint) that reads back intact; corrupt
    /// ones are skipped with a warning, so recovery falls back to an older one.
    pub fn latest(&self) -> Result<Restored, CheckpointError> {
        let mut damaged = Vec::new();
        let mut newest = None;
        for entry in self.entries()?.into_iter().rev() {
            if entry.savepoint || !entry.complete {
                continue;
            }
            let path = match &self.objects {
                Some(mirror) => mirror.fetch(&entry.name)?,
                None => self.dir.join(&entry.name),
            };
            match load(&path) {
                Ok(restored) => {
                    return Ok(Restored {
                        passed_over: newest,
                        ..restored
                    });
                }
                Err(e @ CheckpointError::Corrupt { .. }) => {
                    tracing::warn!("skipping checkpoint: {e}");
                    newest.get_or_insert(entry.id);
                    damaged.push(e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        if damaged.is_empty() {
            return Err(CheckpointError::NoneFound(self.location()));
        }
        Err(CheckpointError::AllDamaged {
            path: self.location(),
            damaged: damaged.join("; "),
        })
    }
}

/// The names of the entries of directory `dir` (missing: none).
fn local_names(dir: &Path) -> Result<Vec<String>, CheckpointError> {
    let listing = match fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(io(dir))?;
        names.extend(entry.file_name().to_str().map(str::to_owned));
    }
    Ok(names)
}

/// The contents of file `file` of the checkpoint in `path`, if they have the size and
/// CRC the metadata records.
fn checked(path: &Path, file: &str, bytes: u64, crc32: u32) -> Result<Vec<u8>, CheckpointError> {
    let corrupt = |message: String| CheckpointError::Corrupt {
        path: path.to_owned(),
        message,
    };
    let read = fs::read(path.join(file)).map_err(|e| corrupt(format!("{file}: {e}")))?;
    let crc = crc32fast::hash(&read);
    if read.len() as u64 != bytes || crc != crc32 {
        return Err(corrupt(format!(
            "{file} has {} bytes with CRC {crc:08x}, the metadata says {bytes} bytes with CRC \
             {crc32:08x}",
            read.len()
        )));
    }
    Ok(read)
}

/// Reads the checkpoint or savepoint in directory `path`, checking every file against
/// its metadata.
pub fn load(path: &Path) -> Result<Restored, CheckpointError> {
    let corrupt = |message: String| CheckpointError::Corrupt {
        path: path.to_owned(),
        message,
    };
    let meta_path = path.join(METADATA);
    let text = match fs::read(&meta_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(corrupt(format!(
                "it has no {METADATA} file, so it never completed"
            )));
        }
        Err(e) => return Err(io(&meta_path)(e)),
    };
    let metadata: Metadata = serde_json::from_slice(&text)
        .map_err(|e| corrupt(format!("{METADATA} is not valid: {e}")))?;
    if metadata.format != FORMAT {
        return Err(CheckpointError::Incompatible {
            path: path.to_owned(),
            message: format!(
                "format version {} (this eddy reads {FORMAT})",
                metadata.format
            ),
        });
    }
    let mut snapshots = Vec::new();
    let mut tasks = Vec::new();
    for task in &metadata.tasks {
        tasks.push(
            task.file
                .strip_suffix(".state")
                .unwrap_or(&task.file)
                .to_owned(),
        );
        let bytes = checked(path, &task.file, task.bytes, task.crc32)?;
        for file in &task.files {
            checked(path, &file.path, file.bytes, file.crc32)?;
        }
        snapshots.push(
            TaskSnapshot::decode(&bytes).map_err(|e| corrupt(format!("{}: {e}", task.file)))?,
        );
    }
    Ok(Restored {
        id: metadata.id,
        path: path.to_owned(),
        max_parallelism: metadata.max_parallelism,
        passed_over: None,
        snapshots,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(pos: u8) -> TaskSnapshot {
        TaskSnapshot {
            sources: vec![("in".into(), 0, vec![pos])],
            ..TaskSnapshot::default()
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("eddy-storage-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn only_completed_checkpoints_restore_and_old_ones_are_pruned() {
        let dir = temp("prune");
        let storage = Storage::new(dir.clone(), "j", 2);
        assert!(matches!(
            storage.latest(),
            Err(CheckpointError::NoneFound(_))
        ));
        for id in 1..=4 {
            let f = storage
                .write_task(id, false, "t", &snapshot(id as u8))
                .unwrap();
            storage.complete(id, false, 128, vec![f]).unwrap();
        }
        // Started, never completed.
        storage.write_task(5, false, "t", &snapshot(5)).unwrap();
        let latest = storage.latest().unwrap();
        assert_eq!(latest.id, 4);
        assert_eq!(latest.source_position("in", 0), Some(&[4u8][..]));
        assert!(!dir.join("chk-1").exists() && !dir.join("chk-2").exists());
        assert!(dir.join("chk-3").exists());
        assert_eq!(storage.next_id().unwrap(), 6);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_file_a_checkpoint_refers_to_is_verified() {
        let dir = temp("files");
        let storage = Storage::new(dir.clone(), "j", 3);
        for id in 1..=2 {
            let db = storage.checkpoint_dir(id, false).join("rocksdb-x");
            fs::create_dir_all(&db).unwrap();
            fs::write(db.join("000007.sst"), [id as u8; 64]).unwrap();
            let f = storage
                .write_task(id, false, "t", &snapshot(id as u8))
                .unwrap();
            storage.complete(id, false, 128, vec![f]).unwrap();
        }
        let sst = dir.join("chk-2/rocksdb-x/000007.sst");
        fs::write(&sst, [9u8; 64]).unwrap();
        let err = load(&dir.join("chk-2")).unwrap_err().to_string();
        assert!(
            err.contains("rocksdb-x/000007.sst has 64 bytes with CRC"),
            "{err}"
        );
        fs::remove_file(&sst).unwrap();
        let err = load(&dir.join("chk-2")).unwrap_err().to_string();
        assert!(err.contains("rocksdb-x/000007.sst: No such file"), "{err}");
        assert_eq!(storage.latest().unwrap().id, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_checkpoint_is_named_and_skipped() {
        let dir = temp("corrupt");
        let storage = Storage::new(dir.clone(), "j", 3);
        for id in 1..=2 {
            let f = storage
                .write_task(id, false, "t", &snapshot(id as u8))
                .unwrap();
            storage.complete(id, false, 128, vec![f]).unwrap();
        }
        let file = dir.join("chk-2/t.state");
        let mut bytes = fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&file, bytes).unwrap();
        let err = load(&dir.join("chk-2")).unwrap_err().to_string();
        assert!(
            err.contains("chk-2") && err.contains("t.state") && err.contains("CRC"),
            "{err}"
        );
        assert_eq!(storage.latest().unwrap().id, 1);
        // With every checkpoint damaged, restoring says so.
        fs::remove_file(dir.join("chk-1/t.state")).unwrap();
        let err = storage.latest().unwrap_err().to_string();
        assert!(
            err.contains("every retained checkpoint")
                && err.contains("chk-2")
                && err.contains("chk-1"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
