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
use crate::memory::Pools;
use crate::operator::{Operator, OperatorError};
use crate::source::{Source, SourceError};
use crate::state::store::KeyedStore;
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
        let k = crate::fields::key_bytes(k);
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

/// One key's held events, as its entry in the state backend holds them.
fn encode_held(sides: &[Vec<Held>; 2]) -> Result<Vec<u8>, StateError> {
    let mut e = Encoder::new();
    for side in sides {
        e.count(side.len());
        for h in side {
            let value = serde_json::to_vec(&h.value).map_err(|e| StateError(e.to_string()))?;
            e.i64(h.ts).bytes(&value);
        }
    }
    Ok(e.finish())
}

/// Key `key`'s held events as [`encode_held`] wrote them.
fn decode_held(key: &[u8], d: &mut Decoder<'_>) -> Result<[Vec<Held>; 2], StateError> {
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
    d.end()?;
    Ok(sides)
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
    /// The per-key state in the job's state backend, written back at checkpoints.
    store: KeyedStore,
}

impl JoinOperator {
    /// The join of `spec` for step `step`, charging `pools` and checkpointing its held
    /// events through `store`.
    pub fn new(
        step: &str,
        spec: &JoinSpec,
        pools: Arc<Pools>,
        store: KeyedStore,
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
            store,
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
            self.store.touch(key);
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
            let mut dropped = false;
            for (side, events) in sides.into_iter().enumerate() {
                for h in events {
                    if self.keep_until(side, h.ts) > wm {
                        kept[side].push(h);
                    } else {
                        freed += h.cost;
                        dropped = true;
                    }
                }
            }
            if dropped {
                self.store.touch(&key);
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

    fn snapshot(&mut self, target: Option<&Path>) -> Result<Vec<StateEntry>, OperatorError> {
        let held = &self.held;
        self.store
            .snapshot(
                target,
                held.keys().map(Vec::as_slice),
                |key| held.get(key).map(encode_held).transpose(),
                vec![watermark_entry(self.watermark)],
            )
            .map_err(|e| self.err(format!("checkpoint state: {e}")))
    }

    fn restore(&mut self, entries: Vec<StateEntry>, from: &Path) -> Result<(), OperatorError> {
        let restored = self
            .store
            .restore(entries, from)
            .map_err(|e| self.err(format!("checkpoint state: {e}")))?;
        for entry in &restored.operator {
            self.watermark = restore_watermark(self.watermark, entry)
                .map_err(|e| self.err(format!("checkpoint state: {e}")))?;
        }
        for (key, bytes) in restored.keys {
            let sides = decode_held(&key, &mut Decoder::new(&bytes))
                .map_err(|e| self.err(format!("checkpoint state: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::memory::{ByteSize, MemoryBudget};
    use crate::state::backend::HeapBackend;
    use crate::state::store::SharedIncremental;

    fn interval_join(store: KeyedStore) -> JoinOperator {
        let spec: JoinSpec = serde_saphyr::from_str(
            "left: { source: a, key: k }\nright: { source: b, key: k }\n\
             interval: { lower: -5ms, upper: 5ms }",
        )
        .unwrap();
        let pools = Arc::new(Pools::new(&MemoryBudget {
            process: ByteSize(1 << 30),
            network: ByteSize(1 << 20),
            managed: ByteSize(16 << 20),
            wasm: ByteSize(1 << 20),
        }));
        JoinOperator::new("j", &spec, pools, store).unwrap()
    }

    /// Events of `side` for keys `0`..`5` at times `from..to`, the ones `keep` accepts.
    fn side(side: u8, from: i64, to: i64, keep: impl Fn(&[u8]) -> bool) -> Batch {
        let mut b = Batch::default();
        for ts in from..to {
            let value = format!(r#"{{"k":"{}","ts":{ts},"side":{side}}}"#, ts % 5);
            b.push(EventRef {
                key: None,
                value: value.as_bytes(),
                timestamp: Some(ts),
            })
            .unwrap();
        }
        let tagged = tag(&b, side, &["k".into()]).unwrap();
        let keep: Vec<u32> = (0..tagged.len())
            .filter(|&i| keep(tagged.key(i).unwrap_or_default()))
            .map(|i| i as u32)
            .collect();
        tagged.select(&keep).unwrap()
    }

    fn rows(b: &Batch) -> Vec<String> {
        b.iter()
            .map(|e| String::from_utf8_lossy(e.value).into_owned())
            .collect()
    }

    #[test]
    fn held_events_go_through_the_backend_and_restore_split_by_key_group() {
        let all = |_: &[u8]| true;
        let mut reference = interval_join(KeyedStore::new(
            Box::new(HeapBackend::new(None)),
            "join",
            128,
        ));
        let mut expected = rows(&reference.process(side(0, 0, 20, all)).unwrap());
        expected.extend(rows(&reference.process(side(1, 10, 30, all)).unwrap()));
        expected.sort();
        assert!(!expected.is_empty());

        let (backend, shared) = SharedIncremental::new();
        let mut first = interval_join(KeyedStore::new(Box::new(backend), "join", 128));
        let mut got = rows(&first.process(side(0, 0, 20, all)).unwrap());
        first.on_watermark(3).unwrap();
        let entries = first.snapshot(Some(Path::new("unused"))).unwrap();
        let stored = SharedIncremental::contents(&shared);
        assert_eq!(stored.len(), 5, "one entry per key");
        // Held events the watermark passed are gone from the backend at the next one.
        first.on_watermark(i64::MAX).unwrap();
        first.snapshot(Some(Path::new("unused"))).unwrap();
        assert!(SharedIncremental::contents(&shared).is_empty());

        for subtask in 0..2 {
            let range = crate::keygroup::key_group_range(subtask, 2, 128);
            let mine = |k: &[u8]| range.contains(&crate::keygroup::key_group(k, 128));
            let mut part = interval_join(KeyedStore::new(
                Box::new(HeapBackend::new(None)),
                "join",
                128,
            ));
            part.restore(
                crate::state::entries_for(&entries, subtask, 2, 128),
                Path::new("unused"),
            )
            .unwrap();
            got.extend(rows(&part.process(side(1, 10, 30, mine)).unwrap()));
        }
        got.sort();
        assert_eq!(got, expected);
    }
}
