//! The plugin functions of window steps: an aggregate function folds a window's events
//! into an accumulator the host keeps as bytes (core [`AggregateFunction`]); a window
//! function sees all of one key's window at once (core [`WindowFunction`]).

use eddy_core::operator::{AggregateFunction, WindowFunction};
use eddy_core::{Batch, OperatorError};

use crate::WasmError;
use crate::bindings::base::eddy::plugin::types::Window;
use crate::bindings::{WitBatch, aggregate::AggregatePlugin, window::WindowPlugin};
use crate::instance::Instance;

/// An aggregate-function plugin instance for one subtask of a window step.
pub struct WasmAggregate {
    instance: Instance<AggregatePlugin>,
}

impl WasmAggregate {
    /// The aggregate function run by the opened `instance`.
    pub fn new(instance: Instance<AggregatePlugin>) -> Self {
        WasmAggregate { instance }
    }

    /// `result` as the step's error.
    fn step_error<T>(&self, result: Result<T, WasmError>) -> Result<T, OperatorError> {
        result.map_err(|e| e.for_step(self.instance.step()))
    }
}

impl AggregateFunction for WasmAggregate {
    fn create(&mut self) -> Result<Vec<u8>, OperatorError> {
        let acc = self.instance.call("create", |b, store| {
            b.eddy_plugin_aggregate_function()
                .call_create(store)
                .map(Ok)
        });
        self.step_error(acc)
    }

    fn add(&mut self, acc: Vec<u8>, events: Batch) -> Result<Vec<u8>, OperatorError> {
        let wit = WitBatch::from(events);
        let acc = self.instance.call("add", |b, store| {
            b.eddy_plugin_aggregate_function()
                .call_add(store, &acc, &wit)
        });
        self.step_error(acc)
    }

    fn merge(&mut self, a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, OperatorError> {
        let acc = self.instance.call("merge", |bound, store| {
            bound
                .eddy_plugin_aggregate_function()
                .call_merge(store, &a, &b)
        });
        self.step_error(acc)
    }

    fn result(&mut self, acc: Vec<u8>) -> Result<Vec<u8>, OperatorError> {
        let result = self.instance.call("get-result", |b, store| {
            b.eddy_plugin_aggregate_function()
                .call_get_result(store, &acc)
        });
        self.step_error(result)
    }
}

/// A window-function plugin instance for one subtask of a window step.
pub struct WasmWindowFunction {
    instance: Instance<WindowPlugin>,
}

impl WasmWindowFunction {
    /// The window function run by the opened `instance`.
    pub fn new(instance: Instance<WindowPlugin>) -> Self {
        WasmWindowFunction { instance }
    }

    fn call(&mut self, key: &[u8], window: (i64, i64), events: Batch) -> Result<Batch, WasmError> {
        const FUNCTION: &str = "process-window";
        let wit = WitBatch::from(events);
        let bounds = Window {
            start: window.0,
            end: window.1,
        };
        let out = self.instance.call(FUNCTION, |b, store| {
            b.eddy_plugin_window_function()
                .call_process_window(store, key, bounds, &wit)
        })?;
        let out = Batch::from(out);
        self.instance.check_output(&out, FUNCTION)?;
        Ok(out)
    }
}

impl WindowFunction for WasmWindowFunction {
    fn process(
        &mut self,
        key: &[u8],
        window: (i64, i64),
        events: Batch,
    ) -> Result<Batch, OperatorError> {
        self.call(key, window, events)
            .map_err(|e| e.for_step(self.instance.step()))
    }
}
