//! End-to-end latency of a benchmark run: the sources note when (on the wall clock)
//! they first reach each millisecond of event time, and a sink measures a row against
//! the moment its timestamp was produced. Off unless a benchmark builds its dataflow
//! with a clock (`BuildOptions::latency`), which the sources and digest sinks share.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When the sources first reached each millisecond of event time.
#[derive(Debug)]
pub struct EventClock {
    started: Instant,
    /// Event time of slot 0.
    base: i64,
    /// Wall-clock µs since `started` + 1 (0: not reached yet), per ms of event time.
    slots: Vec<AtomicU64>,
    /// The highest slot filled so far.
    reached: AtomicI64,
}

impl EventClock {
    /// A clock measuring event times `base .. base + span_ms`, starting now.
    pub fn new(base: i64, span_ms: usize) -> Self {
        EventClock {
            started: Instant::now(),
            base,
            slots: (0..span_ms).map(|_| AtomicU64::new(0)).collect(),
            reached: AtomicI64::new(-1),
        }
    }

    /// A source produced events up to event time `timestamp`.
    pub fn reached(&self, timestamp: i64) {
        let last = timestamp
            .saturating_sub(self.base)
            .min(self.slots.len() as i64 - 1);
        let before = self.reached.fetch_max(last, Ordering::Relaxed);
        if last <= before {
            return;
        }
        let now = self.started.elapsed().as_micros() as u64 + 1;
        for slot in &self.slots[(before + 1).max(0) as usize..=last as usize] {
            let _ = slot.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// How long ago the sources reached event time `timestamp`.
    pub fn since(&self, timestamp: i64) -> Option<Duration> {
        let slot = self
            .slots
            .get(usize::try_from(timestamp.saturating_sub(self.base)).ok()?)?;
        let at = slot.load(Ordering::Relaxed).checked_sub(1)?;
        let now = self.started.elapsed().as_micros() as u64;
        Some(Duration::from_micros(now.saturating_sub(at)))
    }
}

/// Sub-buckets per power of two: values are kept to within 1/16 (6%).
const SUB: u32 = 16;

/// A histogram of durations in µs, log-linear, for percentiles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
}

impl Histogram {
    fn bucket(us: u64) -> usize {
        if us < u64::from(SUB) {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros();
        let shift = exp - SUB.trailing_zeros();
        let mantissa = (us >> shift) as u32 - SUB;
        ((shift + 1) * SUB + mantissa) as usize
    }

    fn lower_bound(bucket: usize) -> u64 {
        let b = bucket as u32;
        if b < SUB {
            return u64::from(b);
        }
        let shift = b / SUB - 1;
        u64::from(SUB + b % SUB) << shift
    }

    /// Counts one duration.
    pub fn record(&mut self, d: Duration) {
        let b = Self::bucket(d.as_micros().min(u128::from(u64::MAX)) as u64);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
    }

    /// How many durations were counted.
    pub fn samples(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The duration below which a fraction `q` of the samples lie.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.samples();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_micros(Self::lower_bound(b)));
            }
        }
        None
    }

    /// The non-empty buckets, for a checkpoint.
    pub fn buckets(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, c)| (b, *c))
    }

    /// Adds `count` samples to bucket `bucket` (from [`Histogram::buckets`]).
    pub fn add_bucket(&mut self, bucket: usize, count: u64) {
        if self.counts.len() <= bucket {
            self.counts.resize(bucket + 1, 0);
        }
        self.counts[bucket] += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_a_sixteenth() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap().as_micros() as f64;
        let p99 = h.quantile(0.99).unwrap().as_micros() as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 1.0 / 16.0, "{p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 1.0 / 16.0, "{p99}");
        for us in [0, 1, 15, 16, 17, 31, 32, 1000, 123_456_789] {
            let b = Histogram::bucket(us);
            assert!(Histogram::lower_bound(b) <= us, "{us}");
            assert!(Histogram::lower_bound(b + 1) > us, "{us}");
        }
    }

    #[test]
    fn the_clock_remembers_when_event_time_was_first_reached() {
        let clock = EventClock::new(1000, 10);
        assert_eq!(clock.since(1003), None);
        clock.reached(1004);
        assert!(clock.since(1003).is_some());
        assert!(clock.since(1005).is_none());
        clock.reached(2000);
        assert!(clock.since(1009).is_some());
        assert!(clock.since(999).is_none());
    }
}
