//! Side outputs: named streams beside the main one (late events, dead letters), written
//! straight from the task that produces them into the sinks the job routes them to.

use std::sync::Mutex;

use crate::batch::{Batch, EventRef};
use crate::sink::{Sink, SinkError};

/// One named side output and its sinks.
pub struct SideOutput {
    sinks: Mutex<Vec<Box<dyn Sink>>>,
}

impl SideOutput {
    /// A side output written to `sinks`.
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        SideOutput {
            sinks: Mutex::new(sinks),
        }
    }

    /// Writes a batch to every sink of the side output.
    pub fn write(&self, batch: &Batch) -> Result<(), SinkError> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        for sink in sinks.iter_mut() {
            sink.write(batch)?;
        }
        Ok(())
    }

    /// Writes one event.
    pub fn send(&self, event: EventRef<'_>) -> Result<(), SinkError> {
        let mut batch = Batch::default();
        // One event always fits a batch.
        let _ = batch.push(event);
        self.write(&batch)
    }

    /// Makes what was written final (file sinks publish).
    pub fn finish(&self) -> Result<(), SinkError> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        for sink in sinks.iter_mut() {
            sink.publish()?;
        }
        Ok(())
    }
}
