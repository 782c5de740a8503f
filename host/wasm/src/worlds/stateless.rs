//! Map, filter and flat-map plugins as core [`Operator`]s: one batch in, one call, the
//! output checked against the world's contract and given its inputs' keys, timestamps
//! and headers.

use std::sync::Arc;

use eddy_core::metrics::PluginCounters;
use eddy_core::{Batch, Operator, OperatorError};

use crate::WasmError;
use crate::bindings::{filter, flat_map, map};
use crate::instance::{Instance, World};

/// A world whose instances transform each batch on its own, keeping no state.
pub trait StatelessWorld: World {
    /// Runs `input` through the instance and returns its checked output.
    fn apply(instance: &mut Instance<Self>, input: Batch) -> Result<Batch, WasmError>;
}

impl StatelessWorld for map::MapPlugin {
    fn apply(instance: &mut Instance<Self>, input: Batch) -> Result<Batch, WasmError> {
        const FUNCTION: &str = "map-batch";
        let n = input.len();
        let (input, result) = instance.call_batch(FUNCTION, input, |b, store, wit| {
            b.eddy_plugin_map_operator().call_map_batch(store, wit)
        });
        let mut out = Batch::from(result?);
        instance.check_output(&out, FUNCTION)?;
        if out.len() != n {
            return Err(instance.contract(
                FUNCTION,
                format!("returned {} events for {n} inputs", out.len()),
            ));
        }
        out.inherit_aligned(input);
        Ok(out)
    }
}

impl StatelessWorld for filter::FilterPlugin {
    fn apply(instance: &mut Instance<Self>, input: Batch) -> Result<Batch, WasmError> {
        const FUNCTION: &str = "filter-batch";
        let n = input.len();
        let (input, result) = instance.call_batch(FUNCTION, input, |b, store, wit| {
            b.eddy_plugin_filter_operator()
                .call_filter_batch(store, wit)
        });
        let keep = result?;
        if keep.len() == n {
            return Ok(input);
        }
        input
            .select(&keep)
            .map_err(|e| instance.contract(FUNCTION, e.to_string()))
    }
}

impl StatelessWorld for flat_map::FlatMapPlugin {
    fn apply(instance: &mut Instance<Self>, input: Batch) -> Result<Batch, WasmError> {
        const FUNCTION: &str = "flat-map-batch";
        let n = input.len();
        let (input, result) = instance.call_batch(FUNCTION, input, |b, store, wit| {
            b.eddy_plugin_flat_map_operator()
                .call_flat_map_batch(store, wit)
        });
        let output = result?;
        let mut out = Batch::from(output.events);
        instance.check_output(&out, FUNCTION)?;
        if output.origins.len() != out.len() || output.origins.iter().any(|&o| o as usize >= n) {
            return Err(instance.contract(
                FUNCTION,
                format!(
                    "returned {} origins for {} events of {n} inputs, or an origin out of range",
                    output.origins.len(),
                    out.len()
                ),
            ));
        }
        out.inherit_from(&input, &output.origins);
        Ok(out)
    }
}

/// A map, filter or flat-map plugin instance as an operator subtask.
pub struct WasmStateless<W: StatelessWorld> {
    instance: Instance<W>,
}

impl<W: StatelessWorld> WasmStateless<W> {
    /// The operator run by the opened `instance`.
    pub fn new(instance: Instance<W>) -> Self {
        WasmStateless { instance }
    }

    /// Runs one batch through the plugin and returns its output.
    pub fn call(&mut self, input: Batch) -> Result<Batch, WasmError> {
        W::apply(&mut self.instance, input)
    }

    /// The instance behind the operator.
    pub fn instance(&self) -> &Instance<W> {
        &self.instance
    }
}

impl<W: StatelessWorld> Operator for WasmStateless<W> {
    fn process(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        self.call(input)
            .map_err(|e| e.for_step(self.instance.step()))
    }

    fn reset(&mut self) -> Result<(), OperatorError> {
        reset(&mut self.instance)
    }

    fn plugin_counters(&self) -> Option<Arc<PluginCounters>> {
        Some(self.instance.counters())
    }
}

/// Replaces a trapped instance by a fresh one, so that a dead-letter policy can go on.
pub(crate) fn reset<W: World>(instance: &mut Instance<W>) -> Result<(), OperatorError> {
    if !instance.is_poisoned() {
        return Ok(());
    }
    instance.restart().map_err(|e| e.for_step(instance.step()))
}
