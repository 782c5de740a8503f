//! One input event as a plugin sees it, borrowed from its batch.

use serde::Deserialize;

use crate::Error;

/// An input event: value bytes, optional key and timestamp, with JSON helpers.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    pub(crate) inner: eddy_batch::EventRef<'a>,
}

impl<'a> Event<'a> {
    /// The value bytes.
    pub fn value(&self) -> &'a [u8] {
        self.inner.value
    }

    /// The key, if the event has one.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.inner.key
    }

    /// Event time in milliseconds since the epoch, if known.
    pub fn timestamp(&self) -> Option<i64> {
        self.inner.timestamp
    }

    /// The value as UTF-8 text.
    pub fn as_str(&self) -> Result<&'a str, Error> {
        Ok(std::str::from_utf8(self.inner.value)?)
    }

    /// The value parsed as JSON into `T` (borrowing strings from the batch where it can).
    pub fn json<T: Deserialize<'a>>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(self.inner.value)?)
    }
}
