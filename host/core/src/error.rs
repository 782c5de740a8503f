//! Classes of run errors: whose failure an error is, and whether running the job again
//! can get past it. The supervisor restarts a job only for errors a restart can help.

use std::fmt;

/// Whose failure an error is, for messages and for deciding what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorDomain {
    /// The job or its plugins: a bad job file, a plugin that breaks its contract,
    /// traps or fails, input the job cannot read.
    User,
    /// The outside world: files, networks, brokers.
    External,
    /// Eddy itself: a task thread that died, an exchange that broke, a bug.
    Internal,
}

/// Whether running the job again (from its latest checkpoint) can get past an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retry {
    /// Deterministic: the same input fails the same way again, so a restart cannot
    /// help (a malformed plugin result, a bad job, a corrupt checkpoint).
    Never,
    /// Transient: a restart after the strategy's delay may well succeed (I/O, a
    /// broker, a task thread).
    WithBackoff,
    /// Either: the error does not tell (a plugin trap or plugin error may come from
    /// its input or from the world around it). It is retried, and the same failure in
    /// the attempt that follows shows it to be deterministic, which ends the restarts.
    UnlessRepeated,
}

/// The class of an error: its domain and what a restart can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ErrorClass {
    /// Whose failure it is.
    pub domain: ErrorDomain,
    /// Whether restarting may help.
    pub retry: Retry,
}

impl ErrorClass {
    /// A deterministic failure of the job or its plugins.
    pub const USER_FATAL: ErrorClass = ErrorClass::new(ErrorDomain::User, Retry::Never);
    /// A failure of the job or its plugins that may or may not recur on the same input.
    pub const USER_UNCERTAIN: ErrorClass =
        ErrorClass::new(ErrorDomain::User, Retry::UnlessRepeated);
    /// A transient failure of the world outside the job.
    pub const EXTERNAL: ErrorClass = ErrorClass::new(ErrorDomain::External, Retry::WithBackoff);
    /// A failure of the outside world that will not go away by itself (a missing file).
    pub const EXTERNAL_FATAL: ErrorClass = ErrorClass::new(ErrorDomain::External, Retry::Never);
    /// A transient failure of Eddy's own machinery.
    pub const INTERNAL: ErrorClass = ErrorClass::new(ErrorDomain::Internal, Retry::WithBackoff);

    /// A class of `domain` with `retry`.
    pub const fn new(domain: ErrorDomain, retry: Retry) -> Self {
        ErrorClass { domain, retry }
    }

    /// Whether a restart may get past the error (perhaps only once, for
    /// [`Retry::UnlessRepeated`]).
    pub fn retryable(self) -> bool {
        self.retry != Retry::Never
    }

    /// The class of an I/O error: data or arguments the operation cannot take, and a
    /// file that is missing or forbidden, are not fixed by waiting; anything else
    /// (connections, timeouts, a full disk, interruptions) may be.
    pub fn of_io(error: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match error.kind() {
            K::InvalidData | K::InvalidInput | K::Unsupported => ErrorClass::USER_FATAL,
            K::NotFound | K::PermissionDenied | K::IsADirectory | K::NotADirectory => {
                ErrorClass::EXTERNAL_FATAL
            }
            _ => ErrorClass::EXTERNAL,
        }
    }
}

impl Default for ErrorClass {
    /// Errors nobody classified: retried, but not forever if they recur unchanged.
    fn default() -> Self {
        ErrorClass::USER_UNCERTAIN
    }
}

impl fmt::Display for ErrorDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorDomain::User => "a failure of the job or its plugins",
            ErrorDomain::External => "a failure outside the job",
            ErrorDomain::Internal => "a failure inside Eddy",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_transient_unless_waiting_cannot_fix_them() {
        let class = |kind| ErrorClass::of_io(&std::io::Error::from(kind));
        use std::io::ErrorKind as K;
        assert!(class(K::ConnectionRefused).retryable());
        assert!(class(K::TimedOut).retryable());
        assert!(class(K::Other).retryable());
        assert_eq!(class(K::InvalidData), ErrorClass::USER_FATAL);
        assert_eq!(class(K::NotFound), ErrorClass::EXTERNAL_FATAL);
        assert!(!class(K::PermissionDenied).retryable());
    }
}
