//! From a parsed [`JobSpec`] to a checked [`Job`]: one checker per section (sources,
//! steps, sinks), every error at the position of the node it is about.

mod sinks;
mod sources;
mod steps;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::position::Positions;
use super::sandbox::{DEFAULT_MAX_STACK, Sandbox, SandboxSpec};
use super::{DEFAULT_BATCH_SIZE, DEFAULT_MAX_PARALLELISM, DEFAULT_TENANT, Job, JobError, JobSpec};

/// What every section of a job inherits from the job.
struct Defaults<'a> {
    /// The job file's directory: relative paths resolve against it.
    base: PathBuf,
    /// Where plugin components are looked up.
    plugin_base: PathBuf,
    parallelism: u32,
    max_parallelism: u32,
    sandbox: &'a SandboxSpec,
}

/// Checks a parsed job file, pointing errors at positions of its text.
pub(super) struct Resolver<'a> {
    file: &'a Path,
    positions: Positions,
    /// Names of sources, steps and sinks so far: they must be unique.
    names: HashSet<String>,
}

impl<'a> Resolver<'a> {
    /// A resolver for the job file `file` whose text is `text`.
    pub(super) fn new(file: &'a Path, text: &str) -> Self {
        Resolver {
            file,
            positions: Positions::of(text),
            names: HashSet::new(),
        }
    }

    /// An error about `what` (as users call it, e.g. `steps[2] (to-eur)`), located at
    /// the node `path` (e.g. `steps[2].parallelism`) or its nearest written parent.
    fn invalid(&self, what: impl Into<String>, path: &str, message: impl Into<String>) -> JobError {
        JobError::Invalid {
            file: self.file.to_owned(),
            location: self.positions.find(path),
            what: what.into(),
            message: message.into(),
        }
    }

    fn base_dir(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Checks the whole job, section by section.
    pub(super) fn resolve(
        mut self,
        spec: JobSpec,
        plugin_dir: Option<&Path>,
    ) -> Result<Job, JobError> {
        let base = self.base_dir();
        if spec.name.trim().is_empty() {
            return Err(self.invalid("name", "name", "must not be empty"));
        }
        if spec.sources.is_empty() {
            return Err(self.invalid("sources", "sources", "a job needs at least one source"));
        }
        if spec.sinks.is_empty() {
            return Err(self.invalid("sinks", "sinks", "a job needs at least one sink"));
        }
        let batch_size = spec.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            return Err(self.invalid("batch-size", "batch-size", "must be at least 1"));
        }
        let parallelism = spec.parallelism.unwrap_or(1);
        let max_parallelism = spec.max_parallelism.unwrap_or(DEFAULT_MAX_PARALLELISM);
        if max_parallelism == 0 || max_parallelism > 32_768 {
            return Err(self.invalid(
                "max-parallelism",
                "max-parallelism",
                "must be between 1 and 32768",
            ));
        }
        self.check_parallelism("parallelism", "parallelism", parallelism, max_parallelism)?;
        let memory = spec
            .memory
            .budget()
            .map_err(|m| self.invalid("memory", "memory", m))?;
        let prometheus = spec
            .metrics
            .prometheus
            .as_deref()
            .map(|addr| {
                addr.parse().map_err(|e| {
                    self.invalid(
                        "metrics.prometheus",
                        "metrics.prometheus",
                        format!("{addr:?} is not a socket address like 127.0.0.1:9249: {e}"),
                    )
                })
            })
            .transpose()?;
        let max_stack = spec.sandbox.max_stack.unwrap_or(DEFAULT_MAX_STACK);
        if max_stack.0 < 64 << 10 || max_stack.0 > 64 << 20 {
            return Err(self.invalid(
                "sandbox.max-stack",
                "sandbox.max-stack",
                format!("{max_stack} is outside 64 KiB ..= 64 MiB"),
            ));
        }
        let tenant = spec.tenant.unwrap_or_else(|| DEFAULT_TENANT.into());
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.invalid(
                "tenant",
                "tenant",
                format!("{tenant:?} is not a tenant name (letters, digits, `-`, `_`)"),
            ));
        }
        let defaults = Defaults {
            plugin_base: match (plugin_dir, &spec.plugin_dir) {
                (Some(dir), _) => dir.to_owned(),
                (None, Some(dir)) => base.join(dir),
                (None, None) => base.clone(),
            },
            base,
            parallelism,
            max_parallelism,
            sandbox: &spec.sandbox,
        };
        let sources = self.sources(spec.sources, &defaults)?;
        let steps = self.steps(spec.steps, &defaults, &sources)?;
        let outputs = self.sinks(spec.sinks, spec.dead_letter, &defaults, &sources, &steps)?;
        let checkpoints = self.checkpoints(spec.checkpoints, &spec.name, &defaults, &sources)?;
        self.exactly_once(&outputs.sinks, checkpoints.is_some())?;
        let mut state = spec.state;
        let state_dir = state
            .dir
            .take()
            .unwrap_or_else(|| Path::new(".eddy/state").join(&spec.name));
        state.dir = Some(defaults.base.join(state_dir));
        Ok(Job {
            plugin_dir: defaults.plugin_base.clone(),
            checkpoints,
            restart: spec.restart,
            state,
            name: spec.name,
            tenant,
            dead_letter: outputs.dead_letter,
            side_sinks: outputs.side_sinks,
            max_stack,
            file: self.file.to_owned(),
            batch_size,
            parallelism,
            max_parallelism,
            memory,
            prometheus,
            sources,
            steps,
            sinks: outputs.sinks,
            positions: std::sync::Arc::new(std::mem::take(&mut self.positions)),
        })
    }

    /// The `checkpoints` section, with its directory resolved.
    fn checkpoints(
        &self,
        spec: Option<super::CheckpointSpec>,
        job: &str,
        defaults: &Defaults<'_>,
        sources: &[(String, super::SourceSpec)],
    ) -> Result<Option<super::CheckpointSpec>, JobError> {
        let Some(mut c) = spec else {
            return Ok(None);
        };
        if let Some((name, _)) = sources
            .iter()
            .find(|(_, s)| matches!(s, super::SourceSpec::Stdin { .. }))
        {
            return Err(self.invalid(
                "checkpoints",
                "checkpoints",
                format!(
                    "source {name:?} reads stdin, which cannot be replayed after a failure; \
                     read a file instead, or turn checkpoints off"
                ),
            ));
        }
        if c.interval.0.is_zero() {
            return Err(self.invalid(
                "checkpoints.interval",
                "checkpoints.interval",
                "must be longer than 0",
            ));
        }
        if c.retain == Some(0) {
            return Err(self.invalid(
                "checkpoints.retain",
                "checkpoints.retain",
                "must be at least 1: the latest completed checkpoint is what recovery needs",
            ));
        }
        let dir = c
            .dir
            .take()
            .unwrap_or_else(|| Path::new(".eddy/checkpoints").join(job));
        c.dir = Some(if super::CheckpointSpec::is_url(&dir) {
            dir
        } else {
            defaults.base.join(dir)
        });
        Ok(Some(c))
    }

    /// The component of a connector at `path`, which must exist.
    fn connector_plugin(
        &self,
        defaults: &Defaults<'_>,
        plugin: &Path,
        what: &str,
        path: &str,
    ) -> Result<PathBuf, JobError> {
        let file = defaults.plugin_base.join(plugin);
        if !file.is_file() {
            return Err(self.invalid(
                what,
                path,
                format!("plugin component {} not found", file.display()),
            ));
        }
        Ok(file)
    }

    /// A connector's sandbox: its own settings at `path` over the job's.
    fn connector_sandbox(
        &self,
        defaults: &Defaults<'_>,
        own: &SandboxSpec,
        path: &str,
    ) -> Result<Sandbox, JobError> {
        defaults
            .sandbox
            .merged(own)
            .resolve(&defaults.base)
            .map_err(|m| self.invalid(path, path, m))
    }

    /// Claims `name` for the node at `path`; names are unique across a job.
    fn unique(&mut self, name: &str, what: &str, path: &str) -> Result<(), JobError> {
        if self.names.insert(name.to_owned()) {
            return Ok(());
        }
        Err(self.invalid(
            what,
            &format!("{path}.name"),
            format!("the name {name:?} is used twice; names must be unique in a job"),
        ))
    }

    fn check_parallelism(&self, what: &str, path: &str, p: u32, max: u32) -> Result<(), JobError> {
        if p == 0 || p > max {
            return Err(self.invalid(
                what,
                path,
                format!("parallelism {p} must be between 1 and max-parallelism ({max})"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::job::{Job, JobError};

    /// The line and column a job error points at, and its message.
    fn error_at(text: &str) -> ((usize, usize), String) {
        match Job::parse(text, Path::new("/jobs/t.yaml"), None) {
            Err(JobError::Invalid {
                location: Some(at),
                message,
                ..
            }) => (at, message),
            other => panic!("expected a located job error, got {other:?}"),
        }
    }

    const SOURCES: &str = "sources:\n  - type: generator\n";
    const SINKS: &str = "sinks:\n  - type: stdout\n";

    #[test]
    fn top_level_errors_point_at_their_own_key() {
        // `parallelism` appears inside `max-parallelism` on the line before.
        let text = format!("name: x\nmax-parallelism: 4\nparallelism: 9\n{SOURCES}{SINKS}");
        let (at, message) = error_at(&text);
        assert_eq!(at, (3, 14), "{message}");
        let text = format!("name: x\nbatch-size: 0\n{SOURCES}{SINKS}");
        assert_eq!(error_at(&text).0, (2, 13));
        let text = format!("name: x\ntenant: 'a b'\n{SOURCES}{SINKS}");
        assert_eq!(error_at(&text).0, (2, 9));
        let text = format!("name: x\nmetrics: {{ prometheus: nowhere }}\n{SOURCES}{SINKS}");
        assert_eq!(error_at(&text).0, (2, 24));
    }

    #[test]
    fn source_errors_point_at_the_source_they_are_about() {
        let text = format!(
            "name: x\nsources:\n  - type: generator\n    rate: 5\n  - type: generator\n    \
             rate: 5\n  - type: generator\n    rate: -1\n{SINKS}"
        );
        let (at, message) = error_at(&text);
        assert_eq!(at, (8, 11), "{message}");
        assert!(message.contains("rate must be a positive"), "{message}");
        let text = format!(
            "name: x\nsources:\n  - type: generator\n    parallelism: 2\n  - type: generator\n    \
             parallelism: 200\n{SINKS}"
        );
        assert_eq!(error_at(&text).0, (6, 18));
        let text = format!(
            "name: x\nsources:\n  - type: generator\n    name: a\n  - type: generator\n    \
             name: a\n{SINKS}"
        );
        assert_eq!(error_at(&text).0, (6, 11));
    }

    #[test]
    fn step_errors_point_at_the_step_and_key() {
        let text = format!(
            "name: x\n{SOURCES}steps:\n  - key-by: a\n  - where: a > 1\n    parallelism: 0\n{SINKS}"
        );
        let (at, message) = error_at(&text);
        assert_eq!(at, (7, 18), "{message}");
        let text = format!("name: x\n{SOURCES}steps:\n  - key-by: a\n  - where: a = 1\n{SINKS}");
        assert_eq!(error_at(&text).0, (6, 12));
        // A step without an operator points at the step itself.
        let text = format!("name: x\n{SOURCES}steps:\n  - key-by: a\n  - name: s\n{SINKS}");
        assert_eq!(error_at(&text).0, (6, 5));
        let text = format!(
            "name: x\n{SOURCES}steps:\n  - window:\n      tumbling: 1s\n      sliding: {{ size: 2s, slide: 1s }}\n{SINKS}"
        );
        assert_eq!(error_at(&text).0, (6, 7));
    }

    #[test]
    fn sink_errors_point_at_the_sink_they_are_about() {
        let text = format!(
            "name: x\n{SOURCES}sinks:\n  - type: stdout\n  - type: stdout\n    name: side\n    input: nowhere\n"
        );
        let (at, message) = error_at(&text);
        assert_eq!(at, (8, 12), "{message}");
        let text = format!(
            "name: x\n{SOURCES}steps:\n  - window:\n      tumbling: 1s\n      late-output: late\n{SINKS}"
        );
        assert_eq!(error_at(&text).0, (7, 20));
        let text = format!(
            "name: x\n{SOURCES}sinks:\n  - type: kafka\n    bootstrap: b:1\n    topic: t\n    \
             guarantee: exactly-once\n"
        );
        assert_eq!(error_at(&text).0, (8, 16));
    }

    #[test]
    fn checkpoint_errors_point_at_their_setting() {
        let text = format!("name: x\ncheckpoints:\n  interval: 0s\n{SOURCES}{SINKS}");
        assert_eq!(error_at(&text).0, (3, 13));
        let text = format!("name: x\ncheckpoints:\n  interval: 1s\n  retain: 0\n{SOURCES}{SINKS}");
        assert_eq!(error_at(&text).0, (4, 11));
    }
}
