//! Echoes batches back to the host, per event as records or packed, doing the same
//! per-event work (one copy of key and value) in both shapes.

#[allow(missing_docs, reason = "generated from the benchmark's WIT")]
mod bindings {
    wit_bindgen::generate!({ path: "../wit/boundary.wit", world: "boundary" });
}

use bindings::exports::eddy::bench::echo::{Event, Guest, Packed};

struct Echo;

fn span(ends: &[u32], i: usize) -> std::ops::Range<usize> {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    start..ends[i] as usize
}

impl Guest for Echo {
    fn echo_records(events: Vec<Event>) -> Vec<Event> {
        events
            .iter()
            .map(|e| Event {
                key: e.key.clone(),
                value: e.value.clone(),
                timestamp: e.timestamp,
            })
            .collect()
    }

    fn echo_packed(batch: Packed) -> Packed {
        let n = batch.value_ends.len();
        let mut out = Packed {
            values: Vec::with_capacity(batch.values.len()),
            value_ends: Vec::with_capacity(n),
            keys: Vec::with_capacity(batch.keys.len()),
            key_ends: Vec::with_capacity(n),
            timestamps: batch.timestamps.clone(),
        };
        for i in 0..n {
            out.values
                .extend_from_slice(&batch.values[span(&batch.value_ends, i)]);
            out.value_ends.push(out.values.len() as u32);
            out.keys
                .extend_from_slice(&batch.keys[span(&batch.key_ends, i)]);
            out.key_ends.push(out.keys.len() as u32);
        }
        out
    }
}

bindings::export!(Echo with_types_in bindings);
