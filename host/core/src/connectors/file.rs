//! The `file` connector: a source of one event per line of a file (JSON or raw), and
//! a sink writing one event value per line, exactly once.
//!
//! File sinks commit in two phases. Events go to `<file>.inprogress`; at a checkpoint
//! barrier that part is fsynced and renamed `<file>.pending-<checkpoint>` (prepared);
//! once the checkpoint has completed, its committer writes each pending part into the
//! final file at the offset it was prepared for, then deletes it. Writing at a fixed
//! offset makes a commit idempotent, so recovery can simply commit the restored
//! checkpoint again and cut the file to the length it records: a reader of the final
//! file only ever sees committed output, never a duplicate.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Connector, Opening};
use crate::batch::Batch;
use crate::job::{Format, SinkSpec, SourceSpec};
use crate::sink::{Committer, Connected, Sink, SinkError};
use crate::source::{Source, SourceError};
use crate::state::{Decoder, Encoder, StateError};

/// Opens `type: file` sources and sinks.
pub struct FileConnector;

impl Connector for FileConnector {
    fn source(&self, at: &Opening<'_>, spec: &SourceSpec) -> Result<Box<dyn Source>, SourceError> {
        let SourceSpec::File { path, format, .. } = spec else {
            return Err(super::not_mine(at.name, spec.connector()));
        };
        let file = File::open(path).map_err(|error| SourceError::Io {
            source_name: at.name.to_owned(),
            input: path.display().to_string(),
            error,
        })?;
        let input = path.display().to_string();
        Ok(Box::new(LineSource::new(at.name, input, *format, file)))
    }

    fn sink(&self, at: &Opening<'_>, spec: &SinkSpec) -> Result<Connected, SinkError> {
        let SinkSpec::File { path, .. } = spec else {
            return Err(super::not_my_sink(at.name, spec.connector()));
        };
        let sink = FileSink::open(at.name, path, at.restored)?;
        let committer = FileCommitter {
            name: at.name.to_owned(),
            path: path.clone(),
        };
        Ok((Box::new(sink), Box::new(committer)))
    }
}

/// Reads one event per line from any byte stream.
pub struct LineSource<R> {
    name: String,
    input: String,
    format: Format,
    reader: BufReader<R>,
    line: u64,
    /// Bytes of the input consumed.
    offset: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> LineSource<R> {
    /// A source named `name` reading `reader`, described as `input` in errors.
    pub fn new(name: &str, input: String, format: Format, reader: R) -> Self {
        LineSource {
            name: name.to_owned(),
            input,
            format,
            reader: BufReader::with_capacity(1 << 16, reader),
            line: 0,
            offset: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    fn malformed(&self, message: String) -> SourceError {
        SourceError::Malformed {
            source_name: self.name.clone(),
            input: self.input.clone(),
            line: self.line,
            message,
        }
    }
}

impl<R: Read + Seek + Send> Source for LineSource<R> {
    fn poll(&mut self, max: usize) -> Result<Option<Batch>, SourceError> {
        self.read_batch(max)
    }

    fn position(&mut self) -> Result<Vec<u8>, SourceError> {
        let mut e = Encoder::new();
        e.u64(self.offset).u64(self.line).u8(u8::from(self.done));
        Ok(e.finish())
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let mut d = Decoder::new(position);
        let (offset, line, done) =
            (|| Ok::<_, StateError>((d.u64()?, d.u64()?, d.u8()? != 0)))()
                .map_err(|e| self.malformed(format!("checkpointed position: {e}")))?;
        self.reader
            .seek(SeekFrom::Start(offset))
            .map_err(|error| SourceError::Io {
                source_name: self.name.clone(),
                input: self.input.clone(),
                error,
            })?;
        (self.offset, self.line, self.done) = (offset, line, done);
        Ok(())
    }
}

impl<R: Read> LineSource<R> {
    /// Up to `max` lines as events, or `None` at the end of the input.
    pub(super) fn read_batch(&mut self, max: usize) -> Result<Option<Batch>, SourceError> {
        if self.done {
            return Ok(None);
        }
        let mut batch = Batch::with_capacity(max, max * 64);
        while batch.len() < max {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|error| SourceError::Io {
                    source_name: self.name.clone(),
                    input: self.input.clone(),
                    error,
                })?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.line += 1;
            self.offset += n as u64;
            let mut record: &[u8] = &self.buf;
            while let [rest @ .., b'\n' | b'\r'] = record {
                record = rest;
            }
            if self.format == Format::Json {
                if record.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(record) {
                    return Err(self.malformed(format!("malformed JSON: {e}")));
                }
            }
            batch
                .push_value(record)
                .map_err(|e| self.malformed(e.to_string()))?;
        }
        Ok((!batch.is_empty() || !self.done).then_some(batch))
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

/// Publishes the parts a file sink prepared, once their checkpoint has completed.
struct FileCommitter {
    name: String,
    path: PathBuf,
}

impl Committer for FileCommitter {
    fn commit(&mut self, prepared: &[u8]) -> Result<(), SinkError> {
        commit_file(&self.name, &self.path, prepared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::drain;

    #[test]
    fn a_file_source_resumes_after_the_last_event_of_its_position() {
        let text = "{\"a\":1}\n\n{\"a\":2}\n{\"a\":3}\n";
        let mut src = LineSource::new(
            "s",
            "mem".into(),
            Format::Json,
            std::io::Cursor::new(text.as_bytes()),
        );
        let first = src.poll(1).unwrap().unwrap();
        assert_eq!(first.value(0), br#"{"a":1}"#);
        let position = src.position().unwrap();
        let mut resumed = LineSource::new(
            "s",
            "mem".into(),
            Format::Json,
            std::io::Cursor::new(text.as_bytes()),
        );
        resumed.seek(&position).unwrap();
        assert_eq!(
            drain(&mut resumed, 10).unwrap(),
            [r#"{"a":2}"#, r#"{"a":3}"#]
        );
        assert!(
            resumed.seek(b"short").is_err(),
            "a damaged position is an error"
        );
    }

    #[test]
    fn json_lines_skip_blank_lines_and_strip_newlines() {
        let text = "{\"a\":1}\r\n\n{\"a\":2}";
        let mut src = LineSource::new(
            "s",
            "mem".into(),
            Format::Json,
            std::io::Cursor::new(text.as_bytes()),
        );
        assert_eq!(drain(&mut src, 1).unwrap(), vec!["{\"a\":1}", "{\"a\":2}"]);
    }

    #[test]
    fn malformed_json_names_the_line() {
        let text = "{\"a\":1}\n{oops\n";
        let mut src = LineSource::new(
            "s",
            "in.jsonl".into(),
            Format::Json,
            std::io::Cursor::new(text.as_bytes()),
        );
        let msg = drain(&mut src, 10).unwrap_err().to_string();
        assert!(
            msg.starts_with("source \"s\": in.jsonl:2: malformed JSON"),
            "{msg}"
        );
    }

    fn batch(lines: &[&str]) -> Batch {
        let mut b = Batch::default();
        for l in lines {
            b.push_value(l.as_bytes()).unwrap();
        }
        b
    }

    #[test]
    fn only_committed_parts_become_visible_and_recovery_discards_the_rest() {
        let dir = std::env::temp_dir().join(format!("eddy-sink-2pc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("out.jsonl");
        let mut sink = FileSink::open("out", &path, None).unwrap();
        sink.write(&batch(&["a", "b"])).unwrap();
        let p1 = sink.prepare(1).unwrap();
        sink.write(&batch(&["c"])).unwrap();
        let p2 = sink.prepare(2).unwrap();
        assert!(!path.exists(), "nothing is visible before a commit");
        commit_file("out", &path, &p1).unwrap();
        commit_file("out", &path, &p1).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        sink.write(&batch(&["lost"])).unwrap();
        drop(sink);
        // Crash; checkpoint 2 completed but its commit never ran.
        let mut sink = FileSink::open("out", &path, Some(&p2)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\n");
        sink.write(&batch(&["d"])).unwrap();
        let last = sink.finish().unwrap();
        commit_file("out", &path, &last).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\nd\n");
        // Restoring an older checkpoint cuts the file back to it.
        drop(FileSink::open("out", &path, Some(&p1)).unwrap());
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
