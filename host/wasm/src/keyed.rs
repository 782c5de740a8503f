//! The `state`, `timers` and `side-output` imports of process-function components, and
//! the host of natively compiled process functions: both act on the host-owned
//! [`KeyedState`] of the instance, through the handles the function declared.

use eddy_core::Batch;
use eddy_core::job::memory::ByteSize;
use eddy_core::job::window::TimeDomain as CoreDomain;
use eddy_core::state::keyed::{KeyedState, StateRef};
use wasmtime::component::Resource;

use crate::bindings::base::eddy::plugin::types::TimeDomain;
use crate::bindings::process::eddy::plugin::{side_output, state, timers};
use crate::host::HostState;

/// A state handle: which state, and its time to live (the same record a natively
/// compiled process function names its state with).
pub use eddy_sdk::keyed::native::StateId as StateHandle;

/// The state a handle names, as the keyed state takes it.
fn state_ref(h: &StateHandle) -> StateRef<'_> {
    StateRef {
        name: &h.name,
        ttl_ms: h.ttl_ms,
    }
}

/// The core's time domain for the WIT's.
pub(crate) fn core_domain(domain: TimeDomain) -> CoreDomain {
    match domain {
        TimeDomain::EventTime => CoreDomain::Event,
        TimeDomain::ProcessingTime => CoreDomain::Processing,
    }
}

/// The core's time domain for the SDK's.
pub(crate) fn sdk_domain(domain: eddy_sdk::TimeDomain) -> CoreDomain {
    match domain {
        eddy_sdk::TimeDomain::EventTime => CoreDomain::Event,
        eddy_sdk::TimeDomain::ProcessingTime => CoreDomain::Processing,
    }
}

/// A keyed-state failure, as the trap it becomes in the calling instance.
fn trap(e: impl std::fmt::Display) -> wasmtime::Error {
    wasmtime::Error::msg(e.to_string())
}

impl HostState {
    /// Runs `op` on the keyed state with the state that handle `r` names.
    fn with_state<T, E: std::fmt::Display>(
        &mut self,
        r: &Resource<StateHandle>,
        op: impl FnOnce(&mut KeyedState, StateRef<'_>) -> Result<T, E>,
    ) -> wasmtime::Result<T> {
        let h = self.table.get(r)?;
        op(&mut self.keyed, state_ref(h)).map_err(trap)
    }

    fn new_handle(
        &mut self,
        name: String,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Resource<StateHandle>> {
        Ok(self.table.push(StateHandle { name, ttl_ms })?)
    }

    fn drop_handle(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl state::Host for HostState {}

impl state::HostValueState for HostState {
    fn new(&mut self, name: String, ttl: Option<u64>) -> wasmtime::Result<Resource<StateHandle>> {
        self.new_handle(name, ttl)
    }

    fn get(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.with_state(&r, |k, s| k.value_get(s))
    }

    fn set(&mut self, r: Resource<StateHandle>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.with_state(&r, |k, s| k.value_set(s, &value))
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        self.with_state(&r, |k, s| k.value_clear(s))
    }

    fn drop(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        self.drop_handle(r)
    }
}

impl state::HostListState for HostState {
    fn new(&mut self, name: String, ttl: Option<u64>) -> wasmtime::Result<Resource<StateHandle>> {
        self.new_handle(name, ttl)
    }

    fn get(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<Vec<Vec<u8>>> {
        self.with_state(&r, |k, s| k.list_get(s))
    }

    fn add(&mut self, r: Resource<StateHandle>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.with_state(&r, |k, s| k.list_add(s, &value))
    }

    fn replace(&mut self, r: Resource<StateHandle>, values: Vec<Vec<u8>>) -> wasmtime::Result<()> {
        self.with_state(&r, |k, s| k.list_replace(s, &values))
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        self.with_state(&r, |k, s| k.list_clear(s))
    }

    fn drop(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        self.drop_handle(r)
    }
}

impl state::HostMapState for HostState {
    fn new(&mut self, name: String, ttl: Option<u64>) -> wasmtime::Result<Resource<StateHandle>> {
        self.new_handle(name, ttl)
    }

    fn get(&mut self, r: Resource<StateHandle>, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.with_state(&r, |k, s| k.map_get(s, &key))
    }

    fn put(
        &mut self,
        r: Resource<StateHandle>,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.with_state(&r, |k, s| k.map_put(s, &key, &value))
    }

    fn remove(&mut self, r: Resource<StateHandle>, key: Vec<u8>) -> wasmtime::Result<()> {
        self.with_state(&r, |k, s| k.map_remove(s, &key))
    }

    fn entries(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.with_state(&r, |k, s| k.map_entries(s))
    }

    fn clear(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        self.with_state(&r, |k, s| k.map_clear(s))
    }

    fn drop(&mut self, r: Resource<StateHandle>) -> wasmtime::Result<()> {
        self.drop_handle(r)
    }
}

impl timers::Host for HostState {
    fn register(&mut self, domain: TimeDomain, timestamp: i64) -> wasmtime::Result<()> {
        self.keyed.register_timer(core_domain(domain), timestamp);
        Ok(())
    }

    fn delete(&mut self, domain: TimeDomain, timestamp: i64) -> wasmtime::Result<()> {
        self.keyed.delete_timer(core_domain(domain), timestamp);
        Ok(())
    }

    fn current_watermark(&mut self) -> wasmtime::Result<i64> {
        Ok(self.keyed.watermark())
    }

    fn current_processing_time(&mut self) -> wasmtime::Result<i64> {
        Ok(self.keyed.now())
    }
}

impl side_output::Host for HostState {
    /// Checks what crosses from the plugin as the main output is checked: a malformed
    /// batch, or more side output in one call than `max-output`, fails the call.
    fn emit(&mut self, tag: String, events: crate::bindings::WitBatch) -> wasmtime::Result<()> {
        let events = Batch::from(events);
        events
            .validate()
            .map_err(|e| trap(format!("side output {tag:?}: {e}")))?;
        let max = self.info.sandbox.max_output;
        let bytes = self.keyed.side_output_bytes() + events.byte_size();
        if bytes > max.0 {
            return Err(trap(format!(
                "emitted {} of side output (last to {tag:?}) in one call, above its \
                 max-output of {max} (sandbox.max-output)",
                ByteSize(bytes)
            )));
        }
        self.keyed.emit_side_output(tag, events);
        Ok(())
    }
}

/// The host of a natively compiled process function for one call: the same state,
/// timers and side outputs as a component's. Operations cannot fail on the SDK's side,
/// so the first failed access is kept and fails the call instead.
pub(crate) struct NativeHost<'a> {
    keyed: &'a mut KeyedState,
    failed: Option<String>,
}

impl<'a> NativeHost<'a> {
    /// A host acting on `keyed`.
    pub(crate) fn new(keyed: &'a mut KeyedState) -> Self {
        NativeHost {
            keyed,
            failed: None,
        }
    }

    /// The failure of the call that just ended, if a state access failed.
    pub(crate) fn into_failure(self) -> Option<String> {
        self.failed
    }

    /// Keeps the first failure of a state access.
    fn note<T, E: std::fmt::Display>(&mut self, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.failed.get_or_insert_with(|| e.to_string());
                None
            }
        }
    }
}

impl eddy_sdk::keyed::native::KeyedHost for NativeHost<'_> {
    fn value_get(&mut self, h: &StateHandle) -> Option<Vec<u8>> {
        let got = self.keyed.value_get(state_ref(h));
        self.note(got).flatten()
    }
    fn value_set(&mut self, h: &StateHandle, value: &[u8]) {
        let done = self.keyed.value_set(state_ref(h), value);
        self.note(done);
    }
    fn value_clear(&mut self, h: &StateHandle) {
        let done = self.keyed.value_clear(state_ref(h));
        self.note(done);
    }
    fn list_get(&mut self, h: &StateHandle) -> Vec<Vec<u8>> {
        let got = self.keyed.list_get(state_ref(h));
        self.note(got).unwrap_or_default()
    }
    fn list_add(&mut self, h: &StateHandle, value: &[u8]) {
        let done = self.keyed.list_add(state_ref(h), value);
        self.note(done);
    }
    fn list_clear(&mut self, h: &StateHandle) {
        let done = self.keyed.list_clear(state_ref(h));
        self.note(done);
    }
    fn map_get(&mut self, h: &StateHandle, key: &[u8]) -> Option<Vec<u8>> {
        let got = self.keyed.map_get(state_ref(h), key);
        self.note(got).flatten()
    }
    fn map_put(&mut self, h: &StateHandle, key: &[u8], value: &[u8]) {
        let done = self.keyed.map_put(state_ref(h), key, value);
        self.note(done);
    }
    fn map_remove(&mut self, h: &StateHandle, key: &[u8]) {
        let done = self.keyed.map_remove(state_ref(h), key);
        self.note(done);
    }
    fn map_entries(&mut self, h: &StateHandle) -> Vec<(Vec<u8>, Vec<u8>)> {
        let got = self.keyed.map_entries(state_ref(h));
        self.note(got).unwrap_or_default()
    }
    fn map_clear(&mut self, h: &StateHandle) {
        let done = self.keyed.map_clear(state_ref(h));
        self.note(done);
    }
    fn register_timer(&mut self, domain: eddy_sdk::TimeDomain, timestamp: i64) {
        self.keyed.register_timer(sdk_domain(domain), timestamp);
    }
    fn delete_timer(&mut self, domain: eddy_sdk::TimeDomain, timestamp: i64) {
        self.keyed.delete_timer(sdk_domain(domain), timestamp);
    }
    fn watermark(&mut self) -> i64 {
        self.keyed.watermark()
    }
    fn processing_time(&mut self) -> i64 {
        self.keyed.now()
    }
    fn side_output(&mut self, tag: &str, events: Batch) {
        self.keyed.emit_side_output(tag.to_owned(), events);
    }
}
