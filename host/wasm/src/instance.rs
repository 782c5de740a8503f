//! One sandboxed plugin instance, whatever its world: the store with its limits, WASI
//! context and captured output, the CPU deadline and fuel armed before each call, the
//! counters of its calls, and the conversion of traps and plugin errors into
//! [`WasmError`]s. The adapters in [`crate::worlds`] and the connectors give each
//! world's exports their meaning on top of it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant as Started;

use eddy_core::job::memory::ByteSize;
use eddy_core::metrics::{PluginCounters, PluginMetrics};
use eddy_core::state::keyed::KeyedState;
use eddy_core::{Batch, ErrorClass, OperatorKind};
use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::WasmError;
use crate::bindings::{
    PluginError, WitBatch, aggregate, filter, flat_map, map, process, sink, source, window,
};
use crate::host::{HostState, InstanceInfo};
use crate::output::clip;
use crate::runtime::{Starter, world_of};

/// A WIT world a component can be bound to: how it is linked, started and opened.
/// Implemented by the generated bindings of each `*-plugin` world.
pub trait World: Sized + Send + 'static {
    /// The world linked against a component, from which instances start quickly.
    type Pre: Clone + Send + Sync + 'static;
    /// The kind of step or connector the world serves.
    const KIND: OperatorKind;
    /// Checks the component's exports against the world and links it.
    fn link(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;
    /// Starts an instance in `store`.
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self>;
    /// Calls the world's `open` export.
    fn open(&self, store: &mut Store<HostState>) -> wasmtime::Result<Result<(), PluginError>>;
}

/// Implements [`World`] for the bindings of one world.
macro_rules! world {
    ($module:ident :: $world:ident, $pre:ident, $kind:ident, $interface:ident) => {
        impl World for $module::$world {
            type Pre = $module::$pre<HostState>;
            const KIND: OperatorKind = OperatorKind::$kind;

            fn link(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
                $module::$pre::new(pre)
            }

            fn instantiate(
                pre: &Self::Pre,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<Self> {
                pre.instantiate(store)
            }

            fn open(
                &self,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<Result<(), PluginError>> {
                self.$interface().call_open(store)
            }
        }
    };
}

world!(map::MapPlugin, MapPluginPre, Map, eddy_plugin_map_operator);
world!(
    filter::FilterPlugin,
    FilterPluginPre,
    Filter,
    eddy_plugin_filter_operator
);
world!(
    flat_map::FlatMapPlugin,
    FlatMapPluginPre,
    FlatMap,
    eddy_plugin_flat_map_operator
);
world!(
    aggregate::AggregatePlugin,
    AggregatePluginPre,
    Aggregate,
    eddy_plugin_aggregate_function
);
world!(
    window::WindowPlugin,
    WindowPluginPre,
    Window,
    eddy_plugin_window_function
);
world!(
    process::ProcessPlugin,
    ProcessPluginPre,
    Process,
    eddy_plugin_process_function
);
world!(
    source::SourcePlugin,
    SourcePluginPre,
    Source,
    eddy_plugin_source_connector
);
world!(
    sink::SinkPlugin,
    SinkPluginPre,
    Sink,
    eddy_plugin_sink_connector
);

/// One sandboxed instance of a component bound to world `W`.
pub struct Instance<W: World> {
    path: PathBuf,
    plugin: String,
    store: Store<HostState>,
    bound: W,
    /// Set after a trap: the instance's memory may be inconsistent, so no more calls.
    poisoned: bool,
    starter: Starter,
    pre: W::Pre,
    counters: Arc<PluginCounters>,
}

impl<W: World> Instance<W> {
    /// Starts an instance of `pre` (the component at `path`) for `info`, unopened.
    pub(crate) fn start(
        path: &Path,
        pre: &W::Pre,
        starter: &Starter,
        info: InstanceInfo,
    ) -> Result<Self, WasmError> {
        let (store, bound) = starter.start::<W>(path, pre, info)?;
        let counters = store.data().counters.clone();
        let plugin = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Ok(Instance {
            path: path.to_owned(),
            plugin,
            store,
            bound,
            poisoned: false,
            starter: starter.clone(),
            pre: pre.clone(),
            counters,
        })
    }

    /// Calls the plugin's `open`.
    pub fn open(&mut self) -> Result<(), WasmError> {
        self.call("open", |bound, store| bound.open(store))
    }

    /// Whether a trap left the instance unusable until [`Instance::restart`].
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Replaces the instance by a fresh, opened one (after a trap).
    pub fn restart(&mut self) -> Result<(), WasmError> {
        let info = self.store.data().info.clone();
        // The keyed state belongs to the host, not to the instance: it carries over.
        let keyed = std::mem::take(&mut self.store.data_mut().keyed);
        // Free the old instance's pool slot and memory before taking new ones.
        let placeholder = self.starter.empty_store(&self.path, info.clone())?;
        drop(std::mem::replace(&mut self.store, placeholder));
        let (mut store, bound) = self.starter.start::<W>(&self.path, &self.pre, info)?;
        store.data_mut().keyed = keyed;
        store.data_mut().counters = self.counters.clone();
        self.store = store;
        self.bound = bound;
        self.poisoned = false;
        self.open()
    }

    /// Metrics the plugin reported so far.
    pub fn metrics(&self) -> PluginMetrics {
        self.counters.reported.snapshot()
    }

    /// The component file, for errors.
    pub fn plugin_path(&self) -> &Path {
        &self.path
    }

    /// The step or connector the instance runs for, for errors.
    pub fn step(&self) -> &str {
        &self.store.data().info.step
    }

    /// Counters of the instance's calls, traps, fuel and memory.
    pub fn counters(&self) -> Arc<PluginCounters> {
        self.counters.clone()
    }

    /// The host-owned keyed state the instance's imports act on.
    pub(crate) fn keyed(&mut self) -> &mut KeyedState {
        &mut self.store.data_mut().keyed
    }

    /// Calls export `function` through `call`: refused after a trap, timed, counted,
    /// Calls `function` with `input` moved into its WIT form (no copy), and hands the
    /// batch back beside the result; a plugin error names the event it failed on.
    pub(crate) fn call_batch<T>(
        &mut self,
        function: &str,
        input: Batch,
        call: impl FnOnce(
            &W,
            &mut Store<HostState>,
            &WitBatch,
        ) -> wasmtime::Result<Result<T, PluginError>>,
    ) -> (Batch, Result<T, WasmError>) {
        let wit = WitBatch::from(input);
        let result = self.call(function, |bound, store| call(bound, store, &wit));
        let input = Batch::from(wit);
        let result = result.map_err(|e| with_event(e, &input));
        (input, result)
    }

    /// and its outcome turned into ours.
    pub(crate) fn call<T>(
        &mut self,
        function: &str,
        call: impl FnOnce(&W, &mut Store<HostState>) -> wasmtime::Result<Result<T, PluginError>>,
    ) -> Result<T, WasmError> {
        if self.poisoned {
            return Err(self.contract(
                function,
                "the instance trapped earlier and cannot be called again".into(),
            ));
        }
        self.starter.arm(&mut self.store);
        let started = Started::now();
        let result = call(&self.bound, &mut self.store);
        self.count(started);
        self.finish(function, result)
    }

    /// Counts a finished call.
    fn count(&self, started: Started) {
        let c = &self.counters;
        c.calls.fetch_add(1, Ordering::Relaxed);
        c.cpu_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        c.fuel
            .fetch_add(self.starter.fuel_burnt(&self.store), Ordering::Relaxed);
        c.memory_peak
            .fetch_max(self.store.data().meter.reserved() as u64, Ordering::Relaxed);
    }

    /// The export name of `function` in this world, for errors.
    fn export(&self, function: &str) -> String {
        format!("{}#{function}", world_of(W::KIND).1)
    }

    /// A breach of the world's contract by export `function`.
    pub(crate) fn contract(&self, function: &str, message: String) -> WasmError {
        WasmError::Contract {
            plugin: self.plugin.clone(),
            export: self.export(function),
            message,
        }
    }

    /// Checks a batch that export `function` returned: well formed, and within the
    /// sandbox's max-output.
    pub(crate) fn check_output(&self, out: &Batch, function: &str) -> Result<(), WasmError> {
        out.validate()
            .map_err(|e| self.contract(function, e.to_string()))?;
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

    /// Turns a call's outcome into ours: forwards plugin output, maps traps and errors.
    fn finish<T>(
        &mut self,
        function: &str,
        result: wasmtime::Result<Result<T, PluginError>>,
    ) -> Result<T, WasmError> {
        self.store.data_mut().forward_output();
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(WasmError::Plugin {
                plugin: self.plugin.clone(),
                export: self.export(function),
                event: e.event,
                event_value: None,
                message: clip(e.message),
            }),
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

/// `e`, with the start of the failing event's value when a plugin error names an
/// event of `input`, the batch the failed call was given.
pub(crate) fn with_event(mut e: WasmError, input: &Batch) -> WasmError {
    if let WasmError::Plugin {
        event: Some(i),
        event_value,
        ..
    } = &mut e
        && (*i as usize) < input.len()
    {
        *event_value = Some(preview(input.value(*i as usize)));
    }
    e
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
