//! One wasmtime engine per job: loads plugins once, checks their world, and starts
//! instances cheaply from pre-linked `InstancePre`s, each in its own sandbox.

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use eddy_core::job::sandbox::DEFAULT_MAX_STACK;
use eddy_core::memory::Pools;
use eddy_core::state::backend::{BackendFactory, KeyedBackend};
use eddy_core::state::keyed::KeyedState;
use eddy_core::{ErrorClass, OperatorKind, StepOp};
use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::WasmError;
use crate::bindings::{aggregate, base, filter, flat_map, map, process, sink, source, window};
use crate::cache::ComponentCache;
use crate::host::{HostState, InstanceInfo, MemoryMeter};
use crate::instance::{Instance, World};
use crate::worlds::{WasmAggregate, WasmProcess, WasmStateless, WasmWindowFunction};

/// The package version every export and import name carries.
pub const WIT_VERSION: &str = "0.1.0";

/// Core instances a component may hold (Python components hold about a dozen).
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;

/// How often the epoch advances: the granularity of CPU deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How the engine is set up.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Pre-allocate instance slots (fast start) instead of allocating on demand.
    pub pooling: bool,
    /// Most plugin instances alive at once (pool slots).
    pub max_instances: u32,
    /// Most linear memory one instance may grow to.
    pub max_memory_bytes: usize,
    /// The process pools; instance memory is charged to `wasm`.
    pub pools: Option<Arc<Pools>>,
    /// Interrupt calls that overrun their CPU deadline (epoch interruption).
    pub epoch: bool,
    /// Meter fuel, so that steps can bound calls deterministically.
    pub fuel: bool,
    /// WASM stack size, bounding recursion.
    pub max_stack: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: ComponentCache::default_dir(),
            pooling: true,
            max_instances: 256,
            max_memory_bytes: 256 << 20,
            pools: None,
            epoch: true,
            fuel: false,
            max_stack: DEFAULT_MAX_STACK.0,
        }
    }
}

/// A loaded component, ready to be prepared for a kind of step.
pub struct Plugin {
    path: PathBuf,
    component: Component,
}

impl Plugin {
    /// The component file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the interfaces the component exports.
    pub fn exports(&self, engine: &Engine) -> Vec<String> {
        self.component
            .component_type()
            .exports(engine)
            .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
            .map(|(name, _)| name.to_owned())
            .collect()
    }
}

/// What starting an instance needs, shared by the runtime and every operator (which
/// starts a fresh instance after a trap when its step sends failures to dead letters).
#[derive(Clone)]
pub struct Starter {
    engine: Engine,
    max_memory_bytes: usize,
    pools: Option<Arc<Pools>>,
    epoch: bool,
    fuel: bool,
}

impl Starter {
    /// A store holding no instance (no pool slot, no memory), to park an operator in.
    pub(crate) fn empty_store(
        &self,
        path: &Path,
        info: InstanceInfo,
    ) -> Result<Store<HostState>, WasmError> {
        let state =
            HostState::new(info, MemoryMeter::new(0, None)).map_err(|message| WasmError::Link {
                path: path.to_owned(),
                message,
            })?;
        Ok(Store::new(&self.engine, state))
    }

    /// A new store and instance of `pre` for `info`, with deadline and fuel armed.
    pub(crate) fn start<W: World>(
        &self,
        path: &Path,
        pre: &W::Pre,
        info: InstanceInfo,
    ) -> Result<(Store<HostState>, W), WasmError> {
        let meter = MemoryMeter::new(self.max_memory_bytes, self.pools.clone())
            .with_tables(info.sandbox.max_table_elements);
        let state = HostState::new(info, meter).map_err(|message| WasmError::Link {
            path: path.to_owned(),
            message,
        })?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.meter);
        self.arm(&mut store);
        let link_err = |e: wasmtime::Error| WasmError::Link {
            path: path.to_owned(),
            message: format!("{e:#}"),
        };
        let bound = W::instantiate(pre, &mut store).map_err(link_err)?;
        Ok((store, bound))
    }

    /// Sets the CPU deadline and fuel of the next call from the instance's sandbox.
    pub(crate) fn arm(&self, store: &mut Store<HostState>) {
        let sandbox = &store.data().info.sandbox;
        let ticks = (sandbox.cpu_deadline.as_millis() / EPOCH_TICK.as_millis()) as u64 + 1;
        let fuel = sandbox.fuel.unwrap_or(u64::MAX);
        if self.epoch {
            store.set_epoch_deadline(ticks);
        }
        if self.fuel {
            // Only fails when fuel is off, which `self.fuel` rules out.
            let _ = store.set_fuel(fuel);
        }
    }

    /// Fuel the last call burnt, when metering is on.
    pub(crate) fn fuel_burnt(&self, store: &Store<HostState>) -> u64 {
        if !self.fuel {
            return 0;
        }
        let budget = store.data().info.sandbox.fuel.unwrap_or(u64::MAX);
        budget.saturating_sub(store.get_fuel().unwrap_or(budget))
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while the runtime lives.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The WASM runtime of a job.
pub struct Runtime {
    starter: Starter,
    linker: Linker<HostState>,
    cache: Option<ComponentCache>,
    plugins: Mutex<HashMap<PathBuf, Arc<Plugin>>>,
    /// Linked worlds (`W::Pre` of the world of the kind) by component and kind.
    prepared: Mutex<HashMap<(PathBuf, OperatorKind), Arc<dyn Any + Send + Sync>>>,
    _ticker: Option<Ticker>,
}

/// The world and the export a step kind needs.
pub fn world_of(kind: OperatorKind) -> (&'static str, String) {
    let (world, interface) = match kind {
        OperatorKind::Map => ("map-plugin", "map-operator"),
        OperatorKind::Filter => ("filter-plugin", "filter-operator"),
        OperatorKind::FlatMap => ("flat-map-plugin", "flat-map-operator"),
        OperatorKind::Aggregate => ("aggregate-plugin", "aggregate-function"),
        OperatorKind::Window => ("window-plugin", "window-function"),
        OperatorKind::Process => ("process-plugin", "process-function"),
        OperatorKind::Source => ("source-plugin", "source-connector"),
        OperatorKind::Sink => ("sink-plugin", "sink-connector"),
    };
    (world, format!("eddy:plugin/{interface}@{WIT_VERSION}"))
}

impl Runtime {
    /// Where subtask `subtask` of process step `step` keeps its keyed state: a backend
    /// of the job's, opened by `state`.
    pub(crate) fn keyed_backend(
        job: &eddy_core::Job,
        step: &str,
        subtask: u32,
        parallelism: u32,
        state: &dyn BackendFactory,
    ) -> Result<Box<dyn KeyedBackend>, eddy_core::OperatorError> {
        state.open(job, step, subtask, parallelism).map_err(|e| {
            // State lives in storage outside the job, which may come back.
            eddy_core::OperatorError::new(step, e).with_class(ErrorClass::EXTERNAL)
        })
    }

    /// Empty keyed state for a process function's subtask, in a backend opened by
    /// `state`.
    pub(crate) fn keyed_state(
        &self,
        job: &eddy_core::Job,
        step: &str,
        subtask: u32,
        parallelism: u32,
        state: &dyn BackendFactory,
    ) -> Result<KeyedState, eddy_core::OperatorError> {
        Ok(KeyedState::with_backend(
            Runtime::keyed_backend(job, step, subtask, parallelism, state)?,
            job.max_parallelism,
        ))
    }

    /// An engine configured by `config`, with WASI and the Eddy host interfaces linked.
    pub fn new(config: &RuntimeConfig) -> Result<Runtime, WasmError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(config.epoch)
            .consume_fuel(config.fuel)
            .max_wasm_stack(config.max_stack);
        if config.pooling {
            let mut pool = PoolingAllocationConfig::default();
            // Components built from other languages hold several core modules (an
            // interpreter, libc, adapters): leave room for them in every slot.
            pool.total_component_instances(config.max_instances)
                .total_core_instances(config.max_instances * CORE_INSTANCES_PER_COMPONENT)
                .total_memories(config.max_instances * 4)
                .total_tables(config.max_instances * CORE_INSTANCES_PER_COMPONENT)
                .max_memory_size(config.max_memory_bytes);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| WasmError::Engine(format!("linking WASI: {e:#}")))?;
        let link =
            |e: wasmtime::Error| WasmError::Engine(format!("linking host interfaces: {e:#}"));
        type Own = wasmtime::component::HasSelf<HostState>;
        base::PluginBase::add_to_linker::<_, Own>(&mut linker, |s| s).map_err(link)?;
        process::eddy::plugin::state::add_to_linker::<_, Own>(&mut linker, |s| s).map_err(link)?;
        process::eddy::plugin::timers::add_to_linker::<_, Own>(&mut linker, |s| s).map_err(link)?;
        process::eddy::plugin::side_output::add_to_linker::<_, Own>(&mut linker, |s| s)
            .map_err(link)?;
        let ticker = if config.epoch {
            let stop = Arc::new(AtomicBool::new(false));
            let (flag, ticking) = (stop.clone(), engine.clone());
            let thread = std::thread::Builder::new()
                .name("eddy-epoch".into())
                .spawn(move || {
                    while !flag.load(Ordering::SeqCst) {
                        std::thread::sleep(EPOCH_TICK);
                        ticking.increment_epoch();
                    }
                })
                .map_err(|e| WasmError::Engine(format!("cannot start the epoch thread: {e}")))?;
            Some(Ticker {
                stop,
                thread: Some(thread),
            })
        } else {
            None
        };
        Ok(Runtime {
            starter: Starter {
                engine,
                max_memory_bytes: config.max_memory_bytes,
                pools: config.pools.clone(),
                epoch: config.epoch,
                fuel: config.fuel,
            },
            linker,
            cache: config.cache_dir.clone().map(ComponentCache::new),
            plugins: Mutex::default(),
            prepared: Mutex::default(),
            _ticker: ticker,
        })
    }

    /// The engine, for benchmarks and diagnostics.
    pub fn engine(&self) -> &Engine {
        &self.starter.engine
    }

    /// Loads (or returns the already loaded) component at `path`.
    pub fn load(&self, path: &Path) -> Result<Arc<Plugin>, WasmError> {
        if let Some(p) = lock(&self.plugins).get(path) {
            return Ok(p.clone());
        }
        let bytes = std::fs::read(path).map_err(|source| WasmError::Read {
            path: path.to_owned(),
            source,
        })?;
        if !is_component(&bytes) {
            return Err(WasmError::Invalid {
                path: path.to_owned(),
                message: if bytes.starts_with(b"\0asm") {
                    "it is a core WebAssembly module, not a component; build it for \
                     wasm32-wasip2 or wrap it with `wasm-tools component new`"
                        .into()
                } else {
                    "the file does not start with the WebAssembly magic bytes".into()
                },
            });
        }
        let engine = &self.starter.engine;
        let component = match &self.cache {
            Some(cache) => cache.load(engine, path, &bytes)?,
            None => Component::new(engine, &bytes).map_err(|e| WasmError::Invalid {
                path: path.to_owned(),
                message: format!("{e:#}"),
            })?,
        };
        let plugin = Arc::new(Plugin {
            path: path.to_owned(),
            component,
        });
        lock(&self.plugins).insert(path.to_owned(), plugin.clone());
        Ok(plugin)
    }

    /// Checks that `plugin` implements world `W` and links it.
    pub fn prepare<W: World>(&self, plugin: &Plugin) -> Result<W::Pre, WasmError> {
        let cache_key = (plugin.path.clone(), W::KIND);
        if let Some(pre) = lock(&self.prepared)
            .get(&cache_key)
            .and_then(|p| p.downcast_ref::<W::Pre>())
        {
            return Ok(pre.clone());
        }
        let (world, expected) = world_of(W::KIND);
        let exports = plugin.exports(&self.starter.engine);
        if !exports.contains(&expected) {
            return Err(WasmError::WrongWorld {
                path: plugin.path.clone(),
                world,
                step_kind: W::KIND.key(),
                expected,
                exports: if exports.is_empty() {
                    "nothing".into()
                } else {
                    exports.join(", ")
                },
            });
        }
        let link_err = |e: wasmtime::Error| WasmError::Link {
            path: plugin.path.clone(),
            message: format!("{e:#}"),
        };
        let pre = self
            .linker
            .instantiate_pre(&plugin.component)
            .map_err(link_err)?;
        let pre = W::link(pre).map_err(link_err)?;
        lock(&self.prepared).insert(cache_key, Arc::new(pre.clone()));
        Ok(pre)
    }

    /// Checks that `plugin` implements the world that a use of kind `kind` needs, as
    /// a job is validated before it runs.
    pub fn check(&self, plugin: &Plugin, kind: OperatorKind) -> Result<(), WasmError> {
        match kind {
            OperatorKind::Map => self.prepare::<map::MapPlugin>(plugin).map(drop),
            OperatorKind::Filter => self.prepare::<filter::FilterPlugin>(plugin).map(drop),
            OperatorKind::FlatMap => self.prepare::<flat_map::FlatMapPlugin>(plugin).map(drop),
            OperatorKind::Aggregate => self.prepare::<aggregate::AggregatePlugin>(plugin).map(drop),
            OperatorKind::Window => self.prepare::<window::WindowPlugin>(plugin).map(drop),
            OperatorKind::Process => self.prepare::<process::ProcessPlugin>(plugin).map(drop),
            OperatorKind::Source => self.prepare::<source::SourcePlugin>(plugin).map(drop),
            OperatorKind::Sink => self.prepare::<sink::SinkPlugin>(plugin).map(drop),
        }
    }

    /// Starts an instance of a prepared plugin (without calling its `open`).
    pub fn instantiate<W: World>(
        &self,
        plugin: &Plugin,
        pre: &W::Pre,
        info: InstanceInfo,
    ) -> Result<Instance<W>, WasmError> {
        Instance::start(plugin.path(), pre, &self.starter, info)
    }

    /// Loads, checks, instantiates and opens the plugin at `path` as world `W`: what a
    /// job's step or connector needs.
    pub fn instance<W: World>(
        &self,
        path: &Path,
        info: InstanceInfo,
    ) -> Result<Instance<W>, WasmError> {
        let plugin = self.load(path)?;
        let pre = self.prepare::<W>(&plugin)?;
        let mut instance = self.instantiate::<W>(&plugin, &pre, info)?;
        instance.open()?;
        Ok(instance)
    }
}

impl Runtime {
    /// An opened instance of world `W` for subtask `subtask` of `parallelism` of
    /// `step`, configured by `params_json`: what every plugin a step runs or calls
    /// (operators, window functions) starts from.
    fn step_instance<W: World>(
        &self,
        job: &eddy_core::Job,
        step: &eddy_core::Step,
        plugin: &Path,
        params_json: &str,
        (subtask, parallelism): (u32, u32),
    ) -> Result<Instance<W>, eddy_core::OperatorError> {
        let info = instance_info(
            job,
            &step.name,
            (subtask, parallelism),
            params_json.to_owned(),
            &step.sandbox,
        );
        self.instance(plugin, info)
            .map_err(|e| e.for_step(&step.name))
    }
}

/// What an instance running for `name` (a step or connector) of `job` is told about
/// itself.
pub(crate) fn instance_info(
    job: &eddy_core::Job,
    name: &str,
    (subtask, parallelism): (u32, u32),
    params_json: String,
    sandbox: &eddy_core::job::sandbox::Sandbox,
) -> InstanceInfo {
    InstanceInfo {
        job: job.name.clone(),
        step: name.to_owned(),
        subtask,
        parallelism,
        max_parallelism: job.max_parallelism,
        params_json,
        sandbox: sandbox.clone(),
    }
}

/// Whether `bytes` is a component rather than a core module (layer field of the header).
fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.starts_with(b"\0asm") && bytes[6..8] == [1, 0]
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps only cache; a panic elsewhere leaves them consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl eddy_core::OperatorFactory for Runtime {
    fn create(
        &self,
        job: &eddy_core::Job,
        step: &eddy_core::Step,
        subtask: u32,
        parallelism: u32,
        state: &dyn BackendFactory,
    ) -> Result<Box<dyn eddy_core::Operator>, eddy_core::OperatorError> {
        let StepOp::Plugin {
            kind,
            plugin,
            params_json,
        } = &step.op
        else {
            return Err(eddy_core::OperatorError::new(
                &step.name,
                "a built-in step reached the plugin runtime",
            ));
        };
        let at = (subtask, parallelism);
        let op: Box<dyn eddy_core::Operator> = match kind {
            OperatorKind::Map => Box::new(WasmStateless::new(
                self.step_instance::<map::MapPlugin>(job, step, plugin, params_json, at)?,
            )),
            OperatorKind::Filter => Box::new(WasmStateless::new(
                self.step_instance::<filter::FilterPlugin>(job, step, plugin, params_json, at)?,
            )),
            OperatorKind::FlatMap => Box::new(WasmStateless::new(
                self.step_instance::<flat_map::FlatMapPlugin>(job, step, plugin, params_json, at)?,
            )),
            OperatorKind::Process => {
                let instance = self.step_instance::<process::ProcessPlugin>(
                    job,
                    step,
                    plugin,
                    params_json,
                    at,
                )?;
                let backend = Runtime::keyed_backend(job, &step.name, subtask, parallelism, state)?;
                Box::new(WasmProcess::new(instance, backend, job.max_parallelism))
            }
            other => {
                return Err(eddy_core::OperatorError::new(
                    &step.name,
                    format!("a `{}` plugin is not an operator step", other.key()),
                ));
            }
        };
        Ok(op)
    }

    fn aggregate(
        &self,
        job: &eddy_core::Job,
        step: &eddy_core::Step,
        plugin: &Path,
        params_json: &str,
        subtask: u32,
    ) -> Result<Box<dyn eddy_core::operator::AggregateFunction>, eddy_core::OperatorError> {
        let at = (subtask, step.parallelism);
        let instance = self.step_instance(job, step, plugin, params_json, at)?;
        Ok(Box::new(WasmAggregate::new(instance)))
    }

    fn window_function(
        &self,
        job: &eddy_core::Job,
        step: &eddy_core::Step,
        plugin: &Path,
        params_json: &str,
        subtask: u32,
    ) -> Result<Box<dyn eddy_core::operator::WindowFunction>, eddy_core::OperatorError> {
        let at = (subtask, step.parallelism);
        let instance = self.step_instance(job, step, plugin, params_json, at)?;
        Ok(Box::new(WasmWindowFunction::new(instance)))
    }
}
