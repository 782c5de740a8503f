//! The outputs of a job: its sinks, the sinks of side outputs, and the dead-letter sink,
//! each checked against what the steps emit and what checkpoints can promise.

use super::{Defaults, Resolver};
use crate::job::kafka::Guarantee;
use crate::job::sandbox::OnError;
use crate::job::{JobError, SinkSpec, SourceSpec, Step, StepOp};

/// A job's sinks, sorted by what they read.
pub(super) struct Outputs {
    /// Sinks of the main output.
    pub sinks: Vec<(String, SinkSpec)>,
    /// Sinks of side outputs.
    pub side_sinks: Vec<(String, SinkSpec)>,
    /// The dead-letter sink.
    pub dead_letter: Option<(String, SinkSpec)>,
}

impl Resolver<'_> {
    /// Every sink, named, with its paths resolved, and matched with the side outputs
    /// and dead letters the steps and sources produce.
    pub(super) fn sinks(
        &mut self,
        specs: Vec<SinkSpec>,
        dead_letter: Option<SinkSpec>,
        defaults: &Defaults<'_>,
        sources: &[(String, SourceSpec)],
        steps: &[Step],
    ) -> Result<Outputs, JobError> {
        let mut sinks = Vec::new();
        let mut side_sinks = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let path = format!("sinks[{i}]");
            let sink = self.sink(i, spec, defaults)?;
            match sink.1.input() {
                None => sinks.push(sink),
                Some(input) => {
                    if !side_outputs(steps).any(|o| o == input) {
                        return Err(self.invalid(
                            format!("sink {:?}", sink.0),
                            &format!("{path}.input"),
                            format!("no step has a side output named {input:?}"),
                        ));
                    }
                    side_sinks.push((sink, path));
                }
            }
        }
        if sinks.is_empty() {
            return Err(self.invalid(
                "sinks",
                "sinks",
                "a job needs at least one sink of its main output (without `input`)",
            ));
        }
        if let Some((step, missing)) = steps.iter().enumerate().find_map(|(i, s)| {
            side_outputs(std::slice::from_ref(s))
                .find(|o| !side_sinks.iter().any(|((_, k), _)| k.input() == Some(o)))
                .map(|o| (i, o))
        }) {
            let at = match &steps[step].op {
                StepOp::Window(w) if w.late_output.as_deref() == Some(missing) => {
                    format!("steps[{step}].window.late-output")
                }
                _ => format!("steps[{step}].side-outputs"),
            };
            return Err(self.invalid(
                format!("late-output {missing:?}"),
                &at,
                format!("no sink reads it: add a sink with `input: {missing}`"),
            ));
        }
        let dead_letter = dead_letter.map(|mut sink| {
            if let SinkSpec::File { path, .. } = &mut sink {
                *path = defaults.base.join(&*path);
            }
            ("dead-letter".to_owned(), sink)
        });
        if dead_letter.is_none() {
            let dead_lettering = steps
                .iter()
                .enumerate()
                .filter(|(_, s)| s.on_error == OnError::DeadLetter)
                .map(|(i, s)| (format!("step {:?}", s.name), format!("steps[{i}].on-error")))
                .chain(
                    sources
                        .iter()
                        .enumerate()
                        .filter_map(|(i, (name, s))| match s {
                            SourceSpec::Kafka(k) if k.on_error == OnError::DeadLetter => {
                                Some((format!("source {name:?}"), format!("sources[{i}].on-error")))
                            }
                            _ => None,
                        }),
                )
                .next();
            if let Some((what, at)) = dead_lettering {
                return Err(self.invalid(
                    what,
                    &at,
                    "`on-error: dead-letter` needs a `dead-letter:` sink in the job",
                ));
            }
        }
        let unchecked = side_sinks
            .iter()
            .map(|(sink, path)| (sink, path.clone()))
            .chain(
                dead_letter
                    .iter()
                    .map(|sink| (sink, "dead-letter".to_owned())),
            )
            .find(|((_, s), _)| exactly_once(s));
        if let Some(((name, _), path)) = unchecked {
            return Err(self.invalid(
                format!("sink {name:?}"),
                &format!("{path}.guarantee"),
                "side outputs and dead letters are not part of checkpoints, so they cannot be \
                 written exactly once; use `guarantee: at-least-once`",
            ));
        }
        Ok(Outputs {
            sinks,
            side_sinks: side_sinks.into_iter().map(|(sink, _)| sink).collect(),
            dead_letter,
        })
    }

    /// An exactly-once Kafka sink commits a transaction per checkpoint: it needs them.
    pub(super) fn exactly_once(
        &self,
        sinks: &[(String, SinkSpec)],
        checkpoints: bool,
    ) -> Result<(), JobError> {
        if checkpoints {
            return Ok(());
        }
        let Some(i) = sinks.iter().position(|(_, s)| exactly_once(s)) else {
            return Ok(());
        };
        Err(self.invalid(
            format!("sink {:?}", sinks[i].0),
            &format!("sinks[{i}].guarantee"),
            "`exactly-once` commits a Kafka transaction per checkpoint: add a `checkpoints:` \
             section, or use `guarantee: at-least-once`",
        ))
    }

    fn sink(
        &mut self,
        i: usize,
        mut s: SinkSpec,
        defaults: &Defaults<'_>,
    ) -> Result<(String, SinkSpec), JobError> {
        let what = format!("sinks[{i}]");
        let name = match &mut s {
            SinkSpec::Stdout { name, .. } => name.clone().unwrap_or_else(|| "stdout".into()),
            SinkSpec::Discard { name, .. } => name.clone().unwrap_or_else(|| "discard".into()),
            SinkSpec::File { name, path, .. } => {
                *path = defaults.base.join(&*path);
                name.clone().unwrap_or_else(|| format!("sink-{i}"))
            }
            SinkSpec::Digest {
                name, path, rows, ..
            } => {
                *path = defaults.base.join(&*path);
                *rows = rows.as_ref().map(|r| defaults.base.join(r));
                name.clone().unwrap_or_else(|| format!("sink-{i}"))
            }
            SinkSpec::Plugin {
                name,
                plugin,
                sandbox,
                grants,
                ..
            } => {
                *plugin =
                    self.connector_plugin(defaults, plugin, &what, &format!("{what}.plugin"))?;
                **grants = self.connector_sandbox(defaults, sandbox, &format!("{what}.sandbox"))?;
                name.clone().unwrap_or_else(|| format!("sink-{i}"))
            }
            SinkSpec::Kafka(kafka) => kafka.name.clone().unwrap_or_else(|| format!("sink-{i}")),
        };
        self.unique(&name, &what, &what)?;
        Ok((name, s))
    }
}

/// The side outputs that `steps` emit: late events of windows, and process functions'.
fn side_outputs(steps: &[Step]) -> impl Iterator<Item = &str> {
    steps.iter().flat_map(|s| {
        let late = match &s.op {
            StepOp::Window(w) => w.late_output.as_deref(),
            _ => None,
        };
        late.into_iter()
            .chain(s.side_outputs.iter().map(String::as_str))
    })
}

/// Whether a sink promises exactly-once output through checkpoints.
fn exactly_once(sink: &SinkSpec) -> bool {
    matches!(sink, SinkSpec::Kafka(k) if k.guarantee == Guarantee::ExactlyOnce)
}
