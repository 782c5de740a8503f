//! What a dataflow is built from besides its job: the connectors by `type:`, and who
//! builds plugin steps. The core registers its built-ins; the binary adds the WASM
//! runtime, the connectors of leaf crates, and natively compiled twins of plugins
//! (for benchmarks), without any of them wrapping another.

use std::collections::HashMap;
use std::path::Path;

use crate::connectors::{Connector, Connectors};
use crate::job::{Job, Step, StepOp};
use crate::operator::{
    AggregateFunction, Operator, OperatorError, OperatorFactory, WindowFunction,
};
use crate::state::backend::BackendFactory;

/// The connectors and plugin builders of one process.
#[derive(Clone, Default)]
pub struct Registry<'a> {
    /// Sources and sinks, by `type:`.
    pub connectors: Connectors<'a>,
    /// Builds plugin steps from components (the WASM runtime).
    runtime: Option<&'a dyn OperatorFactory>,
    /// Builds the plugins of a given file name natively instead.
    natives: HashMap<String, &'a dyn OperatorFactory>,
}

impl<'a> Registry<'a> {
    /// The built-in connectors and operators only: a plugin step cannot be built.
    pub fn builtin() -> Self {
        Registry::default()
    }

    /// This registry and `connector` for sources and sinks of `type_name`.
    pub fn connector(mut self, type_name: &'static str, connector: &'a dyn Connector) -> Self {
        self.connectors = self.connectors.with(type_name, connector);
        self
    }

    /// This registry, building plugin steps with `runtime`.
    pub fn plugins(mut self, runtime: &'a dyn OperatorFactory) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// This registry, building every plugin whose file is named `file` with `native`.
    pub fn native(mut self, file: &str, native: &'a dyn OperatorFactory) -> Self {
        self.natives.insert(file.to_owned(), native);
        self
    }

    /// Who builds plugin `plugin` of step `step`.
    fn builder(&self, step: &str, plugin: &Path) -> Result<&'a dyn OperatorFactory, OperatorError> {
        let file = plugin.file_name().map(|f| f.to_string_lossy());
        if let Some(native) = file.and_then(|f| self.natives.get(f.as_ref())) {
            return Ok(*native);
        }
        self.runtime.ok_or_else(|| {
            let message = format!(
                "plugin {} needs the WASM runtime, which this process does not have",
                plugin.display()
            );
            OperatorError::new(step, message).with_class(crate::ErrorClass::USER_FATAL)
        })
    }
}

impl OperatorFactory for Registry<'_> {
    fn create(
        &self,
        job: &Job,
        step: &Step,
        subtask: u32,
        parallelism: u32,
        state: &dyn BackendFactory,
    ) -> Result<Box<dyn Operator>, OperatorError> {
        let StepOp::Plugin { plugin, .. } = &step.op else {
            let message = "a built-in step reached the plugin builders";
            return Err(
                OperatorError::new(&step.name, message).with_class(crate::ErrorClass::INTERNAL)
            );
        };
        self.builder(&step.name, plugin)?
            .create(job, step, subtask, parallelism, state)
    }

    fn aggregate(
        &self,
        job: &Job,
        step: &Step,
        plugin: &Path,
        params_json: &str,
        subtask: u32,
    ) -> Result<Box<dyn AggregateFunction>, OperatorError> {
        self.builder(&step.name, plugin)?
            .aggregate(job, step, plugin, params_json, subtask)
    }

    fn window_function(
        &self,
        job: &Job,
        step: &Step,
        plugin: &Path,
        params_json: &str,
        subtask: u32,
    ) -> Result<Box<dyn WindowFunction>, OperatorError> {
        self.builder(&step.name, plugin)?
            .window_function(job, step, plugin, params_json, subtask)
    }
}
