//! The error a plugin reports on purpose; the host names the event it points at.

use std::fmt;

/// A plugin error: a message and, when known, the index of the input event at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What went wrong, for the person reading the job's error.
    pub message: String,
    /// Index of the offending event in its input batch (set by the SDK's batch drivers).
    pub event: Option<u32>,
}

impl Error {
    /// An error with `message`.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
            event: None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::msg(format_args!("JSON: {e}"))
    }
}

impl From<std::str::Utf8Error> for Error {
    fn from(e: std::str::Utf8Error) -> Self {
        Error::msg(format_args!("value is not UTF-8: {e}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::msg(format_args!("I/O: {e}"))
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error {
            message,
            event: None,
        }
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::msg(message)
    }
}
