//! The operator contract between the executor and whatever computes (WASM plugins, built-ins).

use std::path::Path;
use std::sync::Arc;

use crate::batch::Batch;
use crate::error::ErrorClass;
use crate::job::{Job, Step};
use crate::metrics::PluginCounters;
use crate::state::StateEntry;
use crate::state::backend::BackendFactory;

/// A transformation of batches; one instance per operator subtask.
///
/// Only `process` is required; hooks for watermarks, timers and checkpoints join it as
/// defaulted methods, so that simple operators stay one method long.
pub trait Operator: Send {
    /// Transforms one input batch into the output batch.
    fn process(&mut self, input: Batch) -> Result<Batch, OperatorError>;

    /// Event time has advanced to `watermark`: emit what it completes (windows, timers).
    fn on_watermark(&mut self, watermark: i64) -> Result<Batch, OperatorError> {
        let _ = watermark;
        Ok(Batch::default())
    }

    /// Processing time reached `now` (ms): emit what it completes.
    fn on_processing_time(&mut self, now: i64) -> Result<Batch, OperatorError> {
        let _ = now;
        Ok(Batch::default())
    }

    /// Events the operator sent to side outputs since the last call, by tag.
    fn take_side_outputs(&mut self) -> Vec<(String, Batch)> {
        Vec::new()
    }

    /// Makes the operator usable again after a failed call (a trapped plugin instance
    /// is replaced by a fresh one), so that a dead-letter policy can go on.
    fn reset(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    /// A checkpoint barrier arrived: the operator's state, as entries by key group so
    /// that a restore at another parallelism can split it. `target` is the directory of
    /// the checkpoint being written, for state kept in files (`None` for the final
    /// state of a finished task). Stateless operators keep the default.
    fn snapshot(&mut self, target: Option<&Path>) -> Result<Vec<StateEntry>, OperatorError> {
        let _ = target;
        Ok(Vec::new())
    }

    /// Takes up the state of the checkpoint in directory `from`: the entries of this
    /// subtask's key groups (from any number of former subtasks) and every
    /// operator-wide one.
    fn restore(&mut self, entries: Vec<StateEntry>, from: &Path) -> Result<(), OperatorError> {
        let _ = (entries, from);
        Ok(())
    }

    /// Counters of the sandboxed plugin behind this operator, if it is one.
    fn plugin_counters(&self) -> Option<Arc<PluginCounters>> {
        None
    }
}

/// A window aggregate function whose accumulators the host keeps as opaque bytes.
pub trait AggregateFunction: Send {
    /// A fresh accumulator.
    fn create(&mut self) -> Result<Vec<u8>, OperatorError>;
    /// Folds `events` (of one key and window) into `acc`.
    fn add(&mut self, acc: Vec<u8>, events: Batch) -> Result<Vec<u8>, OperatorError>;
    /// Combines two accumulators.
    fn merge(&mut self, a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, OperatorError>;
    /// The window's result, as JSON bytes.
    fn result(&mut self, acc: Vec<u8>) -> Result<Vec<u8>, OperatorError>;
}

/// A window function that sees every event of one key's window at once.
pub trait WindowFunction: Send {
    /// The output of one key's window `[start, end)` from all of its events.
    fn process(
        &mut self,
        key: &[u8],
        window: (i64, i64),
        events: Batch,
    ) -> Result<Batch, OperatorError>;
}

/// Creates operator instances for plugin steps; lets the core run without knowing WASM
/// (see [`crate::registry::Registry`], which holds the one a dataflow uses).
pub trait OperatorFactory {
    /// An instance of `step` for subtask `subtask` of `parallelism`; a stateful one
    /// (a process function) opens its keyed state through `state`, the job's backend.
    fn create(
        &self,
        job: &Job,
        step: &Step,
        subtask: u32,
        parallelism: u32,
        state: &dyn BackendFactory,
    ) -> Result<Box<dyn Operator>, OperatorError>;

    /// An instance of the aggregate function `plugin` (configured by `params_json`) for
    /// subtask `subtask` of `step`.
    fn aggregate(
        &self,
        job: &Job,
        step: &Step,
        plugin: &std::path::Path,
        params_json: &str,
        subtask: u32,
    ) -> Result<Box<dyn AggregateFunction>, OperatorError>;

    /// An instance of the window function `plugin` for subtask `subtask` of `step`.
    fn window_function(
        &self,
        job: &Job,
        step: &Step,
        plugin: &std::path::Path,
        params_json: &str,
        subtask: u32,
    ) -> Result<Box<dyn WindowFunction>, OperatorError>;
}

/// An operator failed; names the step and carries the operator's own error.
#[derive(Debug, thiserror::Error)]
#[error("step {step:?}: {source}")]
pub struct OperatorError {
    /// Name of the step.
    pub step: String,
    /// What went wrong, as the operator reports it.
    pub source: Box<dyn std::error::Error + Send + Sync>,
    /// Whether a restart can get past it; the operator knows best, so it sets it.
    pub class: ErrorClass,
}

impl OperatorError {
    /// Wraps an error of step `step`, of the default class (retried unless it recurs
    /// unchanged, see [`ErrorClass::default`]).
    pub fn new(step: &str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        OperatorError {
            step: step.to_owned(),
            source: source.into(),
            class: ErrorClass::default(),
        }
    }

    /// The same error, of class `class`.
    pub fn with_class(mut self, class: ErrorClass) -> Self {
        self.class = class;
        self
    }

    /// Whether a restart can get past this error.
    pub fn class(&self) -> ErrorClass {
        self.class
    }
}
