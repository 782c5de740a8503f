//! Keyed state, timers and side outputs for [`crate::Process`] functions. The host owns
//! the state: every handle reads and writes the state of the key being processed.
//! Values are stored as JSON.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Batch, Error, TimeDomain};

#[cfg(not(target_arch = "wasm32"))]
pub mod native;
#[cfg(not(target_arch = "wasm32"))]
use native as host;
#[cfg(target_arch = "wasm32")]
mod wit;
#[cfg(target_arch = "wasm32")]
use wit as host;

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::msg(format_args!("state: {e}")))
}

fn ttl_ms(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|t| t.as_millis() as u64)
}

/// One value per key.
pub struct ValueState<T> {
    handle: host::ValueState,
    _value: PhantomData<T>,
}

impl<T: Serialize + DeserializeOwned> ValueState<T> {
    /// The state `name`; with `ttl`, an entry not written for that long reads as empty.
    pub fn new(name: &str, ttl: Option<Duration>) -> Self {
        ValueState {
            handle: host::ValueState::new(name, ttl_ms(ttl)),
            _value: PhantomData,
        }
    }

    /// The current key's value.
    pub fn get(&self) -> Result<Option<T>, Error> {
        self.handle.get().map(|b| decode(&b)).transpose()
    }

    /// Sets the current key's value.
    pub fn set(&self, value: &T) -> Result<(), Error> {
        self.handle.set(&serde_json::to_vec(value)?);
        Ok(())
    }

    /// Removes the current key's value.
    pub fn clear(&self) {
        self.handle.clear();
    }
}

/// A list per key.
pub struct ListState<T> {
    handle: host::ListState,
    _value: PhantomData<T>,
}

impl<T: Serialize + DeserializeOwned> ListState<T> {
    /// The state `name`; with `ttl`, a list not written for that long reads as empty.
    pub fn new(name: &str, ttl: Option<Duration>) -> Self {
        ListState {
            handle: host::ListState::new(name, ttl_ms(ttl)),
            _value: PhantomData,
        }
    }

    /// The current key's list.
    pub fn get(&self) -> Result<Vec<T>, Error> {
        self.handle.get().iter().map(|b| decode(b)).collect()
    }

    /// Appends to the current key's list.
    pub fn add(&self, value: &T) -> Result<(), Error> {
        self.handle.add(&serde_json::to_vec(value)?);
        Ok(())
    }

    /// Empties the current key's list.
    pub fn clear(&self) {
        self.handle.clear();
    }
}

/// A map per key, from string keys to values.
pub struct MapState<V> {
    handle: host::MapState,
    _value: PhantomData<V>,
}

impl<V: Serialize + DeserializeOwned> MapState<V> {
    /// The state `name`; with `ttl`, a map not written for that long reads as empty.
    pub fn new(name: &str, ttl: Option<Duration>) -> Self {
        MapState {
            handle: host::MapState::new(name, ttl_ms(ttl)),
            _value: PhantomData,
        }
    }

    /// The value at `key` in the current key's map.
    pub fn get(&self, key: &str) -> Result<Option<V>, Error> {
        self.handle
            .get(key.as_bytes())
            .map(|b| decode(&b))
            .transpose()
    }

    /// Sets `key` in the current key's map.
    pub fn put(&self, key: &str, value: &V) -> Result<(), Error> {
        self.handle.put(key.as_bytes(), &serde_json::to_vec(value)?);
        Ok(())
    }

    /// Removes `key` from the current key's map.
    pub fn remove(&self, key: &str) {
        self.handle.remove(key.as_bytes());
    }

    /// Every entry of the current key's map, in key order.
    pub fn entries(&self) -> Result<Vec<(String, V)>, Error> {
        self.handle
            .entries()
            .into_iter()
            .map(|(k, v)| Ok((String::from_utf8_lossy(&k).into_owned(), decode(&v)?)))
            .collect()
    }

    /// Empties the current key's map.
    pub fn clear(&self) {
        self.handle.clear();
    }
}

/// Asks for `on_timer` for the current key once `domain`'s clock passes `timestamp`.
pub fn register_timer(domain: TimeDomain, timestamp: i64) {
    host::register_timer(domain, timestamp);
}

/// Cancels a timer of the current key.
pub fn delete_timer(domain: TimeDomain, timestamp: i64) {
    host::delete_timer(domain, timestamp);
}

/// The operator's event-time watermark.
pub fn watermark() -> i64 {
    host::watermark()
}

/// The host's processing time, in ms.
pub fn processing_time() -> i64 {
    host::processing_time()
}

/// Sends a JSON value to the side output `tag` (the step lists it in `side-outputs`).
pub fn side_output<T: Serialize>(tag: &str, value: &T) -> Result<(), Error> {
    let mut batch = Batch::default();
    batch
        .push_value(&serde_json::to_vec(value)?)
        .map_err(Error::msg)?;
    host::side_output(tag, batch);
    Ok(())
}
