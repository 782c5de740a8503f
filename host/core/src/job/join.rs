//! The `join` step as written: two sides, and a window or an interval.

use serde::Deserialize;

use super::span::Span;
use super::window::{Assigner, WindowSpec};

/// One side of a join: a source and the JSON field it joins on.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct JoinSide {
    /// Name of the source feeding this side.
    pub source: String,
    /// Field (dotted path) whose value must be equal on both sides.
    pub key: String,
}

/// An interval: the right event's time minus the left event's within `[lower, upper]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IntervalSpec {
    /// Lower bound (may be negative: `-5s`).
    pub lower: SignedSpan,
    /// Upper bound.
    pub upper: SignedSpan,
}

/// A duration that may be negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedSpan(pub i64);

impl<'de> Deserialize<'de> for SignedSpan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (sign, rest) = match text.trim().strip_prefix('-') {
            Some(rest) => (-1, rest.to_owned()),
            None => (1, text.trim().to_owned()),
        };
        Span::parse(&rest)
            .map(|s| SignedSpan(sign * s.millis()))
            .map_err(serde::de::Error::custom)
    }
}

/// The `join` step of a job file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct JoinSpec {
    /// The left stream.
    pub left: JoinSide,
    /// The right stream.
    pub right: JoinSide,
    /// Window join: pairs within the same window (tumbling, sliding or session).
    pub window: Option<Box<WindowSpec>>,
    /// Interval join: pairs whose times are close enough.
    pub interval: Option<IntervalSpec>,
}

impl JoinSpec {
    /// Checks that the join is exactly one kind, and returns its window assigner if any.
    pub fn check(&self) -> Result<Option<Assigner>, String> {
        match (&self.window, &self.interval) {
            (Some(w), None) => match w.assigner()? {
                a @ (Assigner::Tumbling(_) | Assigner::Sliding(..)) => Ok(Some(a)),
                _ => Err("a window join takes a tumbling or sliding window".into()),
            },
            (None, Some(i)) if i.lower.0 <= i.upper.0 => Ok(None),
            (None, Some(_)) => {
                Err("an interval's lower bound must not exceed its upper one".into())
            }
            _ => Err("a join has exactly one of `window` or `interval`".into()),
        }
    }
}
