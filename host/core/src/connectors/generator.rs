//! A deterministic event generator: event `n` depends only on the seed and `n`, so any
//! subtask can produce any event and a restart resumes from an event number.

use std::io::Write;

use crate::job::GeneratorShape;
use crate::nexmark::{DEFAULT_EVENT_RATE, Nexmark};

/// Event time of event 0: 2023-11-14T22:13:20Z.
const EPOCH_MS: i64 = 1_700_000_000_000;
/// Event time advances this many ms per event (100 events per second of event time).
const MS_PER_EVENT: i64 = 10;

const CURRENCIES: [&str; 5] = ["USD", "EUR", "GBP", "JPY", "CHF"];
const WORDS: [&str; 24] = [
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "stream", "event", "time",
    "window", "state", "wasm", "plugin", "host", "river", "eddy", "flows", "fast", "water",
    "turns", "again", "now",
];

pub use eddy_nexmark::SplitMix64;

/// Produces the JSON text of any event number of a shape and seed.
#[derive(Clone, Copy, Debug)]
pub struct Generator {
    shape: GeneratorShape,
    seed: u64,
    nexmark: Nexmark,
}

impl Generator {
    /// A generator of `shape` events seeded with `seed`.
    pub fn new(shape: GeneratorShape, seed: u64) -> Self {
        Generator {
            shape,
            seed,
            nexmark: Nexmark::new(DEFAULT_EVENT_RATE),
        }
    }

    /// Nexmark events at `event_rate` events per second of event time.
    pub fn nexmark(event_rate: f64) -> Self {
        Generator {
            shape: GeneratorShape::Nexmark,
            seed: 0,
            nexmark: Nexmark::new(event_rate),
        }
    }

    /// Appends the JSON text of event `id` to `out`; returns its event time when the
    /// shape has one of its own (Nexmark's date_time, which sits in a different field
    /// for each kind of event).
    pub fn write_event(&self, id: u64, out: &mut Vec<u8>) -> Option<i64> {
        if self.shape == GeneratorShape::Nexmark {
            return Some(self.nexmark.write_event(id, out));
        }
        let mut rng = SplitMix64::new(self.seed ^ id.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let ts = EPOCH_MS + id as i64 * MS_PER_EVENT;
        // Writing to a Vec cannot fail.
        let _ = match self.shape {
            GeneratorShape::Orders => {
                let customer = rng.below(100);
                let cents = rng.below(50_000) + 1;
                let currency = CURRENCIES[rng.below(CURRENCIES.len() as u64) as usize];
                write!(
                    out,
                    r#"{{"id":{id},"customer":"c-{customer}","amount":{}.{:02},"currency":"{currency}","ts":{ts}}}"#,
                    cents / 100,
                    cents % 100
                )
            }
            GeneratorShape::Sentences => {
                let _ = write!(out, r#"{{"id":{id},"text":""#);
                for w in 0..3 + rng.below(6) {
                    if w > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                }
                write!(out, r#"","ts":{ts}}}"#)
            }
            GeneratorShape::Nexmark => Ok(()),
        };
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_json_and_depend_only_on_id() {
        let g = Generator::new(GeneratorShape::Orders, 1);
        let mut a = Vec::new();
        g.write_event(42, &mut a);
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["id"], 42);
        let mut b = Vec::new();
        g.write_event(41, &mut b);
        b.clear();
        g.write_event(42, &mut b);
        assert_eq!(a, b);
        let s = Generator::new(GeneratorShape::Sentences, 1);
        let mut t = Vec::new();
        s.write_event(7, &mut t);
        let v: serde_json::Value = serde_json::from_slice(&t).unwrap();
        assert!(v["text"].as_str().unwrap().contains(' '));
    }
}
