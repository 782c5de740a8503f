//! A stateful process function: per customer, the orders and their total in each
//! 10-second bucket of event time (map state: bucket end → count and total), emitted by an
//! event-time timer when the watermark passes the bucket's end; orders above `big`
//! (default 400) also go to the side output `big-orders` at once.
//!
//! The state lives in the host, keyed by customer; the instance keeps nothing.

//! Process functions use host-owned state, so the crate has code only as a component.

#[cfg(target_arch = "wasm32")]
mod summary;

#[cfg(target_arch = "wasm32")]
eddy_sdk::export_process!(summary::OrderSummary<1>);
