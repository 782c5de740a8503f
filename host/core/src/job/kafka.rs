//! Kafka connector settings as job files write them. The connectors themselves live in
//! the `eddy-kafka` crate, so that the engine builds and tests without librdkafka.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::Format;
use super::event_time::EventTimeSpec;
use super::sandbox::OnError;
use super::span::Span;

/// A Kafka source: the partitions of its topics are splits, shared out to the subtasks
/// and read from checkpointed offsets.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaSourceSpec {
    /// Name used in errors and metrics.
    pub name: Option<String>,
    /// `bootstrap.servers`: brokers to connect to first.
    pub bootstrap: String,
    /// Topics to read; their partitions are the source's splits.
    pub topics: Vec<String>,
    /// Consumer group whose offsets `start-from: committed` reads and barriers update
    /// (default `eddy-<job>-<source>`).
    pub group: Option<String>,
    /// Where a partition is first read from, when no checkpoint says.
    #[serde(default)]
    pub start_from: StartFrom,
    /// How record values are read.
    #[serde(default)]
    pub format: Format,
    /// Stop at the offsets that are the latest when the job starts, instead of
    /// reading forever.
    #[serde(default)]
    pub bounded: bool,
    /// How often to look for partitions added to the topics (default 30 s).
    pub partition_discovery: Option<Span>,
    /// Records per second each subtask reads at most; as fast as possible when absent.
    pub max_rate: Option<f64>,
    /// Subtasks; partition `p` of the `i`-th topic goes to subtask `(i + p) % parallelism`.
    pub parallelism: Option<u32>,
    /// Where event time comes from: a JSON field, or the record timestamp when `field`
    /// is left out.
    pub event_time: Option<EventTimeSpec>,
    /// What a malformed record does: fail the job, or go to the dead-letter sink.
    #[serde(default)]
    pub on_error: OnError,
    /// librdkafka properties passed through as they are.
    #[serde(default)]
    pub properties: Properties,
}

/// Where a Kafka source starts reading a partition that no checkpoint has an offset for.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StartFrom {
    /// The oldest record still kept.
    #[default]
    Earliest,
    /// Only records produced after the job started.
    Latest,
    /// The consumer group's committed offsets (earliest where it has none).
    Committed,
    /// The first record whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

/// A Kafka sink: one record per event, keyed by the event's key, with its headers
/// and timestamp.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaSinkSpec {
    /// Name used in errors and metrics.
    pub name: Option<String>,
    /// `bootstrap.servers`: brokers to connect to first.
    pub bootstrap: String,
    /// Topic to write.
    pub topic: String,
    /// What a failure may do to the output.
    #[serde(default)]
    pub guarantee: Guarantee,
    /// Prefix of the transactional ids (default `eddy-<job>-<sink>`); each sink
    /// subtask appends its index. Must be unique per job writing the cluster.
    pub transactional_id_prefix: Option<String>,
    /// A side output to write instead of the main output.
    pub input: Option<String>,
    /// librdkafka properties passed through as they are.
    #[serde(default)]
    pub properties: Properties,
}

/// Delivery guarantees of a Kafka sink, as in Flink.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Each checkpoint's records are committed in one Kafka transaction once the
    /// checkpoint has completed: `read_committed` consumers see every record once.
    ExactlyOnce,
    /// Records are acknowledged by the brokers before a checkpoint completes; a
    /// restart may write some twice.
    #[default]
    AtLeastOnce,
    /// Fire and forget.
    None,
}

/// librdkafka properties, with values that look like secrets hidden when printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties(pub BTreeMap<String, String>);

impl Properties {
    /// Whether property `key` holds a secret that must stay out of logs and errors.
    pub fn is_secret(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        [
            "password",
            "secret",
            "jaas",
            "private",
            "token",
            "key.pem",
            "credentials",
        ]
        .iter()
        .any(|s| key.contains(s))
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if Properties::is_secret(k) { "***" } else { v };
                (k, shown)
            }))
            .finish()
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A property value: YAML writes `linger.ms: 5` as well as `acks: all`.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            Text(String),
            Int(i64),
            Float(f64),
            Bool(bool),
        }
        let map = BTreeMap::<String, Scalar>::deserialize(d)?;
        Ok(Properties(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Scalar::Text(s) => s,
                        Scalar::Int(n) => n.to_string(),
                        Scalar::Float(x) => x.to_string(),
                        Scalar::Bool(b) => b.to_string(),
                    };
                    (k, v)
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_with_defaults_and_secrets_stay_hidden() {
        // Through the job file's source list, as users write it.
        let source: crate::job::SourceSpec = serde_saphyr::from_str(
            "type: kafka\nbootstrap: 127.0.0.1:9092\ntopics: [a]\nstart-from: { timestamp: 1000 }\n\
             properties: { fetch.max.bytes: 1048576, sasl.password: hunter2 }\n",
        )
        .unwrap();
        let crate::job::SourceSpec::Kafka(spec) = source else {
            panic!("not a Kafka source: {source:?}");
        };
        assert_eq!(spec.start_from, StartFrom::Timestamp(1000));
        assert_eq!(spec.properties.0["fetch.max.bytes"], "1048576");
        let shown = format!("{spec:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("***"),
            "{shown}"
        );
        let sink: KafkaSinkSpec =
            serde_saphyr::from_str("bootstrap: b:1\ntopic: out\nguarantee: exactly-once\n")
                .unwrap();
        assert_eq!(sink.guarantee, Guarantee::ExactlyOnce);
        assert!(
            serde_saphyr::from_str::<KafkaSinkSpec>("bootstrap: b\ntopic: t\ntopics: x\n").is_err()
        );
    }
}
