//! The declarative job file: what a user writes, parsed and checked before anything runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Events per batch when the job does not say.
pub const DEFAULT_BATCH_SIZE: usize = 256;

/// A job file, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct JobSpec {
    /// Name of the job, used in logs, metrics and errors.
    pub name: String,
    /// Directory that relative plugin paths are resolved against (relative to the job file).
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    /// Events per batch handed to operators.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Where events come from; several sources are read as a union.
    pub sources: Vec<SourceSpec>,
    /// Operators applied in order.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Where results go; every sink receives every result.
    pub sinks: Vec<SinkSpec>,
}

/// Encoding of events read from or written to text streams.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One JSON document per line; malformed lines are errors.
    #[default]
    Json,
    /// One event per line, bytes as they are.
    Raw,
}

/// Shapes of events the built-in generator can produce.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorShape {
    /// Orders: `{"id","customer","amount","currency","ts"}`.
    #[default]
    Orders,
    /// Sentences: `{"id","text","ts"}`.
    Sentences,
}

/// One source of the job.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceSpec {
    /// Lines of a file (bounded).
    File {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// Path, relative to the job file.
        path: PathBuf,
        /// Line encoding.
        #[serde(default)]
        format: Format,
    },
    /// Lines of standard input (bounded by end of input).
    Stdin {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// Line encoding.
        #[serde(default)]
        format: Format,
    },
    /// Deterministic synthetic events: the same seed gives the same events.
    Generator {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// Number of events; unbounded when absent.
        count: Option<u64>,
        /// Seed of the event sequence.
        #[serde(default)]
        seed: u64,
        /// What the events look like.
        #[serde(default)]
        shape: GeneratorShape,
        /// Events per second of wall-clock time; as fast as possible when absent.
        rate: Option<f64>,
    },
}

/// One sink of the job.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkSpec {
    /// Standard output, one event value per line.
    Stdout {
        /// Name used in errors and metrics.
        name: Option<String>,
    },
    /// A file, one event value per line (JSON lines for JSON values).
    File {
        /// Name used in errors and metrics.
        name: Option<String>,
        /// Path, relative to the job file.
        path: PathBuf,
    },
}

/// One step of the pipeline, as written: exactly one operator key must be set.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StepSpec {
    /// Name used in errors and metrics; defaults to the operator and its position.
    pub name: Option<String>,
    /// A WASM component implementing the `map-plugin` world.
    pub map: Option<PathBuf>,
    /// A WASM component implementing the `filter-plugin` world.
    pub filter: Option<PathBuf>,
    /// A WASM component implementing the `flat-map-plugin` world.
    pub flat_map: Option<PathBuf>,
    /// Parameters handed to the plugin as a JSON object.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// The kinds of operator a plugin step can be; each is one WIT world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperatorKind {
    /// One event in, one event out.
    Map,
    /// One event in, zero or one (the same) out.
    Filter,
    /// One event in, any number out.
    FlatMap,
}

impl OperatorKind {
    /// The job-file key that selects this kind.
    pub fn key(self) -> &'static str {
        match self {
            OperatorKind::Map => "map",
            OperatorKind::Filter => "filter",
            OperatorKind::FlatMap => "flat-map",
        }
    }
}

/// A step resolved and checked: the plugin file exists and its kind is known.
#[derive(Clone, Debug)]
pub struct Step {
    /// Unique name of the step in its job.
    pub name: String,
    /// Which operator world the plugin must implement.
    pub kind: OperatorKind,
    /// Absolute or job-relative path to the component.
    pub plugin: PathBuf,
    /// The step's params as a JSON object text.
    pub params_json: String,
}

/// A job ready to run: names assigned, paths resolved, everything checked.
#[derive(Clone, Debug)]
pub struct Job {
    /// Name of the job.
    pub name: String,
    /// The job file it came from.
    pub file: PathBuf,
    /// Events per batch.
    pub batch_size: usize,
    /// Sources with their resolved names and paths.
    pub sources: Vec<(String, SourceSpec)>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Sinks with their resolved names and paths.
    pub sinks: Vec<(String, SinkSpec)>,
}

/// Why a job file cannot run, always naming the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The file cannot be read.
    #[error("cannot read job file {file}: {source}")]
    Read {
        /// The job file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not match the job schema.
    #[error("{file}{}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Syntax {
        /// The job file.
        file: PathBuf,
        /// Line and column, when the parser knows them.
        location: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
    },
    /// The job parses but makes no sense (a step without an operator, a missing plugin).
    #[error("{file}{}: {what}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The job file.
        file: PathBuf,
        /// Line of the offending entry, when it can be found.
        line: Option<usize>,
        /// The entry at fault, e.g. `steps[2] (to-eur)`.
        what: String,
        /// What is wrong with it.
        message: String,
    },
}

impl Job {
    /// Reads, parses and checks the job file at `file`; `plugin_dir` overrides the file's.
    pub fn load(file: &Path, plugin_dir: Option<&Path>) -> Result<Job, JobError> {
        let text = std::fs::read_to_string(file).map_err(|source| JobError::Read {
            file: file.to_owned(),
            source,
        })?;
        Job::parse(&text, file, plugin_dir)
    }

    /// Parses and checks job text that came from `file` (used for relative paths and errors).
    pub fn parse(text: &str, file: &Path, plugin_dir: Option<&Path>) -> Result<Job, JobError> {
        let spec: JobSpec = serde_yaml::from_str(text).map_err(|e| JobError::Syntax {
            file: file.to_owned(),
            location: e.location().map(|l| (l.line(), l.column())),
            message: e.to_string(),
        })?;
        Resolver { file, text }.resolve(spec, plugin_dir)
    }
}

/// Turns a parsed spec into a checked [`Job`], pointing errors at lines of the text.
struct Resolver<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Resolver<'_> {
    fn invalid(&self, what: String, hint: &str, message: String) -> JobError {
        JobError::Invalid {
            file: self.file.to_owned(),
            line: line_of(self.text, hint),
            what,
            message,
        }
    }

    fn base_dir(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn resolve(&self, spec: JobSpec, plugin_dir: Option<&Path>) -> Result<Job, JobError> {
        let base = self.base_dir();
        if spec.name.trim().is_empty() {
            return Err(self.invalid("name".into(), "name:", "must not be empty".into()));
        }
        if spec.sources.is_empty() {
            return Err(self.invalid(
                "sources".into(),
                "sources:",
                "a job needs at least one source".into(),
            ));
        }
        if spec.sinks.is_empty() {
            return Err(self.invalid(
                "sinks".into(),
                "sinks:",
                "a job needs at least one sink".into(),
            ));
        }
        let batch_size = spec.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            return Err(self.invalid(
                "batch-size".into(),
                "batch-size:",
                "must be at least 1".into(),
            ));
        }
        let plugin_base = match (plugin_dir, &spec.plugin_dir) {
            (Some(dir), _) => dir.to_owned(),
            (None, Some(dir)) => base.join(dir),
            (None, None) => base.clone(),
        };
        let mut names = std::collections::HashSet::new();
        let sources = spec
            .sources
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                let name = match &mut s {
                    SourceSpec::File { name, path, .. } => {
                        *path = base.join(&*path);
                        name.clone().unwrap_or_else(|| format!("source-{i}"))
                    }
                    SourceSpec::Stdin { name, .. } => {
                        name.clone().unwrap_or_else(|| "stdin".into())
                    }
                    SourceSpec::Generator { name, rate, .. } => {
                        if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                            return Err(self.invalid(
                                format!("sources[{i}]"),
                                "rate:",
                                "rate must be a positive number of events per second".into(),
                            ));
                        }
                        name.clone().unwrap_or_else(|| format!("source-{i}"))
                    }
                };
                self.unique(&mut names, &name, format!("sources[{i}]"))?;
                Ok((name, s))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let steps = spec
            .steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.step(i, s, &plugin_base, &mut names))
            .collect::<Result<Vec<_>, _>>()?;
        let sinks = spec
            .sinks
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                let name = match &mut s {
                    SinkSpec::Stdout { name } => name.clone().unwrap_or_else(|| "stdout".into()),
                    SinkSpec::File { name, path } => {
                        *path = base.join(&*path);
                        name.clone().unwrap_or_else(|| format!("sink-{i}"))
                    }
                };
                self.unique(&mut names, &name, format!("sinks[{i}]"))?;
                Ok((name, s))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Job {
            name: spec.name,
            file: self.file.to_owned(),
            batch_size,
            sources,
            steps,
            sinks,
        })
    }

    fn unique(
        &self,
        names: &mut std::collections::HashSet<String>,
        name: &str,
        what: String,
    ) -> Result<(), JobError> {
        if names.insert(name.to_owned()) {
            Ok(())
        } else {
            Err(self.invalid(
                what,
                &format!("name: {name}"),
                format!("the name {name:?} is used twice; names must be unique in a job"),
            ))
        }
    }

    fn step(
        &self,
        i: usize,
        spec: StepSpec,
        plugin_base: &Path,
        names: &mut std::collections::HashSet<String>,
    ) -> Result<Step, JobError> {
        let label = match &spec.name {
            Some(n) => format!("steps[{i}] ({n})"),
            None => format!("steps[{i}]"),
        };
        let hint = spec
            .name
            .as_ref()
            .map(|n| format!("name: {n}"))
            .unwrap_or_else(|| "steps:".into());
        let chosen: Vec<(OperatorKind, PathBuf)> = [
            (OperatorKind::Map, spec.map),
            (OperatorKind::Filter, spec.filter),
            (OperatorKind::FlatMap, spec.flat_map),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.map(|p| (k, p)))
        .collect();
        let (kind, path) = match chosen.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(self.invalid(
                    label,
                    &hint,
                    "a step needs one of `map`, `filter` or `flat-map` with a component path"
                        .into(),
                ));
            }
            many => {
                let keys: Vec<_> = many.iter().map(|(k, _)| k.key()).collect();
                return Err(self.invalid(
                    label,
                    &hint,
                    format!("a step has exactly one operator, found {}", keys.join(", ")),
                ));
            }
        };
        let plugin = plugin_base.join(&path);
        if !plugin.is_file() {
            return Err(self.invalid(
                label,
                &path.display().to_string(),
                format!("plugin component {} not found", plugin.display()),
            ));
        }
        let name = spec.name.unwrap_or_else(|| format!("{}-{i}", kind.key()));
        self.unique(names, &name, format!("steps[{i}]"))?;
        let params_json = serde_json::to_string(&spec.params)
            .map_err(|e| self.invalid(format!("steps[{i}].params"), "params:", e.to_string()))?;
        Ok(Step {
            name,
            kind,
            plugin,
            params_json,
        })
    }
}

/// The 1-based line of the first line containing `needle`, to point errors at.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Job, JobError> {
        Job::parse(text, Path::new("/jobs/test.yaml"), None)
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let err =
            parse("name: x\nsources:\n  - type: file\n    pathh: a\nsinks: []\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/jobs/test.yaml:"), "{msg}");
        assert!(msg.contains("pathh"), "{msg}");
        assert!(matches!(
            err,
            JobError::Syntax {
                location: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn missing_plugin_names_step_and_line() {
        let text = "name: x\nsources:\n  - type: stdin\nsteps:\n  - name: conv\n    map: nope.wasm\nsinks:\n  - type: stdout\n";
        let msg = parse(text).unwrap_err().to_string();
        assert_eq!(
            msg,
            "/jobs/test.yaml:6: steps[0] (conv): plugin component /jobs/nope.wasm not found"
        );
    }

    #[test]
    fn a_step_needs_exactly_one_operator() {
        let text = "name: x\nsources:\n  - type: stdin\nsteps:\n  - name: s\n    params: {}\nsinks:\n  - type: stdout\n";
        assert!(
            parse(text)
                .unwrap_err()
                .to_string()
                .contains("needs one of")
        );
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let text = "name: x\nsources:\n  - type: stdin\n    name: a\nsinks:\n  - type: stdout\n    name: a\n";
        assert!(parse(text).unwrap_err().to_string().contains("used twice"));
    }

    #[test]
    fn relative_paths_resolve_against_the_job_file() {
        let text = "name: x\nsources:\n  - type: file\n    path: in.jsonl\nsinks:\n  - type: file\n    path: out/o.jsonl\n";
        let job = parse(text).unwrap();
        assert!(
            matches!(&job.sources[0].1, SourceSpec::File { path, .. } if path == Path::new("/jobs/in.jsonl"))
        );
        assert!(
            matches!(&job.sinks[0].1, SinkSpec::File { path, .. } if path == Path::new("/jobs/out/o.jsonl"))
        );
        assert_eq!(job.batch_size, DEFAULT_BATCH_SIZE);
    }
}
