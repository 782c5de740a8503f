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

mod context;
mod emit;
mod error;
mod event;
pub mod log;
pub mod metrics;
mod run;

pub use context::Context;
pub use eddy_batch::Batch;
pub use emit::Emitter;
pub use error::Error;
pub use event::Event;
pub use run::{run_filter, run_flat_map, run_map};
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

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub mod __private;

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
