//! The `checkpoints` and `restart` sections of a job file.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::span::Span;

/// How often and where a job checkpoints.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Time between the start of one checkpoint and the next.
    pub interval: Span,
    /// Where checkpoints are written (default `.eddy/checkpoints/<job name>` beside
    /// the job file); relative paths are resolved against the job file. An
    /// `s3://bucket/prefix` URL puts them in S3-compatible object storage.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Completed checkpoints kept (default 3); older ones are deleted.
    #[serde(default)]
    pub retain: Option<usize>,
    /// A checkpoint that has not completed after this long is abandoned (default 10m).
    #[serde(default)]
    pub timeout: Option<Span>,
    /// Barriers overtake in-flight data instead of waiting for it, which is then stored
    /// with the checkpoint: checkpoints complete quickly under backpressure (default
    /// false). Savepoints stay aligned.
    #[serde(default)]
    pub unaligned: bool,
}

impl CheckpointSpec {
    /// Completed checkpoints to keep.
    pub fn retain(&self) -> usize {
        self.retain.unwrap_or(3).max(1)
    }

    /// The object store URL checkpoints go to, when `dir` is one.
    pub fn objects_url(&self) -> Option<&str> {
        let dir = self.dir.as_deref()?;
        Self::is_url(dir).then(|| dir.to_str()).flatten()
    }

    /// Whether `dir` names an object store (`scheme://…`) rather than a directory.
    pub fn is_url(dir: &std::path::Path) -> bool {
        dir.to_str().is_some_and(|d| {
            d.split_once("://").is_some_and(|(scheme, _)| {
                !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric())
            })
        })
    }

    /// When to give up on a checkpoint.
    pub fn timeout(&self) -> Duration {
        self.timeout.map_or(Duration::from_secs(600), |s| s.0)
    }
}

/// What a failed run does next.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartStrategy {
    /// Fail the job.
    None,
    /// Restart after the same delay each time.
    #[default]
    FixedDelay,
    /// Restart after a delay that doubles (by `multiplier`) up to `max-delay`.
    ExponentialBackoff,
}

/// Restarts from the latest checkpoint after a failure (only with checkpoints on).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RestartSpec {
    /// The strategy (default `fixed-delay`).
    #[serde(default)]
    pub strategy: RestartStrategy,
    /// Restarts before the job fails for good (default 3).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Delay before the first restart (default 1s).
    #[serde(default)]
    pub delay: Option<Span>,
    /// Longest delay of `exponential-backoff` (default 1m).
    #[serde(default)]
    pub max_delay: Option<Span>,
    /// Growth of the delay of `exponential-backoff` (default 2).
    #[serde(default)]
    pub multiplier: Option<f64>,
}

impl RestartSpec {
    /// The delay before restart number `attempt` (1-based), or `None` when no restart
    /// is left.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        if self.strategy == RestartStrategy::None || attempt > self.attempts.unwrap_or(3) {
            return None;
        }
        let base = self.delay.map_or(Duration::from_secs(1), |s| s.0);
        Some(match self.strategy {
            RestartStrategy::ExponentialBackoff => {
                let max = self.max_delay.map_or(Duration::from_secs(60), |s| s.0);
                let factor = self
                    .multiplier
                    .unwrap_or(2.0)
                    .max(1.0)
                    .powi(attempt as i32 - 1);
                base.mul_f64(factor.min(1e6)).min(max)
            }
            _ => base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_follow_the_strategy() {
        let fixed: RestartSpec = serde_saphyr::from_str("attempts: 2\ndelay: 5s").unwrap();
        assert_eq!(fixed.delay(1), Some(Duration::from_secs(5)));
        assert_eq!(fixed.delay(2), Some(Duration::from_secs(5)));
        assert_eq!(fixed.delay(3), None);
        let backoff: RestartSpec = serde_saphyr::from_str(
            "strategy: exponential-backoff\nattempts: 10\ndelay: 1s\nmax-delay: 5s",
        )
        .unwrap();
        let delays: Vec<u64> = (1..=5)
            .map(|a| backoff.delay(a).unwrap().as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        let none: RestartSpec = serde_saphyr::from_str("strategy: none").unwrap();
        assert_eq!(none.delay(1), None);
    }
}
