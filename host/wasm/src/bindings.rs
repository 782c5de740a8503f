//! Host-side bindings of the `eddy:plugin` WIT package, one module per world.
//!
//! The shared interfaces (`types`, `host`, `config`) are generated once in [`base`]
//! and reused by every world, so the host implements them once.

/// The imports every plugin shares.
#[allow(missing_docs, reason = "generated from the WIT, which documents it")]
pub mod base {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "plugin-base",
    });
}

macro_rules! world {
    ($module:ident, $world:literal) => {
        #[doc = concat!("Bindings of the `", $world, "` world.")]
        #[allow(missing_docs, reason = "generated from the WIT, which documents it")]
        pub mod $module {
            wasmtime::component::bindgen!({
                path: "../../wit",
                world: $world,
                with: {
                    "eddy:plugin/types": crate::bindings::base::eddy::plugin::types,
                    "eddy:plugin/host": crate::bindings::base::eddy::plugin::host,
                    "eddy:plugin/config": crate::bindings::base::eddy::plugin::config,
                },
            });
        }
    };
}

world!(map, "map-plugin");
world!(filter, "filter-plugin");
world!(flat_map, "flat-map-plugin");
world!(aggregate, "aggregate-plugin");
world!(window, "window-plugin");
world!(source, "source-plugin");
world!(sink, "sink-plugin");

/// Bindings of the `process-plugin` world: keyed state resources, timers, side outputs.
#[allow(missing_docs, reason = "generated from the WIT, which documents it")]
pub mod process {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "process-plugin",
        imports: {
            "eddy:plugin/state": trappable,
            "eddy:plugin/timers": trappable,
            "eddy:plugin/side-output": trappable,
        },
        with: {
            "eddy:plugin/types": crate::bindings::base::eddy::plugin::types,
            "eddy:plugin/host": crate::bindings::base::eddy::plugin::host,
            "eddy:plugin/config": crate::bindings::base::eddy::plugin::config,
            "eddy:plugin/state.value-state": crate::keyed::StateHandle,
            "eddy:plugin/state.list-state": crate::keyed::StateHandle,
            "eddy:plugin/state.map-state": crate::keyed::StateHandle,
        },
    });
}

pub use base::eddy::plugin::types::{Batch as WitBatch, Header as WitHeader, PluginError};

eddy_core::batch::wit_batch_conversions!(WitBatch, WitHeader);
