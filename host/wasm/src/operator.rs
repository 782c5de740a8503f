//! A plugin instance as an engine operator: packs calls, checks results, names failures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use eddy_core::memory::ByteSize;
use eddy_core::metrics::PluginCounters;
use eddy_core::operator::{AggregateFunction, WindowFunction};
use eddy_core::state::StateEntry;
use eddy_core::time::{Clock, SystemClock};
use eddy_core::{Batch, ErrorClass, Operator, OperatorError, OperatorKind};
use wasmtime::Store;

use crate::WasmError;
use crate::bindings::base::eddy::plugin::types::TimeDomain;
use crate::bindings::{
    PluginError, WitBatch, aggregate, filter, flat_map, map, process, sink, source, window,
};
use crate::host::{HostState, PluginMetrics};
use crate::runtime::{Prepared, Starter, world_of};

/// An instance bound to the world of its step kind.
pub enum Bound {
    /// A `map-plugin` instance.
    Map(map::MapPlugin),
    /// A `filter-plugin` instance.
    Filter(filter::FilterPlugin),
    /// A `flat-map-plugin` instance.
    FlatMap(flat_map::FlatMapPlugin),
    /// An `aggregate-plugin` instance.
    Aggregate(aggregate::AggregatePlugin),
    /// A `window-plugin` instance.
    Window(window::WindowPlugin),
    /// A `process-plugin` instance.
    Process(process::ProcessPlugin),
    /// A `source-plugin` instance.
    Source(source::SourcePlugin),
    /// A `sink-plugin` instance.
    Sink(sink::SinkPlugin),
}

impl Bound {
    fn kind(&self) -> OperatorKind {
        match self {
            Bound::Map(_) => OperatorKind::Map,
            Bound::Filter(_) => OperatorKind::Filter,
            Bound::FlatMap(_) => OperatorKind::FlatMap,
            Bound::Aggregate(_) => OperatorKind::Aggregate,
            Bound::Window(_) => OperatorKind::Window,
            Bound::Process(_) => OperatorKind::Process,
            Bound::Source(_) => OperatorKind::Source,
            Bound::Sink(_) => OperatorKind::Sink,
        }
    }
}

/// One plugin instance running as an operator subtask.
pub struct WasmOperator {
    path: PathBuf,
    plugin: String,
    store: Store<HostState>,
    bound: Bound,
    /// Set after a trap: the instance's memory may be inconsistent, so no more calls.
    poisoned: bool,
    starter: Starter,
    prepared: Prepared,
    counters: Arc<PluginCounters>,
}

impl WasmOperator {
    pub(crate) fn new(
        path: &Path,
        store: Store<HostState>,
        bound: Bound,
        starter: Starter,
        prepared: Prepared,
    ) -> Self {
        let plugin = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        WasmOperator {
            path: path.to_owned(),
            plugin,
            store,
            bound,
            poisoned: false,
            starter,
            prepared,
            counters: Arc::default(),
        }
    }

    /// Keeps the keyed state of this process function in `backend`.
    pub fn set_state_backend(
        &mut self,
        backend: Box<dyn eddy_core::state::backend::KeyedBackend>,
        max_parallelism: u32,
    ) {
        self.store
            .data_mut()
            .keyed
            .set_backend(backend, max_parallelism);
    }

    /// Replaces the instance by a fresh, opened one (after a trap).
    pub fn restart(&mut self) -> Result<(), WasmError> {
        let info = self.store.data().info.clone();
        // The keyed state belongs to the host, not to the instance: it carries over.
        let keyed = std::mem::take(&mut self.store.data_mut().keyed);
        // Free the old instance's pool slot and memory before taking new ones.
        let placeholder = self.starter.empty_store(&self.path, info.clone())?;
        drop(std::mem::replace(&mut self.store, placeholder));
        let (mut store, bound) = self.starter.start(&self.path, &self.prepared, info)?;
        store.data_mut().keyed = keyed;
        self.store = store;
        self.bound = bound;
        self.poisoned = false;
        self.open()
    }

    /// Arms the deadline and fuel of a call and returns when it started.
    fn begin(&mut self) -> Instant {
        self.starter.arm(&mut self.store);
        Instant::now()
    }

    /// Counts a finished call.
    fn end(&self, started: Instant) {
        let c = &self.counters;
        c.calls.fetch_add(1, Ordering::Relaxed);
        c.cpu_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        c.fuel
            .fetch_add(self.starter.fuel_burnt(&self.store), Ordering::Relaxed);
        c.memory_peak
            .fetch_max(self.store.data().meter.reserved() as u64, Ordering::Relaxed);
    }

    fn check_size(&self, out: &Batch, function: &str) -> Result<(), WasmError> {
        let max = self.store.data().info.sandbox.max_output;
        if out.byte_size() > max.0 {
            return Err(self.contract(
                function,
                format!(
                    "returned {} in one call, above its max-output of {max}",
                    ByteSize(out.byte_size())
                ),
            ));
        }
        Ok(())
    }

    /// Metrics the plugin reported so far.
    pub fn metrics(&self) -> &PluginMetrics {
        &self.store.data().metrics
    }

    fn export(&self, function: &str) -> String {
        format!("{}#{function}", world_of(self.bound.kind()).1)
    }

    /// Calls the plugin's `open`.
    pub fn open(&mut self) -> Result<(), WasmError> {
        let started = self.begin();
        let result = match &self.bound {
            Bound::Map(b) => b.eddy_plugin_map_operator().call_open(&mut self.store),
            Bound::Filter(b) => b.eddy_plugin_filter_operator().call_open(&mut self.store),
            Bound::FlatMap(b) => b.eddy_plugin_flat_map_operator().call_open(&mut self.store),
            Bound::Aggregate(b) => b
                .eddy_plugin_aggregate_function()
                .call_open(&mut self.store),
            Bound::Window(b) => b.eddy_plugin_window_function().call_open(&mut self.store),
            Bound::Process(b) => b.eddy_plugin_process_function().call_open(&mut self.store),
            Bound::Source(b) => b.eddy_plugin_source_connector().call_open(&mut self.store),
            Bound::Sink(b) => b.eddy_plugin_sink_connector().call_open(&mut self.store),
        };
        self.end(started);
        self.finish("open", result, None)
    }

    /// Runs one batch through the plugin and returns its output.
    pub fn call(&mut self, input: Batch) -> Result<Batch, WasmError> {
        if self.poisoned {
            return Err(WasmError::Contract {
                plugin: self.plugin.clone(),
                export: self.export("*"),
                message: "the instance trapped earlier and cannot be called again".into(),
            });
        }
        let n = input.len();
        if let Bound::Process(_) = self.bound {
            return self.process_keyed(input);
        }
        if let Bound::Aggregate(_) | Bound::Window(_) = self.bound {
            return Err(self.contract(
                "*",
                "a window function is not an operator: use it in a window step".into(),
            ));
        }
        if let Bound::Source(_) | Bound::Sink(_) = self.bound {
            return Err(self.contract(
                "*",
                "a connector is not an operator: use it as a source or sink".into(),
            ));
        }
        let wit = WitBatch::from(input);
        let started = self.begin();
        match &self.bound {
            Bound::Map(b) => {
                let result = b
                    .eddy_plugin_map_operator()
                    .call_map_batch(&mut self.store, &wit);
                self.end(started);
                let input = Batch::from(wit);
                let mut out = Batch::from(self.finish("map-batch", result, Some(&input))?);
                self.check(&out, "map-batch")?;
                self.check_size(&out, "map-batch")?;
                if out.len() != n {
                    return Err(self.contract(
                        "map-batch",
                        format!("returned {} events for {n} inputs", out.len()),
                    ));
                }
                out.inherit_aligned(input);
                Ok(out)
            }
            Bound::Filter(b) => {
                let result = b
                    .eddy_plugin_filter_operator()
                    .call_filter_batch(&mut self.store, &wit);
                self.end(started);
                let input = Batch::from(wit);
                let keep = self.finish("filter-batch", result, Some(&input))?;
                if keep.len() == n {
                    return Ok(input);
                }
                input
                    .select(&keep)
                    .map_err(|e| self.contract("filter-batch", e.to_string()))
            }
            Bound::Aggregate(_)
            | Bound::Window(_)
            | Bound::Process(_)
            | Bound::Source(_)
            | Bound::Sink(_) => {
                unreachable!("handled above")
            }
            Bound::FlatMap(b) => {
                let result = b
                    .eddy_plugin_flat_map_operator()
                    .call_flat_map_batch(&mut self.store, &wit);
                self.end(started);
                let input = Batch::from(wit);
                let output = self.finish("flat-map-batch", result, Some(&input))?;
                let mut out = Batch::from(output.events);
                self.check(&out, "flat-map-batch")?;
                self.check_size(&out, "flat-map-batch")?;
                if output.origins.len() != out.len()
                    || output.origins.iter().any(|&o| o as usize >= n)
                {
                    return Err(self.contract(
                        "flat-map-batch",
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
    }

    fn contract(&self, function: &str, message: String) -> WasmError {
        WasmError::Contract {
            plugin: self.plugin.clone(),
            export: self.export(function),
            message,
        }
    }

    fn check(&self, out: &Batch, function: &str) -> Result<(), WasmError> {
        out.validate()
            .map_err(|e| self.contract(function, e.to_string()))
    }

    /// Turns a call's outcome into ours: forwards plugin output, maps traps and errors.
    fn finish<T>(
        &mut self,
        function: &str,
        result: wasmtime::Result<Result<T, PluginError>>,
        input: Option<&Batch>,
    ) -> Result<T, WasmError> {
        self.store.data_mut().forward_output();
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let event_value = e
                    .event
                    .zip(input)
                    .filter(|(i, b)| (*i as usize) < b.len())
                    .map(|(i, b)| preview(b.value(i as usize)));
                Err(WasmError::Plugin {
                    plugin: self.plugin.clone(),
                    export: self.export(function),
                    event: e.event,
                    event_value,
                    message: e.message,
                })
            }
            Err(trap) => {
                self.poisoned = true;
                self.counters.traps.fetch_add(1, Ordering::Relaxed);
                let sandbox = &self.store.data().info.sandbox;
                let code = trap.downcast_ref::<wasmtime::Trap>();
                let mut message = match code {
                    Some(wasmtime::Trap::Interrupt) => format!(
                        "exceeded its CPU deadline of {} ms (sandbox.cpu-deadline-ms)",
                        sandbox.cpu_deadline.as_millis()
                    ),
                    Some(wasmtime::Trap::OutOfFuel) => format!(
                        "ran out of fuel: {} per call (sandbox.fuel)",
                        sandbox.fuel.unwrap_or(u64::MAX)
                    ),
                    Some(wasmtime::Trap::StackOverflow) => {
                        "overflowed its stack (sandbox.max-stack)".to_owned()
                    }
                    Some(code) => code.to_string(),
                    None => trap.root_cause().to_string(),
                };
                let refused = self.store.data_mut().meter.refused.take();
                if let Some(refused) = &refused {
                    message.push_str(&format!(" (after a refused memory growth: {refused})"));
                }
                let class = trap_class(code, refused.is_some());
                Err(WasmError::Trap {
                    plugin: self.plugin.clone(),
                    export: self.export(function),
                    message,
                    output: self.store.data().stderr.tail(),
                    backtrace: trap
                        .downcast_ref::<wasmtime::WasmBacktrace>()
                        .map(ToString::to_string),
                    class,
                })
            }
        }
    }
}

/// Whether a trap recurs on the same input. Fuel is counted in instructions and the
/// stack in bytes, so running out of either happens again on every replay. A missed
/// CPU deadline may come from a loaded machine rather than an endless loop, a refused
/// memory growth from other instances holding the shared pool, and a panic from the
/// world around the plugin (a file, a clock): those are retried, and end the restarts
/// only if they recur unchanged.
fn trap_class(code: Option<&wasmtime::Trap>, refused_memory: bool) -> ErrorClass {
    match code {
        _ if refused_memory => ErrorClass::USER_UNCERTAIN,
        Some(wasmtime::Trap::OutOfFuel | wasmtime::Trap::StackOverflow) => ErrorClass::USER_FATAL,
        _ => ErrorClass::USER_UNCERTAIN,
    }
}

/// The start of a value, for error messages.
fn preview(value: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(&value[..value.len().min(MAX)]);
    if value.len() > MAX {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}

impl WasmOperator {
    /// Runs a process function: the events of each key in one call, with that key's
    /// state current.
    fn process_keyed(&mut self, input: Batch) -> Result<Batch, WasmError> {
        let groups = crate::keyed::group_by_key(&input);
        // One journal for the whole batch: if any key's call fails, none of the batch's
        // state changes stay, so replaying its events applies each exactly once.
        self.store.data_mut().keyed.begin();
        let mut out = Batch::default();
        for (key, events) in groups {
            let latest = crate::keyed::latest_timestamp(&events);
            let wit = WitBatch::from(events);
            let keyed = &mut self.store.data_mut().keyed;
            keyed.key = key.clone();
            keyed.now = SystemClock.now_ms();
            let started = self.begin();
            let result = match &self.bound {
                Bound::Process(b) => {
                    b.eddy_plugin_process_function()
                        .call_process_batch(&mut self.store, &key, &wit)
                }
                _ => unreachable!("only process instances get here"),
            };
            self.end(started);
            let produced = match self.finish("process-batch", result, None) {
                Ok(produced) => Batch::from(produced),
                Err(e) => {
                    self.store.data_mut().keyed.rollback();
                    return Err(e);
                }
            };
            if let Err(e) = self.append_keyed(&mut out, produced, &key, latest, "process-batch") {
                self.store.data_mut().keyed.rollback();
                return Err(e);
            }
        }
        self.store.data_mut().keyed.commit();
        Ok(out)
    }

    /// Fires the timers of `domain` due at `time`, earliest first.
    fn fire_timers(&mut self, domain: TimeDomain, time: i64) -> Result<Batch, WasmError> {
        let mut out = Batch::default();
        if !matches!(self.bound, Bound::Process(_)) {
            return Ok(out);
        }
        self.store.data_mut().keyed.begin();
        while let Some((ts, key)) = self.store.data_mut().keyed.pop_due(domain, time) {
            self.store.data_mut().keyed.key = key.clone();
            let started = self.begin();
            let result = match &self.bound {
                Bound::Process(b) => b.eddy_plugin_process_function().call_on_timer(
                    &mut self.store,
                    &key,
                    domain,
                    ts,
                ),
                _ => unreachable!("checked above"),
            };
            self.end(started);
            let fired = self.finish("on-timer", result, None).and_then(|produced| {
                self.append_keyed(&mut out, Batch::from(produced), &key, Some(ts), "on-timer")
            });
            if let Err(e) = fired {
                self.store.data_mut().keyed.rollback();
                return Err(e);
            }
        }
        self.store.data_mut().keyed.commit();
        Ok(out)
    }

    /// Appends a process function's output, keyed by `key` and stamped `ts` unless set.
    fn append_keyed(
        &self,
        out: &mut Batch,
        produced: Batch,
        key: &[u8],
        ts: Option<i64>,
        function: &str,
    ) -> Result<(), WasmError> {
        self.check(&produced, function)?;
        self.check_size(&produced, function)?;
        crate::keyed::append_keyed(out, &produced, key, ts)
            .map_err(|e| self.contract(function, e.to_string()))
    }
}

type AggregateGuest = aggregate::exports::eddy::plugin::aggregate_function::Guest;

impl WasmOperator {
    /// Calls one export of an aggregate function instance.
    fn aggregate_call<T>(
        &mut self,
        function: &str,
        input: Option<&Batch>,
        call: impl FnOnce(
            &AggregateGuest,
            &mut Store<HostState>,
        ) -> wasmtime::Result<Result<T, PluginError>>,
    ) -> Result<T, OperatorError> {
        let step = self.store.data().info.step.clone();
        if self.poisoned || !matches!(self.bound, Bound::Aggregate(_)) {
            let e = self.contract(
                function,
                "the instance trapped earlier or is not an aggregate function".into(),
            );
            return Err(e.for_step(&step));
        }
        let started = self.begin();
        let result = match &self.bound {
            Bound::Aggregate(b) => call(b.eddy_plugin_aggregate_function(), &mut self.store),
            _ => return Err(OperatorError::new(&step, "not an aggregate function")),
        };
        self.end(started);
        self.finish(function, result, input)
            .map_err(|e| e.for_step(&step))
    }
}

impl AggregateFunction for WasmOperator {
    fn create(&mut self) -> Result<Vec<u8>, OperatorError> {
        self.aggregate_call("create", None, |g, store| g.call_create(store).map(Ok))
    }

    fn add(&mut self, acc: Vec<u8>, events: Batch) -> Result<Vec<u8>, OperatorError> {
        let wit = WitBatch::from(events);
        self.aggregate_call("add", None, |g, store| g.call_add(store, &acc, &wit))
    }

    fn merge(&mut self, a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, OperatorError> {
        self.aggregate_call("merge", None, |g, store| g.call_merge(store, &a, &b))
    }

    fn result(&mut self, acc: Vec<u8>) -> Result<Vec<u8>, OperatorError> {
        self.aggregate_call("get-result", None, |g, store| {
            g.call_get_result(store, &acc)
        })
    }
}

impl WindowFunction for WasmOperator {
    fn process(
        &mut self,
        key: &[u8],
        window: (i64, i64),
        events: Batch,
    ) -> Result<Batch, OperatorError> {
        let step = self.store.data().info.step.clone();
        let Bound::Window(_) = self.bound else {
            return Err(OperatorError::new(&step, "not a window function"));
        };
        if self.poisoned {
            let e = self.contract("process-window", "the instance trapped earlier".into());
            return Err(e.for_step(&step));
        }
        let wit = WitBatch::from(events);
        let bounds = crate::bindings::base::eddy::plugin::types::Window {
            start: window.0,
            end: window.1,
        };
        let started = self.begin();
        let result = match &self.bound {
            Bound::Window(b) => b.eddy_plugin_window_function().call_process_window(
                &mut self.store,
                key,
                bounds,
                &wit,
            ),
            _ => return Err(OperatorError::new(&step, "not a window function")),
        };
        self.end(started);
        let out = self
            .finish("process-window", result, None)
            .map_err(|e| e.for_step(&step))?;
        let out = Batch::from(out);
        self.check(&out, "process-window")
            .and_then(|()| self.check_size(&out, "process-window"))
            .map_err(|e| e.for_step(&step))?;
        Ok(out)
    }
}

/// A split of a plugin source, as the plugin listed it.
pub type SplitInfo = source::exports::eddy::plugin::source_connector::Split;
/// What one poll of a plugin source's split produced.
pub type Polled = source::exports::eddy::plugin::source_connector::PollResult;

/// Calls export `$call` of a connector instance bound as `$variant`, timed and counted.
macro_rules! connector_call {
    ($op:ident, $variant:ident, $iface:ident, |$c:ident, $store:ident| $call:expr) => {{
        let started = $op.begin();
        let result = match &$op.bound {
            Bound::$variant(b) => {
                let $c = b.$iface();
                let $store = &mut $op.store;
                $call
            }
            _ => return Err($op.contract("*", "not a connector of this kind".into())),
        };
        $op.end(started);
        result
    }};
}

/// Calls of connector plugins (sources and sinks).
impl WasmOperator {
    /// The source's splits.
    pub fn list_splits(&mut self) -> Result<Vec<SplitInfo>, WasmError> {
        let result = connector_call!(self, Source, eddy_plugin_source_connector, |c, store| c
            .call_list_splits(store));
        self.finish("list-splits", result, None)
    }

    /// Opens `split` of the source, after `position` if restoring.
    pub fn open_split(
        &mut self,
        split: &SplitInfo,
        position: Option<&[u8]>,
    ) -> Result<(), WasmError> {
        let result = connector_call!(self, Source, eddy_plugin_source_connector, |c, store| c
            .call_open_split(store, split, position));
        self.finish("open-split", result, None)
    }

    /// Polls up to `max` events of split `id`.
    pub fn poll_split(&mut self, id: &str, max: u32) -> Result<Polled, WasmError> {
        let result = connector_call!(self, Source, eddy_plugin_source_connector, |c, store| c
            .call_poll(store, id, max));
        let polled = self.finish("poll", result, None)?;
        if let Polled::Events(batch) = polled {
            let batch = Batch::from(batch);
            self.check(&batch, "poll")?;
            self.check_size(&batch, "poll")?;
            return Ok(Polled::Events(WitBatch::from(batch)));
        }
        Ok(polled)
    }

    /// The position of split `id` after its last polled event.
    pub fn split_position(&mut self, id: &str) -> Result<Vec<u8>, WasmError> {
        let result = connector_call!(self, Source, eddy_plugin_source_connector, |c, store| c
            .call_position(store, id));
        self.finish("position", result, None)
    }

    /// Writes events into the sink's current transaction.
    pub fn sink_write(&mut self, input: Batch) -> Result<(), WasmError> {
        let wit = WitBatch::from(input);
        let result = connector_call!(self, Sink, eddy_plugin_sink_connector, |c, store| c
            .call_write(store, &wit));
        let input = Batch::from(wit);
        self.finish("write", result, Some(&input))
    }

    /// Prepares the sink's transaction for checkpoint `id`.
    pub fn sink_prepare(&mut self, id: u64) -> Result<Vec<u8>, WasmError> {
        let result = connector_call!(self, Sink, eddy_plugin_sink_connector, |c, store| c
            .call_prepare_commit(store, id));
        self.finish("prepare-commit", result, None)
    }

    /// Commits (or with `commit` false, aborts) what the sink prepared for `id`.
    pub fn sink_settle(
        &mut self,
        id: u64,
        committable: &[u8],
        commit: bool,
    ) -> Result<(), WasmError> {
        let result = connector_call!(self, Sink, eddy_plugin_sink_connector, |c, store| {
            if commit {
                c.call_commit(store, id, committable)
            } else {
                c.call_abort(store, id, committable)
            }
        });
        self.finish(if commit { "commit" } else { "abort" }, result, None)
    }

    /// The plugin file, for errors.
    pub fn plugin_path(&self) -> &Path {
        &self.path
    }
}

impl Operator for WasmOperator {
    fn process(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        self.call(input)
            .map_err(|e| e.for_step(&self.store.data().info.step))
    }

    fn reset(&mut self) -> Result<(), OperatorError> {
        if !self.poisoned {
            return Ok(());
        }
        self.restart()
            .map_err(|e| e.for_step(&self.store.data().info.step))
    }

    fn plugin_counters(&self) -> Option<Arc<PluginCounters>> {
        Some(self.counters.clone())
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Batch, OperatorError> {
        self.store.data_mut().keyed.watermark = watermark;
        self.fire_timers(TimeDomain::EventTime, watermark)
            .map_err(|e| e.for_step(&self.store.data().info.step))
    }

    fn on_processing_time(&mut self, now: i64) -> Result<Batch, OperatorError> {
        self.store.data_mut().keyed.now = now;
        self.fire_timers(TimeDomain::ProcessingTime, now)
            .map_err(|e| e.for_step(&self.store.data().info.step))
    }

    fn take_side_outputs(&mut self) -> Vec<(String, Batch)> {
        std::mem::take(&mut self.store.data_mut().keyed.side)
    }

    fn snapshot(&mut self, target: Option<&Path>) -> Result<Vec<StateEntry>, OperatorError> {
        if !matches!(self.bound, Bound::Process(_)) {
            return Ok(Vec::new());
        }
        self.store.data_mut().keyed.snapshot(target).map_err(|e| {
            // The state backend's storage may well work on a second try.
            OperatorError::new(&self.store.data().info.step, e).with_class(ErrorClass::EXTERNAL)
        })
    }

    fn restore(&mut self, entries: Vec<StateEntry>, from: &Path) -> Result<(), OperatorError> {
        self.store
            .data_mut()
            .keyed
            .restore(entries, from)
            .map_err(|e| OperatorError::new(&self.store.data().info.step, e))
    }
}
