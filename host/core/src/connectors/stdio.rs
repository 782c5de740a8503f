//! The standard streams as connectors: `stdin` (a source of one event per line),
//! `stdout` (one event value per line) and `discard` (a sink that keeps nothing).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use super::file::LineSource;
use super::{Connector, Opening};
use crate::batch::Batch;
use crate::job::{Format, SinkSpec, SourceSpec};
use crate::sink::{Committer, Connected, Sink, SinkError};
use crate::source::{Source, SourceError};

/// Opens `type: stdin` sources and `type: stdout` and `type: discard` sinks.
pub struct StdioConnector;

impl Connector for StdioConnector {
    fn source(&self, at: &Opening<'_>, spec: &SourceSpec) -> Result<Box<dyn Source>, SourceError> {
        let SourceSpec::Stdin { format, .. } = spec else {
            return Err(super::not_mine(at.name, spec.connector()));
        };
        Ok(Box::new(Stdin::spawn(at.name, *format)))
    }

    fn sink(&self, at: &Opening<'_>, spec: &SinkSpec) -> Result<Connected, SinkError> {
        let sink: Box<dyn Sink> = match spec {
            SinkSpec::Stdout { .. } => Box::new(Stdout {
                out: BufWriter::with_capacity(1 << 16, std::io::stdout()),
                name: at.name.to_owned(),
                closed: false,
            }),
            SinkSpec::Discard { .. } => Box::new(Discard),
            _ => return Err(super::not_my_sink(at.name, spec.connector())),
        };
        Ok((sink, Box::new(Unrecallable)))
    }
}

/// The committer of a stream: what was written is out already, there is nothing to
/// publish later.
struct Unrecallable;

impl Committer for Unrecallable {
    fn commit(&mut self, _prepared: &[u8]) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Standard input read by a thread of its own, so that polling never blocks: a quiet
/// stdin can go idle, and Ctrl-C is noticed.
struct Stdin {
    name: String,
    batches: std::sync::mpsc::Receiver<Result<Option<Batch>, SourceError>>,
    done: bool,
}

impl Stdin {
    fn spawn(name: &str, format: Format) -> Stdin {
        let (tx, rx) = std::sync::mpsc::sync_channel(1024);
        let mut lines = LineSource::new(name, "<stdin>".into(), format, std::io::stdin());
        // The reader ends with stdin, or when the receiver is gone.
        let _ = std::thread::Builder::new()
            .name("eddy-stdin".into())
            .spawn(move || {
                loop {
                    // Line by line, so that a slow writer's events are not held back.
                    let polled = lines.read_batch(1);
                    let last = !matches!(polled, Ok(Some(_)));
                    if tx.send(polled).is_err() || last {
                        break;
                    }
                }
            });
        Stdin {
            name: name.to_owned(),
            batches: rx,
            done: false,
        }
    }
}

impl Source for Stdin {
    fn poll(&mut self, max: usize) -> Result<Option<Batch>, SourceError> {
        use std::sync::mpsc::RecvTimeoutError;
        if self.done {
            return Ok(None);
        }
        let mut batch = match self.batches.recv_timeout(Duration::from_millis(20)) {
            Ok(Ok(Some(batch))) => batch,
            Ok(Ok(None)) | Err(RecvTimeoutError::Disconnected) => {
                self.done = true;
                return Ok(None);
            }
            Ok(Err(e)) => return Err(e),
            Err(RecvTimeoutError::Timeout) => return Ok(Some(Batch::default())),
        };
        // Take whatever else is already there, up to `max` events.
        while batch.len() < max {
            match self.batches.try_recv() {
                Ok(Ok(Some(more))) => {
                    let _ = batch.append(&more);
                }
                Ok(Ok(None)) => {
                    self.done = true;
                    break;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => break,
            }
        }
        Ok(Some(batch))
    }

    fn position(&mut self) -> Result<Vec<u8>, SourceError> {
        Err(SourceError::fatal(
            &self.name,
            "stdin cannot be replayed, so it cannot take part in checkpoints",
        ))
    }

    fn seek(&mut self, _position: &[u8]) -> Result<(), SourceError> {
        self.position().map(drop)
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
