//! Write Eddy plugins in Rust.
//!
//! A plugin is a type that implements one of the operator traits ([`Map`], [`Filter`],
//! [`FlatMap`]) plus one export macro. The SDK hides the WIT bindings: batches arrive
//! packed, the SDK hands your code one [`Event`] at a time and packs what you emit.
//!
//! ```ignore
//! use eddy_sdk::{Context, Emitter, Error, Event, Map};
//!
//! struct Upper;
//!
//! impl Map for Upper {
//!     fn open(_ctx: &Context) -> Result<Self, Error> {
//!         Ok(Upper)
//!     }
//!     fn map(&mut self, event: &Event<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
//!         out.bytes(event.as_str()?.to_uppercase().as_bytes());
//!         Ok(())
//!     }
//! }
//!
//! eddy_sdk::export_map!(Upper);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` file in
//! `target/wasm32-wasip2/release/` is the component. On other targets the export macros
//! expand to nothing, so the same crate links natively for tests and benchmarks.

mod connector;
mod context;
mod emit;
mod error;
mod event;
pub mod log;
pub mod metrics;
mod run;

pub use connector::{SinkConnector, SourceConnector, Split, SplitStatus, run_poll, run_write};
pub use context::Context;
pub use eddy_batch::Batch;
pub use emit::Emitter;
pub use error::Error;
pub use event::Event;
pub use run::{
    aggregate_add, aggregate_create, aggregate_merge, aggregate_result, run_filter, run_flat_map,
    run_map, run_process, run_timer, run_window,
};
pub use serde;
pub use serde_json::{self, Value, json};

/// A one-to-one transformation: every input event yields exactly one output event.
pub trait Map: Sized + 'static {
    /// Creates the operator once per instance, from the step's configuration.
    fn open(ctx: &Context) -> Result<Self, Error>;
    /// Emits the one output event for `event` (keys and timestamps are inherited
    /// unless set).
    fn map(&mut self, event: &Event<'_>, out: &mut Emitter<'_>) -> Result<(), Error>;
}

/// Keeps the events for which a predicate holds.
pub trait Filter: Sized + 'static {
    /// Creates the operator once per instance, from the step's configuration.
    fn open(ctx: &Context) -> Result<Self, Error>;
    /// Whether `event` passes.
    fn filter(&mut self, event: &Event<'_>) -> Result<bool, Error>;
}

/// A one-to-many transformation.
pub trait FlatMap: Sized + 'static {
    /// Creates the operator once per instance, from the step's configuration.
    fn open(ctx: &Context) -> Result<Self, Error>;
    /// Emits any number of events for `event`.
    fn flat_map(&mut self, event: &Event<'_>, out: &mut Emitter<'_>) -> Result<(), Error>;
}

/// A window aggregate function: folds a window's events into an accumulator that the
/// host keeps (in its state and checkpoints), and turns it into the window's result.
pub trait Aggregate: Sized + 'static {
    /// The accumulator; the host stores it as JSON between calls.
    type Acc: serde::Serialize + serde::de::DeserializeOwned + Default;
    /// Creates the function once per instance, from the step's configuration.
    fn open(ctx: &Context) -> Result<Self, Error>;
    /// Folds one event into the accumulator.
    fn add(&mut self, acc: &mut Self::Acc, event: &Event<'_>) -> Result<(), Error>;
    /// Folds `other` into `acc` (session windows merge).
    fn merge(&mut self, acc: &mut Self::Acc, other: Self::Acc) -> Result<(), Error>;
    /// The window's result.
    fn result(&mut self, acc: &Self::Acc) -> Result<Value, Error>;
}

/// A window `[start, end)` in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after it.
    pub end: i64,
}

/// A window function that sees every event of one key's window at once.
pub trait WindowProcess: Sized + 'static {
    /// Creates the function once per instance, from the step's configuration.
    fn open(ctx: &Context) -> Result<Self, Error>;
    /// Emits the output of one key's window from all of its events (in arrival order).
    fn process(
        &mut self,
        key: &[u8],
        window: Window,
        events: &[Event<'_>],
        out: &mut Emitter<'_>,
    ) -> Result<(), Error>;
}

/// Which clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeDomain {
    /// Event time: fires when the watermark passes the timestamp.
    EventTime,
    /// Processing time: fires when the host's clock passes the timestamp.
    ProcessingTime,
}

/// A timer that fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    /// The clock it followed.
    pub domain: TimeDomain,
    /// When it was due, in ms.
    pub timestamp: i64,
}

/// A stateful, event-driven function over a keyed stream: keyed state
/// ([`keyed::ValueState`] and friends, owned by the host), timers and side outputs.
pub trait Process: Sized + 'static {
    /// Creates the function once per instance, from the step's configuration; declare
    /// state handles here.
    fn open(ctx: &Context) -> Result<Self, Error>;
    /// Handles the events of one key (its state is the current one).
    fn process(
        &mut self,
        key: &[u8],
        events: &[Event<'_>],
        out: &mut Emitter<'_>,
    ) -> Result<(), Error>;
    /// A timer registered for `key` fired.
    fn on_timer(&mut self, key: &[u8], timer: Timer, out: &mut Emitter<'_>) -> Result<(), Error> {
        let _ = (key, timer, out);
        Ok(())
    }
}

pub mod keyed;

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub mod __private;

/// Exports a [`Process`] implementation as the component's `process-function`.
#[macro_export]
macro_rules! export_process {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::{PluginError, Vec, WitBatch, WitTimeDomain};
            struct __EddyExport;
            impl $crate::__private::process::exports::eddy::plugin::process_function::Guest
                for __EddyExport
            {
                fn open() -> ::core::result::Result<(), PluginError> {
                    $crate::__private::open::<$ty>(<$ty as $crate::Process>::open)
                }
                fn process_batch(
                    key: Vec<u8>,
                    input: WitBatch,
                ) -> ::core::result::Result<WitBatch, PluginError> {
                    let input = $crate::Batch::from(input);
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        $crate::run_process(op, &key, &input).map(WitBatch::from)
                    })
                }
                fn on_timer(
                    key: Vec<u8>,
                    domain: WitTimeDomain,
                    timestamp: i64,
                ) -> ::core::result::Result<WitBatch, PluginError> {
                    let domain = match domain {
                        WitTimeDomain::EventTime => $crate::TimeDomain::EventTime,
                        WitTimeDomain::ProcessingTime => $crate::TimeDomain::ProcessingTime,
                    };
                    let timer = $crate::Timer { domain, timestamp };
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        $crate::run_timer(op, &key, timer).map(WitBatch::from)
                    })
                }
            }
            $crate::__private::process::__export_process_plugin!(__EddyExport);
        };
    };
}

/// Exports a [`WindowProcess`] implementation as the component's `window-function`.
#[macro_export]
macro_rules! export_window {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::{PluginError, Vec, WitBatch, WitWindow};
            struct __EddyExport;
            impl $crate::__private::window::exports::eddy::plugin::window_function::Guest
                for __EddyExport
            {
                fn open() -> ::core::result::Result<(), PluginError> {
                    $crate::__private::open::<$ty>(<$ty as $crate::WindowProcess>::open)
                }
                fn process_window(
                    key: Vec<u8>,
                    window: WitWindow,
                    input: WitBatch,
                ) -> ::core::result::Result<WitBatch, PluginError> {
                    let input = $crate::Batch::from(input);
                    let window = $crate::Window {
                        start: window.start,
                        end: window.end,
                    };
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        $crate::run_window(op, &key, window, &input).map(WitBatch::from)
                    })
                }
            }
            $crate::__private::window::__export_window_plugin!(__EddyExport);
        };
    };
}

/// Exports an [`Aggregate`] implementation as the component's `aggregate-function`.
#[macro_export]
macro_rules! export_aggregate {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::{PluginError, Vec, WitBatch};
            struct __EddyExport;
            impl $crate::__private::aggregate::exports::eddy::plugin::aggregate_function::Guest
                for __EddyExport
            {
                fn open() -> ::core::result::Result<(), PluginError> {
                    $crate::__private::open::<$ty>(<$ty as $crate::Aggregate>::open)
                }
                fn create() -> Vec<u8> {
                    $crate::aggregate_create::<$ty>()
                }
                fn add(
                    accumulator: Vec<u8>,
                    input: WitBatch,
                ) -> ::core::result::Result<Vec<u8>, PluginError> {
                    let input = $crate::Batch::from(input);
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        $crate::aggregate_add(op, &accumulator, &input)
                    })
                }
                fn merge(a: Vec<u8>, b: Vec<u8>) -> ::core::result::Result<Vec<u8>, PluginError> {
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        $crate::aggregate_merge(op, &a, &b)
                    })
                }
                fn get_result(
                    accumulator: Vec<u8>,
                ) -> ::core::result::Result<Vec<u8>, PluginError> {
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        $crate::aggregate_result(op, &accumulator)
                    })
                }
                fn supports_retract() -> bool {
                    false
                }
                fn retract(
                    _: Vec<u8>,
                    _: WitBatch,
                ) -> ::core::result::Result<Vec<u8>, PluginError> {
                    ::core::result::Result::Err(PluginError {
                        message: "this aggregate does not support retract".into(),
                        event: None,
                    })
                }
            }
            $crate::__private::aggregate::__export_aggregate_plugin!(__EddyExport);
        };
    };
}

/// Exports a [`Map`] implementation as the component's `map-operator`.
#[macro_export]
macro_rules! export_map {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __EddyExport;
            impl $crate::__private::map::exports::eddy::plugin::map_operator::Guest for __EddyExport {
                fn open() -> ::core::result::Result<(), $crate::__private::PluginError> {
                    $crate::__private::open::<$ty>(<$ty as $crate::Map>::open)
                }
                fn map_batch(
                    input: $crate::__private::WitBatch,
                ) -> ::core::result::Result<$crate::__private::WitBatch, $crate::__private::PluginError> {
                    $crate::__private::call::<$ty, _>(input, $crate::run_map::<$ty>)
                }
            }
            $crate::__private::map::__export_map_plugin!(__EddyExport);
        };
    };
}

/// Exports a [`Filter`] implementation as the component's `filter-operator`.
#[macro_export]
macro_rules! export_filter {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __EddyExport;
            impl $crate::__private::filter::exports::eddy::plugin::filter_operator::Guest
                for __EddyExport
            {
                fn open() -> ::core::result::Result<(), $crate::__private::PluginError> {
                    $crate::__private::open::<$ty>(<$ty as $crate::Filter>::open)
                }
                fn filter_batch(
                    input: $crate::__private::WitBatch,
                ) -> ::core::result::Result<
                    $crate::__private::Vec<u32>,
                    $crate::__private::PluginError,
                > {
                    $crate::__private::call::<$ty, _>(input, $crate::run_filter::<$ty>)
                }
            }
            $crate::__private::filter::__export_filter_plugin!(__EddyExport);
        };
    };
}

/// Exports a [`FlatMap`] implementation as the component's `flat-map-operator`.
#[macro_export]
macro_rules! export_flat_map {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __EddyExport;
            impl $crate::__private::flat_map::exports::eddy::plugin::flat_map_operator::Guest
                for __EddyExport
            {
                fn open() -> ::core::result::Result<(), $crate::__private::PluginError> {
                    $crate::__private::open::<$ty>(<$ty as $crate::FlatMap>::open)
                }
                fn flat_map_batch(
                    input: $crate::__private::WitBatch,
                ) -> ::core::result::Result<
                    $crate::__private::FlatMapOutput,
                    $crate::__private::PluginError,
                > {
                    $crate::__private::call::<$ty, _>(input, $crate::run_flat_map::<$ty>)
                }
            }
            $crate::__private::flat_map::__export_flat_map_plugin!(__EddyExport);
        };
    };
}

/// Exports a [`SourceConnector`] implementation as the component's `source-connector`.
#[macro_export]
macro_rules! export_source {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::source::exports::eddy::plugin::source_connector::{
                Guest, PollResult, Split as WitSplit,
            };
            use $crate::__private::{PluginError, Vec, WitBatch};
            struct __EddyExport;
            impl Guest for __EddyExport {
                fn open() -> ::core::result::Result<(), PluginError> {
                    $crate::__private::open::<$ty>(<$ty as $crate::SourceConnector>::open)
                }
                fn list_splits() -> ::core::result::Result<Vec<WitSplit>, PluginError> {
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        let splits = <$ty as $crate::SourceConnector>::splits(op)?;
                        Ok(splits
                            .into_iter()
                            .map(|s| WitSplit {
                                id: s.id,
                                descriptor: s.descriptor,
                            })
                            .collect())
                    })
                }
                fn open_split(
                    split: WitSplit,
                    position: Option<Vec<u8>>,
                ) -> ::core::result::Result<(), PluginError> {
                    let split = $crate::Split {
                        id: split.id,
                        descriptor: split.descriptor,
                    };
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        <$ty as $crate::SourceConnector>::open_split(op, split, position.as_deref())
                    })
                }
                fn poll(
                    split_id: ::std::string::String,
                    max_events: u32,
                ) -> ::core::result::Result<PollResult, PluginError> {
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        let (batch, status) = $crate::run_poll(op, &split_id, max_events)?;
                        Ok(match status {
                            _ if !batch.is_empty() => PollResult::Events(WitBatch::from(batch)),
                            $crate::SplitStatus::End => PollResult::End,
                            _ => PollResult::Idle,
                        })
                    })
                }
                fn position(
                    split_id: ::std::string::String,
                ) -> ::core::result::Result<Vec<u8>, PluginError> {
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        <$ty as $crate::SourceConnector>::position(op, &split_id)
                    })
                }
            }
            $crate::__private::source::__export_source_plugin!(__EddyExport);
        };
    };
}

/// Exports a [`SinkConnector`] implementation as the component's `sink-connector`.
#[macro_export]
macro_rules! export_sink {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::{PluginError, Vec, WitBatch};
            struct __EddyExport;
            impl $crate::__private::sink::exports::eddy::plugin::sink_connector::Guest
                for __EddyExport
            {
                fn open() -> ::core::result::Result<(), PluginError> {
                    $crate::__private::open::<$ty>(<$ty as $crate::SinkConnector>::open)
                }
                fn write(input: WitBatch) -> ::core::result::Result<(), PluginError> {
                    let input = $crate::Batch::from(input);
                    $crate::__private::with_instance::<$ty, _>(|op| $crate::run_write(op, &input))
                }
                fn prepare_commit(
                    checkpoint_id: u64,
                ) -> ::core::result::Result<Vec<u8>, PluginError> {
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        <$ty as $crate::SinkConnector>::prepare_commit(op, checkpoint_id)
                    })
                }
                fn commit(
                    checkpoint_id: u64,
                    committable: Vec<u8>,
                ) -> ::core::result::Result<(), PluginError> {
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        <$ty as $crate::SinkConnector>::commit(op, checkpoint_id, &committable)
                    })
                }
                fn abort(
                    checkpoint_id: u64,
                    committable: Vec<u8>,
                ) -> ::core::result::Result<(), PluginError> {
                    $crate::__private::with_instance::<$ty, _>(|op| {
                        <$ty as $crate::SinkConnector>::abort(op, checkpoint_id, &committable)
                    })
                }
            }
            $crate::__private::sink::__export_sink_plugin!(__EddyExport);
        };
    };
}
