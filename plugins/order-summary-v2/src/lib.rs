//! Version 2 of `order-summary`: the same process function (the same source file),
//! now also reporting each bucket's average order. It reads the keyed state version 1
//! wrote, so a job moves to it through a savepoint without losing a bucket.

#[cfg(target_arch = "wasm32")]
#[path = "../../order-summary/src/summary.rs"]
mod summary;

#[cfg(target_arch = "wasm32")]
eddy_sdk::export_process!(summary::OrderSummary<2>);
