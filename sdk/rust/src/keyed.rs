//! Keyed state, timers and side outputs for [`crate::Process`] functions. The host owns
//! the state: every handle reads and writes the state of the key being processed.
//! Values are stored as JSON.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::WitTimeDomain;
use crate::__private::process::eddy::plugin::{side_output, state, timers as host_timers};
use crate::{Batch, Error, TimeDomain};

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::msg(format_args!("state: {e}")))
}

fn ttl_ms(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|t| t.as_millis() as u64)
}

/// One value per key.
pub struct ValueState<T> {
    handle: state::ValueState,
    _value: PhantomData<T>,
}

impl<T: Serialize + DeserializeOwned> ValueState<T> {
    /// The state `name`; with `ttl`, an entry not written for that long reads as empty.
    pub fn new(name: &str, ttl: Option<Duration>) -> Self {
        ValueState {
            handle: state::ValueState::new(name, ttl_ms(ttl)),
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
    handle: state::ListState,
    _value: PhantomData<T>,
}

impl<T: Serialize + DeserializeOwned> ListState<T> {
    /// The state `name`; with `ttl`, a list not written for that long reads as empty.
    pub fn new(name: &str, ttl: Option<Duration>) -> Self {
        ListState {
            handle: state::ListState::new(name, ttl_ms(ttl)),
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
    handle: state::MapState,
    _value: PhantomData<V>,
}

impl<V: Serialize + DeserializeOwned> MapState<V> {
    /// The state `name`; with `ttl`, a map not written for that long reads as empty.
    pub fn new(name: &str, ttl: Option<Duration>) -> Self {
        MapState {
            handle: state::MapState::new(name, ttl_ms(ttl)),
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

fn wit(domain: TimeDomain) -> WitTimeDomain {
    match domain {
        TimeDomain::EventTime => WitTimeDomain::EventTime,
        TimeDomain::ProcessingTime => WitTimeDomain::ProcessingTime,
    }
}

/// Asks for `on_timer` for the current key once `domain`'s clock passes `timestamp`.
pub fn register_timer(domain: TimeDomain, timestamp: i64) {
    host_timers::register(wit(domain), timestamp);
}

/// Cancels a timer of the current key.
pub fn delete_timer(domain: TimeDomain, timestamp: i64) {
    host_timers::delete(wit(domain), timestamp);
}

/// The operator's event-time watermark.
pub fn watermark() -> i64 {
    host_timers::current_watermark()
}

/// The host's processing time, in ms.
pub fn processing_time() -> i64 {
    host_timers::current_processing_time()
}

/// Sends a JSON value to the side output `tag` (the step lists it in `side-outputs`).
pub fn side_output<T: Serialize>(tag: &str, value: &T) -> Result<(), Error> {
    let mut batch = Batch::default();
    batch
        .push_value(&serde_json::to_vec(value)?)
        .map_err(Error::msg)?;
    side_output::emit(tag, &batch.into());
    Ok(())
}
