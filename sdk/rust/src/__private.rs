//! Glue between the WIT bindings and the SDK traits, used by the export macros only.

use std::any::Any;
use std::cell::RefCell;

use eddy_batch::Batch;

pub use std::vec::Vec;

use crate::{Context, Error};

/// Bindings of the imports every plugin shares; the per-kind worlds reuse them.
#[allow(missing_docs, reason = "generated from the WIT, which documents it")]
pub mod base {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin-base",
        generate_unused_types: true,
    });
}

macro_rules! world {
    ($module:ident, $world:literal, $macro_name:literal, $bindings:literal) => {
        #[allow(missing_docs, reason = "generated from the WIT, which documents it")]
        pub mod $module {
            wit_bindgen::generate!({
                path: "../../wit",
                world: $world,
                with: {
                    "eddy:plugin/types@0.1.0": crate::__private::base::eddy::plugin::types,
                    "eddy:plugin/host@0.1.0": crate::__private::base::eddy::plugin::host,
                    "eddy:plugin/config@0.1.0": crate::__private::base::eddy::plugin::config,
                },
                pub_export_macro: true,
                export_macro_name: $macro_name,
                default_bindings_module: $bindings,
            });
        }
    };
}

world!(
    map,
    "map-plugin",
    "__export_map_plugin",
    "eddy_sdk::__private::map"
);
world!(
    filter,
    "filter-plugin",
    "__export_filter_plugin",
    "eddy_sdk::__private::filter"
);
world!(
    flat_map,
    "flat-map-plugin",
    "__export_flat_map_plugin",
    "eddy_sdk::__private::flat_map"
);

world!(
    aggregate,
    "aggregate-plugin",
    "__export_aggregate_plugin",
    "eddy_sdk::__private::aggregate"
);

world!(
    window,
    "window-plugin",
    "__export_window_plugin",
    "eddy_sdk::__private::window"
);

world!(
    process,
    "process-plugin",
    "__export_process_plugin",
    "eddy_sdk::__private::process"
);

world!(
    source,
    "source-plugin",
    "__export_source_plugin",
    "eddy_sdk::__private::source"
);

world!(
    sink,
    "sink-plugin",
    "__export_sink_plugin",
    "eddy_sdk::__private::sink"
);

/// The WIT time domain.
pub type WitTimeDomain = base::eddy::plugin::types::TimeDomain;

/// The WIT window record.
pub type WitWindow = base::eddy::plugin::types::Window;

/// The WIT batch record.
pub type WitBatch = base::eddy::plugin::types::Batch;
/// The WIT error record.
pub type PluginError = base::eddy::plugin::types::PluginError;
/// The WIT flat-map result record.
pub type FlatMapOutput = flat_map::exports::eddy::plugin::flat_map_operator::FlatMapOutput;

thread_local! {
    /// The one operator instance of this component, created by `open`.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn to_wit(e: Error) -> PluginError {
    PluginError {
        message: e.message,
        event: e.event,
    }
}

use base::eddy::plugin::types::Header as WitHeader;
eddy_batch::wit_batch_conversions!(WitBatch, WitHeader);

/// Results of the batch drivers as they cross back to the host.
pub trait IntoWit {
    /// The WIT-side type.
    type Wit;
    /// Converts without copying buffers.
    fn into_wit(self) -> Self::Wit;
}

impl IntoWit for Batch {
    type Wit = WitBatch;
    fn into_wit(self) -> WitBatch {
        self.into()
    }
}

impl IntoWit for Vec<u32> {
    type Wit = Vec<u32>;
    fn into_wit(self) -> Vec<u32> {
        self
    }
}

impl IntoWit for (Batch, Vec<u32>) {
    type Wit = FlatMapOutput;
    fn into_wit(self) -> FlatMapOutput {
        FlatMapOutput {
            events: self.0.into(),
            origins: self.1,
        }
    }
}

/// Creates the instance's operator from the host's configuration.
pub fn open<T: 'static>(make: fn(&Context) -> Result<T, Error>) -> Result<(), PluginError> {
    let ctx = Context::from_host().map_err(to_wit)?;
    let op = make(&ctx).map_err(to_wit)?;
    INSTANCE.with(|slot| *slot.borrow_mut() = Some(Box::new(op)));
    Ok(())
}

/// Runs `f` on the instance's operator.
pub fn with_instance<T: 'static, R>(
    f: impl FnOnce(&mut T) -> Result<R, Error>,
) -> Result<R, PluginError> {
    INSTANCE.with(|slot| {
        let mut slot = slot.borrow_mut();
        let op = slot
            .as_mut()
            .and_then(|op| op.downcast_mut::<T>())
            .ok_or_else(|| PluginError {
                message: "the operator was called before `open`".into(),
                event: None,
            })?;
        f(op).map_err(to_wit)
    })
}

/// Runs a batch driver on the instance's operator.
pub fn call<T: 'static, R: IntoWit>(
    input: WitBatch,
    driver: fn(&mut T, &Batch) -> Result<R, Error>,
) -> Result<R::Wit, PluginError> {
    let batch = Batch::from(input);
    with_instance(|op| driver(op, &batch).map(IntoWit::into_wit))
}
