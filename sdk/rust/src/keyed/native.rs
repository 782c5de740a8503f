//! Keyed state for process functions compiled natively (the benchmarks' twins of WASM
//! plugins): the same API, served by the host that runs the call. The host implements
//! [`KeyedHost`] and wraps each call of the function in [`with_host`].

use std::cell::Cell;
use std::ptr::NonNull;

use crate::{Batch, TimeDomain};

/// Which state of the current key an access is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateId {
    /// The name the function gave the state.
    pub name: String,
    /// Its time to live, in ms of processing time.
    pub ttl_ms: Option<u64>,
}

/// What a host offers a natively compiled process function: the same operations as
/// the WIT `state`, `timers` and `side-output` imports, on the key being processed.
/// Operations cannot fail here; a host records its own failure and fails the call.
#[allow(
    missing_docs,
    reason = "each operation mirrors the WIT import of the same name"
)]
pub trait KeyedHost {
    fn value_get(&mut self, state: &StateId) -> Option<Vec<u8>>;
    fn value_set(&mut self, state: &StateId, value: &[u8]);
    fn value_clear(&mut self, state: &StateId);
    fn list_get(&mut self, state: &StateId) -> Vec<Vec<u8>>;
    fn list_add(&mut self, state: &StateId, value: &[u8]);
    fn list_clear(&mut self, state: &StateId);
    fn map_get(&mut self, state: &StateId, key: &[u8]) -> Option<Vec<u8>>;
    fn map_put(&mut self, state: &StateId, key: &[u8], value: &[u8]);
    fn map_remove(&mut self, state: &StateId, key: &[u8]);
    fn map_entries(&mut self, state: &StateId) -> Vec<(Vec<u8>, Vec<u8>)>;
    fn map_clear(&mut self, state: &StateId);
    fn register_timer(&mut self, domain: TimeDomain, timestamp: i64);
    fn delete_timer(&mut self, domain: TimeDomain, timestamp: i64);
    fn watermark(&mut self) -> i64;
    fn processing_time(&mut self) -> i64;
    fn side_output(&mut self, tag: &str, events: Batch);
}

type HostPtr = NonNull<dyn KeyedHost + 'static>;

thread_local! {
    /// The host of the call running on this thread, if any.
    static HOST: Cell<Option<HostPtr>> = const { Cell::new(None) };
}

/// Puts the previous host back when a call (or an access) ends, even by panic.
struct Restore(Option<HostPtr>);

impl Drop for Restore {
    fn drop(&mut self) {
        HOST.with(|h| h.set(self.0));
    }
}

/// Runs `call` (a process function's `process` or `on_timer`) with `host` serving its
/// keyed state, timers and side outputs.
pub fn with_host<R>(host: &mut dyn KeyedHost, call: impl FnOnce() -> R) -> R {
    let ptr: NonNull<dyn KeyedHost + '_> = NonNull::from(host);
    // SAFETY: only the lifetime is erased. The pointer is reachable through `HOST` only
    // until `_restore` drops at the end of this function, while `host` is still
    // mutably borrowed by it, so it never outlives the borrow.
    let ptr: HostPtr = unsafe { std::mem::transmute(ptr) };
    let _restore = Restore(HOST.with(|h| h.replace(Some(ptr))));
    call()
}

/// Runs `f` on the current call's host.
///
/// # Panics
/// Outside [`with_host`]: keyed state exists only during a process call.
fn host<R>(f: impl FnOnce(&mut dyn KeyedHost) -> R) -> R {
    let ptr = HOST
        .with(Cell::take)
        .expect("keyed state, timers and side outputs exist only during a process call");
    let _restore = Restore(Some(ptr));
    // SAFETY: `with_host` keeps the host mutably borrowed for as long as the pointer is
    // installed, and taking it out of `HOST` for this access means no second `&mut`
    // to it exists while `f` runs (a nested access would find no host and panic).
    f(unsafe { &mut *ptr.as_ptr() })
}

fn id(name: &str, ttl_ms: Option<u64>) -> StateId {
    StateId {
        name: name.to_owned(),
        ttl_ms,
    }
}

/// A value-state handle.
pub(crate) struct ValueState(StateId);

impl ValueState {
    pub(crate) fn new(name: &str, ttl_ms: Option<u64>) -> Self {
        ValueState(id(name, ttl_ms))
    }
    pub(crate) fn get(&self) -> Option<Vec<u8>> {
        host(|h| h.value_get(&self.0))
    }
    pub(crate) fn set(&self, value: &[u8]) {
        host(|h| h.value_set(&self.0, value));
    }
    pub(crate) fn clear(&self) {
        host(|h| h.value_clear(&self.0));
    }
}

/// A list-state handle.
pub(crate) struct ListState(StateId);

impl ListState {
    pub(crate) fn new(name: &str, ttl_ms: Option<u64>) -> Self {
        ListState(id(name, ttl_ms))
    }
    pub(crate) fn get(&self) -> Vec<Vec<u8>> {
        host(|h| h.list_get(&self.0))
    }
    pub(crate) fn add(&self, value: &[u8]) {
        host(|h| h.list_add(&self.0, value));
    }
    pub(crate) fn clear(&self) {
        host(|h| h.list_clear(&self.0));
    }
}

/// A map-state handle.
pub(crate) struct MapState(StateId);

impl MapState {
    pub(crate) fn new(name: &str, ttl_ms: Option<u64>) -> Self {
        MapState(id(name, ttl_ms))
    }
    pub(crate) fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        host(|h| h.map_get(&self.0, key))
    }
    pub(crate) fn put(&self, key: &[u8], value: &[u8]) {
        host(|h| h.map_put(&self.0, key, value));
    }
    pub(crate) fn remove(&self, key: &[u8]) {
        host(|h| h.map_remove(&self.0, key));
    }
    pub(crate) fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        host(|h| h.map_entries(&self.0))
    }
    pub(crate) fn clear(&self) {
        host(|h| h.map_clear(&self.0));
    }
}

pub(crate) fn register_timer(domain: TimeDomain, timestamp: i64) {
    host(|h| h.register_timer(domain, timestamp));
}

pub(crate) fn delete_timer(domain: TimeDomain, timestamp: i64) {
    host(|h| h.delete_timer(domain, timestamp));
}

pub(crate) fn watermark() -> i64 {
    host(|h| h.watermark())
}

pub(crate) fn processing_time() -> i64 {
    host(|h| h.processing_time())
}

pub(crate) fn side_output(tag: &str, events: Batch) {
    host(|h| h.side_output(tag, events));
}
