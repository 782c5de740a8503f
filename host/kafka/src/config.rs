//! librdkafka client settings from a connector's spec: the connector's defaults, then
//! the job's properties, then what the connector needs to keep its guarantees.

use eddy_core::job::kafka::Properties;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext};

/// Settings for a client of connector `who`; `required` settings win over the job's.
pub(crate) fn client_config(
    who: &str,
    bootstrap: &str,
    properties: &Properties,
    defaults: &[(&str, &str)],
    required: &[(&str, &str)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in &properties.0 {
        match required.iter().find(|(r, _)| r == key) {
            Some((_, ours)) if ours != value => tracing::warn!(
                "{who}: property {key} must be {ours} for the connector's guarantees; the \
                 job's value is ignored"
            ),
            _ => {
                config.set(key, value);
            }
        }
    }
    for (key, value) in required {
        config.set(*key, *value);
    }
    config
}

/// Logs a client-wide error librdkafka reports: connection trouble, which it retries,
/// as a warning; the end of a partition not at all (sources handle it themselves).
pub(crate) fn report(error: &KafkaError, reason: &str) {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::PartitionEOF) => {}
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::MessageTimedOut,
        ) => tracing::warn!("Kafka: {reason} (retrying)"),
        _ => tracing::error!("Kafka: {}: {reason}", describe(error)),
    }
}

/// The context of the connectors' consumers: errors through [`report`].
pub(crate) struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        report(&error, reason);
    }
}

impl ConsumerContext for Quiet {}

/// A client error as text, without the value of a secret property.
pub(crate) fn describe(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, _, key, _) if Properties::is_secret(key) => {
            format!("invalid client configuration: property {key} (value hidden)")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connector_keeps_what_its_guarantees_need_and_hides_secrets() {
        let mut props = Properties::default();
        props.0.insert("enable.auto.commit".into(), "true".into());
        props.0.insert("linger.ms".into(), "7".into());
        let config = client_config(
            "test",
            "b:1",
            &props,
            &[("linger.ms", "1")],
            &[("enable.auto.commit", "false")],
        );
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("linger.ms"), Some("7"));
        let mut bad = ClientConfig::new();
        bad.set("sasl.password", "hunter2")
            .set("no.such.property", "x");
        let err = bad
            .create::<rdkafka::producer::BaseProducer>()
            .err()
            .map(|e| describe(&e))
            .unwrap_or_default();
        assert!(!err.contains("hunter2"), "{err}");
        let mut secret = ClientConfig::new();
        secret
            .set("ssl.key.password", "hunter2")
            .set("ssl.key.location", "/nonexistent");
        let err = secret
            .create::<rdkafka::producer::BaseProducer>()
            .err()
            .map(|e| describe(&e))
            .unwrap_or_default();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
