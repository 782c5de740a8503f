//! Process-function plugins as core [`Operator`]s: each key's events of a batch in one
//! call with that key's state current, timers fired as time advances, side outputs,
//! and the keyed state in checkpoints. A failed call leaves no trace in the state.

use std::path::Path;
use std::sync::Arc;

use eddy_core::job::window::TimeDomain;
use eddy_core::metrics::PluginCounters;
use eddy_core::state::StateEntry;
use eddy_core::state::backend::KeyedBackend;
use eddy_core::state::keyed::{append_keyed, group_by_key, latest_timestamp};
use eddy_core::time::{Clock, SystemClock};
use eddy_core::{Batch, ErrorClass, Operator, OperatorError};

use crate::WasmError;
use crate::bindings::base::eddy::plugin::types::TimeDomain as WitDomain;
use crate::bindings::{WitBatch, process::ProcessPlugin};
use crate::instance::Instance;
use crate::worlds::stateless::reset;

/// A process-function plugin instance as an operator subtask, over host-owned keyed
/// state.
pub struct WasmProcess {
    instance: Instance<ProcessPlugin>,
}

impl WasmProcess {
    /// The operator run by the opened `instance`, keeping its keyed state in `backend`
    /// by `max_parallelism` key groups.
    pub fn new(
        mut instance: Instance<ProcessPlugin>,
        backend: Box<dyn KeyedBackend>,
        max_parallelism: u32,
    ) -> Self {
        instance.keyed().set_backend(backend, max_parallelism);
        WasmProcess { instance }
    }

    /// Runs `f` under one journal: if any of its calls fails, none of their state
    /// changes stay, so replaying the events applies each exactly once.
    fn atomically(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Batch, WasmError>,
    ) -> Result<Batch, OperatorError> {
        self.instance.keyed().begin();
        let result = f(self);
        match &result {
            Ok(_) => self.instance.keyed().commit(),
            Err(_) => self.instance.keyed().rollback(),
        }
        result.map_err(|e| e.for_step(self.instance.step()))
    }

    /// The events of each key in one call, with that key's state current.
    fn process_keyed(&mut self, input: Batch) -> Result<Batch, WasmError> {
        const FUNCTION: &str = "process-batch";
        let mut out = Batch::default();
        for (key, events) in group_by_key(&input) {
            let latest = latest_timestamp(&events);
            let wit = WitBatch::from(events);
            let keyed = self.instance.keyed();
            keyed.set_key(&key);
            keyed.set_now(SystemClock.now_ms());
            let produced = self.instance.call(FUNCTION, |b, store| {
                b.eddy_plugin_process_function()
                    .call_process_batch(store, &key, &wit)
            })?;
            self.append(&mut out, Batch::from(produced), &key, latest, FUNCTION)?;
        }
        Ok(out)
    }

    /// Fires the timers of `domain` due at `time`, earliest first.
    fn fire_timers(&mut self, domain: TimeDomain, time: i64) -> Result<Batch, WasmError> {
        const FUNCTION: &str = "on-timer";
        let wit_domain = match domain {
            TimeDomain::Event => WitDomain::EventTime,
            TimeDomain::Processing => WitDomain::ProcessingTime,
        };
        let mut out = Batch::default();
        let mut advance = self.instance.keyed().advance(domain, time);
        while let Some((ts, key)) = self
            .instance
            .keyed()
            .pop_due_in(&mut advance)
            .map_err(|e| self.instance.contract(FUNCTION, e.to_string()))?
        {
            self.instance.keyed().set_key(&key);
            let produced = self.instance.call(FUNCTION, |b, store| {
                b.eddy_plugin_process_function()
                    .call_on_timer(store, &key, wit_domain, ts)
            })?;
            self.append(&mut out, Batch::from(produced), &key, Some(ts), FUNCTION)?;
        }
        Ok(out)
    }

    /// Appends a call's checked output, keyed by `key` and stamped `ts` unless set.
    fn append(
        &self,
        out: &mut Batch,
        produced: Batch,
        key: &[u8],
        ts: Option<i64>,
        function: &str,
    ) -> Result<(), WasmError> {
        self.instance.check_output(&produced, function)?;
        append_keyed(out, &produced, key, ts)
            .map_err(|e| self.instance.contract(function, e.to_string()))
    }
}

impl Operator for WasmProcess {
    fn process(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        self.atomically(|p| p.process_keyed(input))
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Batch, OperatorError> {
        self.instance.keyed().set_watermark(watermark);
        self.atomically(|p| p.fire_timers(TimeDomain::Event, watermark))
    }

    fn on_processing_time(&mut self, now: i64) -> Result<Batch, OperatorError> {
        self.instance.keyed().set_now(now);
        self.atomically(|p| p.fire_timers(TimeDomain::Processing, now))
    }

    fn take_side_outputs(&mut self) -> Vec<(String, Batch)> {
        self.instance.keyed().take_side_outputs()
    }

    fn reset(&mut self) -> Result<(), OperatorError> {
        reset(&mut self.instance)
    }

    fn snapshot(&mut self, target: Option<&Path>) -> Result<Vec<StateEntry>, OperatorError> {
        let snapshot = self.instance.keyed().snapshot(target);
        // The state backend's storage may well work on a second try.
        snapshot.map_err(|e| {
            OperatorError::new(self.instance.step(), e).with_class(ErrorClass::EXTERNAL)
        })
    }

    fn restore(&mut self, entries: Vec<StateEntry>, from: &Path) -> Result<(), OperatorError> {
        let restored = self.instance.keyed().restore(entries, from);
        restored.map_err(|e| OperatorError::new(self.instance.step(), e))
    }

    fn plugin_counters(&self) -> Option<Arc<PluginCounters>> {
        Some(self.instance.counters())
    }
}
