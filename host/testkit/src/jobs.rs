//! Job file pieces that the end-to-end tests and the benchmarks share, so that they run
//! the same pipeline: generated orders converted to euros, then summarized per customer
//! by a keyed process function with state and timers (`currency-convert` and
//! `order-summary` from `plugins/`). Each is YAML text to splice into a job file.

/// Builds the `to-eur` step; a macro so that [`ORDER_STEPS`] can extend it with
/// `concat!`.
macro_rules! to_eur {
    () => {
        "  - name: to-eur
    map: currency_convert.wasm
    params: { rates: { USD: 0.92, GBP: 1.17, JPY: 0.0062, CHF: 1.05 } }
"
    };
}

/// The `to-eur` step: converts generated orders' amounts into euros.
pub const TO_EUR: &str = to_eur!();

/// The orders pipeline's steps (the items of a job's `steps:` list): `to-eur`, then
/// keyed by customer, `summary`, a process function keeping state per customer and
/// firing event-time timers.
pub const ORDER_STEPS: &str = concat!(
    to_eur!(),
    "  - key-by: customer
  - name: summary
    process: order_summary.wasm
    params: { big: 1.0e12 }
"
);

/// A step to put after [`ORDER_STEPS`]: per customer, a one-minute tumbling window
/// counting the summaries and summing their orders.
pub const PER_MINUTE: &str = "  - key-by: customer
  - name: per-minute
    window:
      tumbling: 1m
      aggregate: { buckets: count, orders: { sum: orders } }
";

/// The source of generated orders: `count` events of seed `seed`, with event time from
/// their `ts` field; `extra` are more lines of the source (each `key: value`).
pub fn orders_source(count: u64, seed: u64, extra: &[&str]) -> String {
    let mut source = format!(
        "  - type: generator
    name: orders
    shape: orders
    count: {count}
    seed: {seed}
    event-time: {{ field: ts }}
"
    );
    for line in extra.iter().filter(|l| !l.is_empty()) {
        source.push_str("    ");
        source.push_str(line);
        source.push('\n');
    }
    source
}
