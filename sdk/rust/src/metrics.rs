//! Custom metrics of a plugin, kept by the host per operator subtask.

/// Adds `delta` to the counter `name` (no-op when running natively).
pub fn counter_add(name: &str, delta: u64) {
    #[cfg(target_arch = "wasm32")]
    crate::__private::base::eddy::plugin::host::counter_add(name, delta);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (name, delta);
}

/// Sets the gauge `name` (no-op when running natively).
pub fn gauge_set(name: &str, value: f64) {
    #[cfg(target_arch = "wasm32")]
    crate::__private::base::eddy::plugin::host::gauge_set(name, value);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (name, value);
}
