//! Eddy's Kafka connectors, kept out of the engine core so that only the binary links
//! librdkafka: a source whose partitions are checkpointed splits, and a sink that
//! writes at least once or, through transactions, exactly once.
//!
//! [`Kafka`] is the connector of `type: kafka` sources and sinks; the binary adds it
//! to its registry.

mod config;
mod sink;
mod source;

use eddy_core::connectors::{Connector, Opening};
use eddy_core::job::{SinkSpec, SourceSpec};
use eddy_core::sink::{Connected, SinkError, commit_restored};
use eddy_core::source::{Source, SourceError};

/// The `kafka` connector.
pub struct Kafka;

impl Connector for Kafka {
    fn source(&self, at: &Opening<'_>, spec: &SourceSpec) -> Result<Box<dyn Source>, SourceError> {
        let SourceSpec::Kafka(kafka) = spec else {
            return Err(SourceError::fatal(at.name, "not a kafka source"));
        };
        let source = source::KafkaSource::open(&at.job.name, at.name, kafka, at.subtask)?;
        Ok(Box::new(source))
    }

    fn sink(&self, at: &Opening<'_>, spec: &SinkSpec) -> Result<Connected, SinkError> {
        let SinkSpec::Kafka(kafka) = spec else {
            let error = std::io::Error::new(std::io::ErrorKind::Unsupported, "not a kafka sink");
            return Err(SinkError::new(
                at.name,
                std::path::Path::new(at.name),
                error,
            ));
        };
        commit_restored(sink::connect(at.job, at.name, kafka)?, at.restored)
    }
}
