//! One wasmtime engine per process: loads plugins once, checks their world, and
//! starts instances cheaply from pre-linked `InstancePre`s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use eddy_core::memory::Pools;
use eddy_core::{OperatorKind, StepOp};
use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::WasmError;
use crate::bindings::{base, filter, flat_map, map};
use crate::cache::ComponentCache;
use crate::host::{HostState, InstanceInfo, MemoryMeter};
use crate::operator::{Bound, WasmOperator};

/// The package version every export and import name carries.
pub const WIT_VERSION: &str = "0.1.0";

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
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: ComponentCache::default_dir(),
            pooling: true,
            max_instances: 256,
            max_memory_bytes: 256 << 20,
            pools: None,
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

/// A plugin linked for one kind of step: instances start from here in microseconds.
#[derive(Clone)]
pub enum Prepared {
    /// A `map-plugin`.
    Map(map::MapPluginPre<HostState>),
    /// A `filter-plugin`.
    Filter(filter::FilterPluginPre<HostState>),
    /// A `flat-map-plugin`.
    FlatMap(flat_map::FlatMapPluginPre<HostState>),
}

/// The WASM runtime of a process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<ComponentCache>,
    max_memory_bytes: usize,
    pools: Option<Arc<Pools>>,
    plugins: Mutex<HashMap<PathBuf, Arc<Plugin>>>,
    prepared: Mutex<HashMap<(PathBuf, OperatorKind), Prepared>>,
}

/// The world and the export a step kind needs.
pub fn world_of(kind: OperatorKind) -> (&'static str, String) {
    let (world, interface) = match kind {
        OperatorKind::Map => ("map-plugin", "map-operator"),
        OperatorKind::Filter => ("filter-plugin", "filter-operator"),
        OperatorKind::FlatMap => ("flat-map-plugin", "flat-map-operator"),
    };
    (world, format!("eddy:plugin/{interface}@{WIT_VERSION}"))
}

impl Runtime {
    /// An engine configured by `config`, with WASI and the Eddy host interfaces linked.
    pub fn new(config: &RuntimeConfig) -> Result<Runtime, WasmError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true);
        if config.pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(config.max_instances)
                .total_core_instances(config.max_instances * 4)
                .total_memories(config.max_instances * 2)
                .total_tables(config.max_instances * 4)
                .max_memory_size(config.max_memory_bytes);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| WasmError::Engine(format!("linking WASI: {e:#}")))?;
        base::PluginBase::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| WasmError::Engine(format!("linking host interfaces: {e:#}")))?;
        Ok(Runtime {
            engine,
            linker,
            cache: config.cache_dir.clone().map(ComponentCache::new),
            max_memory_bytes: config.max_memory_bytes,
            pools: config.pools.clone(),
            plugins: Mutex::default(),
            prepared: Mutex::default(),
        })
    }

    /// The engine, for benchmarks and diagnostics.
    pub fn engine(&self) -> &Engine {
        &self.engine
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
        if !wasmparser_is_component(&bytes) {
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
        let component = match &self.cache {
            Some(cache) => cache.load(&self.engine, path, &bytes)?,
            None => Component::new(&self.engine, &bytes).map_err(|e| WasmError::Invalid {
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

    /// Checks that `plugin` implements the world of `kind` and links it.
    pub fn prepare(&self, plugin: &Plugin, kind: OperatorKind) -> Result<Prepared, WasmError> {
        let cache_key = (plugin.path.clone(), kind);
        if let Some(p) = lock(&self.prepared).get(&cache_key) {
            return Ok(p.clone());
        }
        let (world, expected) = world_of(kind);
        let exports = plugin.exports(&self.engine);
        if !exports.contains(&expected) {
            return Err(WasmError::WrongWorld {
                path: plugin.path.clone(),
                world,
                step_kind: kind.key(),
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
        let prepared = match kind {
            OperatorKind::Map => Prepared::Map(map::MapPluginPre::new(pre).map_err(link_err)?),
            OperatorKind::Filter => {
                Prepared::Filter(filter::FilterPluginPre::new(pre).map_err(link_err)?)
            }
            OperatorKind::FlatMap => {
                Prepared::FlatMap(flat_map::FlatMapPluginPre::new(pre).map_err(link_err)?)
            }
        };
        lock(&self.prepared).insert(cache_key, prepared.clone());
        Ok(prepared)
    }

    /// Starts an instance of a prepared plugin (without calling its `open`).
    pub fn instantiate(
        &self,
        plugin: &Plugin,
        prepared: &Prepared,
        info: InstanceInfo,
    ) -> Result<WasmOperator, WasmError> {
        let meter = MemoryMeter::new(self.max_memory_bytes, self.pools.clone());
        let mut store = Store::new(&self.engine, HostState::new(info, meter));
        store.limiter(|state| &mut state.meter);
        let link_err = |e: wasmtime::Error| WasmError::Link {
            path: plugin.path.clone(),
            message: format!("{e:#}"),
        };
        let bound = match prepared {
            Prepared::Map(pre) => Bound::Map(pre.instantiate(&mut store).map_err(link_err)?),
            Prepared::Filter(pre) => Bound::Filter(pre.instantiate(&mut store).map_err(link_err)?),
            Prepared::FlatMap(pre) => {
                Bound::FlatMap(pre.instantiate(&mut store).map_err(link_err)?)
            }
        };
        Ok(WasmOperator::new(plugin.path(), store, bound))
    }

    /// Loads, checks, instantiates and opens a plugin operator: what a job step needs.
    pub fn operator(
        &self,
        path: &Path,
        kind: OperatorKind,
        info: InstanceInfo,
    ) -> Result<WasmOperator, WasmError> {
        let plugin = self.load(path)?;
        let prepared = self.prepare(&plugin, kind)?;
        let mut op = self.instantiate(&plugin, &prepared, info)?;
        op.open()?;
        Ok(op)
    }
}

/// Whether `bytes` is a component rather than a core module (layer field of the header).
fn wasmparser_is_component(bytes: &[u8]) -> bool {
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
        let info = InstanceInfo {
            job: job.name.clone(),
            step: step.name.clone(),
            subtask,
            parallelism,
            params_json: params_json.clone(),
        };
        let op = self
            .operator(plugin, *kind, info)
            .map_err(|e| eddy_core::OperatorError::new(&step.name, e))?;
        Ok(Box::new(op))
    }
}
