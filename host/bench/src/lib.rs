//! What the benchmarks share: loading a job file against the example plugins with its
//! memory pools and a WASM runtime charged to them.

use std::path::Path;
use std::sync::Arc;

use eddy_core::Job;
use eddy_core::memory::Pools;
use eddy_testkit::plugins::PLUGIN_DIR;
use eddy_wasm::{Runtime, RuntimeConfig};

/// Writes `text` to `file`, loads it as a job whose plugins are the example plugins,
/// and creates its pools and a runtime configured by `config` (given the job), with
/// the pools charged for WASM memory. Panics on any failure: a benchmark cannot go on.
pub fn load(
    file: &Path,
    text: &str,
    config: impl FnOnce(&Job) -> RuntimeConfig,
) -> (Job, Runtime, Arc<Pools>) {
    std::fs::write(file, text).expect("write job");
    let job = Job::load(file, Some(PLUGIN_DIR.as_ref())).expect("job");
    let pools = Arc::new(Pools::new(&job.memory));
    let runtime = Runtime::new(&RuntimeConfig {
        pools: Some(pools.clone()),
        ..config(&job)
    })
    .expect("runtime");
    (job, runtime, pools)
}
