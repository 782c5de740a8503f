//! The `generator` connector: a deterministic event generator, where event `n` depends
//! only on the seed and `n`, so any subtask can produce any event and a restart resumes
//! from an event number.

use std::io::Write;
use std::time::{Duration, Instant};

use super::{Connector, Opening};
use crate::batch::{Batch, EventRef};
use crate::job::{GeneratorShape, SourceSpec};
use crate::nexmark::{self, DEFAULT_EVENT_RATE, Nexmark};
use crate::source::{Source, SourceError};
use crate::state::{Decoder, Encoder, StateError};

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

/// Opens `type: generator` sources.
pub struct GeneratorConnector;

impl Connector for GeneratorConnector {
    fn source(&self, at: &Opening<'_>, spec: &SourceSpec) -> Result<Box<dyn Source>, SourceError> {
        open(at.name, spec, at.subtask)
    }
}

/// Subtask `subtask` of generator source `name`.
pub(super) fn open(
    name: &str,
    spec: &SourceSpec,
    subtask: u32,
) -> Result<Box<dyn Source>, SourceError> {
    let SourceSpec::Generator {
        count,
        seed,
        shape,
        rate,
        event_rate,
        parallelism,
        ..
    } = spec
    else {
        return Err(super::not_mine(name, spec.connector()));
    };
    let stride = u64::from(parallelism.unwrap_or(1));
    let generator = match shape {
        GeneratorShape::Nexmark => {
            Generator::nexmark(event_rate.unwrap_or(nexmark::DEFAULT_EVENT_RATE))
        }
        _ => Generator::new(*shape, *seed),
    };
    Ok(Box::new(GeneratorSource {
        generator,
        next: u64::from(subtask),
        stride,
        count: *count,
        pacing: rate.map(|r| (Instant::now(), r / stride as f64, u64::from(subtask))),
        name: name.to_owned(),
    }))
}

/// One subtask of the built-in generator: event ids `next, next+stride, …` below
/// `count`, optionally paced to a rate.
struct GeneratorSource {
    name: String,
    generator: Generator,
    next: u64,
    stride: u64,
    count: Option<u64>,
    /// Start, events per second of this subtask, first id.
    pacing: Option<(Instant, f64, u64)>,
}

impl Source for GeneratorSource {
    fn poll(&mut self, max: usize) -> Result<Option<Batch>, SourceError> {
        let end = self.count.unwrap_or(u64::MAX);
        if self.next >= end {
            return Ok(None);
        }
        let mut n = ((end - self.next).div_ceil(self.stride)).min(max as u64);
        if let Some((start, rate, first)) = self.pacing {
            let produced = (self.next - first) / self.stride;
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            if due <= produced {
                std::thread::sleep(
                    Duration::from_secs_f64(1.0 / rate).min(Duration::from_millis(50)),
                );
                return Ok(Some(Batch::default()));
            }
            n = n.min(due - produced);
        }
        let mut batch = Batch::with_capacity(n as usize, n as usize * 96);
        let mut line = Vec::with_capacity(128);
        for _ in 0..n {
            line.clear();
            let timestamp = self.generator.write_event(self.next, &mut line);
            let event = EventRef {
                key: None,
                value: &line,
                timestamp,
            };
            batch
                .push(event)
                .map_err(|e| SourceError::fatal(&self.name, e.to_string()))?;
            self.next += self.stride;
        }
        Ok(Some(batch))
    }

    fn position(&mut self) -> Result<Vec<u8>, SourceError> {
        let mut e = Encoder::new();
        e.u64(self.next).u64(self.stride);
        Ok(e.finish())
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let mut d = Decoder::new(position);
        let (next, stride) = (|| Ok::<_, StateError>((d.u64()?, d.u64()?)))()
            .map_err(|e| SourceError::fatal(&self.name, format!("checkpointed position: {e}")))?;
        if stride != self.stride || next % stride != self.next % stride {
            return Err(SourceError::fatal(
                &self.name,
                format!(
                    "the checkpoint was taken with the generator at parallelism {stride}, \
                     not {}: restore with the same source parallelism",
                    self.stride
                ),
            ));
        }
        self.next = next;
        // Pacing starts over from here.
        if let Some((start, _, first)) = &mut self.pacing {
            *start = Instant::now();
            *first = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::drain;

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

    #[test]
    fn a_generator_resumes_at_its_next_event_id_and_rejects_another_stride() {
        let spec: SourceSpec =
            serde_saphyr::from_str("type: generator\ncount: 10\nparallelism: 2").unwrap();
        let mut a = open("g", &spec, 1).unwrap();
        a.poll(2).unwrap();
        let position = a.position().unwrap();
        let rest = drain(a.as_mut(), 10).unwrap();
        let mut b = open("g", &spec, 1).unwrap();
        b.seek(&position).unwrap();
        assert_eq!(drain(b.as_mut(), 10).unwrap(), rest);
        let other: SourceSpec =
            serde_saphyr::from_str("type: generator\ncount: 10\nparallelism: 3").unwrap();
        let mut c = open("g", &other, 1).unwrap();
        let err = c.seek(&position).unwrap_err().to_string();
        assert!(err.contains("parallelism 2, not 3"), "{err}");
    }

    #[test]
    fn generator_is_deterministic_and_bounded() {
        let spec = SourceSpec::Generator {
            name: None,
            count: Some(10),
            seed: 3,
            shape: Default::default(),
            rate: None,
            event_rate: None,
            parallelism: None,
            event_time: None,
        };
        let a = drain(open("g", &spec, 0).unwrap().as_mut(), 4).unwrap();
        let b = drain(open("g", &spec, 0).unwrap().as_mut(), 7).unwrap();
        assert_eq!(a.len(), 10);
        assert_eq!(a, b);
    }

    #[test]
    fn parallel_generator_subtasks_partition_the_ids() {
        let spec = |p| SourceSpec::Generator {
            name: None,
            count: Some(11),
            seed: 3,
            shape: Default::default(),
            rate: None,
            event_rate: None,
            parallelism: Some(p),
            event_time: None,
        };
        let single = drain(open("g", &spec(1), 0).unwrap().as_mut(), 4).unwrap();
        let mut split: Vec<String> = (0..3)
            .flat_map(|i| drain(open("g", &spec(3), i).unwrap().as_mut(), 2).unwrap())
            .collect();
        let mut sorted = single.clone();
        split.sort();
        sorted.sort();
        assert_eq!(split, sorted);
    }
}
