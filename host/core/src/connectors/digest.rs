//! The digest sink: an order- and parallelism-independent checksum of a job's final
//! rows, so that two runs (or Eddy and another engine) can be compared row for row
//! without keeping the rows.
//!
//! A row is the event's JSON object reduced to the sink's `columns`, as text: values
//! joined by TAB, integers in decimal, strings as they are except `\` → `\\`, TAB →
//! `\t`, LF → `\n`, CR → `\r`, and NULL (or a missing column) → `\N`. The digest is the
//! sum of the rows' XXH64 (seed 0) modulo 2^64; an event with `"retract": true`
//! withdraws its row (subtracts it), which makes updating results comparable too.
//!
//! The sink is exactly-once like the file sink: what a checkpoint prepares is the
//! running digest (and, with `rows`, the rows), and committing it writes the summary
//! file `path` — so the file always describes committed output only.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::value::RawValue;

use super::{Connector, Opening};
use crate::batch::Batch;
use crate::fields;
use crate::job::SinkSpec;
use crate::latency::{EventClock, Histogram};
use crate::sink::{Committer, Connected, Sink, SinkError};
use crate::state::{Decoder, Encoder};

/// Opens `type: digest` sinks.
pub struct DigestConnector;

impl Connector for DigestConnector {
    fn sink(&self, at: &Opening<'_>, spec: &SinkSpec) -> Result<Connected, SinkError> {
        let SinkSpec::Digest {
            columns,
            path,
            rows,
            ..
        } = spec
        else {
            return Err(super::not_my_sink(at.name, spec.connector()));
        };
        let latency = at.latency.cloned();
        let sink = DigestSink::open(
            at.name,
            columns,
            path,
            rows.as_deref(),
            at.restored,
            latency,
        )?;
        Ok((
            Box::new(sink),
            Box::new(DigestCommitter(at.name.to_owned())),
        ))
    }
}

/// Writes the summary (and rows) a digest sink prepared, once its checkpoint completed.
struct DigestCommitter(String);

impl Committer for DigestCommitter {
    fn commit(&mut self, prepared: &[u8]) -> Result<(), SinkError> {
        commit_digest(&self.0, prepared)
    }
}

/// Reads rows of given columns from events.
#[derive(Clone, Debug)]
pub struct RowReader {
    /// The columns, then the retraction marker.
    names: Vec<String>,
}

impl RowReader {
    /// A reader of rows with `columns`, in order.
    pub fn new(columns: &[String]) -> Self {
        let mut names = columns.to_vec();
        names.push(RETRACT.to_owned());
        RowReader { names }
    }

    /// The event `value` (a JSON object) as a row: its text (see the module
    /// documentation) in `out`, and 1, or -1 for a retraction. `picked` is scratch
    /// space kept between calls.
    pub fn read<'v>(
        &self,
        value: &'v [u8],
        picked: &mut Vec<Option<&'v RawValue>>,
        out: &mut String,
    ) -> Result<i64, String> {
        picked.resize(self.names.len(), None);
        fields::pick_into(value, &self.names, picked).map_err(|e| e.to_string())?;
        let retract = picked.pop().flatten().is_some_and(|r| r.get() == "true");
        out.clear();
        for (i, raw) in picked.iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            let text = raw.map_or("null", RawValue::get);
            if let Some(s) = raw.and_then(fields::string) {
                for c in s.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
            } else if text == "null" {
                out.push_str("\\N");
            } else {
                out.push_str(text);
            }
        }
        Ok(if retract { -1 } else { 1 })
    }
}

/// The field that marks a retraction.
const RETRACT: &str = "retract";

/// A row's hash.
pub fn row_hash(text: &str) -> u64 {
    xxhash_rust::xxh64::xxh64(text.as_bytes(), 0)
}

/// The running digest of a multiset of rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    /// Rows added minus rows withdrawn.
    pub rows: i64,
    /// Sum of the rows' hashes, modulo 2^64.
    pub sum: u64,
}

impl Digest {
    /// Adds (`sign` 1) or withdraws (-1) a row.
    pub fn apply(&mut self, text: &str, sign: i64) {
        let h = row_hash(text);
        self.rows += sign;
        self.sum = if sign > 0 {
            self.sum.wrapping_add(h)
        } else {
            self.sum.wrapping_sub(h)
        };
    }

    /// The digest as 16 lower-case hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.sum)
    }
}

/// The digest sink of a job (`type: digest`).
pub struct DigestSink {
    name: String,
    reader: RowReader,
    path: PathBuf,
    rows_path: Option<PathBuf>,
    digest: Digest,
    /// Every row and its multiplicity, when the rows are written out.
    kept: Option<BTreeMap<String, i64>>,
    latency: Histogram,
    /// The benchmark's latency clock that rows are measured against, if one runs.
    clock: Option<Arc<EventClock>>,
    text: String,
}

impl DigestSink {
    /// Opens the sink; `restored` is what it prepared for the checkpoint the job
    /// restarts from. With `clock`, it measures each row's latency against it.
    pub fn open(
        name: &str,
        columns: &[String],
        path: &Path,
        rows: Option<&Path>,
        restored: Option<&[u8]>,
        clock: Option<Arc<EventClock>>,
    ) -> Result<Self, SinkError> {
        let mut sink = DigestSink {
            name: name.to_owned(),
            reader: RowReader::new(columns),
            path: path.to_owned(),
            rows_path: rows.map(Path::to_owned),
            digest: Digest::default(),
            kept: rows.map(|_| BTreeMap::new()),
            latency: Histogram::default(),
            clock,
            text: String::new(),
        };
        if let Some(prepared) = restored {
            let state = decode(prepared).map_err(|e| sink.error(e))?;
            sink.digest = state.digest;
            sink.latency = state.latency;
            if sink.kept.is_some() {
                sink.kept = Some(state.kept);
            }
        }
        Ok(sink)
    }

    fn error(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SinkError {
        SinkError::new(&self.name, &self.path, std::io::Error::other(e))
    }

    fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.i64(self.digest.rows).u64(self.digest.sum);
        let buckets: Vec<_> = self.latency.buckets().collect();
        e.count(buckets.len());
        for (b, c) in buckets {
            e.u64(b as u64).u64(c);
        }
        let kept = self.kept.as_ref();
        e.count(kept.map_or(0, BTreeMap::len));
        for (row, n) in kept.into_iter().flatten() {
            e.bytes(row.as_bytes()).i64(*n);
        }
        let mut path = |p: Option<&Path>| {
            e.bytes(p.map_or(&[][..], |p| p.as_os_str().as_encoded_bytes()));
        };
        path(Some(&self.path));
        path(self.rows_path.as_deref());
        e.finish()
    }
}

/// What a digest sink prepared.
struct Prepared {
    digest: Digest,
    latency: Histogram,
    kept: BTreeMap<String, i64>,
    path: PathBuf,
    rows: Option<PathBuf>,
}

fn decode(bytes: &[u8]) -> Result<Prepared, crate::state::StateError> {
    let mut d = Decoder::new(bytes);
    let digest = Digest {
        rows: d.i64()?,
        sum: d.u64()?,
    };
    let mut latency = Histogram::default();
    for _ in 0..d.count()? {
        let (b, c) = (d.u64()?, d.u64()?);
        latency.add_bucket(b as usize, c);
    }
    let mut kept = BTreeMap::new();
    for _ in 0..d.count()? {
        let row = d.str()?.to_owned();
        kept.insert(row, d.i64()?);
    }
    let path = PathBuf::from(d.str()?);
    let rows = Some(d.str()?).filter(|s| !s.is_empty()).map(PathBuf::from);
    d.end()?;
    Ok(Prepared {
        digest,
        latency,
        kept,
        path,
        rows,
    })
}

impl Sink for DigestSink {
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let clock = self.clock.as_deref();
        let mut picked = Vec::new();
        for event in batch.iter() {
            let mut text = std::mem::take(&mut self.text);
            let sign = self
                .reader
                .read(event.value, &mut picked, &mut text)
                .map_err(|e| {
                    self.error(format!(
                        "an event is not a JSON object ({e}): {}",
                        String::from_utf8_lossy(&event.value[..event.value.len().min(200)])
                    ))
                })?;
            self.digest.apply(&text, sign);
            if let Some(kept) = &mut self.kept {
                *kept.entry(text.clone()).or_default() += sign;
            }
            self.text = text;
            if let (Some(clock), Some(ts)) = (clock, event.timestamp)
                && let Some(latency) = clock.since(ts)
            {
                self.latency.record(latency);
            }
        }
        Ok(())
    }

    fn prepare(&mut self, _checkpoint: u64) -> Result<Vec<u8>, SinkError> {
        Ok(self.encode())
    }

    fn publish(&mut self) -> Result<(), SinkError> {
        commit_digest(&self.name, &self.encode())
    }
}

/// Writes what a digest sink prepared: the summary file (JSON: `rows`, `digest`, and
/// `latency_p50_ms` / `latency_p99_ms` when a benchmark measured latency) and the
/// sorted rows, each replaced atomically, so doing it twice changes nothing.
pub fn commit_digest(name: &str, prepared: &[u8]) -> Result<(), SinkError> {
    let p = decode(prepared)
        .map_err(|e| SinkError::new(name, Path::new(name), std::io::Error::other(e.to_string())))?;
    let ms = |q: f64| p.latency.quantile(q).map(|d| d.as_secs_f64() * 1e3);
    let summary = serde_json::json!({
        "rows": p.digest.rows,
        "digest": p.digest.hex(),
        "latency_p50_ms": ms(0.5),
        "latency_p99_ms": ms(0.99),
        "latency_samples": p.latency.samples(),
    });
    replace(name, &p.path, |f| writeln!(f, "{summary}"))?;
    if let Some(rows) = &p.rows {
        replace(name, rows, |f| {
            for (row, n) in &p.kept {
                for _ in 0..(*n).max(0) {
                    writeln!(f, "{row}")?;
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Writes `path` through a temporary file renamed over it.
fn replace(
    name: &str,
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), SinkError> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        fill(&mut f)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| SinkError::new(name, path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_canonical_text() {
        let columns: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let mut text = String::new();
        let v =
            serde_json::json!({"d": "x\ty\\z\n", "a": 5, "b": null, "c": "11024.936", "e": [1]});
        let reader = RowReader::new(&columns);
        let mut picked = Vec::new();
        let text_of = v.to_string();
        let sign = reader
            .read(text_of.as_bytes(), &mut picked, &mut text)
            .unwrap();
        assert_eq!(
            (sign, text.as_str()),
            (1, "5\t\\N\t11024.936\tx\\ty\\\\z\\n")
        );
        let v = serde_json::json!({"a": 1, "retract": true});
        assert_eq!(
            reader.read(v.to_string().as_bytes(), &mut Vec::new(), &mut text),
            Ok(-1)
        );
        assert_eq!(text, "1\t\\N\t\\N\t\\N", "missing columns are NULL");
        assert!(reader.read(b"[1]", &mut Vec::new(), &mut text).is_err());
    }

    #[test]
    fn the_digest_is_order_free_and_retractions_undo_rows() {
        let mut a = Digest::default();
        let mut b = Digest::default();
        for row in ["1\t2", "3\t4", "5\t6"] {
            a.apply(row, 1);
        }
        for row in ["5\t6", "9\t9", "1\t2", "3\t4"] {
            b.apply(row, 1);
        }
        b.apply("9\t9", -1);
        assert_eq!(a, b);
        assert_eq!(a.rows, 3);
        // XXH64 of the empty string with seed 0.
        assert_eq!(row_hash(""), 0xef46db3751d8e999);
    }

    #[test]
    fn committing_writes_the_summary_and_the_sorted_rows() {
        let dir = std::env::temp_dir().join(format!("eddy-digest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (path, rows) = (dir.join("d.json"), dir.join("rows.tsv"));
        let columns = vec!["k".to_owned()];
        let mut sink = DigestSink::open("d", &columns, &path, Some(&rows), None, None).unwrap();
        let mut batch = Batch::default();
        for v in [
            r#"{"k":"b"}"#,
            r#"{"k":"a"}"#,
            r#"{"k":"c"}"#,
            r#"{"k":"c","retract":true}"#,
        ] {
            batch.push_value(v.as_bytes()).unwrap();
        }
        sink.write(&batch).unwrap();
        let prepared = sink.prepare(1).unwrap();
        commit_digest("d", &prepared).unwrap();
        commit_digest("d", &prepared).unwrap();
        assert_eq!(std::fs::read_to_string(&rows).unwrap(), "a\nb\n");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut expected = Digest::default();
        expected.apply("a", 1);
        expected.apply("b", 1);
        assert_eq!(summary["rows"], 2);
        assert_eq!(summary["digest"], expected.hex());
        // A restart from the checkpoint carries on from its digest.
        let restored =
            DigestSink::open("d", &columns, &path, Some(&rows), Some(&prepared), None).unwrap();
        assert_eq!(restored.digest, expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rows_are_measured_against_the_clock_the_sink_is_given() {
        let dir = std::env::temp_dir().join(format!("eddy-digest-clock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("d.json");
        let columns = vec!["k".to_owned()];
        let clock = Arc::new(EventClock::new(1000, 100));
        clock.reached(1050);
        let mut batch = Batch::default();
        batch
            .push(crate::batch::EventRef {
                key: None,
                value: br#"{"k":"a"}"#,
                timestamp: Some(1040),
            })
            .unwrap();
        let mut timed = DigestSink::open("d", &columns, &path, None, None, Some(clock)).unwrap();
        timed.write(&batch).unwrap();
        assert_eq!(timed.latency.samples(), 1);
        let mut untimed = DigestSink::open("d", &columns, &path, None, None, None).unwrap();
        untimed.write(&batch).unwrap();
        assert_eq!(untimed.latency.samples(), 0);
        commit_digest("d", &timed.prepare(1).unwrap()).unwrap();
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(summary["latency_samples"], 1);
        assert!(summary["latency_p50_ms"].is_number(), "{summary}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
