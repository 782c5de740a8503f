//! The `sources` section: names, paths, parallelism and event time of each source.

use super::{Defaults, Resolver};
use crate::job::{GeneratorShape, JobError, SourceSpec};

impl Resolver<'_> {
    /// Every source, named and checked.
    pub(super) fn sources(
        &mut self,
        specs: Vec<SourceSpec>,
        defaults: &Defaults<'_>,
    ) -> Result<Vec<(String, SourceSpec)>, JobError> {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.source(i, s, defaults))
            .collect()
    }

    fn source(
        &mut self,
        i: usize,
        mut s: SourceSpec,
        defaults: &Defaults<'_>,
    ) -> Result<(String, SourceSpec), JobError> {
        let what = format!("sources[{i}]");
        let at = |key: &str| format!("{what}.{key}");
        let name = match &mut s {
            SourceSpec::File { name, path, .. } => {
                *path = defaults.base.join(&*path);
                name.clone().unwrap_or_else(|| format!("source-{i}"))
            }
            SourceSpec::Stdin { name, .. } => name.clone().unwrap_or_else(|| "stdin".into()),
            SourceSpec::Generator {
                name,
                rate,
                event_rate,
                shape,
                parallelism: p,
                ..
            } => {
                if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                    return Err(self.invalid(
                        &what,
                        &at("rate"),
                        "rate must be a positive number of events per second",
                    ));
                }
                match (event_rate, shape) {
                    (Some(r), GeneratorShape::Nexmark) if !(*r > 0.0 && r.is_finite()) => {
                        return Err(self.invalid(
                            &what,
                            &at("event-rate"),
                            "event-rate must be a positive number of events per second",
                        ));
                    }
                    (Some(_), shape) if *shape != GeneratorShape::Nexmark => {
                        return Err(self.invalid(
                            &what,
                            &at("event-rate"),
                            "event-rate applies to `shape: nexmark` only",
                        ));
                    }
                    _ => {}
                }
                *p = Some(self.source_parallelism(*p, defaults.parallelism, &what, defaults)?);
                name.clone().unwrap_or_else(|| format!("source-{i}"))
            }
            SourceSpec::Plugin {
                name,
                plugin,
                parallelism: p,
                sandbox,
                grants,
                ..
            } => {
                *plugin = self.connector_plugin(defaults, plugin, &what, &at("plugin"))?;
                *p = Some(self.source_parallelism(*p, 1, &what, defaults)?);
                **grants = self.connector_sandbox(defaults, sandbox, &at("sandbox"))?;
                name.clone().unwrap_or_else(|| format!("source-{i}"))
            }
            SourceSpec::Kafka(kafka) => {
                if kafka.topics.is_empty() {
                    return Err(self.invalid(
                        &what,
                        &at("topics"),
                        "a Kafka source needs at least one topic",
                    ));
                }
                if kafka.max_rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                    return Err(self.invalid(
                        &what,
                        &at("max-rate"),
                        "max-rate must be a positive number of records per second",
                    ));
                }
                kafka.parallelism = Some(self.source_parallelism(
                    kafka.parallelism,
                    defaults.parallelism,
                    &what,
                    defaults,
                )?);
                kafka.name.clone().unwrap_or_else(|| format!("source-{i}"))
            }
        };
        let own_timestamps = matches!(
            s,
            SourceSpec::Kafka(_)
                | SourceSpec::Plugin { .. }
                | SourceSpec::Generator {
                    shape: GeneratorShape::Nexmark,
                    ..
                }
        );
        if !own_timestamps && s.event_time().is_some_and(|t| t.field.is_none()) {
            return Err(self.invalid(
                at("event-time"),
                &at("event-time"),
                "`field` names the JSON field holding the event time; only Kafka, Nexmark and \
                 plugin sources have timestamps of their own",
            ));
        }
        self.unique(&name, &what, &what)?;
        Ok((name, s))
    }

    /// A source's parallelism: its own, or `default`, within the job's key groups.
    fn source_parallelism(
        &self,
        own: Option<u32>,
        default: u32,
        what: &str,
        defaults: &Defaults<'_>,
    ) -> Result<u32, JobError> {
        let chosen = own.unwrap_or(default);
        let path = format!("{what}.parallelism");
        self.check_parallelism(&path, &path, chosen, defaults.max_parallelism)?;
        Ok(chosen)
    }
}
