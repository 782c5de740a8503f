//! Connectors: where a job's events come from and where they go, one per `type:` of a
//! job file's sources and sinks. [`Connectors`] finds each by its type. The built-in
//! ones (one file each here) are always there; the binary adds those of leaf crates
//! (`plugin` from the WASM runtime, `kafka`), so that the core links neither.

pub mod digest;
pub mod file;
pub mod generator;
pub mod stdio;
pub mod timed;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::job::{Job, SinkSpec, SourceSpec};
use crate::latency::EventClock;
use crate::sink::{Connected, SinkError};
use crate::source::{Source, SourceError};

/// What a connector opening a source subtask or a sink is given besides its spec.
pub struct Opening<'a> {
    /// The job the source or sink belongs to.
    pub job: &'a Job,
    /// The source's or sink's name in the job.
    pub name: &'a str,
    /// The source subtask being opened (0 for a sink).
    pub subtask: u32,
    /// What the sink prepared for the checkpoint the job restarts from: the sink
    /// commits it (again) and discards whatever was written after it.
    pub restored: Option<&'a [u8]>,
    /// A benchmark's latency clock, for sinks that measure against it.
    pub latency: Option<&'a Arc<EventClock>>,
}

/// Opens the sources and sinks of one `type:`. A connector that only reads (or only
/// writes) keeps the other method's default, which says so.
pub trait Connector: Sync {
    /// Subtask `at.subtask` of a source of this type.
    fn source(&self, at: &Opening<'_>, spec: &SourceSpec) -> Result<Box<dyn Source>, SourceError> {
        Err(not_mine(at.name, spec.connector()))
    }

    /// A sink of this type: its writer and its committer (used by the checkpoint
    /// coordinator to publish what the writer prepared).
    fn sink(&self, at: &Opening<'_>, spec: &SinkSpec) -> Result<Connected, SinkError> {
        Err(not_my_sink(at.name, spec.connector()))
    }
}

/// A source spec handed to a connector of another type.
pub(crate) fn not_mine(name: &str, type_name: &str) -> SourceError {
    SourceError::fatal(
        name,
        format!("no source connector of type `{type_name}` here"),
    )
}

/// A sink spec handed to a connector of another type.
pub(crate) fn not_my_sink(name: &str, type_name: &str) -> SinkError {
    let message = format!("no sink connector of type `{type_name}` here");
    let error = std::io::Error::new(std::io::ErrorKind::Unsupported, message);
    SinkError::new(name, Path::new(name), error)
}

/// The connectors a dataflow can open, by the `type:` they answer to.
#[derive(Clone)]
pub struct Connectors<'a> {
    by_type: BTreeMap<&'static str, &'a dyn Connector>,
}

impl Default for Connectors<'_> {
    fn default() -> Self {
        Connectors::builtin()
    }
}

impl<'a> Connectors<'a> {
    /// The connectors built into the core: file, stdin, stdout, discard, generator
    /// and digest.
    pub fn builtin() -> Self {
        let by_type: [(&'static str, &'a dyn Connector); 6] = [
            ("file", &file::FileConnector),
            ("stdin", &stdio::StdioConnector),
            ("stdout", &stdio::StdioConnector),
            ("discard", &stdio::StdioConnector),
            ("generator", &generator::GeneratorConnector),
            ("digest", &digest::DigestConnector),
        ];
        Connectors {
            by_type: by_type.into_iter().collect(),
        }
    }

    /// These connectors and `connector` for `type_name`.
    pub fn with(mut self, type_name: &'static str, connector: &'a dyn Connector) -> Self {
        self.by_type.insert(type_name, connector);
        self
    }

    /// Subtask `at.subtask` of a source, by its connector.
    pub fn source(
        &self,
        at: &Opening<'_>,
        spec: &SourceSpec,
    ) -> Result<Box<dyn Source>, SourceError> {
        match self.by_type.get(spec.connector()) {
            Some(connector) => connector.source(at, spec),
            None => Err(SourceError::fatal(at.name, self.missing(spec.connector()))),
        }
    }

    /// A sink and its committer, by its connector.
    pub fn sink(&self, at: &Opening<'_>, spec: &SinkSpec) -> Result<Connected, SinkError> {
        match self.by_type.get(spec.connector()) {
            Some(connector) => connector.sink(at, spec),
            None => {
                let error = std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    self.missing(spec.connector()),
                );
                Err(SinkError::new(at.name, Path::new(at.name), error))
            }
        }
    }

    fn missing(&self, type_name: &str) -> String {
        let known: Vec<_> = self.by_type.keys().copied().collect();
        format!(
            "this process has no `{type_name}` connector (it has: {})",
            known.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_without_a_connector_is_named_with_those_there_are() {
        let text = "name: j\nsources: [{type: generator, count: 1}]\nsinks: [{type: stdout}]";
        let job = Job::parse(text, Path::new("/jobs/j.yaml"), None).expect("job");
        let spec: SourceSpec =
            serde_saphyr::from_str("type: kafka\ntopics: [t]\nbootstrap: b").expect("kafka spec");
        let at = Opening {
            job: &job,
            name: "orders",
            subtask: 0,
            restored: None,
            latency: None,
        };
        let Err(e) = Connectors::builtin().source(&at, &spec) else {
            panic!("the core has no kafka connector");
        };
        let message = e.to_string();
        assert!(message.contains("source \"orders\""), "{message}");
        assert!(message.contains("no `kafka` connector"), "{message}");
        assert!(
            message.contains("digest, discard, file, generator, stdin, stdout"),
            "{message}"
        );
        assert!(!e.class().retryable(), "a missing connector stays missing");
    }
}
