//! Built-in sinks: stdout and files of one event value per line.
//!
//! File sinks commit in two phases. Events go to `<file>.inprogress`; at a checkpoint
//! barrier that part is fsynced and renamed `<file>.pending-<checkpoint>` (prepared);
//! once the checkpoint has completed, [`commit_sink`] writes each pending part into the
//! final file at the offset it was prepared for, then deletes it. Writing at a fixed
//! offset makes a commit idempotent, so recovery can simply commit the restored
//! checkpoint again and cut the file to the length it records: a reader of the final
//! file only ever sees committed output, never a duplicate.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::Batch;
use crate::connectors::digest::{DigestSink, commit_digest};
use crate::error::ErrorClass;
use crate::job::SinkSpec;
use crate::latency::EventClock;
use crate::state::{Decoder, Encoder};

/// A consumer of result batches.
pub trait Sink: Send {
    /// Writes every event of `batch`.
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError>;

    /// A checkpoint barrier: makes what was written so far durable but not yet
    /// visible, and returns what [`commit_sink`] needs to publish it once checkpoint
    /// `checkpoint` has completed.
    fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, SinkError>;

    /// The input ended: prepares the rest, for the job's final commit.
    fn finish(&mut self) -> Result<Vec<u8>, SinkError> {
        self.prepare(u64::MAX)
    }

    /// Finishes and publishes at once, for sinks outside checkpoints (side outputs,
    /// dead letters).
    fn publish(&mut self) -> Result<(), SinkError>;

    /// Whether the reader of this sink has gone away (`eddy run … | head`): what the
    /// sink is sent from then on is dropped, and the job ends its input as on a stop.
    fn closed(&self) -> bool {
        false
    }
}

/// Publishes what a sink prepared, once its checkpoint has completed; lives with the
/// checkpoint coordinator, apart from the sink that writes.
pub trait Committer: Send {
    /// Publishes `prepared`; doing it twice changes nothing.
    fn commit(&mut self, prepared: &[u8]) -> Result<(), SinkError>;

    /// Discards `prepared`, whose checkpoint will never complete.
    fn abort(&mut self, prepared: &[u8]) -> Result<(), SinkError> {
        let _ = prepared;
        Ok(())
    }
}

/// A sink's writer and its committer.
pub type Connected = (Box<dyn Sink>, Box<dyn Committer>);

/// The committer of a built-in sink.
pub fn builtin_committer(name: &str, spec: &SinkSpec) -> Box<dyn Committer> {
    struct Builtin(String, SinkSpec);
    impl Committer for Builtin {
        fn commit(&mut self, prepared: &[u8]) -> Result<(), SinkError> {
            commit_sink(&self.0, &self.1, prepared)
        }
    }
    Box::new(Builtin(name.to_owned(), spec.clone()))
}

/// A sink failed to write; names the sink and its target.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink:?}: cannot write {target}: {error}")]
pub struct SinkError {
    /// Name of the sink.
    pub sink: String,
    /// The file or stream.
    pub target: String,
    /// The I/O error.
    pub error: std::io::Error,
}

impl SinkError {
    /// An error of sink `sink` writing `target`.
    pub fn new(sink: &str, target: &Path, error: std::io::Error) -> Self {
        SinkError {
            sink: sink.to_owned(),
            target: target.display().to_string(),
            error,
        }
    }

    /// Whether a restart can get past this error, by the kind of its I/O error
    /// (connectors that know an error to be deterministic report it as
    /// [`std::io::ErrorKind::InvalidData`]).
    pub fn class(&self) -> ErrorClass {
        ErrorClass::of_io(&self.error)
    }
}

/// Creates the built-in sink a job file describes. `restored` is what the sink
/// prepared for the checkpoint the job restarts from: it is committed (again) and
/// everything written after it is discarded.
///
/// A digest sink measures each row's latency against `latency`, when given.
pub fn open_sink(
    name: &str,
    spec: &SinkSpec,
    restored: Option<&[u8]>,
    latency: Option<&Arc<EventClock>>,
) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match spec {
        SinkSpec::Stdout { .. } => Box::new(Stdout {
            out: BufWriter::with_capacity(1 << 16, std::io::stdout()),
            name: name.to_owned(),
            closed: false,
        }),
        SinkSpec::Discard { .. } => Box::new(Discard),
        SinkSpec::File { path, .. } => Box::new(FileSink::open(name, path, restored)?),
        SinkSpec::Digest {
            columns,
            path,
            rows,
            ..
        } => Box::new(DigestSink::open(
            name,
            columns,
            path,
            rows.as_deref(),
            restored,
            latency.cloned(),
        )?),
        SinkSpec::Plugin { .. } | SinkSpec::Kafka(_) => {
            return Err(SinkError::new(
                name,
                Path::new(name),
                std::io::Error::other("connector sinks are opened by their connector factory"),
            ));
        }
    })
}

/// Publishes what sink `name` prepared for a completed checkpoint; doing it twice
/// changes nothing.
pub fn commit_sink(name: &str, spec: &SinkSpec, prepared: &[u8]) -> Result<(), SinkError> {
    match spec {
        SinkSpec::File { path, .. } => commit_file(name, path, prepared),
        SinkSpec::Digest { .. } => commit_digest(name, prepared),
        SinkSpec::Stdout { .. }
        | SinkSpec::Discard { .. }
        | SinkSpec::Plugin { .. }
        | SinkSpec::Kafka(_) => Ok(()),
    }
}

/// Where a file sink writes events until the next barrier.
pub fn in_progress_path(path: &Path) -> PathBuf {
    sibling(path, ".inprogress")
}

/// The directory a file is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Parts prepared but not committed, and the final length once they are.
struct Prepared {
    final_len: u64,
    /// File name (beside the final file) and offset in the final file.
    parts: Vec<(String, u64)>,
}

impl Prepared {
    fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u64(self.final_len).count(self.parts.len());
        for (file, offset) in &self.parts {
            e.bytes(file.as_bytes()).u64(*offset);
        }
        e.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Prepared, crate::state::StateError> {
        let mut d = Decoder::new(bytes);
        let final_len = d.u64()?;
        let mut parts = Vec::new();
        for _ in 0..d.count()? {
            let file = d.str()?.to_owned();
            parts.push((file, d.u64()?));
        }
        d.end()?;
        Ok(Prepared { final_len, parts })
    }
}

fn commit_file(name: &str, path: &Path, prepared: &[u8]) -> Result<(), SinkError> {
    let err = |e| SinkError::new(name, path, e);
    let prepared = Prepared::decode(prepared)
        .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let dir = parent_dir(path);
    for (file, offset) in &prepared.parts {
        let part = dir.join(file);
        if !part.exists() {
            continue; // committed before
        }
        if *offset == 0 && !path.exists() {
            std::fs::rename(&part, path).map_err(err)?;
            continue;
        }
        let data = std::fs::read(&part).map_err(err)?;
        let out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(err)?;
        out.write_all_at(&data, *offset)
            .and_then(|()| out.sync_all())
            .map_err(err)?;
        std::fs::remove_file(&part).map_err(err)?;
    }
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(err)?;
    let len = out.metadata().map_err(err)?.len();
    if len < prepared.final_len {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it has {len} bytes but {} were committed: a pending part file was removed",
                prepared.final_len
            ),
        )));
    }
    if len > prepared.final_len {
        out.set_len(prepared.final_len)
            .and_then(|()| out.sync_all())
            .map_err(err)?;
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}

/// A file sink with two-phase commit.
struct FileSink {
    name: String,
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the in-progress part.
    part_len: u64,
    /// Bytes written before the in-progress part, over the job's life.
    written: u64,
    /// Prepared parts not yet seen committed: file name and offset.
    pending: Vec<(String, u64)>,
}

impl FileSink {
    fn open(name: &str, path: &Path, restored: Option<&[u8]>) -> Result<FileSink, SinkError> {
        let err = |e| SinkError::new(name, path, e);
        let dir = parent_dir(path);
        std::fs::create_dir_all(dir).map_err(err)?;
        let written = match restored {
            Some(prepared) => {
                commit_file(name, path, prepared)?;
                Prepared::decode(prepared).map_or(0, |p| p.final_len)
            }
            None => 0,
        };
        // Parts of attempts after the restored checkpoint (or of an earlier run) are
        // aborted.
        let stem = path.file_name().unwrap_or_default().to_string_lossy();
        for entry in std::fs::read_dir(dir).map_err(err)?.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            if file.starts_with(&format!("{stem}.pending-")) {
                std::fs::remove_file(entry.path()).map_err(err)?;
            }
        }
        let out = File::create(in_progress_path(path)).map_err(err)?;
        Ok(FileSink {
            name: name.to_owned(),
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 16, out),
            part_len: 0,
            written,
            pending: Vec::new(),
        })
    }

    fn err(&self, error: std::io::Error) -> SinkError {
        SinkError::new(&self.name, &self.path, error)
    }

    /// Seals the in-progress part as `<file>.pending-<label>`.
    fn seal(&mut self, label: &str, reopen: bool) -> Result<Vec<u8>, SinkError> {
        self.out.flush().map_err(|e| self.err(e))?;
        let staging = in_progress_path(&self.path);
        if self.part_len > 0 {
            self.out.get_ref().sync_all().map_err(|e| self.err(e))?;
            let part = sibling(&self.path, &format!(".pending-{label}"));
            std::fs::rename(&staging, &part).map_err(|e| self.err(e))?;
            let file = part.file_name().unwrap_or_default().to_string_lossy();
            self.pending.push((file.into_owned(), self.written));
            self.written += self.part_len;
            self.part_len = 0;
            if reopen {
                let out = File::create(&staging).map_err(|e| self.err(e))?;
                self.out = BufWriter::with_capacity(1 << 16, out);
            }
        }
        if !reopen {
            let _ = std::fs::remove_file(&staging);
        }
        // Parts the coordinator has committed are gone.
        let dir = parent_dir(&self.path).to_owned();
        self.pending.retain(|(file, _)| dir.join(file).exists());
        Ok(Prepared {
            final_len: self.written,
            parts: self.pending.clone(),
        }
        .encode())
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        for event in batch.iter() {
            self.out
                .write_all(event.value)
                .and_then(|()| self.out.write_all(b"\n"))
                .map_err(|e| self.err(e))?;
            self.part_len += event.value.len() as u64 + 1;
        }
        Ok(())
    }

    fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, SinkError> {
        self.seal(&checkpoint.to_string(), true)
    }

    fn finish(&mut self) -> Result<Vec<u8>, SinkError> {
        self.seal("final", false)
    }

    fn publish(&mut self) -> Result<(), SinkError> {
        let prepared = self.finish()?;
        commit_file(&self.name, &self.path, &prepared)
    }
}

/// Standard output, flushed after every batch so that a reader sees results as they
/// come; what was printed cannot be taken back, so it is at-least-once on recovery.
struct Stdout {
    name: String,
    out: BufWriter<std::io::Stdout>,
    /// The reader closed the pipe: nothing more can be printed.
    closed: bool,
}

impl Sink for Stdout {
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if self.closed {
            return Ok(());
        }
        let mut written = || {
            for event in batch.iter() {
                self.out.write_all(event.value)?;
                self.out.write_all(b"\n")?;
            }
            self.out.flush()
        };
        match written() {
            Ok(()) => Ok(()),
            // Like `yes | head`: the reader has what it wanted, which ends the job quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                tracing::debug!(sink = %self.name, "stdout was closed by its reader");
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(SinkError::new(&self.name, Path::new("<stdout>"), e)),
        }
    }

    fn closed(&self) -> bool {
        self.closed
    }

    fn prepare(&mut self, _checkpoint: u64) -> Result<Vec<u8>, SinkError> {
        Ok(Vec::new())
    }

    fn publish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Drops everything; the executor's metrics still count what arrived.
struct Discard;

impl Sink for Discard {
    fn write(&mut self, _batch: &Batch) -> Result<(), SinkError> {
        Ok(())
    }

    fn prepare(&mut self, _checkpoint: u64) -> Result<Vec<u8>, SinkError> {
        Ok(Vec::new())
    }

    fn publish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(lines: &[&str]) -> Batch {
        let mut b = Batch::default();
        for l in lines {
            b.push_value(l.as_bytes()).unwrap();
        }
        b
    }

    fn spec(path: &Path) -> SinkSpec {
        serde_saphyr::from_str(&format!("type: file\npath: {}", path.display())).unwrap()
    }

    #[test]
    fn only_committed_parts_become_visible_and_recovery_discards_the_rest() {
        let dir = std::env::temp_dir().join(format!("eddy-sink-2pc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("out.jsonl");
        let spec = spec(&path);
        let mut sink = open_sink("out", &spec, None, None).unwrap();
        sink.write(&batch(&["a", "b"])).unwrap();
        let p1 = sink.prepare(1).unwrap();
        sink.write(&batch(&["c"])).unwrap();
        let p2 = sink.prepare(2).unwrap();
        assert!(!path.exists(), "nothing is visible before a commit");
        commit_sink("out", &spec, &p1).unwrap();
        commit_sink("out", &spec, &p1).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        sink.write(&batch(&["lost"])).unwrap();
        drop(sink);
        // Crash; checkpoint 2 completed but its commit never ran.
        let mut sink = open_sink("out", &spec, Some(&p2), None).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\n");
        sink.write(&batch(&["d"])).unwrap();
        let last = sink.finish().unwrap();
        commit_sink("out", &spec, &last).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\nd\n");
        // Restoring an older checkpoint cuts the file back to it.
        drop(open_sink("out", &spec, Some(&p1), None).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("pending"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
