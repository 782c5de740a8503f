//! Built-in sources: files and stdin of JSON or raw lines, and a deterministic generator.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batch::{Batch, EventRef, NO_TIMESTAMP};
use crate::connectors::generator::Generator;
use crate::error::ErrorClass;
use crate::exec::watermark::AlignmentGroup;
use crate::job::event_time::EventTimeSpec;
use crate::job::span::Span;
use crate::job::{Format, GeneratorShape, SourceSpec};
use crate::latency::EventClock;
use crate::nexmark;
use crate::state::{Decoder, Encoder, StateError};

/// A producer of batches.
pub trait Source: Send {
    /// Up to `max` events (possibly none yet), or `None` once the input has ended.
    fn poll(&mut self, max: usize) -> Result<Option<Batch>, SourceError>;

    /// The split's watermark, for sources with event time.
    fn watermark(&self) -> Option<i64> {
        None
    }

    /// Whether the split has been without events long enough to be left out of
    /// watermark computations.
    fn idle(&self) -> bool {
        false
    }

    /// How many splits this subtask reads: each keeps its own watermark, and the
    /// source's is the least of them (Flink's per-split watermarks).
    fn splits(&self) -> usize {
        1
    }

    /// The split the last polled batch came from.
    fn last_split(&self) -> usize {
        0
    }

    /// Whether split `split` has ended (it then holds no watermark back).
    fn split_ended(&self, split: usize) -> bool {
        let _ = split;
        false
    }

    /// Where the source is, for a checkpoint: reading on from here after [`Source::seek`]
    /// yields exactly the events that followed.
    fn position(&mut self) -> Result<Vec<u8>, SourceError>;

    /// Continues from a position [`Source::position`] returned.
    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError>;

    /// Records skipped since the last call because they could not be read, for the
    /// job's dead-letter sink (sources whose policy is `on-error: dead-letter`).
    fn take_rejected(&mut self) -> Vec<Rejected> {
        Vec::new()
    }
}

/// A record a source could not read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The record's key, if it has one.
    pub key: Option<Vec<u8>>,
    /// The record's bytes as read.
    pub value: Vec<u8>,
    /// What is wrong with it, and where it was read.
    pub error: String,
}

/// A source failed; names the source and the position in its input.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The input cannot be opened or read.
    #[error("source {source_name:?}: cannot read {input}: {error}")]
    Io {
        /// Name of the source.
        source_name: String,
        /// The file or stream.
        input: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A record of the input is not what the format requires.
    #[error("source {source_name:?}: {input}:{line}: {message}")]
    Malformed {
        /// Name of the source.
        source_name: String,
        /// The file or stream.
        input: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong with the record.
        message: String,
    },
    /// The source cannot do what was asked, for a reason outside the job (a broker, a
    /// connection); a restart may get past it.
    #[error("source {source_name:?}: {message}")]
    Other {
        /// Name of the source.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// The source failed in a way whose class its origin knows: a plugin connector's
    /// error, or a deterministic one (no replay, a record without its event time).
    #[error("source {source_name:?}: {message}")]
    Failed {
        /// Name of the source.
        source_name: String,
        /// What went wrong.
        message: String,
        /// Whether a restart can get past it.
        class: ErrorClass,
    },
}

impl SourceError {
    /// A deterministic failure of source `source_name`: restarting cannot help.
    pub fn fatal(source_name: &str, message: impl Into<String>) -> Self {
        SourceError::Failed {
            source_name: source_name.to_owned(),
            message: message.into(),
            class: ErrorClass::USER_FATAL,
        }
    }

    /// Whether a restart can get past this error: I/O by its kind, a malformed record
    /// never, other failures of the outside world after a delay.
    pub fn class(&self) -> ErrorClass {
        match self {
            SourceError::Io { error, .. } => ErrorClass::of_io(error),
            SourceError::Malformed { .. } => ErrorClass::USER_FATAL,
            SourceError::Other { .. } => ErrorClass::EXTERNAL,
            SourceError::Failed { class, .. } => *class,
        }
    }
}

/// The subtasks a source runs as: files and stdin are read by one subtask, the
/// generator by as many as its `parallelism`.
pub fn source_parallelism(spec: &SourceSpec) -> u32 {
    match spec {
        SourceSpec::Generator { parallelism, .. } | SourceSpec::Plugin { parallelism, .. } => {
            parallelism.unwrap_or(1)
        }
        SourceSpec::Kafka(kafka) => kafka.parallelism.unwrap_or(1),
        SourceSpec::File { .. } | SourceSpec::Stdin { .. } => 1,
    }
}

/// Creates subtask `subtask` of the built-in source a job file describes.
///
/// With `latency`, the source notes on it when it first reaches each event time.
pub fn open_source(
    name: &str,
    spec: &SourceSpec,
    subtask: u32,
    alignment: &Alignments,
    latency: Option<&Arc<EventClock>>,
) -> Result<Box<dyn Source>, SourceError> {
    Ok(with_event_time(
        name,
        open_plain(name, spec, subtask)?,
        spec,
        alignment,
        latency,
    ))
}

/// `source` with the event time and watermarks its spec asks for; with `latency`, it
/// notes on it when it first reaches each event time.
pub fn with_event_time(
    name: &str,
    source: Box<dyn Source>,
    spec: &SourceSpec,
    alignment: &Alignments,
    latency: Option<&Arc<EventClock>>,
) -> Box<dyn Source> {
    match spec.event_time() {
        None => source,
        Some(event_time) => {
            let group = event_time.align.as_ref().map(|a| {
                let group = alignment.group(&a.group, a.max_drift.millis());
                let split = group.join();
                (group, split)
            });
            Box::new(TimedSource::new(
                name,
                source,
                event_time,
                group,
                latency.cloned(),
            ))
        }
    }
}

/// The alignment groups of a job, created as sources join them.
#[derive(Debug, Default)]
pub struct Alignments {
    groups: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<AlignmentGroup>>>,
}

impl Alignments {
    fn group(&self, name: &str, max_drift: i64) -> std::sync::Arc<AlignmentGroup> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups
            .entry(name.to_owned())
            .or_insert_with(|| std::sync::Arc::new(AlignmentGroup::new(max_drift)))
            .clone()
    }
}

fn open_plain(name: &str, spec: &SourceSpec, subtask: u32) -> Result<Box<dyn Source>, SourceError> {
    Ok(match spec {
        SourceSpec::File { path, format, .. } => {
            let file = std::fs::File::open(path).map_err(|error| SourceError::Io {
                source_name: name.to_owned(),
                input: path.display().to_string(),
                error,
            })?;
            Box::new(LineSource::new(
                name,
                path.display().to_string(),
                *format,
                file,
            ))
        }
        SourceSpec::Stdin { format, .. } => Box::new(Stdin::spawn(name, *format)),
        SourceSpec::Plugin { .. } | SourceSpec::Kafka(_) => {
            return Err(SourceError::fatal(
                name,
                "connector sources are opened by their connector factory",
            ));
        }
        SourceSpec::Generator {
            count,
            seed,
            shape,
            rate,
            event_rate,
            parallelism,
            ..
        } => {
            let stride = u64::from(parallelism.unwrap_or(1));
            let generator = match shape {
                GeneratorShape::Nexmark => {
                    Generator::nexmark(event_rate.unwrap_or(nexmark::DEFAULT_EVENT_RATE))
                }
                _ => Generator::new(*shape, *seed),
            };
            Box::new(GeneratorSource {
                generator,
                next: u64::from(subtask),
                stride,
                count: *count,
                pacing: rate.map(|r| (Instant::now(), r / stride as f64, u64::from(subtask))),
                name: name.to_owned(),
            })
        }
    })
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
    fn read_batch(&mut self, max: usize) -> Result<Option<Batch>, SourceError> {
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

/// One subtask of the built-in generator: event ids `next, next+stride, …` below
/// `count`, optionally paced to a rate.
struct GeneratorSource {
    name: String,
    generator: Generator,
    next: u64,
    stride: u64,
    count: Option<u64>,
    /// Start, events per second of this subtask, first id.
    pacing: Option<(Instant, f64, u64)>,
}

impl Source for GeneratorSource {
    fn poll(&mut self, max: usize) -> Result<Option<Batch>, SourceError> {
        let end = self.count.unwrap_or(u64::MAX);
        if self.next >= end {
            return Ok(None);
        }
        let mut n = ((end - self.next).div_ceil(self.stride)).min(max as u64);
        if let Some((start, rate, first)) = self.pacing {
            let produced = (self.next - first) / self.stride;
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            if due <= produced {
                std::thread::sleep(
                    Duration::from_secs_f64(1.0 / rate).min(Duration::from_millis(50)),
                );
                return Ok(Some(Batch::default()));
            }
            n = n.min(due - produced);
        }
        let mut batch = Batch::with_capacity(n as usize, n as usize * 96);
        let mut line = Vec::with_capacity(128);
        for _ in 0..n {
            line.clear();
            let timestamp = self.generator.write_event(self.next, &mut line);
            let event = EventRef {
                key: None,
                value: &line,
                timestamp,
            };
            batch
                .push(event)
                .map_err(|e| SourceError::fatal(&self.name, e.to_string()))?;
            self.next += self.stride;
        }
        Ok(Some(batch))
    }

    fn position(&mut self) -> Result<Vec<u8>, SourceError> {
        let mut e = Encoder::new();
        e.u64(self.next).u64(self.stride);
        Ok(e.finish())
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let mut d = Decoder::new(position);
        let (next, stride) = (|| Ok::<_, StateError>((d.u64()?, d.u64()?)))()
            .map_err(|e| SourceError::fatal(&self.name, format!("checkpointed position: {e}")))?;
        if stride != self.stride || next % stride != self.next % stride {
            return Err(SourceError::fatal(
                &self.name,
                format!(
                    "the checkpoint was taken with the generator at parallelism {stride}, \
                     not {}: restore with the same source parallelism",
                    self.stride
                ),
            ));
        }
        self.next = next;
        // Pacing starts over from here.
        if let Some((start, _, first)) = &mut self.pacing {
            *start = Instant::now();
            *first = next;
        }
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

/// Gives a source's events their event time from a JSON field (or keeps the source's
/// own timestamps) and tracks each split's watermark (largest timestamp seen, minus the
/// allowed out-of-orderness, minus one) and idleness.
struct TimedSource {
    name: String,
    inner: Box<dyn Source>,
    /// The JSON field's path; empty for the source's own timestamps.
    field: Vec<String>,
    delay: i64,
    idle_timeout: Option<Duration>,
    /// Per split: the largest timestamp seen, and when its last event came.
    splits: Vec<(Option<i64>, Instant)>,
    alignment: Option<(std::sync::Arc<AlignmentGroup>, usize)>,
    /// The benchmark's latency clock, told how far event time got.
    latency: Option<Arc<EventClock>>,
}

impl TimedSource {
    fn new(
        name: &str,
        inner: Box<dyn Source>,
        spec: &EventTimeSpec,
        alignment: Option<(std::sync::Arc<AlignmentGroup>, usize)>,
        latency: Option<Arc<EventClock>>,
    ) -> Self {
        TimedSource {
            name: name.to_owned(),
            field: spec
                .field
                .iter()
                .flat_map(|f| f.split('.'))
                .map(str::to_owned)
                .collect(),
            delay: spec.max_out_of_orderness.map_or(0, Span::millis),
            idle_timeout: spec.idle_timeout.map(|s| s.0),
            splits: vec![(None, Instant::now()); inner.splits()],
            inner,
            alignment,
            latency,
        }
    }

    fn split_idle(&self, split: usize) -> bool {
        self.idle_timeout
            .is_some_and(|t| self.splits[split].1.elapsed() >= t)
    }

    fn err(&self, message: String) -> SourceError {
        SourceError::fatal(&self.name, message)
    }
}

impl Source for TimedSource {
    fn poll(&mut self, max: usize) -> Result<Option<Batch>, SourceError> {
        if let Some((group, split)) = &self.alignment {
            group.report(*split, self.watermark().unwrap_or(i64::MIN), self.idle());
            if !group.may_read(*split) {
                std::thread::sleep(Duration::from_millis(1));
                return Ok(Some(Batch::default()));
            }
        }
        let Some(mut batch) = self.inner.poll(max)? else {
            if let Some((group, split)) = &self.alignment {
                group.end(*split);
            }
            return Ok(None);
        };
        // Splits the source found (at its start, or later) hold the watermark back
        // from the moment they are known, before their first event.
        if self.inner.splits() > self.splits.len() {
            self.splits
                .resize(self.inner.splits(), (None, Instant::now()));
        }
        if batch.is_empty() {
            return Ok(Some(batch));
        }
        let split = self.inner.last_split();
        if split >= self.splits.len() {
            self.splits.resize(split + 1, (None, Instant::now()));
        }
        let mut max_seen = self.splits[split].0;
        if self.field.is_empty() {
            let own = batch
                .timestamps
                .iter()
                .copied()
                .filter(|&t| t != NO_TIMESTAMP);
            if batch.timestamps.len() != batch.len() || own.clone().count() != batch.len() {
                return Err(self.err(
                    "event-time has no `field` and the source gave an event no timestamp".into(),
                ));
            }
            max_seen = own.chain(max_seen).max();
            self.splits[split] = (max_seen, Instant::now());
            if let (Some(clock), Some(reached)) = (&self.latency, max_seen) {
                clock.reached(reached);
            }
            return Ok(Some(batch));
        }
        let mut timestamps = Vec::with_capacity(batch.len());
        for event in batch.iter() {
            // Read straight from the JSON text: no tree per event.
            let ts = crate::fields::path(event.value, &self.field)
                .map_err(|e| self.err(format!("event time needs JSON events: {e}")))?
                .and_then(|raw| raw.get().parse::<i64>().ok())
                .ok_or_else(|| {
                    self.err(format!(
                        "event has no integer event-time field `{}`: {}",
                        self.field.join("."),
                        String::from_utf8_lossy(&event.value[..event.value.len().min(120)])
                    ))
                })?;
            max_seen = Some(max_seen.map_or(ts, |m| m.max(ts)));
            timestamps.push(ts);
        }
        self.splits[split] = (max_seen, Instant::now());
        if let (Some(clock), Some(reached)) = (&self.latency, max_seen) {
            clock.reached(reached);
        }
        batch.timestamps = timestamps;
        Ok(Some(batch))
    }

    /// The least watermark of the splits that still hold it back: not ended, and not
    /// idle (unless all are).
    fn watermark(&self) -> Option<i64> {
        let open: Vec<usize> = (0..self.splits.len())
            .filter(|&i| !self.inner.split_ended(i))
            .collect();
        let active: Vec<usize> = open
            .iter()
            .copied()
            .filter(|&i| !self.split_idle(i))
            .collect();
        let holding = match (active.is_empty(), open.is_empty()) {
            (false, _) => active,
            (true, false) => open,
            (true, true) => (0..self.splits.len()).collect(),
        };
        holding
            .iter()
            .map(|&i| self.splits[i].0)
            .try_fold(i64::MAX, |least, m| m.map(|m| least.min(m)))
            .filter(|&m| m != i64::MAX)
            .map(|m| m.saturating_sub(self.delay).saturating_sub(1))
    }

    fn idle(&self) -> bool {
        (0..self.splits.len())
            .filter(|&i| !self.inner.split_ended(i))
            .all(|i| self.split_idle(i))
    }

    fn position(&mut self) -> Result<Vec<u8>, SourceError> {
        let mut e = Encoder::new();
        e.count(self.splits.len());
        for (max_seen, _) in &self.splits {
            e.opt_i64(*max_seen);
        }
        e.bytes(&self.inner.position()?);
        Ok(e.finish())
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let mut d = Decoder::new(position);
        let decoded = (|| {
            let splits = (0..d.count()?)
                .map(|_| d.opt_i64())
                .collect::<Result<Vec<_>, StateError>>()?;
            Ok::<_, StateError>((splits, d.bytes()?))
        })();
        let (splits, inner) =
            decoded.map_err(|e| self.err(format!("checkpointed position: {e}")))?;
        self.splits = splits.into_iter().map(|m| (m, Instant::now())).collect();
        self.inner.seek(inner)
    }

    fn take_rejected(&mut self) -> Vec<Rejected> {
        self.inner.take_rejected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(src: &mut dyn Source, max: usize) -> Result<Vec<String>, SourceError> {
        let mut out = Vec::new();
        while let Some(b) = src.poll(max)? {
            out.extend(
                b.iter()
                    .map(|e| String::from_utf8_lossy(e.value).into_owned()),
            );
        }
        Ok(out)
    }

    /// Two splits whose batches come in turn: split 0 far ahead in event time.
    struct TwoSplits {
        polls: Vec<(usize, i64)>,
        last: usize,
    }

    impl Source for TwoSplits {
        fn poll(&mut self, _max: usize) -> Result<Option<Batch>, SourceError> {
            let Some((split, ts)) = self.polls.pop() else {
                return Ok(None);
            };
            self.last = split;
            let mut b = Batch::default();
            b.push_value(format!("{{\"ts\":{ts}}}").as_bytes()).unwrap();
            Ok(Some(b))
        }
        fn splits(&self) -> usize {
            2
        }
        fn last_split(&self) -> usize {
            self.last
        }
        fn position(&mut self) -> Result<Vec<u8>, SourceError> {
            Ok(Vec::new())
        }
        fn seek(&mut self, _position: &[u8]) -> Result<(), SourceError> {
            Ok(())
        }
    }

    /// Finds two splits at its first poll, which yields nothing yet; then one event of
    /// split 0.
    struct LateStart {
        polls: usize,
    }

    impl Source for LateStart {
        fn poll(&mut self, _max: usize) -> Result<Option<Batch>, SourceError> {
            self.polls += 1;
            let mut b = Batch::default();
            if self.polls > 1 {
                b.push_value(b"{\"ts\":5000}").unwrap();
            }
            Ok(Some(b))
        }
        fn splits(&self) -> usize {
            if self.polls == 0 { 0 } else { 2 }
        }
        fn position(&mut self) -> Result<Vec<u8>, SourceError> {
            Ok(Vec::new())
        }
        fn seek(&mut self, _position: &[u8]) -> Result<(), SourceError> {
            Ok(())
        }
    }

    #[test]
    fn splits_found_at_start_hold_the_watermark_back_before_their_first_event() {
        let spec: EventTimeSpec = serde_saphyr::from_str("field: ts").unwrap();
        let mut src = TimedSource::new("s", Box::new(LateStart { polls: 0 }), &spec, None, None);
        src.poll(10).unwrap();
        assert!(
            !src.idle(),
            "a source with splits that have not spoken is not idle"
        );
        assert_eq!(src.watermark(), None);
        src.poll(10).unwrap();
        assert_eq!(src.watermark(), None, "split 1 has not spoken yet");
    }

    #[test]
    fn each_split_holds_its_own_watermark_back() {
        let spec: EventTimeSpec = serde_saphyr::from_str("field: ts").unwrap();
        let inner = TwoSplits {
            polls: vec![(1, 50), (0, 9_000), (1, 10)],
            last: 0,
        };
        let mut src = TimedSource::new("s", Box::new(inner), &spec, None, None);
        src.poll(10).unwrap();
        assert_eq!(src.watermark(), None, "split 0 has not spoken yet");
        src.poll(10).unwrap();
        assert_eq!(src.watermark(), Some(9), "the slow split decides");
        src.poll(10).unwrap();
        assert_eq!(src.watermark(), Some(49));
        let position = src.position().unwrap();
        let inner = TwoSplits {
            polls: Vec::new(),
            last: 0,
        };
        let mut resumed = TimedSource::new("s", Box::new(inner), &spec, None, None);
        resumed.seek(&position).unwrap();
        assert_eq!(
            resumed.watermark(),
            Some(49),
            "split watermarks are checkpointed"
        );
    }

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
    fn a_generator_resumes_at_its_next_event_id_and_rejects_another_stride() {
        let spec: SourceSpec =
            serde_saphyr::from_str("type: generator\ncount: 10\nparallelism: 2").unwrap();
        let alignments = Alignments::default();
        let mut a = open_source("g", &spec, 1, &alignments, None).unwrap();
        a.poll(2).unwrap();
        let position = a.position().unwrap();
        let rest = drain(a.as_mut(), 10).unwrap();
        let mut b = open_source("g", &spec, 1, &alignments, None).unwrap();
        b.seek(&position).unwrap();
        assert_eq!(drain(b.as_mut(), 10).unwrap(), rest);
        let other: SourceSpec =
            serde_saphyr::from_str("type: generator\ncount: 10\nparallelism: 3").unwrap();
        let mut c = open_source("g", &other, 1, &alignments, None).unwrap();
        let err = c.seek(&position).unwrap_err().to_string();
        assert!(err.contains("parallelism 2, not 3"), "{err}");
    }

    #[test]
    fn a_timed_source_advances_the_latency_clock_it_is_given() {
        let spec: SourceSpec =
            serde_saphyr::from_str("type: generator\ncount: 10\nevent-time: { field: ts }")
                .unwrap();
        // The generator's event 0 is at 1_700_000_000_000, each next one 10 ms later.
        let clock = Arc::new(EventClock::new(1_700_000_000_000, 1000));
        let mut source = open_source("g", &spec, 0, &Alignments::default(), Some(&clock)).unwrap();
        assert!(clock.since(1_700_000_000_000).is_none());
        drain(source.as_mut(), 10).unwrap();
        assert!(clock.since(1_700_000_000_090).is_some());
        assert!(clock.since(1_700_000_000_091).is_none());
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

    #[test]
    fn generator_is_deterministic_and_bounded() {
        let spec = SourceSpec::Generator {
            name: None,
            count: Some(10),
            seed: 3,
            shape: Default::default(),
            rate: None,
            event_rate: None,
            parallelism: None,
            event_time: None,
        };
        let a = drain(
            open_source("g", &spec, 0, &Alignments::default(), None)
                .unwrap()
                .as_mut(),
            4,
        )
        .unwrap();
        let b = drain(
            open_source("g", &spec, 0, &Alignments::default(), None)
                .unwrap()
                .as_mut(),
            7,
        )
        .unwrap();
        assert_eq!(a.len(), 10);
        assert_eq!(a, b);
    }

    #[test]
    fn parallel_generator_subtasks_partition_the_ids() {
        let spec = |p| SourceSpec::Generator {
            name: None,
            count: Some(11),
            seed: 3,
            shape: Default::default(),
            rate: None,
            event_rate: None,
            parallelism: Some(p),
            event_time: None,
        };
        let single = drain(
            open_source("g", &spec(1), 0, &Alignments::default(), None)
                .unwrap()
                .as_mut(),
            4,
        )
        .unwrap();
        let mut split: Vec<String> = (0..3)
            .flat_map(|i| {
                drain(
                    open_source("g", &spec(3), i, &Alignments::default(), None)
                        .unwrap()
                        .as_mut(),
                    2,
                )
                .unwrap()
            })
            .collect();
        let mut sorted = single.clone();
        split.sort();
        sorted.sort();
        assert_eq!(split, sorted);
    }
}
