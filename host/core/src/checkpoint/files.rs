//! The files of a checkpoint directory besides its task snapshots (RocksDB's), found
//! once they are complete, and told apart by identity rather than by contents.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::storage::CheckpointError;

/// Identifies a local file's contents without reading them: checkpoint files are
/// never modified once written, and hard links of one file share this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i64,
}

impl FileId {
    /// The file's size.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        }
    }
}

/// A complete file of a checkpoint directory, as found on disk.
pub(crate) struct Found {
    /// Its path inside the checkpoint directory.
    pub(crate) relative: String,
    /// Its path.
    pub(crate) path: PathBuf,
    /// Who it is and its size.
    pub(crate) id: FileId,
}

/// Every complete file under checkpoint directory `dir` (missing: none). RocksDB
/// writes a checkpoint into a `.tmp` directory and renames it when done, so `.tmp`
/// entries are left out.
pub(crate) fn complete_files(dir: &Path) -> Result<Vec<Found>, CheckpointError> {
    let mut found = Vec::new();
    walk(dir, "", &mut found)?;
    Ok(found)
}

fn walk(dir: &Path, relative: &str, out: &mut Vec<Found>) -> Result<(), CheckpointError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| CheckpointError::Io { path, error }
    };
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io(dir)(error)),
    };
    for entry in listing {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            continue;
        }
        let path = entry.path();
        let rel = if relative.is_empty() {
            name
        } else {
            format!("{relative}/{name}")
        };
        let meta = fs::metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            walk(&path, &rel, out)?;
        } else {
            out.push(Found {
                relative: rel,
                id: FileId::of(&meta),
                path,
            });
        }
    }
    Ok(())
}

/// A file of a checkpoint besides the task snapshots, as the metadata records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileSum {
    /// Its path inside the checkpoint directory.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its CRC-32.
    pub crc32: u32,
}

/// Checksums of the files checkpoints hold, each file read once however many
/// checkpoints share it (RocksDB hard-links its unchanged files into each).
#[derive(Debug, Default)]
pub(crate) struct Sums {
    /// The CRC of each file, with the checkpoint it was last seen in.
    crc: HashMap<FileId, (u32, String)>,
    /// The checkpoint being recorded and its files recorded so far.
    current: String,
    recorded: HashSet<String>,
}

impl Sums {
    /// Of `files` (complete, of checkpoint `name`), those not recorded yet, task
    /// snapshots and the metadata aside, with their checksums.
    pub(crate) fn new_files(
        &mut self,
        name: &str,
        files: &[Found],
    ) -> Result<Vec<FileSum>, CheckpointError> {
        if self.current != name {
            // What the previous checkpoint held may be shared with this one; what only
            // older ones held is gone.
            let previous = std::mem::replace(&mut self.current, name.to_owned());
            self.crc.retain(|_, (_, seen)| *seen == previous);
            self.recorded.clear();
        }
        let mut sums = Vec::new();
        for Found { relative, path, id } in files {
            let snapshot = !relative.contains('/') && relative.ends_with(".state");
            if snapshot || relative.starts_with("_metadata") || self.recorded.contains(relative) {
                continue;
            }
            let crc32 = match self.crc.get(id) {
                Some((crc, _)) => *crc,
                None => crc32fast::hash(&fs::read(path).map_err(|error| CheckpointError::Io {
                    path: path.clone(),
                    error,
                })?),
            };
            self.crc.insert(*id, (crc32, name.to_owned()));
            self.recorded.insert(relative.clone());
            sums.push(FileSum {
                path: relative.clone(),
                bytes: id.len(),
                crc32,
            });
        }
        Ok(sums)
    }
}
