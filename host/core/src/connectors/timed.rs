//! Event time for any source: each event's time from a JSON field (or the source's own
//! timestamps), a watermark per split (Flink's per-split watermarks), idleness, and
//! watermark alignment across sources.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batch::{Batch, NO_TIMESTAMP};
use crate::exec::watermark::AlignmentGroup;
use crate::job::SourceSpec;
use crate::job::event_time::EventTimeSpec;
use crate::job::span::Span;
use crate::latency::EventClock;
use crate::source::{Rejected, Source, SourceError};
use crate::state::{Decoder, Encoder, StateError};

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
    use crate::connectors::generator;
    use crate::source::drain;

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
    fn a_timed_source_advances_the_latency_clock_it_is_given() {
        let spec: SourceSpec =
            serde_saphyr::from_str("type: generator\ncount: 10\nevent-time: { field: ts }")
                .unwrap();
        // The generator's event 0 is at 1_700_000_000_000, each next one 10 ms later.
        let clock = Arc::new(EventClock::new(1_700_000_000_000, 1000));
        let generator = generator::open("g", &spec, 0).unwrap();
        let mut source =
            with_event_time("g", generator, &spec, &Alignments::default(), Some(&clock));
        assert!(clock.since(1_700_000_000_000).is_none());
        drain(source.as_mut(), 10).unwrap();
        assert!(clock.since(1_700_000_000_090).is_some());
        assert!(clock.since(1_700_000_000_091).is_none());
    }
}
