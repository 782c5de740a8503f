//! Joins of two keyed streams: a window join (pairs of events of one key in the same
//! event-time window, emitted when the window fires) and an interval join (pairs whose
//! right event is within `[lower, upper]` of the left one, emitted as soon as both are
//! there). Both sides arrive on one stream, each event tagged with its side.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::batch::{Batch, EventRef, Header};
use crate::job::join::JoinSpec;
use crate::job::window::Assigner;
use crate::keygroup::key_group;
use crate::memory::Pools;
use crate::operator::{Operator, OperatorError};
use crate::source::{Source, SourceError};
use crate::state::{Decoder, Encoder, StateEntry, StateError, restore_watermark, watermark_entry};

/// The header that tells which side of a join an event is on.
pub const SIDE_HEADER: &str = "eddy.join-side";

/// Tags an event of `side` (0 left, 1 right) for a join: its side header and its key.
pub fn tag(batch: &Batch, side: u8, key: &[String]) -> Result<Batch, String> {
    let mut out = Batch::with_capacity(batch.len(), batch.values.len());
    for e in batch.iter() {
        let json: Value =
            serde_json::from_slice(e.value).map_err(|err| format!("not JSON: {err}"))?;
        let k = key
            .iter()
            .try_fold(&json, |v, f| v.get(f))
            .filter(|v| !v.is_null())
            .ok_or_else(|| format!("no join key field `{}`", key.join(".")))?;
        let k = crate::operators::builtin::key_bytes(k);
        let index = out.len() as u32;
        out.push(EventRef { key: Some(&k), ..e })
            .map_err(|err| err.to_string())?;
        out.headers.push(Header {
            event: index,
            name: SIDE_HEADER.into(),
            value: vec![side],
        });
    }
    Ok(out)
}

/// A source feeding one side of a join: tags every event with its side and key.
pub struct JoinInput {
    name: String,
    inner: Box<dyn Source>,
    side: u8,
    key: Vec<String>,
}

impl JoinInput {
    /// Wraps `inner` (named `name`) if `join` reads it; returns it unchanged otherwise.
    pub fn wrap(name: &str, inner: Box<dyn Source>, join: &JoinSpec) -> Box<dyn Source> {
        let side = [&join.left, &join.right]
            .iter()
            .position(|s| s.source == name);
        match side {
            Some(side) => Box::new(JoinInput {
                name: name.to_owned(),
                inner,
                side: side as u8,
                key: [&join.left, &join.right][side]
                    .key
                    .split('.')
                    .map(str::to_owned)
                    .collect(),
            }),
            None => inner,
        }
    }
}

impl Source for JoinInput {
    fn poll(&mut self, max: usize) -> Result<Option<Batch>, SourceError> {
        match self.inner.poll(max)? {
            Some(batch) if !batch.is_empty() => tag(&batch, self.side, &self.key)
                .map(Some)
                .map_err(|message| {
                    SourceError::fatal(&self.name, format!("join input: {message}"))
                }),
            other => Ok(other),
        }
    }

    fn watermark(&self) -> Option<i64> {
        self.inner.watermark()
    }

    fn idle(&self) -> bool {
        self.inner.idle()
    }

    fn splits(&self) -> usize {
        self.inner.splits()
    }

    fn last_split(&self) -> usize {
        self.inner.last_split()
    }

    fn split_ended(&self, split: usize) -> bool {
        self.inner.split_ended(split)
    }

    fn position(&mut self) -> Result<Vec<u8>, SourceError> {
        self.inner.position()
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.inner.seek(position)
    }

    fn take_rejected(&mut self) -> Vec<crate::source::Rejected> {
        self.inner.take_rejected()
    }
}

#[derive(Clone, Debug)]
struct Held {
    ts: i64,
    value: Value,
    /// Bytes charged to managed memory for it.
    cost: usize,
}

/// One key's held events as [`JoinOperator::snapshot`] wrote them.
fn decode_held(d: &mut Decoder<'_>) -> Result<(Vec<u8>, [Vec<Held>; 2]), StateError> {
    let key = d.bytes()?.to_vec();
    let mut sides: [Vec<Held>; 2] = [Vec::new(), Vec::new()];
    for side in &mut sides {
        for _ in 0..d.count()? {
            let ts = d.i64()?;
            let raw = d.bytes()?;
            let value = serde_json::from_slice(raw).map_err(|e| StateError(e.to_string()))?;
            side.push(Held {
                ts,
                value,
                cost: raw.len() + key.len() + 64,
            });
        }
    }
    Ok((key, sides))
}

/// The join operator of one subtask.
pub struct JoinOperator {
    step: String,
    window: Option<Assigner>,
    interval: (i64, i64),
    /// Per key: left and right events held.
    held: BTreeMap<Vec<u8>, [Vec<Held>; 2]>,
    watermark: i64,
    reserved: usize,
    pools: Arc<Pools>,
    max_parallelism: u32,
}

impl JoinOperator {
    /// The join of `spec` for step `step`.
    pub fn new(
        step: &str,
        spec: &JoinSpec,
        pools: Arc<Pools>,
        max_parallelism: u32,
    ) -> Result<Self, String> {
        Ok(JoinOperator {
            step: step.to_owned(),
            window: spec.check()?,
            interval: spec
                .interval
                .as_ref()
                .map_or((0, 0), |i| (i.lower.0, i.upper.0)),
            held: BTreeMap::new(),
            watermark: crate::exec::watermark::BEGINNING_OF_TIME,
            reserved: 0,
            pools,
            max_parallelism,
        })
    }

    fn err(&self, message: impl Into<String>) -> OperatorError {
        OperatorError::new(&self.step, message.into())
    }

    fn pair(
        &self,
        out: &mut Batch,
        key: &[u8],
        left: &Held,
        right: &Held,
        window: Option<(i64, i64)>,
    ) -> Result<(), OperatorError> {
        let mut object = Map::new();
        object.insert("left".into(), left.value.clone());
        object.insert("right".into(), right.value.clone());
        let ts = match window {
            Some((start, end)) => {
                object.insert("window_start".into(), Value::from(start));
                object.insert("window_end".into(), Value::from(end));
                end - 1
            }
            None => left.ts.max(right.ts),
        };
        let value = serde_json::to_vec(&object).map_err(|e| self.err(e.to_string()))?;
        out.push(EventRef {
            key: Some(key),
            value: &value,
            timestamp: Some(ts),
        })
        .map_err(|e| self.err(e.to_string()))
    }

    /// How long an event of `side` at `ts` can still find partners.
    fn keep_until(&self, side: usize, ts: i64) -> i64 {
        match self.window {
            Some(a) => a.windows(ts).iter().map(|w| w.1 - 1).max().unwrap_or(ts),
            None if side == 0 => ts.saturating_add(self.interval.1),
            None => ts.saturating_sub(self.interval.0),
        }
    }
}

impl Operator for JoinOperator {
    fn process(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        let mut out = Batch::default();
        for (i, e) in input.iter().enumerate() {
            let side = input
                .headers
                .iter()
                .find(|h| h.event as usize == i && h.name == SIDE_HEADER)
                .and_then(|h| h.value.first().copied())
                .ok_or_else(|| self.err("an event reached the join without its side"))?
                as usize;
            let key = e
                .key
                .ok_or_else(|| self.err("an event reached the join without a key"))?;
            let ts = e.timestamp.ok_or_else(|| {
                self.err("a join needs event time: give both sources `event-time`")
            })?;
            if self.keep_until(side, ts) <= self.watermark {
                continue; // Too late to find any partner.
            }
            let value: Value = serde_json::from_slice(e.value)
                .map_err(|err| self.err(format!("not JSON: {err}")))?;
            let cost = e.value.len() + key.len() + 64;
            let held = Held { ts, value, cost };
            if self.window.is_none() {
                let (lower, upper) = self.interval;
                let others = self
                    .held
                    .get(key)
                    .map(|h| h[1 - side].clone())
                    .unwrap_or_default();
                for other in &others {
                    let (left, right) = if side == 0 {
                        (&held, other)
                    } else {
                        (other, &held)
                    };
                    let delta = right.ts - left.ts;
                    if lower <= delta && delta <= upper {
                        self.pair(&mut out, key, left, right, None)?;
                    }
                }
            }
            self.pools
                .managed
                .try_reserve(cost)
                .map_err(|err| self.err(format!("{err}; raise memory.managed in the job file")))?;
            self.reserved += cost;
            self.held.entry(key.to_vec()).or_default()[side].push(held);
        }
        Ok(out)
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Batch, OperatorError> {
        let before = self.watermark;
        self.watermark = self.watermark.max(watermark);
        let mut out = Batch::default();
        if let Some(assigner) = self.window {
            // Windows whose end the watermark passed now: emit their pairs, in order.
            let mut due: Vec<(i64, i64, Vec<u8>)> = Vec::new();
            for (key, [left, _]) in &self.held {
                for l in left {
                    for w in assigner.windows(l.ts) {
                        if w.1 - 1 > before && w.1 - 1 <= self.watermark {
                            due.push((w.1, w.0, key.clone()));
                        }
                    }
                }
            }
            due.sort();
            due.dedup();
            for (end, start, key) in due {
                let Some([left, right]) = self.held.get(&key) else {
                    continue;
                };
                let inside = |h: &&Held| assigner.windows(h.ts).contains(&(start, end));
                let lefts: Vec<Held> = left.iter().filter(inside).cloned().collect();
                let rights: Vec<Held> = right.iter().filter(inside).cloned().collect();
                for l in &lefts {
                    for r in &rights {
                        self.pair(&mut out, &key, l, r, Some((start, end)))?;
                    }
                }
            }
        }
        // Drop what can no longer pair.
        let mut freed = 0usize;
        let wm = self.watermark;
        let held = std::mem::take(&mut self.held);
        for (key, sides) in held {
            let mut kept: [Vec<Held>; 2] = [Vec::new(), Vec::new()];
            for (side, events) in sides.into_iter().enumerate() {
                for h in events {
                    if self.keep_until(side, h.ts) > wm {
                        kept[side].push(h);
                    } else {
                        freed += h.cost;
                    }
                }
            }
            if !kept[0].is_empty() || !kept[1].is_empty() {
                self.held.insert(key, kept);
            }
        }
        let freed = freed.min(self.reserved);
        self.pools.managed.release(freed);
        self.reserved -= freed;
        Ok(out)
    }

    fn snapshot(&mut self, _target: Option<&Path>) -> Result<Vec<StateEntry>, OperatorError> {
        let mut entries = vec![watermark_entry(self.watermark)];
        for (key, sides) in &self.held {
            let mut e = Encoder::new();
            e.bytes(key);
            for side in sides {
                e.count(side.len());
                for h in side {
                    let value =
                        serde_json::to_vec(&h.value).map_err(|e| self.err(e.to_string()))?;
                    e.i64(h.ts).bytes(&value);
                }
            }
            entries.push(StateEntry {
                key_group: Some(key_group(key, self.max_parallelism)),
                bytes: e.finish(),
            });
        }
        Ok(entries)
    }

    fn restore(&mut self, entries: Vec<StateEntry>, _from: &Path) -> Result<(), OperatorError> {
        for entry in entries {
            if entry.key_group.is_none() {
                self.watermark = restore_watermark(self.watermark, &entry)
                    .map_err(|e| self.err(format!("checkpoint state: {e}")))?;
                continue;
            }
            let mut d = Decoder::new(&entry.bytes);
            let (key, sides) =
                decode_held(&mut d).map_err(|e| self.err(format!("checkpoint state: {e}")))?;
            let cost: usize = sides.iter().flatten().map(|h| h.cost).sum();
            self.pools
                .managed
                .try_reserve(cost)
                .map_err(|e| self.err(format!("{e}; raise memory.managed in the job file")))?;
            self.reserved += cost;
            self.held.insert(key, sides);
        }
        Ok(())
    }
}

impl Drop for JoinOperator {
    fn drop(&mut self) {
        self.pools.managed.release(self.reserved);
    }
}
