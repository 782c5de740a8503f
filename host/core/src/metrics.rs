//! Metrics of a running job: counters per node and subtask, updated by the tasks
//! without locks, read by the live status line, the summary and the Prometheus
//! endpoint ([`Exposition`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::memory::Pools;

mod exposition;

pub use exposition::{CONTENT_TYPE, Exposition, PATH};

/// How a job's checkpoints go, for the summary and Prometheus.
#[derive(Debug, Default)]
pub struct CheckpointCounters {
    /// Checkpoints completed.
    pub completed: AtomicU64,
    /// Checkpoints abandoned (not acknowledged in time).
    pub abandoned: AtomicU64,
    /// Id of the last completed checkpoint.
    pub last_id: AtomicU64,
    /// Trigger to completion of the last one, in ms.
    pub last_duration_ms: AtomicU64,
    /// Bytes of the last one's files (shared RocksDB files counted in full).
    pub last_size_bytes: AtomicU64,
    /// The latest checkpoints and savepoints, oldest first, at most [`HISTORY`].
    history: Mutex<VecDeque<CheckpointRecord>>,
}

/// Checkpoints and savepoints a job's history keeps.
pub const HISTORY: usize = 64;

/// One checkpoint or savepoint that completed or was abandoned, for the history an
/// operator looks at.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckpointRecord {
    /// Its id.
    pub id: u64,
    /// Whether a user asked for it (a savepoint).
    pub savepoint: bool,
    /// Whether it completed (else it was abandoned).
    pub completed: bool,
    /// When it was triggered, in ms since the Unix epoch.
    pub trigger_ms: u64,
    /// Trigger to completion (or abandonment), in ms.
    pub duration_ms: u64,
    /// Bytes of its files (0 when abandoned).
    pub size_bytes: u64,
}

impl CheckpointCounters {
    /// Adds `record` to the history, forgetting the oldest beyond [`HISTORY`].
    pub fn record(&self, record: CheckpointRecord) {
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(record);
    }

    /// The history, oldest first.
    pub fn history(&self) -> Vec<CheckpointRecord> {
        let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history.iter().cloned().collect()
    }
}

/// What [`Counters::watermark`] holds before the first watermark.
pub const NO_WATERMARK: i64 = i64::MIN;

/// The counters of one node subtask.
#[derive(Debug)]
pub struct Counters {
    /// Events received.
    pub records_in: AtomicU64,
    /// Events emitted.
    pub records_out: AtomicU64,
    /// Bytes emitted.
    pub bytes_out: AtomicU64,
    /// Nanoseconds spent working.
    pub busy_ns: AtomicU64,
    /// Nanoseconds spent blocked on a full channel downstream.
    pub backpressure_ns: AtomicU64,
    /// Events sent to the dead-letter sink.
    pub dead_letters: AtomicU64,
    /// Late events within the allowed lateness, which updated a fired window.
    pub late_updates: AtomicU64,
    /// Events later than the allowed lateness (to the late side output, or dropped).
    pub late_dropped: AtomicU64,
    /// The event time the subtask has reached, in ms ([`NO_WATERMARK`] before any).
    pub watermark: AtomicI64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            records_in: AtomicU64::default(),
            records_out: AtomicU64::default(),
            bytes_out: AtomicU64::default(),
            busy_ns: AtomicU64::default(),
            backpressure_ns: AtomicU64::default(),
            dead_letters: AtomicU64::default(),
            late_updates: AtomicU64::default(),
            late_dropped: AtomicU64::default(),
            watermark: AtomicI64::new(NO_WATERMARK),
        }
    }
}

impl Counters {
    /// Adds one call's worth of counts.
    pub fn record(&self, records_in: usize, records_out: usize, bytes_out: usize, busy: Duration) {
        self.records_in
            .fetch_add(records_in as u64, Ordering::Relaxed);
        self.records_out
            .fetch_add(records_out as u64, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(bytes_out as u64, Ordering::Relaxed);
        self.busy_ns
            .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Adds time blocked by backpressure.
    pub fn blocked(&self, waited: Duration) {
        self.backpressure_ns
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The counters of one sandboxed plugin instance: what it cost and how it behaved.
#[derive(Debug, Default)]
pub struct PluginCounters {
    /// Calls into the instance.
    pub calls: AtomicU64,
    /// Nanoseconds spent inside calls.
    pub cpu_ns: AtomicU64,
    /// Fuel burnt, when metering is on.
    pub fuel: AtomicU64,
    /// Most linear memory the instance held, in bytes.
    pub memory_peak: AtomicU64,
    /// Traps (panics, deadlines, limits).
    pub traps: AtomicU64,
    /// What the plugin itself reported through `counter-add` and `gauge-set`.
    pub reported: ReportedMetrics,
}

/// Most distinct counter and gauge names one plugin instance may report: the names come
/// from sandboxed code, and every one becomes a series on the Prometheus endpoint.
pub const MAX_REPORTED_NAMES: usize = 256;

/// Longest metric name a plugin may report, in bytes.
pub const MAX_REPORTED_NAME_LEN: usize = 128;

/// The counters and gauges a plugin reported, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PluginMetrics {
    /// Counters by name.
    pub counters: BTreeMap<String, u64>,
    /// Gauges by name.
    pub gauges: BTreeMap<String, f64>,
}

impl PluginMetrics {
    fn admits(&self, name: &str) -> bool {
        name.len() <= MAX_REPORTED_NAME_LEN
            && self.counters.len() + self.gauges.len() < MAX_REPORTED_NAMES
    }
}

/// Metrics a plugin instance reports through the host imports `counter-add` and
/// `gauge-set`: written by the instance's task, read by the summary and Prometheus.
#[derive(Debug, Default)]
pub struct ReportedMetrics {
    values: Mutex<PluginMetrics>,
    /// Updates refused because of a new name beyond [`MAX_REPORTED_NAMES`] or longer
    /// than [`MAX_REPORTED_NAME_LEN`].
    pub refused: AtomicU64,
}

impl ReportedMetrics {
    fn values(&self) -> MutexGuard<'_, PluginMetrics> {
        // The map stays consistent even if a holder panicked: every update is one insert.
        self.values.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Merges `value` into entry `name` of the map `pick` selects, or adds the entry
    /// if the limits admit it; false if they did not.
    fn update<T>(
        &self,
        name: &str,
        pick: fn(&mut PluginMetrics) -> &mut BTreeMap<String, T>,
        value: T,
        merge: fn(&mut T, T),
    ) -> bool {
        let mut values = self.values();
        let admitted = values.admits(name);
        let map = pick(&mut values);
        if let Some(old) = map.get_mut(name) {
            merge(old, value);
            return true;
        }
        if !admitted {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        map.insert(name.to_owned(), value);
        true
    }

    /// Adds `delta` to counter `name` (saturating); false if the name was refused.
    pub fn counter_add(&self, name: &str, delta: u64) -> bool {
        self.update(
            name,
            |m| &mut m.counters,
            delta,
            |c, d| *c = c.saturating_add(d),
        )
    }

    /// Sets gauge `name` to `value`; false if the name was refused.
    pub fn gauge_set(&self, name: &str, value: f64) -> bool {
        self.update(name, |m| &mut m.gauges, value, |g, v| *g = v)
    }

    /// A copy of what was reported so far.
    pub fn snapshot(&self) -> PluginMetrics {
        self.values().clone()
    }
}

/// A plugin instance's counters with where it runs.
#[derive(Debug)]
pub struct PluginEntry {
    /// The step.
    pub step: String,
    /// The component file name.
    pub plugin: String,
    /// The subtask.
    pub subtask: u32,
    /// Its counters.
    pub counters: Arc<PluginCounters>,
}

/// What a node is in the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A source.
    Source,
    /// A step.
    Step,
    /// A sink.
    Sink,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Step => "step",
            Role::Sink => "sink",
        }
    }
}

/// One node (source, step or sink) with its subtasks' counters.
#[derive(Debug)]
pub struct NodeMetrics {
    /// Name in the job.
    pub name: String,
    /// What it is.
    pub role: Role,
    /// Per subtask.
    pub subtasks: Vec<Arc<Counters>>,
}

/// Totals of one node over its subtasks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeTotals {
    /// Name in the job.
    pub name: String,
    /// Events received.
    pub records_in: u64,
    /// Events emitted.
    pub records_out: u64,
    /// Bytes emitted.
    pub bytes_out: u64,
    /// Time spent working, over all subtasks.
    pub busy: Duration,
    /// Time blocked by backpressure, over all subtasks.
    pub backpressure: Duration,
    /// Events sent to the dead-letter sink.
    pub dead_letters: u64,
    /// Late events that updated a fired window.
    pub late_updates: u64,
    /// Events beyond the allowed lateness.
    pub late_dropped: u64,
    /// The lowest event time its subtasks have reached, once every one has a watermark.
    pub watermark: Option<i64>,
}

/// All metrics of a job.
#[derive(Debug)]
pub struct JobMetrics {
    /// Name of the job.
    pub job: String,
    /// The tenant it runs for.
    pub tenant: String,
    /// Every node.
    pub nodes: Vec<NodeMetrics>,
    /// Every plugin instance.
    pub plugins: Vec<PluginEntry>,
    /// The memory pools.
    pub pools: Arc<Pools>,
    /// When the job started.
    pub started: Instant,
    /// Checkpoint progress.
    pub checkpoints: Arc<CheckpointCounters>,
}

impl JobMetrics {
    /// Totals of every node of `role`.
    pub fn totals(&self, role: Role) -> Vec<NodeTotals> {
        let sum = |c: &Vec<Arc<Counters>>, f: fn(&Counters) -> &AtomicU64| {
            c.iter().map(|c| f(c).load(Ordering::Relaxed)).sum::<u64>()
        };
        self.nodes
            .iter()
            .filter(|n| n.role == role)
            .map(|n| NodeTotals {
                name: n.name.clone(),
                records_in: sum(&n.subtasks, |c| &c.records_in),
                records_out: sum(&n.subtasks, |c| &c.records_out),
                bytes_out: sum(&n.subtasks, |c| &c.bytes_out),
                busy: Duration::from_nanos(sum(&n.subtasks, |c| &c.busy_ns)),
                backpressure: Duration::from_nanos(sum(&n.subtasks, |c| &c.backpressure_ns)),
                dead_letters: sum(&n.subtasks, |c| &c.dead_letters),
                late_updates: sum(&n.subtasks, |c| &c.late_updates),
                late_dropped: sum(&n.subtasks, |c| &c.late_dropped),
                watermark: n
                    .subtasks
                    .iter()
                    .map(|c| c.watermark.load(Ordering::Relaxed))
                    .min()
                    .filter(|w| *w != NO_WATERMARK),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_metrics_add_set_and_bound_their_names() {
        let reported = ReportedMetrics::default();
        assert!(reported.counter_add("words", 3));
        assert!(reported.counter_add("words", u64::MAX));
        assert!(reported.gauge_set("ratio", 0.5));
        assert!(reported.gauge_set("ratio", 0.25));
        let values = reported.snapshot();
        assert_eq!(values.counters["words"], u64::MAX, "counters saturate");
        assert_eq!(values.gauges["ratio"], 0.25);

        assert!(!reported.counter_add(&"x".repeat(MAX_REPORTED_NAME_LEN + 1), 1));
        for i in 2..MAX_REPORTED_NAMES {
            assert!(reported.counter_add(&format!("c{i}"), 1), "name {i}");
        }
        assert!(!reported.counter_add("one-too-many", 1));
        assert!(!reported.gauge_set("one-too-many", 1.0));
        // Names already known still update.
        assert!(reported.counter_add("words", 1));
        assert!(reported.gauge_set("ratio", 2.0));
        let values = reported.snapshot();
        assert_eq!(
            values.counters.len() + values.gauges.len(),
            MAX_REPORTED_NAMES
        );
        assert_eq!(reported.refused.load(Ordering::Relaxed), 3);
    }
}
