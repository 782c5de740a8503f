//! Runs a job's attempts: a failed run restarts from the job's latest checkpoint after
//! its restart strategy's delay, but only when the failure is one a restart can get
//! past. A deterministic failure (a plugin that breaks its contract, a bad job, a
//! corrupt checkpoint) ends the job at once, saying that it was not retried and why.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::checkpoint::{CheckpointError, Restored, Storage};
use crate::error::{ErrorClass, Retry};
use crate::exec::{Dataflow, RunError, RunSummary};
use crate::job::Job;
use crate::job::checkpoint::RestartSpec;
use crate::metrics::JobMetrics;

/// How often a restart delay looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

/// What to do after a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Restart from the latest checkpoint after `after`; this is restart `restart`
    /// (1-based).
    Restart {
        /// The strategy's delay before this restart.
        after: Duration,
        /// Which restart this is.
        restart: u32,
    },
    /// Fail the job; the note, if any, says why there is no (further) restart.
    GiveUp(Option<String>),
}

/// Decides what follows a failed attempt, from the restart strategy, whether the job
/// checkpoints (restarts resume from a checkpoint, so only then are there any),
/// the restarts already made, the failure's class, and whether it is the same failure
/// as the attempt before's (which shows a [`Retry::UnlessRepeated`] failure to be
/// deterministic).
pub fn decide(
    strategy: &RestartSpec,
    checkpointing: bool,
    restarts: u32,
    class: ErrorClass,
    repeated: bool,
) -> Decision {
    if !checkpointing {
        return Decision::GiveUp(None);
    }
    match class.retry {
        Retry::Never => {
            return Decision::GiveUp(Some(format!(
                "not retried: {} that a restart cannot fix",
                class.domain
            )));
        }
        Retry::UnlessRepeated if repeated => {
            return Decision::GiveUp(Some(
                "not retried again: it failed the same way after a restart, so it is \
                 deterministic"
                    .into(),
            ));
        }
        Retry::UnlessRepeated | Retry::WithBackoff => {}
    }
    let restart = restarts + 1;
    match strategy.delay(restart) {
        Some(after) => Decision::Restart { after, restart },
        None => Decision::GiveUp(Some(format!("no restart left after {restarts} attempt(s)"))),
    }
}

/// Why a supervised job ended without finishing.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// The job could not be built for its first run; that is not retried.
    #[error(transparent)]
    Start(RunError),
    /// An attempt failed and was not restarted; `note` says why.
    #[error("{error}{}", note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default())]
    Failed {
        /// The last attempt's error.
        error: RunError,
        /// Why there was no further restart, when there could have been one.
        note: Option<String>,
        /// Restarts made before it.
        restarts: u32,
    },
    /// The checkpoint to restart from cannot be read.
    #[error(transparent)]
    Restore(#[from] CheckpointError),
}

/// A job that ran to its end.
pub struct Supervised {
    /// What the last attempt did.
    pub summary: RunSummary,
    /// The last attempt's metrics.
    pub metrics: Arc<JobMetrics>,
    /// Restarts it took.
    pub restarts: u32,
}

/// Runs `job` until one attempt ends cleanly or a failure is not restarted.
///
/// Each attempt is built by `build` (from `restored`, then from the latest checkpoint
/// in `storage`); `started` sees each attempt's dataflow before it runs (to serve its
/// metrics, take its savepoints, show its status) and what it returns is dropped when
/// the attempt ends. An error of `started` ends the job. `stop` ends the input early
/// (see [`Dataflow::run`]); once it is set, a failure is no longer restarted.
pub fn supervise<H, E>(
    job: &Job,
    storage: Option<&Storage>,
    mut restored: Option<Restored>,
    stop: &AtomicBool,
    mut build: impl FnMut(Option<&Restored>) -> Result<Dataflow, RunError>,
    mut started: impl FnMut(&Dataflow) -> Result<H, E>,
) -> Result<Supervised, E>
where
    E: From<SuperviseError>,
{
    let mut restarts = 0;
    let mut previous: Option<String> = None;
    loop {
        if let Some(r) = &restored {
            tracing::info!(job = %job.name, "restoring checkpoint {} from {}", r.id, r.path.display());
        }
        let attempt = match build(restored.as_ref()) {
            Ok(dataflow) => {
                let metrics = dataflow.metrics();
                let guard = started(&dataflow)?;
                let result = dataflow.run(stop);
                drop(guard);
                result.map(|summary| (summary, metrics))
            }
            Err(e) if restarts == 0 => return Err(SuperviseError::Start(e).into()),
            Err(e) => Err(e),
        };
        let error = match attempt {
            Ok((summary, metrics)) => {
                if restarts > 0 {
                    tracing::info!(job = %job.name, "job finished after {restarts} restart(s)");
                }
                return Ok(Supervised {
                    summary,
                    metrics,
                    restarts,
                });
            }
            Err(e) => e,
        };
        let message = error.to_string();
        let repeated = previous.as_deref() == Some(message.as_str());
        let decision = decide(
            &job.restart,
            storage.is_some(),
            restarts,
            error.class(),
            repeated,
        );
        let give_up = |note| SuperviseError::Failed {
            error,
            note,
            restarts,
        };
        let (after, restart) = match decision {
            Decision::GiveUp(note) => return Err(give_up(note).into()),
            Decision::Restart { after, restart } => (after, restart),
        };
        if stop.load(Ordering::Relaxed) {
            return Err(give_up(Some("not restarted: the job is stopping".into())).into());
        }
        tracing::warn!(
            job = %job.name,
            "job failed: {message}; restarting from the latest checkpoint in {after:?} (restart {restart})"
        );
        if !sleep_unless_stopped(after, stop) {
            return Err(give_up(Some("not restarted: the job is stopping".into())).into());
        }
        restarts = restart;
        previous = Some(message);
        restored = match storage.map(Storage::latest) {
            Some(Ok(r)) => Some(r),
            None | Some(Err(CheckpointError::NoneFound(_))) => None,
            Some(Err(e)) => return Err(SuperviseError::Restore(e).into()),
        };
    }
}

/// Waits `delay`, or less if `stop` is set meanwhile; whether it waited it all.
fn sleep_unless_stopped(delay: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + delay;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(STOP_POLL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorDomain;

    fn strategy(yaml: &str) -> RestartSpec {
        serde_saphyr::from_str(yaml).expect("restart spec")
    }

    #[test]
    fn a_transient_failure_restarts_with_the_strategys_delays_until_none_is_left() {
        let spec = strategy("attempts: 2\ndelay: 3s");
        let transient = ErrorClass::EXTERNAL;
        assert_eq!(
            decide(&spec, true, 0, transient, false),
            Decision::Restart {
                after: Duration::from_secs(3),
                restart: 1
            }
        );
        // Even the same transient failure again is restarted.
        assert_eq!(
            decide(&spec, true, 1, transient, true),
            Decision::Restart {
                after: Duration::from_secs(3),
                restart: 2
            }
        );
        assert_eq!(
            decide(&spec, true, 2, transient, false),
            Decision::GiveUp(Some("no restart left after 2 attempt(s)".into()))
        );
        let backoff = strategy("strategy: exponential-backoff\ndelay: 1s\nattempts: 5");
        assert_eq!(
            decide(&backoff, true, 2, ErrorClass::INTERNAL, false),
            Decision::Restart {
                after: Duration::from_secs(4),
                restart: 3
            }
        );
    }

    #[test]
    fn a_deterministic_failure_is_never_restarted_and_says_why() {
        let spec = RestartSpec::default();
        let Decision::GiveUp(Some(note)) = decide(&spec, true, 0, ErrorClass::USER_FATAL, false)
        else {
            panic!("a deterministic failure must not restart");
        };
        assert!(note.starts_with("not retried"), "{note}");
        assert!(note.contains("job or its plugins"), "{note}");
        let external = ErrorClass::new(ErrorDomain::External, Retry::Never);
        let Decision::GiveUp(Some(note)) = decide(&spec, true, 1, external, false) else {
            panic!("a deterministic failure must not restart");
        };
        assert!(note.contains("outside the job"), "{note}");
    }

    #[test]
    fn an_uncertain_failure_restarts_once_but_not_when_it_recurs_unchanged() {
        let spec = RestartSpec::default();
        let uncertain = ErrorClass::USER_UNCERTAIN;
        assert!(matches!(
            decide(&spec, true, 0, uncertain, false),
            Decision::Restart { restart: 1, .. }
        ));
        // A different failure after the restart is another chance.
        assert!(matches!(
            decide(&spec, true, 1, uncertain, false),
            Decision::Restart { restart: 2, .. }
        ));
        let Decision::GiveUp(Some(note)) = decide(&spec, true, 1, uncertain, true) else {
            panic!("a repeated failure is deterministic");
        };
        assert!(note.contains("deterministic"), "{note}");
    }

    #[test]
    fn without_checkpoints_or_with_strategy_none_nothing_restarts() {
        let spec = RestartSpec::default();
        assert_eq!(
            decide(&spec, false, 0, ErrorClass::EXTERNAL, false),
            Decision::GiveUp(None)
        );
        let none = strategy("strategy: none");
        assert_eq!(
            decide(&none, true, 0, ErrorClass::EXTERNAL, false),
            Decision::GiveUp(Some("no restart left after 0 attempt(s)".into()))
        );
    }

    #[test]
    fn the_give_up_note_follows_the_error() {
        let error = SuperviseError::Failed {
            error: RunError::Internal("boom".into()),
            note: Some("not retried: why".into()),
            restarts: 0,
        };
        assert_eq!(error.to_string(), "internal error: boom (not retried: why)");
        let plain = SuperviseError::Failed {
            error: RunError::Internal("boom".into()),
            note: None,
            restarts: 0,
        };
        assert_eq!(plain.to_string(), "internal error: boom");
    }

    #[test]
    fn run_errors_carry_the_class_of_what_failed() {
        use crate::operator::OperatorError;
        let malformed =
            RunError::from(OperatorError::new("s", "bad batch").with_class(ErrorClass::USER_FATAL));
        assert!(!malformed.retryable());
        assert!(RunError::from(OperatorError::new("s", "trap")).retryable());
        let corrupt = RunError::from(CheckpointError::Corrupt {
            path: "chk-1".into(),
            message: "CRC".into(),
        });
        assert_eq!(corrupt.class(), ErrorClass::USER_FATAL);
        let io = RunError::from(CheckpointError::Io {
            path: "chk-1".into(),
            error: std::io::Error::from(std::io::ErrorKind::StorageFull),
        });
        assert!(io.retryable());
        assert!(RunError::Thread(std::io::Error::other("no threads")).retryable());
        assert!(RunError::Internal("panicked".into()).retryable());
        let too_large = RunError::Exchange(crate::exec::exchange::SendError::EventTooLarge {
            event: 10,
            capacity: 1,
        });
        assert!(!too_large.retryable());
        let closed = RunError::Exchange(crate::exec::exchange::SendError::Closed(
            crate::exec::channel::Closed,
        ));
        assert!(closed.retryable());
        let malformed_record = RunError::from(crate::source::SourceError::Malformed {
            source_name: "in".into(),
            input: "in.jsonl".into(),
            line: 3,
            message: "not JSON".into(),
        });
        assert!(!malformed_record.retryable());
        let broker = RunError::from(crate::source::SourceError::Other {
            source_name: "in".into(),
            message: "broker down".into(),
        });
        assert_eq!(broker.class(), ErrorClass::EXTERNAL);
    }
}
