//! The dead-letter output: events a step failed on, with the error and where it
//! happened, written to a sink of the job's choosing so that the job can go on.

use std::sync::Mutex;

use serde_json::{Value, json};

use crate::Batch;
use crate::batch::EventRef;
use crate::sink::{Sink, SinkError};

/// A job's dead-letter sink, shared by every task.
pub struct DeadLetters {
    job: String,
    tenant: String,
    sink: Mutex<Box<dyn Sink>>,
}

impl DeadLetters {
    /// Dead letters of `job` (run for `tenant`) written to `sink`.
    pub fn new(job: &str, tenant: &str, sink: Box<dyn Sink>) -> Self {
        DeadLetters {
            job: job.to_owned(),
            tenant: tenant.to_owned(),
            sink: Mutex::new(sink),
        }
    }

    /// Writes one record: the job, tenant, step, error and the event (its value as
    /// JSON when it is JSON, else as text).
    pub fn send(
        &self,
        step: &str,
        event: EventRef<'_>,
        error: &dyn std::fmt::Display,
    ) -> Result<(), SinkError> {
        let value = serde_json::from_slice::<Value>(event.value)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(event.value).into_owned()));
        let record = json!({
            "job": self.job,
            "tenant": self.tenant,
            "step": step,
            "error": error.to_string(),
            "key": event.key.map(|k| String::from_utf8_lossy(k).into_owned()),
            "timestamp": event.timestamp,
            "event": value,
        });
        let mut batch = Batch::default();
        // A record is far below the batch limit.
        let _ = batch.push_value(record.to_string().as_bytes());
        self.sink
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(&batch)
    }

    /// Makes what was written final (file sinks publish).
    pub fn finish(&self) -> Result<(), SinkError> {
        self.sink
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .publish()
    }
}
