//! The state behind each plugin instance and the host functions it imports.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use eddy_core::job::memory::ByteSize;
use eddy_core::job::sandbox::{ClockPolicy, Sandbox};
use eddy_core::memory::Pools;
use eddy_core::metrics::{MAX_REPORTED_NAME_LEN, MAX_REPORTED_NAMES, PluginCounters};
use wasmtime_wasi::{Deterministic, FsPerms, HostMonotonicClock, HostWallClock};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::base::eddy::plugin::{config, host, types};
use crate::output::{CapturedOutput, clip};

/// Where an instance runs and what it may do: what the `config` interface tells the
/// plugin, and the sandbox its WASI context is built from.
#[derive(Clone, Debug)]
pub struct InstanceInfo {
    /// Name of the job.
    pub job: String,
    /// Name of the step.
    pub step: String,
    /// Subtask index.
    pub subtask: u32,
    /// Subtasks of the step.
    pub parallelism: u32,
    /// Key groups of the job, which keyed state is checkpointed by.
    pub max_parallelism: u32,
    /// The step's params as a JSON object.
    pub params_json: String,
    /// Limits and grants.
    pub sandbox: Sandbox,
}

/// Bounds and meters an instance's linear memory: its own cap, and the process's WASM
/// pool, so that many instances cannot together exceed the budget.
pub struct MemoryMeter {
    instance_max: usize,
    max_table_elements: usize,
    pools: Option<Arc<Pools>>,
    reserved: usize,
    /// Why the last refused growth was refused, for the error that follows it.
    pub(crate) refused: Option<String>,
}

impl MemoryMeter {
    /// A meter capping one instance at `instance_max` bytes, charging `pools.wasm`.
    pub fn new(instance_max: usize, pools: Option<Arc<Pools>>) -> Self {
        MemoryMeter {
            instance_max,
            max_table_elements: eddy_core::job::sandbox::DEFAULT_MAX_TABLE_ELEMENTS as usize,
            pools,
            reserved: 0,
            refused: None,
        }
    }

    /// The same meter, capping tables at `elements`.
    pub fn with_tables(mut self, elements: u64) -> Self {
        self.max_table_elements = usize::try_from(elements).unwrap_or(usize::MAX);
        self
    }

    /// Bytes of linear memory the instance holds.
    pub fn reserved(&self) -> usize {
        self.reserved
    }
}

impl wasmtime::ResourceLimiter for MemoryMeter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.instance_max {
            self.refused = Some(format!(
                "linear memory of {} would exceed the instance limit of {}",
                ByteSize(desired),
                ByteSize(self.instance_max)
            ));
            return Ok(false);
        }
        let more = desired.saturating_sub(current);
        if let Some(pools) = &self.pools
            && let Err(e) = pools.wasm.try_reserve(more)
        {
            self.refused = Some(format!("{e}; raise memory.wasm in the job file"));
            return Ok(false);
        }
        self.reserved += more;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            self.refused = Some(format!(
                "a table of {desired} elements would exceed sandbox.max-table-elements ({})",
                self.max_table_elements
            ));
            return Ok(false);
        }
        Ok(true)
    }
}

impl Drop for MemoryMeter {
    fn drop(&mut self) {
        if let Some(pools) = &self.pools {
            pools.wasm.release(self.reserved);
        }
    }
}

/// The store data of one plugin instance.
pub struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) keyed: eddy_core::state::keyed::KeyedState,
    pub(crate) info: InstanceInfo,
    /// What the instance costs and reports; shared with the job's metrics, and carried
    /// over to the fresh instance that replaces this one after a trap.
    pub(crate) counters: Arc<PluginCounters>,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    pub(crate) meter: MemoryMeter,
    log_rate: LogRate,
    /// `host.log` lines over the rate limit since they were last reported.
    log_suppressed: u64,
}

impl HostState {
    /// State for a new instance: WASI with nothing granted (no files, network,
    /// environment or arguments) but what the sandbox grants, stdout and stderr
    /// captured for the host log.
    pub fn new(info: InstanceInfo, meter: MemoryMeter) -> Result<Self, String> {
        let stdout = CapturedOutput::default();
        let stderr = CapturedOutput::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        let sandbox = &info.sandbox;
        for dir in &sandbox.dirs {
            let perms = if dir.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| format!("cannot grant {}: {e}", dir.host.display()))?;
        }
        for (k, v) in &sandbox.env {
            wasi.env(k, v);
        }
        let allowed = Arc::new(sandbox.network.clone());
        wasi.socket_addr_check(move |addr, _| {
            let ok = allowed.contains(&addr);
            Box::pin(async move { ok })
        });
        if sandbox.clocks == ClockPolicy::Deterministic {
            wasi.wall_clock(Frozen)
                .monotonic_clock(Frozen)
                .secure_random(Deterministic::new(SEED.to_vec()))
                .insecure_random(Deterministic::new(SEED.to_vec()))
                .insecure_random_seed(0);
        }
        let wasi = wasi.build();
        Ok(HostState {
            wasi,
            table: ResourceTable::new(),
            keyed: eddy_core::state::keyed::KeyedState::new(meter.pools.clone()),
            info,
            counters: Arc::default(),
            stdout,
            stderr,
            meter,
            log_rate: LogRate::new(),
            log_suppressed: 0,
        })
    }

    /// Logs the first metric update the instance's limits refused.
    fn refused_metric(&self, name: &str) {
        if self.counters.reported.refused.load(Ordering::Relaxed) == 1 {
            let info = &self.info;
            tracing::warn!(target: "eddy::plugin", job = %info.job, step = %info.step,
                subtask = info.subtask,
                "metric {:?} ignored: a plugin instance reports at most {MAX_REPORTED_NAMES} \
                 names of at most {MAX_REPORTED_NAME_LEN} bytes; further refusals are counted \
                 in eddy_plugin_metrics_refused_total",
                name.chars().take(MAX_REPORTED_NAME_LEN).collect::<String>());
        }
    }

    /// Forwards what the plugin printed since the last call to the host log.
    /// At most [`LOG_LINES_PER_SECOND`] lines per instance (printed or sent through
    /// `host.log`) reach the log; the rest are counted and reported.
    pub(crate) fn forward_output(&mut self) {
        let suppressed = std::mem::take(&mut self.log_suppressed);
        if suppressed > 0 {
            tracing::warn!(target: "eddy::plugin", job = %self.info.job, step = %self.info.step,
                subtask = self.info.subtask, suppressed_lines = suppressed,
                "plugin log lines over {LOG_LINES_PER_SECOND} per second were dropped");
        }
        for stream in ["stdout", "stderr"] {
            let captured = if stream == "stdout" {
                &self.stdout
            } else {
                &self.stderr
            };
            let (lines, dropped) = captured.drain();
            let mut suppressed = 0u64;
            for line in lines {
                if !self.log_rate.admit() {
                    suppressed += 1;
                    continue;
                }
                tracing::info!(target: "eddy::plugin", job = %self.info.job, step = %self.info.step,
                    subtask = self.info.subtask, stream, "{line}");
            }
            if dropped > 0 || suppressed > 0 {
                tracing::warn!(target: "eddy::plugin", job = %self.info.job, step = %self.info.step,
                    subtask = self.info.subtask, stream, dropped_bytes = dropped, suppressed_lines = suppressed,
                    "plugin output over the limit was dropped");
            }
        }
    }
}

/// Lines of plugin output per instance and second that reach the host log.
pub const LOG_LINES_PER_SECOND: u32 = 100;

/// A one-second window counter of log lines.
#[derive(Debug)]
pub(crate) struct LogRate {
    window: std::time::Instant,
    lines: u32,
}

impl LogRate {
    fn new() -> Self {
        LogRate {
            window: std::time::Instant::now(),
            lines: 0,
        }
    }

    fn admit(&mut self) -> bool {
        if self.window.elapsed() >= std::time::Duration::from_secs(1) {
            self.window = std::time::Instant::now();
            self.lines = 0;
        }
        self.lines += 1;
        self.lines <= LOG_LINES_PER_SECOND
    }
}

/// Seed bytes of the deterministic random source.
const SEED: [u8; 8] = *b"eddy-rng";

/// Clocks stopped at zero, for reproducible runs.
struct Frozen;

impl HostWallClock for Frozen {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl HostMonotonicClock for Frozen {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: types::LogLevel, message: String) {
        if !self.log_rate.admit() {
            self.log_suppressed += 1;
            return;
        }
        let message = clip(message);
        let info = &self.info;
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(target: "eddy::plugin", job = %info.job, step = %info.step,
                    subtask = info.subtask, "{message}")
            };
        }
        match level {
            types::LogLevel::Trace => emit!(trace),
            types::LogLevel::Debug => emit!(debug),
            types::LogLevel::Info => emit!(info),
            types::LogLevel::Warn => emit!(warn),
            types::LogLevel::Error => emit!(error),
        }
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        if !self.counters.reported.counter_add(&name, delta) {
            self.refused_metric(&name);
        }
    }

    fn gauge_set(&mut self, name: String, value: f64) {
        if !self.counters.reported.gauge_set(&name, value) {
            self.refused_metric(&name);
        }
    }
}

impl config::Host for HostState {
    fn params(&mut self) -> String {
        self.info.params_json.clone()
    }

    fn job_name(&mut self) -> String {
        self.info.job.clone()
    }

    fn operator_name(&mut self) -> String {
        self.info.step.clone()
    }

    fn subtask_index(&mut self) -> u32 {
        self.info.subtask
    }

    fn parallelism(&mut self) -> u32 {
        self.info.parallelism
    }
}
