//! Where operators put their output: straight into the packed output batch.

use eddy_batch::{Batch, EventRef};
use serde::Serialize;

use crate::Error;

/// Appends output events to the batch being built, remembering which input each came from.
pub struct Emitter<'a> {
    pub(crate) out: &'a mut Batch,
    pub(crate) origins: &'a mut Vec<u32>,
    pub(crate) origin: u32,
}

impl Emitter<'_> {
    /// Emits an event with `value`, inheriting key and timestamp from the input event.
    pub fn bytes(&mut self, value: &[u8]) -> Result<(), Error> {
        self.event(None, value, None)
    }

    /// Emits `value` serialized as JSON, written directly into the output buffer.
    pub fn json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let start = self.out.values.len();
        if let Err(e) = serde_json::to_writer(&mut self.out.values, value) {
            self.out.values.truncate(start);
            return Err(e.into());
        }
        self.out.seal_value().map_err(Error::msg)?;
        self.origins.push(self.origin);
        Ok(())
    }

    /// Emits an event with its own key and timestamp (`None` inherits the input's).
    pub fn event(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: Option<i64>,
    ) -> Result<(), Error> {
        self.out
            .push(EventRef {
                key,
                value,
                timestamp,
            })
            .map_err(Error::msg)?;
        self.origins.push(self.origin);
        Ok(())
    }
}
