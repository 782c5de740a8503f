//! The `steps` section: exactly one operator per step, its plugin, expressions, window
//! or join checked, its parallelism and sandbox resolved.

use std::path::PathBuf;

use super::{Defaults, Resolver};
use crate::expr::Expr;
use crate::job::{JobError, OperatorKind, RollingSpec, SourceSpec, Step, StepOp, StepSpec};

impl Resolver<'_> {
    /// Every step, checked, then the joins among them against the sources they join.
    pub(super) fn steps(
        &mut self,
        specs: Vec<StepSpec>,
        defaults: &Defaults<'_>,
        sources: &[(String, SourceSpec)],
    ) -> Result<Vec<Step>, JobError> {
        let steps = specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.step(i, s, defaults))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, step) in steps.iter().enumerate() {
            if let StepOp::Join(join) = &step.op {
                self.check_join(i, step, join, sources)?;
            }
        }
        Ok(steps)
    }

    fn step(
        &mut self,
        i: usize,
        spec: StepSpec,
        defaults: &Defaults<'_>,
    ) -> Result<Step, JobError> {
        let path = format!("steps[{i}]");
        let at = |key: &str| format!("{path}.{key}");
        let label = match &spec.name {
            Some(n) => format!("steps[{i}] ({n})"),
            None => path.clone(),
        };
        let plugin = |kind: OperatorKind, file: &PathBuf| (kind.key(), Some((kind, file.clone())));
        let mut chosen: Vec<(&str, Option<(OperatorKind, PathBuf)>)> = Vec::new();
        if let Some(p) = &spec.map {
            chosen.push(plugin(OperatorKind::Map, p));
        }
        if let Some(p) = &spec.filter {
            chosen.push(plugin(OperatorKind::Filter, p));
        }
        if let Some(p) = &spec.flat_map {
            chosen.push(plugin(OperatorKind::FlatMap, p));
        }
        if let Some(p) = &spec.process {
            chosen.push(plugin(OperatorKind::Process, p));
        }
        for (key, set) in [
            ("key-by", spec.key_by.is_some()),
            ("where", spec.where_.is_some()),
            ("select", spec.select.is_some()),
            ("rolling", spec.rolling.is_some()),
            ("window", spec.window.is_some()),
            ("join", spec.join.is_some()),
        ] {
            if set {
                chosen.push((key, None));
            }
        }
        let key = match chosen.as_slice() {
            [(key, _)] => *key,
            [] => {
                return Err(self.invalid(
                    label,
                    &path,
                    "a step needs one of `map`, `filter`, `flat-map`, `process` (a component \
                     path), `key-by`, `where`, `select`, `rolling` or `window`",
                ));
            }
            many => {
                let keys: Vec<_> = many.iter().map(|(k, _)| *k).collect();
                return Err(self.invalid(
                    label,
                    &at(keys[1]),
                    format!("a step has exactly one operator, found {}", keys.join(", ")),
                ));
            }
        };
        let expr = |text: &str, what: &str| {
            Expr::parse(text)
                .map_err(|e| self.invalid(format!("{label}.{what}"), &at(what), e.to_string()))
        };
        let op = match (key, chosen.pop().and_then(|c| c.1)) {
            (_, Some((kind, file))) => {
                let plugin = defaults.plugin_base.join(&file);
                if !plugin.is_file() {
                    return Err(self.invalid(
                        label,
                        &at(key),
                        format!("plugin component {} not found", plugin.display()),
                    ));
                }
                let params_json = serde_json::to_string(&spec.params)
                    .map_err(|e| self.invalid(at("params"), &at("params"), e.to_string()))?;
                StepOp::Plugin {
                    kind,
                    plugin,
                    params_json,
                }
            }
            ("key-by", None) => {
                let field = spec.key_by.unwrap_or_default();
                let fields: Vec<String> = field.split('.').map(str::to_owned).collect();
                if fields.iter().any(String::is_empty) {
                    return Err(self.invalid(
                        format!("{label}.key-by"),
                        &at("key-by"),
                        format!("{field:?} is not a field path like `customer` or `user.id`"),
                    ));
                }
                StepOp::KeyBy(fields)
            }
            ("where", None) => StepOp::Where(expr(&spec.where_.unwrap_or_default(), "where")?),
            ("select", None) => StepOp::Select(
                spec.select
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, text)| Ok((name.clone(), expr(&text, &format!("select.{name}"))?)))
                    .collect::<Result<_, JobError>>()?,
            ),
            ("window", None) => {
                let mut window = spec.window.clone().ok_or_else(|| {
                    self.invalid(label.clone(), &path, "a window step needs `window:`")
                })?;
                for (function, key) in window
                    .function
                    .iter_mut()
                    .map(|f| (f, "function"))
                    .chain(window.process.iter_mut().map(|f| (f, "process")))
                {
                    let file = defaults.plugin_base.join(&function.plugin);
                    if !file.is_file() {
                        return Err(self.invalid(
                            label,
                            &at(&format!("window.{key}.plugin")),
                            format!("plugin component {} not found", file.display()),
                        ));
                    }
                    function.plugin = file;
                }
                if window.process.is_some()
                    && (window.function.is_some() || !window.aggregate.is_empty())
                {
                    return Err(self.invalid(
                        format!("{label}.window"),
                        &at("window.process"),
                        "a window has either a `process` function or aggregates, not both",
                    ));
                }
                window
                    .assigner()
                    .map_err(|m| self.invalid(format!("{label}.window"), &at("window"), m))?;
                StepOp::Window(Box::new(window))
            }
            ("join", None) => {
                let join = spec.join.clone().ok_or_else(|| {
                    self.invalid(label.clone(), &path, "a join step needs `join:`")
                })?;
                join.check()
                    .map_err(|m| self.invalid(format!("{label}.join"), &at("join"), m))?;
                StepOp::Join(join)
            }
            (_, None) => StepOp::Rolling(spec.rolling.unwrap_or(RollingSpec::Count)),
        };
        if !matches!(op, StepOp::Plugin { .. }) && !spec.params.is_empty() {
            return Err(self.invalid(label, &at("params"), "only plugin steps take `params`"));
        }
        let parallelism = spec.parallelism.unwrap_or(defaults.parallelism);
        self.check_parallelism(
            &format!("{label}.parallelism"),
            &at("parallelism"),
            parallelism,
            defaults.max_parallelism,
        )?;
        if spec.sandbox.max_stack.is_some() {
            return Err(self.invalid(
                format!("{label}.sandbox"),
                &at("sandbox.max-stack"),
                "max-stack is set for the whole job, in the job's `sandbox:`",
            ));
        }
        let sandbox = defaults
            .sandbox
            .merged(&spec.sandbox)
            .resolve(&defaults.base)
            .map_err(|m| self.invalid(format!("{label}.sandbox"), &at("sandbox"), m))?;
        let name = spec.name.unwrap_or_else(|| format!("{key}-{i}"));
        self.unique(&name, &path, &path)?;
        Ok(Step {
            name,
            op,
            parallelism,
            partition: spec.partition,
            sandbox,
            on_error: spec.on_error,
            side_outputs: spec.side_outputs,
        })
    }

    /// A join is the first step, and joins exactly the job's sources, which have event time.
    fn check_join(
        &self,
        i: usize,
        step: &Step,
        join: &crate::job::join::JoinSpec,
        sources: &[(String, SourceSpec)],
    ) -> Result<(), JobError> {
        let what = format!("steps[{i}] ({})", step.name);
        let at = format!("steps[{i}].join");
        if i != 0 {
            return Err(self.invalid(what, &at, "a join must be the first step"));
        }
        for (side, key) in [(&join.left, "left"), (&join.right, "right")] {
            let side_at = format!("{at}.{key}.source");
            let Some((_, source)) = sources.iter().find(|(n, _)| *n == side.source) else {
                return Err(self.invalid(
                    what,
                    &side_at,
                    format!("no source named {:?}", side.source),
                ));
            };
            if source.event_time().is_none() {
                return Err(self.invalid(
                    what,
                    &side_at,
                    format!("source {:?} needs `event-time` to be joined", side.source),
                ));
            }
        }
        if let Some((name, _)) = sources
            .iter()
            .find(|(n, _)| *n != join.left.source && *n != join.right.source)
        {
            return Err(self.invalid(
                what,
                &at,
                format!("source {name:?} is neither side of the join"),
            ));
        }
        Ok(())
    }
}
