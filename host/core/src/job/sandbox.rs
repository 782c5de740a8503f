//! What a plugin instance may do and use: limits per call and per instance, and the
//! grants that open its deny-by-default WASI context.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::memory::ByteSize;

/// CPU time one plugin call may take when nothing says otherwise.
pub const DEFAULT_CPU_DEADLINE: Duration = Duration::from_secs(5);
/// Bytes one plugin call may return when nothing says otherwise.
pub const DEFAULT_MAX_OUTPUT: ByteSize = ByteSize(64 << 20);
/// WASM stack when nothing says otherwise.
pub const DEFAULT_MAX_STACK: ByteSize = ByteSize(512 << 10);
/// Table elements (function references) an instance may hold when nothing says otherwise.
pub const DEFAULT_MAX_TABLE_ELEMENTS: u64 = 1_000_000;

/// The `sandbox` section, at job level (defaults for every plugin step) or on a step.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SandboxSpec {
    /// Wall-clock budget of one call, enforced by epoch interruption.
    pub cpu_deadline_ms: Option<u64>,
    /// Deterministic metering: fuel units one call may burn.
    pub fuel: Option<u64>,
    /// Most bytes one call may return.
    pub max_output: Option<ByteSize>,
    /// WASM stack size, bounding recursion (job level only: it is an engine setting).
    pub max_stack: Option<ByteSize>,
    /// Most table elements (function references) one instance may hold.
    pub max_table_elements: Option<u64>,
    /// Host directories the plugin may open.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Environment variables the plugin sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Socket addresses (`ip:port`) the plugin may connect to.
    #[serde(default)]
    pub network: Vec<String>,
    /// `real` (default) or `deterministic`: a fixed clock and a seeded random source.
    pub clocks: Option<ClockPolicy>,
}

/// A host directory made visible inside the plugin.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DirGrant {
    /// The directory on the host (relative to the job file).
    pub host: PathBuf,
    /// Where the plugin sees it.
    pub guest: String,
    /// Whether the plugin may write (default: read only).
    #[serde(default)]
    pub writable: bool,
}

/// How a plugin sees time and randomness.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClockPolicy {
    /// The host's clocks and a secure random source.
    #[default]
    Real,
    /// A clock frozen at the epoch and a fixed-seed random source, for reproducible runs.
    Deterministic,
}

/// The sandbox of one plugin step, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// Budget of one call.
    pub cpu_deadline: Duration,
    /// Fuel per call, when metering is on.
    pub fuel: Option<u64>,
    /// Most bytes one call may return.
    pub max_output: ByteSize,
    /// Most table elements one instance may hold.
    pub max_table_elements: u64,
    /// Granted directories: host path, guest path, writable.
    pub dirs: Vec<DirGrant>,
    /// Granted environment.
    pub env: BTreeMap<String, String>,
    /// Granted socket addresses.
    pub network: Vec<SocketAddr>,
    /// Clocks and randomness.
    pub clocks: ClockPolicy,
}

impl Default for Sandbox {
    /// Nothing granted, default limits.
    fn default() -> Self {
        Sandbox {
            cpu_deadline: DEFAULT_CPU_DEADLINE,
            fuel: None,
            max_output: DEFAULT_MAX_OUTPUT,
            max_table_elements: DEFAULT_MAX_TABLE_ELEMENTS,
            dirs: Vec::new(),
            env: BTreeMap::new(),
            network: Vec::new(),
            clocks: ClockPolicy::Real,
        }
    }
}

impl SandboxSpec {
    /// `step` over `self` (the job's defaults), field by field.
    pub fn merged(&self, step: &SandboxSpec) -> SandboxSpec {
        SandboxSpec {
            cpu_deadline_ms: step.cpu_deadline_ms.or(self.cpu_deadline_ms),
            fuel: step.fuel.or(self.fuel),
            max_output: step.max_output.or(self.max_output),
            max_table_elements: step.max_table_elements.or(self.max_table_elements),
            max_stack: self.max_stack,
            dirs: [self.dirs.clone(), step.dirs.clone()].concat(),
            env: self
                .env
                .clone()
                .into_iter()
                .chain(step.env.clone())
                .collect(),
            network: [self.network.clone(), step.network.clone()].concat(),
            clocks: step.clocks.or(self.clocks),
        }
    }

    /// The resolved sandbox; relative directories are resolved against `base`.
    pub fn resolve(&self, base: &Path) -> Result<Sandbox, String> {
        let network = self
            .network
            .iter()
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|e| format!("network grant {a:?} is not an ip:port address: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let dirs = self
            .dirs
            .iter()
            .map(|d| {
                let host = base.join(&d.host);
                if !host.is_dir() {
                    return Err(format!(
                        "granted directory {} does not exist",
                        host.display()
                    ));
                }
                Ok(DirGrant { host, ..d.clone() })
            })
            .collect::<Result<_, _>>()?;
        if self.cpu_deadline_ms == Some(0) || self.fuel == Some(0) {
            return Err("cpu-deadline-ms and fuel must be above 0".into());
        }
        let default = Sandbox::default();
        Ok(Sandbox {
            cpu_deadline: self
                .cpu_deadline_ms
                .map_or(default.cpu_deadline, Duration::from_millis),
            fuel: self.fuel,
            max_output: self.max_output.unwrap_or(default.max_output),
            max_table_elements: self
                .max_table_elements
                .unwrap_or(default.max_table_elements),
            dirs,
            env: self.env.clone(),
            network,
            clocks: self.clocks.unwrap_or(default.clocks),
        })
    }
}

/// What a step does when an event makes it fail.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// The job fails (and, once checkpoints exist, restarts from the latest one).
    #[default]
    Fail,
    /// The offending event and the error go to the job's dead-letter sink; the job goes on.
    DeadLetter,
}
