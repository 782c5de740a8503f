//! The `window` step as written: assigner, aggregates, lateness, functions.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

use super::span::Span;

/// The `window` step of a job file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WindowSpec {
    /// Fixed, non-overlapping windows of this size.
    pub tumbling: Option<Span>,
    /// Overlapping windows.
    pub sliding: Option<SlidingSpec>,
    /// Windows that close after a gap without events of their key.
    pub session: Option<SessionSpec>,
    /// One window per key that fires (and starts over) every `count` events.
    pub global: Option<GlobalSpec>,
    /// Output fields and their aggregates, in the order written.
    #[serde(default)]
    pub aggregate: IndexMap<String, AggregateSpec>,
    /// How long after a window fired its late events still update it.
    pub allowed_lateness: Option<Span>,
    /// Side output for events later than the allowed lateness (dropped and counted
    /// when absent).
    pub late_output: Option<String>,
    /// A WASM aggregate function computing one more output field.
    pub function: Option<FunctionSpec>,
    /// A WASM window function computing the window's output from all its events
    /// (instead of aggregates).
    pub process: Option<FunctionSpec>,
    /// `event` time (default) or `processing` time.
    #[serde(default)]
    pub time: TimeDomain,
}

/// Which clock a window follows.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TimeDomain {
    /// The events' timestamps and the watermark.
    #[default]
    Event,
    /// The host's clock when events arrive; windows fire as the clock passes their end.
    Processing,
}

/// A WASM aggregate function of a window.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FunctionSpec {
    /// The component (implementing the `aggregate-plugin` world).
    pub plugin: std::path::PathBuf,
    /// Parameters handed to the plugin as a JSON object.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// The output field holding its result (default `value`).
    #[serde(default = "default_output")]
    pub output: String,
}

fn default_output() -> String {
    "value".into()
}

/// Sliding windows: `size` long, one starting every `slide`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SlidingSpec {
    /// Window length.
    pub size: Span,
    /// Distance between window starts.
    pub slide: Span,
}

/// Session windows.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SessionSpec {
    /// Inactivity that closes a session.
    pub gap: Span,
}

/// A global window with a count trigger.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GlobalSpec {
    /// Events per firing.
    pub count: u64,
}

/// A built-in aggregate: `count`, or `{ sum | avg | min | max: FIELD }`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "RawAggregate")]
pub enum AggregateSpec {
    /// Events in the window.
    Count,
    /// Sum of a numeric field.
    Sum(String),
    /// Average of a numeric field.
    Avg(String),
    /// Smallest value of a numeric field.
    Min(String),
    /// Largest value of a numeric field.
    Max(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawAggregate {
    Name(String),
    Field(BTreeMap<String, String>),
}

impl TryFrom<RawAggregate> for AggregateSpec {
    type Error = String;

    fn try_from(raw: RawAggregate) -> Result<Self, String> {
        let usage = "use `count` or `{ sum | avg | min | max: FIELD }`";
        match raw {
            RawAggregate::Name(n) if n == "count" => Ok(AggregateSpec::Count),
            RawAggregate::Name(n) => Err(format!("unknown aggregate {n:?}: {usage}")),
            RawAggregate::Field(map) => {
                let mut entries = map.into_iter();
                match (entries.next(), entries.next()) {
                    (Some((kind, field)), None) => match kind.as_str() {
                        "sum" => Ok(AggregateSpec::Sum(field)),
                        "avg" => Ok(AggregateSpec::Avg(field)),
                        "min" => Ok(AggregateSpec::Min(field)),
                        "max" => Ok(AggregateSpec::Max(field)),
                        _ => Err(format!("unknown aggregate {kind:?}: {usage}")),
                    },
                    _ => Err(format!("an aggregate has exactly one kind: {usage}")),
                }
            }
        }
    }
}

/// How events map to windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assigner {
    /// Tumbling windows of this size (ms).
    Tumbling(i64),
    /// Sliding windows: size and slide (ms).
    Sliding(i64, i64),
    /// Sessions with this gap (ms).
    Session(i64),
    /// One window per key, fired every this many events.
    Global(u64),
}

impl WindowSpec {
    /// The window assigner, checked.
    pub fn assigner(&self) -> Result<Assigner, String> {
        let positive = |s: Span, what: &str| {
            if s.millis() > 0 {
                Ok(s.millis())
            } else {
                Err(format!("{what} must be above zero"))
            }
        };
        match (&self.tumbling, &self.sliding, &self.session, &self.global) {
            (Some(size), None, None, None) => Ok(Assigner::Tumbling(positive(*size, "tumbling")?)),
            (None, None, None, Some(g)) if g.count > 0 => Ok(Assigner::Global(g.count)),
            (None, None, None, Some(_)) => Err("a global window's count must be above zero".into()),
            (None, Some(s), None, None) => {
                let (size, slide) = (positive(s.size, "size")?, positive(s.slide, "slide")?);
                if size % slide != 0 {
                    return Err("a sliding window's size must be a multiple of its slide".into());
                }
                Ok(Assigner::Sliding(size, slide))
            }
            (None, None, Some(s), None) => Ok(Assigner::Session(positive(s.gap, "gap")?)),
            _ => Err(
                "a window is exactly one of `tumbling`, `sliding`, `session` or `global`".into(),
            ),
        }
    }
}

impl Assigner {
    /// The windows `[start, end)` an event at `ts` belongs to (a session's is its own).
    pub(crate) fn windows(self, ts: i64) -> Vec<(i64, i64)> {
        match self {
            Assigner::Tumbling(size) => {
                let start = ts - ts.rem_euclid(size);
                vec![(start, start + size)]
            }
            Assigner::Sliding(size, slide) => {
                let last = ts - ts.rem_euclid(slide);
                (0..size / slide)
                    .map(|k| last - k * slide)
                    .map(|start| (start, start + size))
                    .collect()
            }
            Assigner::Session(gap) => vec![(ts, ts.saturating_add(gap))],
            Assigner::Global(_) => vec![(i64::MIN, i64::MAX)],
        }
    }
}
