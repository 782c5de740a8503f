//! Eddy's Kafka connectors, kept out of the engine core so that only the binary links
//! librdkafka: a source whose partitions are checkpointed splits, and a sink that
//! writes at least once or, through transactions, exactly once.
//!
//! [`KafkaFactory`] wraps the job's operator factory and opens the `type: kafka`
//! sources and sinks of a job file; everything else goes to the wrapped factory.

mod config;
mod sink;
mod source;

use std::path::Path;

use eddy_core::job::{Job, SinkSpec, SourceSpec, Step};
use eddy_core::operator::{AggregateFunction, OperatorFactory, WindowFunction};
use eddy_core::sink::{Connected, SinkError};
use eddy_core::source::{Source, SourceError};
use eddy_core::state::backend::BackendFactory;
use eddy_core::{Operator, OperatorError};

/// An operator factory that also opens Kafka sources and sinks.
pub struct KafkaFactory<'a> {
    inner: &'a dyn OperatorFactory,
}

impl<'a> KafkaFactory<'a> {
    /// Adds Kafka connectors to `inner`, which keeps every other kind.
    pub fn new(inner: &'a dyn OperatorFactory) -> Self {
        KafkaFactory { inner }
    }
}

impl OperatorFactory for KafkaFactory<'_> {
    fn create(
        &self,
        job: &Job,
        step: &Step,
        subtask: u32,
        parallelism: u32,
        state: &dyn BackendFactory,
    ) -> Result<Box<dyn Operator>, OperatorError> {
        self.inner.create(job, step, subtask, parallelism, state)
    }

    fn aggregate(
        &self,
        job: &Job,
        step: &Step,
        plugin: &Path,
        params_json: &str,
        subtask: u32,
    ) -> Result<Box<dyn AggregateFunction>, OperatorError> {
        self.inner
            .aggregate(job, step, plugin, params_json, subtask)
    }

    fn source(
        &self,
        job: &Job,
        name: &str,
        spec: &SourceSpec,
        subtask: u32,
    ) -> Result<Box<dyn Source>, SourceError> {
        match spec {
            SourceSpec::Kafka(kafka) => Ok(Box::new(source::KafkaSource::open(
                &job.name, name, kafka, subtask,
            )?)),
            _ => self.inner.source(job, name, spec, subtask),
        }
    }

    fn sink(&self, job: &Job, name: &str, spec: &SinkSpec) -> Result<Connected, SinkError> {
        match spec {
            SinkSpec::Kafka(kafka) => sink::connect(job, name, kafka),
            _ => self.inner.sink(job, name, spec),
        }
    }

    fn window_function(
        &self,
        job: &Job,
        step: &Step,
        plugin: &Path,
        params_json: &str,
        subtask: u32,
    ) -> Result<Box<dyn WindowFunction>, OperatorError> {
        self.inner
            .window_function(job, step, plugin, params_json, subtask)
    }
}
