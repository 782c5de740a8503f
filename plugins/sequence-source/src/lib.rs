//! A source connector plugin: the numbers `0..count` as JSON events, striped over
//! `splits` splits (split `i` holds `i, i + splits, …`), with event time `ts`. Its
//! position in a split is the next number, so a restored job resumes exactly there.
//! With `rate`, each split emits at most that many events per second (it reports
//! itself idle while ahead).

use std::collections::HashMap;
use std::time::Instant;

use eddy_sdk::serde::Deserialize;
use eddy_sdk::{Context, Emitter, Error, SourceConnector, Split, SplitStatus, json};

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Params {
    count: u64,
    #[serde(default = "one")]
    splits: u32,
    /// Events per second per split; as fast as polled when absent.
    rate: Option<f64>,
}

fn one() -> u32 {
    1
}

/// Event time of number 0; number `n` is `n` ms later.
const EPOCH_MS: u64 = 1_700_000_000_000;

/// The source; per open split, the next number to emit and its pacing.
pub struct Sequence {
    count: u64,
    splits: u32,
    rate: Option<f64>,
    next: HashMap<String, u64>,
    /// Per split: when it opened, events emitted since.
    pacing: HashMap<String, (Instant, u64)>,
}

impl Sequence {
    fn stride(&self) -> u64 {
        u64::from(self.splits.max(1))
    }
}

impl SourceConnector for Sequence {
    fn open(ctx: &Context) -> Result<Self, Error> {
        let params: Params = ctx.params()?;
        Ok(Sequence {
            count: params.count,
            splits: params.splits,
            rate: params.rate,
            next: HashMap::new(),
            pacing: HashMap::new(),
        })
    }

    fn splits(&mut self) -> Result<Vec<Split>, Error> {
        Ok((0..self.splits.max(1))
            .map(|i| Split {
                id: format!("seq-{i}"),
                descriptor: i.to_le_bytes().to_vec(),
            })
            .collect())
    }

    fn open_split(&mut self, split: Split, position: Option<&[u8]>) -> Result<(), Error> {
        let first = match split.descriptor.as_slice().try_into() {
            Ok(bytes) => u64::from(u32::from_le_bytes(bytes)),
            Err(_) => return Err(Error::msg(format_args!("bad split {}", split.id))),
        };
        let next = match position {
            None => first,
            Some(p) => std::str::from_utf8(p)
                .ok()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| Error::msg(format_args!("bad position of split {}", split.id)))?,
        };
        self.pacing.insert(split.id.clone(), (Instant::now(), 0));
        self.next.insert(split.id, next);
        Ok(())
    }

    fn poll(&mut self, split: &str, max: u32, out: &mut Emitter<'_>) -> Result<SplitStatus, Error> {
        let (count, stride) = (self.count, self.stride());
        let mut max = u64::from(max);
        if let (Some(rate), Some((opened, emitted))) = (self.rate, self.pacing.get_mut(split)) {
            let due = (opened.elapsed().as_secs_f64() * rate) as u64;
            if due <= *emitted {
                return Ok(SplitStatus::Idle);
            }
            max = max.min(due - *emitted);
            *emitted += max;
        }
        let next = self
            .next
            .get_mut(split)
            .ok_or_else(|| Error::msg(format_args!("split {split} is not open")))?;
        for _ in 0..max {
            if *next >= count {
                return Ok(SplitStatus::End);
            }
            let n = *next;
            out.json(&json!({ "n": n, "split": split, "ts": EPOCH_MS + n }))?;
            *next += stride;
        }
        Ok(if *next >= count {
            SplitStatus::End
        } else {
            SplitStatus::More
        })
    }

    fn position(&mut self, split: &str) -> Result<Vec<u8>, Error> {
        let next = self
            .next
            .get(split)
            .ok_or_else(|| Error::msg(format_args!("split {split} is not open")))?;
        Ok(next.to_string().into_bytes())
    }
}

eddy_sdk::export_source!(Sequence);
