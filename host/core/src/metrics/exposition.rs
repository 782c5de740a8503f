//! Every running job's metrics as one OpenMetrics exposition, encoded by the
//! `prometheus-client` crate from the live counters on each scrape: jobs publish their
//! [`JobMetrics`] once per attempt, and a scrape reads whatever each job published last.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{Counters, JobMetrics, PluginCounters, PluginEntry};
use crate::http::{Response, Router};
use crate::memory::MemoryPool;

/// The `Content-Type` of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The path the exposition is served on.
pub const PATH: &str = "/metrics";

/// The jobs whose metrics a process exposes, by job name.
#[derive(Debug, Default)]
struct Jobs(RwLock<BTreeMap<String, Arc<JobMetrics>>>);

impl Jobs {
    fn all(&self) -> Vec<Arc<JobMetrics>> {
        // A panic while holding the lock cannot leave the map half-updated.
        let jobs = self.0.read().unwrap_or_else(PoisonError::into_inner);
        jobs.values().cloned().collect()
    }
}

/// What a process's `/metrics` route serves: the metrics each job published last.
#[derive(Debug)]
pub struct Exposition {
    jobs: Arc<Jobs>,
    registry: Registry,
}

impl Default for Exposition {
    fn default() -> Self {
        let jobs = Arc::new(Jobs::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(jobs.clone()));
        Exposition { jobs, registry }
    }
}

impl Exposition {
    /// Serves `metrics` as job `job`'s from now on, replacing what an earlier attempt
    /// of the job published.
    pub fn publish(&self, job: &str, metrics: Arc<JobMetrics>) {
        let mut jobs = self.jobs.0.write().unwrap_or_else(PoisonError::into_inner);
        jobs.insert(job.to_owned(), metrics);
    }

    /// The current values of every published job, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and the collector reports no errors of its own.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("cannot encode the metrics: {e}");
        }
        out
    }

    /// `router` with [`PATH`] answering scrapes of this exposition.
    pub fn mount(self: &Arc<Self>, router: Router) -> Router {
        let exposition = self.clone();
        router.get(PATH, move |_| {
            Response::ok(CONTENT_TYPE, exposition.encode())
        })
    }
}

/// One sample's value.
#[derive(Clone, Copy)]
enum Value {
    /// A count.
    Count(u64),
    /// Nanoseconds, exposed as seconds.
    Nanos(u64),
    /// Any real number.
    Real(f64),
}

/// Label names and values of one sample.
type Labels = Vec<(&'static str, String)>;

/// One metric family with its samples.
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, unit: Option<Unit>, kind: MetricType) -> Self {
        Family {
            name,
            help,
            unit,
            kind,
            samples: Vec::new(),
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric =
            encoder.encode_descriptor(self.name, self.help, self.unit.as_ref(), self.kind)?;
        for (labels, value) in &self.samples {
            let mut sample = metric.encode_family(labels)?;
            match (self.kind, *value) {
                (MetricType::Counter, Value::Count(v)) => {
                    sample.encode_counter::<NoLabelSet, _, u64>(&v, None)?
                }
                (MetricType::Counter, Value::Nanos(ns)) => {
                    sample.encode_counter::<NoLabelSet, _, f64>(&(ns as f64 / 1e9), None)?
                }
                (MetricType::Counter, Value::Real(v)) => {
                    sample.encode_counter::<NoLabelSet, _, f64>(&v, None)?
                }
                (_, Value::Count(v)) => sample.encode_gauge(&v)?,
                (_, Value::Nanos(ns)) => sample.encode_gauge(&(ns as f64 / 1e9))?,
                (_, Value::Real(v)) => sample.encode_gauge(&v)?,
            }
        }
        Ok(())
    }
}

fn job_labels(job: &JobMetrics) -> Labels {
    vec![("tenant", job.tenant.clone()), ("job", job.job.clone())]
}

fn plugin_labels(job: &JobMetrics, p: &PluginEntry) -> Labels {
    let mut labels = job_labels(job);
    labels.extend([
        ("step", p.step.clone()),
        ("plugin", p.plugin.clone()),
        ("subtask", p.subtask.to_string()),
    ]);
    labels
}

/// A family with one sample per node subtask of every job.
fn nodes(
    jobs: &[Arc<JobMetrics>],
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    read: fn(&Counters) -> Value,
) -> Family {
    let mut family = Family::new(name, help, unit, MetricType::Counter);
    for job in jobs {
        for node in &job.nodes {
            for (i, c) in node.subtasks.iter().enumerate() {
                let mut labels = job_labels(job);
                labels.extend([
                    (node.role.as_str(), node.name.clone()),
                    ("subtask", i.to_string()),
                ]);
                family.samples.push((labels, read(c)));
            }
        }
    }
    family
}

/// A family with one sample per plugin instance of every job.
fn plugins(
    jobs: &[Arc<JobMetrics>],
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    read: fn(&PluginCounters) -> Value,
) -> Family {
    let mut family = Family::new(name, help, unit, kind);
    for job in jobs {
        for p in &job.plugins {
            family
                .samples
                .push((plugin_labels(job, p), read(&p.counters)));
        }
    }
    family
}

/// A family with one sample per job.
fn per_job(
    jobs: &[Arc<JobMetrics>],
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    read: fn(&JobMetrics) -> Value,
) -> Family {
    let mut family = Family::new(name, help, unit, kind);
    for job in jobs {
        family.samples.push((job_labels(job), read(job)));
    }
    family
}

/// A gauge family with one sample per memory pool of every job.
fn pools(
    jobs: &[Arc<JobMetrics>],
    name: &'static str,
    help: &'static str,
    read: fn(&MemoryPool) -> usize,
) -> Family {
    let mut family = Family::new(name, help, Some(Unit::Bytes), MetricType::Gauge);
    for job in jobs {
        for pool in job.pools.all() {
            let mut labels = job_labels(job);
            labels.push(("pool", pool.name().to_owned()));
            family
                .samples
                .push((labels, Value::Count(read(pool) as u64)));
        }
    }
    family
}

/// The counters and gauges the plugins reported themselves, labelled with their names.
fn reported(jobs: &[Arc<JobMetrics>]) -> [Family; 2] {
    let mut counters = Family::new(
        "eddy_plugin_counter",
        "A counter a plugin reported through counter-add",
        None,
        MetricType::Counter,
    );
    let mut gauges = Family::new(
        "eddy_plugin_gauge",
        "A gauge a plugin reported through gauge-set",
        None,
        MetricType::Gauge,
    );
    for job in jobs {
        for p in &job.plugins {
            let values = p.counters.reported.snapshot();
            for (name, value) in values.counters {
                let mut labels = plugin_labels(job, p);
                labels.push(("metric", name));
                counters.samples.push((labels, Value::Count(value)));
            }
            for (name, value) in values.gauges {
                let mut labels = plugin_labels(job, p);
                labels.push(("metric", name));
                gauges.samples.push((labels, Value::Real(value)));
            }
        }
    }
    [counters, gauges]
}

fn load(counter: &std::sync::atomic::AtomicU64) -> Value {
    Value::Count(counter.load(Ordering::Relaxed))
}

impl Collector for Jobs {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let jobs = self.all();
        let jobs = &jobs[..];
        let families = [
            nodes(jobs, "eddy_records_in", "Events received", None, |c| {
                load(&c.records_in)
            }),
            nodes(jobs, "eddy_records_out", "Events emitted", None, |c| {
                load(&c.records_out)
            }),
            nodes(jobs, "eddy_bytes_out", "Bytes emitted", None, |c| {
                load(&c.bytes_out)
            }),
            nodes(
                jobs,
                "eddy_busy",
                "Time spent working",
                Some(Unit::Seconds),
                |c| Value::Nanos(c.busy_ns.load(Ordering::Relaxed)),
            ),
            nodes(
                jobs,
                "eddy_backpressure",
                "Time blocked on a full channel downstream",
                Some(Unit::Seconds),
                |c| Value::Nanos(c.backpressure_ns.load(Ordering::Relaxed)),
            ),
            nodes(
                jobs,
                "eddy_dead_letters",
                "Events sent to the dead-letter sink",
                None,
                |c| load(&c.dead_letters),
            ),
            nodes(
                jobs,
                "eddy_late_updates",
                "Late events within the allowed lateness, which updated a fired window",
                None,
                |c| load(&c.late_updates),
            ),
            nodes(
                jobs,
                "eddy_late_dropped",
                "Events later than the allowed lateness",
                None,
                |c| load(&c.late_dropped),
            ),
            plugins(
                jobs,
                "eddy_plugin_calls",
                "Calls into the plugin instance",
                None,
                Counter,
                |c| load(&c.calls),
            ),
            plugins(
                jobs,
                "eddy_plugin_cpu",
                "Time spent inside calls",
                Some(Unit::Seconds),
                Counter,
                |c| Value::Nanos(c.cpu_ns.load(Ordering::Relaxed)),
            ),
            plugins(
                jobs,
                "eddy_plugin_fuel",
                "Fuel burnt, when metering is on",
                None,
                Counter,
                |c| load(&c.fuel),
            ),
            plugins(
                jobs,
                "eddy_plugin_memory_peak",
                "Most linear memory the instance held",
                Some(Unit::Bytes),
                Gauge,
                |c| load(&c.memory_peak),
            ),
            plugins(
                jobs,
                "eddy_plugin_traps",
                "Traps: panics, deadlines, limits",
                None,
                Counter,
                |c| load(&c.traps),
            ),
            plugins(
                jobs,
                "eddy_plugin_metrics_refused",
                "Metric updates refused for a name beyond the instance's limits",
                None,
                Counter,
                |c| load(&c.reported.refused),
            ),
            per_job(
                jobs,
                "eddy_checkpoints_completed",
                "Checkpoints completed",
                None,
                Counter,
                |j| load(&j.checkpoints.completed),
            ),
            per_job(
                jobs,
                "eddy_checkpoints_abandoned",
                "Checkpoints abandoned (not acknowledged in time)",
                None,
                Counter,
                |j| load(&j.checkpoints.abandoned),
            ),
            per_job(
                jobs,
                "eddy_checkpoint_last_id",
                "Id of the last completed checkpoint",
                None,
                Gauge,
                |j| load(&j.checkpoints.last_id),
            ),
            per_job(
                jobs,
                "eddy_checkpoint_last_duration",
                "Trigger to completion of the last checkpoint",
                Some(Unit::Seconds),
                Gauge,
                |j| {
                    let ms = j.checkpoints.last_duration_ms.load(Ordering::Relaxed);
                    Value::Real(ms as f64 / 1e3)
                },
            ),
            per_job(
                jobs,
                "eddy_checkpoint_last_size",
                "Bytes of the last checkpoint's files",
                Some(Unit::Bytes),
                Gauge,
                |j| load(&j.checkpoints.last_size_bytes),
            ),
            pools(jobs, "eddy_pool_used", "Bytes in use", MemoryPool::used),
            pools(
                jobs,
                "eddy_pool_peak",
                "Most bytes in use",
                MemoryPool::peak,
            ),
            pools(
                jobs,
                "eddy_pool_capacity",
                "Bytes the pool holds",
                MemoryPool::capacity,
            ),
        ];
        for family in families.iter().chain(&reported(jobs)) {
            family.encode(&mut encoder)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::memory::MemorySpec;
    use crate::memory::Pools;
    use crate::metrics::{CheckpointCounters, NodeMetrics, Role};
    use std::time::Instant;

    fn job(name: &str, records_out: u64) -> Arc<JobMetrics> {
        let counters = Arc::new(Counters::default());
        counters.records_out.store(records_out, Ordering::Relaxed);
        counters.busy_ns.store(1_500_000_000, Ordering::Relaxed);
        let plugin = Arc::new(PluginCounters::default());
        plugin.calls.store(7, Ordering::Relaxed);
        assert!(plugin.reported.counter_add("orders \"big\"", 3));
        assert!(plugin.reported.counter_add("orders \"big\"", 2));
        assert!(plugin.reported.gauge_set("ratio", 0.25));
        Arc::new(JobMetrics {
            job: name.into(),
            tenant: "acme".into(),
            nodes: vec![NodeMetrics {
                name: "to-eur".into(),
                role: Role::Step,
                subtasks: vec![Arc::new(Counters::default()), counters],
            }],
            plugins: vec![PluginEntry {
                step: "to-eur".into(),
                plugin: "currency_convert.wasm".into(),
                subtask: 1,
                counters: plugin,
            }],
            pools: Arc::new(Pools::new(
                &MemorySpec::default().budget().expect("default budget"),
            )),
            started: Instant::now(),
            checkpoints: Arc::new(CheckpointCounters::default()),
        })
    }

    #[test]
    fn counters_gauges_and_plugin_metrics_are_exposed_with_their_labels() {
        let exposition = Exposition::default();
        exposition.publish("orders", job("orders", 42));
        let text = exposition.encode();
        for line in [
            "# TYPE eddy_records_out counter",
            "eddy_records_out_total{tenant=\"acme\",job=\"orders\",step=\"to-eur\",subtask=\"1\"} 42",
            "eddy_records_out_total{tenant=\"acme\",job=\"orders\",step=\"to-eur\",subtask=\"0\"} 0",
            "# UNIT eddy_busy_seconds seconds",
            "eddy_busy_seconds_total{tenant=\"acme\",job=\"orders\",step=\"to-eur\",subtask=\"1\"} 1.5",
            "eddy_plugin_calls_total{tenant=\"acme\",job=\"orders\",step=\"to-eur\",plugin=\"currency_convert.wasm\",subtask=\"1\"} 7",
            "# TYPE eddy_plugin_memory_peak_bytes gauge",
            "# TYPE eddy_plugin_counter counter",
            "eddy_plugin_counter_total{tenant=\"acme\",job=\"orders\",step=\"to-eur\",plugin=\"currency_convert.wasm\",subtask=\"1\",metric=\"orders \\\"big\\\"\"} 5",
            "# TYPE eddy_plugin_gauge gauge",
            "eddy_plugin_gauge{tenant=\"acme\",job=\"orders\",step=\"to-eur\",plugin=\"currency_convert.wasm\",subtask=\"1\",metric=\"ratio\"} 0.25",
            "eddy_checkpoints_completed_total{tenant=\"acme\",job=\"orders\"} 0",
            "# TYPE eddy_pool_capacity_bytes gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(
            text.lines().any(|l| l.starts_with(
                "eddy_pool_capacity_bytes{tenant=\"acme\",job=\"orders\",pool=\"network\"} "
            )),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        // Every family is described once.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let unique: std::collections::HashSet<&&str> = types.iter().collect();
        assert_eq!(types.len(), unique.len(), "{text}");
    }

    #[test]
    fn publishing_again_replaces_a_jobs_metrics_and_keeps_the_others() {
        let exposition = Exposition::default();
        exposition.publish("orders", job("orders", 42));
        exposition.publish("clicks", job("clicks", 5));
        exposition.publish("orders", job("orders", 1));
        let text = exposition.encode();
        let out = |job: &str, n: u64| {
            format!(
                "eddy_records_out_total{{tenant=\"acme\",job=\"{job}\",step=\"to-eur\",subtask=\"1\"}} {n}"
            )
        };
        assert!(text.lines().any(|l| l == out("orders", 1)), "{text}");
        assert!(!text.lines().any(|l| l == out("orders", 42)), "{text}");
        assert!(text.lines().any(|l| l == out("clicks", 5)), "{text}");
        assert_eq!(
            text.lines()
                .filter(|l| *l == "# TYPE eddy_records_out counter")
                .count(),
            1
        );
    }

    #[test]
    fn the_route_serves_the_exposition() {
        let exposition = Arc::new(Exposition::default());
        exposition.publish("orders", job("orders", 42));
        let router = exposition.mount(Router::default());
        let response = router.handle(&crate::http::Request::get(PATH));
        assert_eq!(response.status, 200);
        assert_eq!(response.content_type, CONTENT_TYPE);
        let body = String::from_utf8(response.body).expect("utf-8");
        assert_eq!(body, exposition.encode());
    }
}
