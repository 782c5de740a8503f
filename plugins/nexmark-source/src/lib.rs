//! The Nexmark generator as a WASM source connector: the same events as the built-in
//! `nexmark` generator shape (the same code, `eddy-nexmark`), striped over `splits`
//! splits (split `i` holds events `i, i + splits, …`), each stamped with its date_time.
//! A split's position is its next event number, so a restored job resumes exactly there.
//!
//! Params: `count` (events; unbounded when absent), `splits` (default 1), `event-rate`
//! (events per second of event time, default 10,000) and `rate` (events per second of
//! wall-clock time per split; as fast as polled when absent).

use std::collections::HashMap;
use std::time::Instant;

use eddy_nexmark::{DEFAULT_EVENT_RATE, Nexmark};
use eddy_sdk::serde::Deserialize;
use eddy_sdk::{Context, Emitter, Error, SourceConnector, Split, SplitStatus};

#[derive(Deserialize)]
#[serde(
    crate = "eddy_sdk::serde",
    rename_all = "kebab-case",
    deny_unknown_fields
)]
struct Params {
    count: Option<u64>,
    #[serde(default = "one")]
    splits: u32,
    event_rate: Option<f64>,
    rate: Option<f64>,
}

fn one() -> u32 {
    1
}

/// An open split: the next event number, and since when it emits how many (pacing).
struct Open {
    next: u64,
    opened: Instant,
    emitted: u64,
}

/// The source connector.
pub struct NexmarkSource {
    generator: Nexmark,
    count: u64,
    splits: u32,
    rate: Option<f64>,
    open: HashMap<String, Open>,
    line: Vec<u8>,
}

impl SourceConnector for NexmarkSource {
    fn open(ctx: &Context) -> Result<Self, Error> {
        let params: Params = ctx.params()?;
        if params.splits == 0 {
            return Err(Error::msg("splits must be at least 1"));
        }
        let event_rate = params.event_rate.unwrap_or(DEFAULT_EVENT_RATE);
        if event_rate.is_nan() || event_rate <= 0.0 {
            return Err(Error::msg("event-rate must be positive"));
        }
        Ok(NexmarkSource {
            generator: Nexmark::new(event_rate),
            count: params.count.unwrap_or(u64::MAX),
            splits: params.splits,
            rate: params.rate,
            open: HashMap::new(),
            line: Vec::with_capacity(512),
        })
    }

    fn splits(&mut self) -> Result<Vec<Split>, Error> {
        Ok((0..self.splits)
            .map(|i| Split {
                id: format!("nexmark-{i}"),
                descriptor: u64::from(i).to_le_bytes().to_vec(),
            })
            .collect())
    }

    fn open_split(&mut self, split: Split, position: Option<&[u8]>) -> Result<(), Error> {
        let number = |bytes: &[u8], what: &str| -> Result<u64, Error> {
            bytes
                .try_into()
                .map(u64::from_le_bytes)
                .map_err(|_| Error::msg(format_args!("split {}: bad {what}", split.id)))
        };
        let next = match position {
            Some(p) => number(p, "position")?,
            None => number(&split.descriptor, "descriptor")?,
        };
        self.open.insert(
            split.id,
            Open {
                next,
                opened: Instant::now(),
                emitted: 0,
            },
        );
        Ok(())
    }

    fn poll(&mut self, split: &str, max: u32, out: &mut Emitter<'_>) -> Result<SplitStatus, Error> {
        let stride = u64::from(self.splits);
        let open = self
            .open
            .get_mut(split)
            .ok_or_else(|| Error::msg(format_args!("split {split} is not open")))?;
        let mut max = u64::from(max);
        if let Some(rate) = self.rate {
            let due = (open.opened.elapsed().as_secs_f64() * rate) as u64;
            if due <= open.emitted {
                return Ok(SplitStatus::Idle);
            }
            max = max.min(due - open.emitted);
        }
        let mut emitted = 0;
        while emitted < max && open.next < self.count {
            self.line.clear();
            let ts = self.generator.write_event(open.next, &mut self.line);
            out.event(None, &self.line, Some(ts))?;
            open.next += stride;
            emitted += 1;
        }
        open.emitted += emitted;
        Ok(if open.next >= self.count {
            SplitStatus::End
        } else {
            SplitStatus::More
        })
    }

    fn position(&mut self, split: &str) -> Result<Vec<u8>, Error> {
        let open = self
            .open
            .get(split)
            .ok_or_else(|| Error::msg(format_args!("split {split} is not open")))?;
        Ok(open.next.to_le_bytes().to_vec())
    }
}

eddy_sdk::export_source!(NexmarkSource);
