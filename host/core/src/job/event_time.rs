//! A source's `event-time`: the timestamp field and the watermark strategy of its splits.

use serde::Deserialize;

use super::span::Span;

/// Event time of a source: a timestamp field and the watermark strategy of each split.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EventTimeSpec {
    /// JSON field holding the event time in milliseconds since the epoch; left out,
    /// the timestamps the source itself reads (Kafka record timestamps).
    pub field: Option<String>,
    /// How far out of order events may arrive: the watermark trails the largest
    /// timestamp seen by this much (default 0).
    pub max_out_of_orderness: Option<Span>,
    /// After this long without events a split is idle and holds no watermark back.
    pub idle_timeout: Option<Span>,
    /// Read in step with the other splits of an alignment group.
    pub align: Option<AlignSpec>,
}

/// Watermark alignment: the group a source's splits belong to and the drift allowed.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AlignSpec {
    /// Sources naming the same group read in step with each other.
    pub group: String,
    /// How far a split's watermark may run ahead of the slowest active split.
    pub max_drift: Span,
}
