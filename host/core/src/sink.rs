//! Built-in sinks: stdout and files of one event value per line.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::batch::Batch;
use crate::job::SinkSpec;

/// A consumer of result batches.
pub trait Sink: Send {
    /// Writes every event of `batch`.
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError>;
    /// The input ended and every batch was written: make the output final and durable.
    fn finish(&mut self) -> Result<(), SinkError>;
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

/// Creates the built-in sink a job file describes.
pub fn open_sink(name: &str, spec: &SinkSpec) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match spec {
        SinkSpec::Stdout { .. } => Box::new(LineSink {
            name: name.to_owned(),
            target: "<stdout>".into(),
            out: BufWriter::with_capacity(
                1 << 16,
                Box::new(std::io::stdout()) as Box<dyn Write + Send>,
            ),
            publish: None,
            flush_each: true,
        }),
        SinkSpec::Discard { .. } => Box::new(Discard),
        SinkSpec::File { path, .. } => {
            let staging = in_progress_path(path);
            let err = |error| SinkError {
                sink: name.to_owned(),
                target: path.display().to_string(),
                error,
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(err)?;
            }
            let file = File::create(&staging).map_err(err)?;
            Box::new(LineSink {
                name: name.to_owned(),
                target: path.display().to_string(),
                out: BufWriter::with_capacity(1 << 16, Box::new(file)),
                publish: Some((staging, path.clone())),
                flush_each: false,
            })
        }
    })
}

/// Where a file sink writes until the job finishes; the final name appears only then,
/// so a failed run never leaves a truncated file under the name a reader waits for.
pub fn in_progress_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".inprogress");
    path.with_file_name(name)
}

/// Writes values one per line to any stream, publishing a staged file on finish.
struct LineSink {
    name: String,
    target: String,
    out: BufWriter<Box<dyn Write + Send>>,
    /// (staging path, final path) for file sinks.
    publish: Option<(PathBuf, PathBuf)>,
    /// Flush after every batch, so that a reader of a stream sees results as they come.
    flush_each: bool,
}

impl LineSink {
    fn err(&self, error: std::io::Error) -> SinkError {
        SinkError {
            sink: self.name.clone(),
            target: self.target.clone(),
            error,
        }
    }
}

impl Sink for LineSink {
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        for event in batch.iter() {
            self.out
                .write_all(event.value)
                .and_then(|()| self.out.write_all(b"\n"))
                .map_err(|e| self.err(e))?;
        }
        if self.flush_each {
            self.out.flush().map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.err(e))?;
        if let Some((staging, path)) = self.publish.take() {
            File::open(&staging)
                .and_then(|f| f.sync_all())
                .and_then(|()| std::fs::rename(&staging, &path))
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}

/// Drops everything; the executor's metrics still count what arrived.
struct Discard;

impl Sink for Discard {
    fn write(&mut self, _batch: &Batch) -> Result<(), SinkError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
