//! Event-time windows with built-in aggregates: tumbling, sliding and session windows
//! per key, fired by the watermark, with allowed lateness (late events re-fire their
//! window as an update) and a late side output for events beyond it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Map, Number, Value};

use crate::batch::{Batch, EventRef};
use crate::job::memory::ByteSize;
use crate::job::span::Span;
use crate::job::window::{AggregateSpec, Assigner, TimeDomain, WindowSpec};
use crate::memory::Pools;
use crate::metrics::Counters;
use crate::operator::{AggregateFunction, Operator, OperatorError, WindowFunction};
use crate::sideoutput::SideOutput;
use crate::state::store::KeyedStore;
use crate::state::{Decoder, Encoder, StateEntry, StateError, restore_watermark, watermark_entry};
use crate::time::Clock;

/// The running state of one aggregate.
#[derive(Clone, Debug)]
enum Acc {
    Count(u64),
    /// Integer sum while every value is an integer, float sum, count of values.
    Sum(Option<i64>, f64, u64),
    /// Extremum so far, as the original JSON number.
    Extreme(Option<Number>),
}

impl Acc {
    fn new(spec: &AggregateSpec) -> Acc {
        match spec {
            AggregateSpec::Count => Acc::Count(0),
            AggregateSpec::Sum(_) | AggregateSpec::Avg(_) => Acc::Sum(Some(0), 0.0, 0),
            AggregateSpec::Min(_) | AggregateSpec::Max(_) => Acc::Extreme(None),
        }
    }

    fn add(&mut self, spec: &AggregateSpec, event: &Value) -> Result<(), String> {
        let field = match spec {
            AggregateSpec::Count => {
                if let Acc::Count(n) = self {
                    *n += 1;
                }
                return Ok(());
            }
            AggregateSpec::Sum(f)
            | AggregateSpec::Avg(f)
            | AggregateSpec::Min(f)
            | AggregateSpec::Max(f) => f,
        };
        let number = match event.get(field) {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Number(n)) => n.clone(),
            Some(_) => return Err(format!("field `{field}` is not a number")),
        };
        match self {
            Acc::Sum(int, float, n) => {
                *int = int.zip(number.as_i64()).and_then(|(a, b)| a.checked_add(b));
                *float += number.as_f64().unwrap_or(0.0);
                *n += 1;
            }
            Acc::Extreme(best) => keep_extreme(best, &number, spec),
            Acc::Count(_) => {}
        }
        Ok(())
    }

    fn merge(&mut self, other: &Acc, spec: &AggregateSpec) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum(ai, af, an), Acc::Sum(bi, bf, bn)) => {
                *ai = ai.zip(*bi).and_then(|(a, b)| a.checked_add(b));
                *af += bf;
                *an += bn;
            }
            (Acc::Extreme(a), Acc::Extreme(Some(b))) => keep_extreme(a, b, spec),
            _ => {}
        }
    }

    fn result(&self, spec: &AggregateSpec) -> Value {
        match (self, spec) {
            (Acc::Count(n), _) => Value::from(*n),
            (Acc::Sum(_, _, 0), AggregateSpec::Avg(_)) => Value::Null,
            (Acc::Sum(_, f, n), AggregateSpec::Avg(_)) => Value::from(f / *n as f64),
            (Acc::Sum(Some(i), _, _), _) => Value::from(*i),
            (Acc::Sum(None, f, _), _) => Value::from(*f),
            (Acc::Extreme(v), _) => v.clone().map_or(Value::Null, Value::Number),
        }
    }
}

impl Acc {
    fn encode(&self, e: &mut Encoder) {
        match self {
            Acc::Count(n) => {
                e.u8(0).u64(*n);
            }
            Acc::Sum(int, float, n) => {
                e.u8(1).opt_i64(*int).f64(*float).u64(*n);
            }
            Acc::Extreme(best) => {
                let text = best.as_ref().map(Number::to_string);
                e.u8(2).opt_bytes(text.as_deref().map(str::as_bytes));
            }
        }
    }

    fn decode(d: &mut Decoder<'_>) -> Result<Acc, StateError> {
        Ok(match d.u8()? {
            0 => Acc::Count(d.u64()?),
            1 => Acc::Sum(d.opt_i64()?, d.f64()?, d.u64()?),
            2 => Acc::Extreme(
                d.opt_bytes()?
                    .map(|b| serde_json::from_slice(b).map_err(|e| StateError(e.to_string())))
                    .transpose()?,
            ),
            tag => return Err(StateError(format!("aggregate tag {tag}"))),
        })
    }
}

/// Keeps `candidate` in `best` if it is smaller (`min`) or larger (`max`).
fn keep_extreme(best: &mut Option<Number>, candidate: &Number, spec: &AggregateSpec) {
    let value = candidate.as_f64().unwrap_or(f64::NAN);
    let better = match best.as_ref().and_then(Number::as_f64) {
        None => true,
        Some(b) if matches!(spec, AggregateSpec::Min(_)) => value < b,
        Some(b) => value > b,
    };
    if better {
        *best = Some(candidate.clone());
    }
}

#[derive(Clone, Debug)]
struct WindowState {
    accs: Vec<Acc>,
    /// Events added (for count triggers).
    events: u64,
    /// The WASM aggregate function's accumulator (empty without one).
    plugin_acc: Vec<u8>,
    /// The window's events, for a window process function.
    buffer: Batch,
    fired: bool,
}

/// Bytes of managed memory one window of one key is charged, beyond the key.
const WINDOW_OVERHEAD: usize = 96;

type WindowKey = (Vec<u8>, (i64, i64));

/// The WASM functions of a window step's subtask.
#[derive(Default)]
pub struct WindowFunctions {
    /// The aggregate function, if the step has one.
    pub aggregate: Option<Box<dyn AggregateFunction>>,
    /// The process function, if the step has one.
    pub process: Option<Box<dyn WindowFunction>>,
}

/// Managed memory an event buffered for a window process function is charged.
fn buffered_cost(event: EventRef<'_>) -> usize {
    event.value.len() + event.key.map_or(0, <[u8]>::len) + 16
}

/// What a window operator works with beside its spec.
pub struct WindowEnv {
    /// The pools its state is charged to.
    pub pools: Arc<Pools>,
    /// The counters of its subtask (late events).
    pub counters: Arc<Counters>,
    /// The clock of processing-time windows.
    pub clock: Arc<dyn Clock>,
    /// Where its per-key state goes at checkpoints (the job's state backend).
    pub store: KeyedStore,
}

/// One key's windows.
type Windows = BTreeMap<(i64, i64), WindowState>;

/// The window operator of one subtask.
pub struct WindowOperator {
    step: String,
    assigner: Assigner,
    aggregates: Vec<(String, AggregateSpec)>,
    /// A WASM aggregate function and the output field of its result.
    function: Option<(Box<dyn AggregateFunction>, String)>,
    /// A WASM window function that replaces the aggregate row.
    process: Option<Box<dyn WindowFunction>>,
    lateness: i64,
    late_output: Option<Arc<SideOutput>>,
    /// Per key, per window `(start, end)`.
    state: BTreeMap<Vec<u8>, BTreeMap<(i64, i64), WindowState>>,
    /// The keys with a window ending at each time, so that time finds the windows it
    /// fires and expires without visiting every key. Entries may be stale (a session
    /// merged away): whoever pops one checks the state.
    ends: BTreeSet<(i64, Vec<u8>)>,
    /// The same, for windows fired but kept for their allowed lateness.
    expiring: BTreeSet<(i64, Vec<u8>)>,
    /// Whether any aggregate reads a field (a count needs no parsed event).
    reads_fields: bool,
    /// How far time has progressed: the watermark, or the clock in processing time.
    watermark: i64,
    reserved: usize,
    pools: Arc<Pools>,
    counters: Arc<Counters>,
    /// The clock of processing-time windows (`None` in event time).
    clock: Option<Arc<dyn Clock>>,
    /// The per-key state in the job's state backend, written back at checkpoints.
    store: KeyedStore,
}

impl WindowOperator {
    /// A window operator for `spec` of step `step`; `function` is the instance of the
    /// spec's WASM aggregate function, if it has one.
    pub fn new(
        step: &str,
        spec: &WindowSpec,
        functions: WindowFunctions,
        late_output: Option<Arc<SideOutput>>,
        env: WindowEnv,
    ) -> Result<Self, String> {
        let WindowEnv {
            pools,
            counters,
            clock,
            store,
        } = env;
        let output = spec.function.as_ref().map(|f| f.output.clone());
        let WindowFunctions {
            aggregate: function,
            process,
        } = functions;
        Ok(WindowOperator {
            step: step.to_owned(),
            assigner: spec.assigner()?,
            aggregates: spec.aggregate.clone().into_iter().collect(),
            function: function.zip(output),
            process,
            lateness: spec.allowed_lateness.map_or(0, Span::millis),
            late_output,
            state: BTreeMap::new(),
            ends: BTreeSet::new(),
            expiring: BTreeSet::new(),
            reads_fields: spec
                .aggregate
                .values()
                .any(|a| !matches!(a, AggregateSpec::Count)),
            watermark: crate::exec::watermark::BEGINNING_OF_TIME,
            reserved: 0,
            pools,
            counters,
            clock: (spec.time == TimeDomain::Processing).then_some(clock),
            store,
        })
    }

    fn err(&self, message: impl Into<String>) -> OperatorError {
        OperatorError::new(&self.step, message.into())
    }

    /// A window whose cleanup time has passed can take no more events.
    /// In processing time nothing is late: an event that arrives in the millisecond a
    /// window fired still joins it, and the window fires again at the next tick.
    fn expired(&self, end: i64) -> bool {
        self.clock.is_none() && (end - 1).saturating_add(self.lateness) <= self.watermark
    }

    fn emit(
        &mut self,
        out: &mut Batch,
        key: &[u8],
        window: (i64, i64),
        update: bool,
    ) -> Result<(), OperatorError> {
        let Some(state) = self.state.get(key).and_then(|w| w.get(&window)) else {
            return Ok(());
        };
        if let Some(process) = &mut self.process {
            let produced = process.process(key, window, state.buffer.clone())?;
            for i in 0..produced.len() {
                let e = produced.event(i);
                out.push(EventRef {
                    key: e.key.or(Some(key)),
                    value: e.value,
                    timestamp: e.timestamp.or(Some(window.1 - 1)),
                })
                .map_err(|e| OperatorError::new(&self.step, e.to_string()))?;
            }
            return Ok(());
        }
        let mut object = Map::new();
        object.insert(
            "key".into(),
            match std::str::from_utf8(key) {
                Ok(s) => Value::String(s.to_owned()),
                Err(_) => Value::from(key.to_vec()),
            },
        );
        let global = matches!(self.assigner, Assigner::Global(_));
        if !global {
            object.insert("window_start".into(), Value::from(window.0));
            object.insert("window_end".into(), Value::from(window.1));
        }
        for ((name, spec), acc) in self.aggregates.iter().zip(&state.accs) {
            object.insert(name.clone(), acc.result(spec));
        }
        let plugin_acc = state.plugin_acc.clone();
        if let Some((function, output)) = &mut self.function {
            let bytes = function.result(plugin_acc)?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                OperatorError::new(
                    &self.step,
                    format!("the aggregate function's result is not JSON: {e}"),
                )
            })?;
            object.insert(output.clone(), value);
        }
        if update {
            object.insert("update".into(), Value::Bool(true));
        }
        let value = serde_json::to_vec(&object).map_err(|e| self.err(e.to_string()))?;
        out.push(EventRef {
            key: Some(key),
            value: &value,
            timestamp: (!global).then_some(window.1 - 1),
        })
        .map_err(|e| self.err(e.to_string()))
    }

    fn window_cost(&self, key: usize) -> usize {
        key + WINDOW_OVERHEAD + 32 * self.aggregates.len()
    }

    fn reserve(&mut self, key: &[u8]) -> Result<(), OperatorError> {
        let cost = self.window_cost(key.len());
        self.pools
            .managed
            .try_reserve(cost)
            .map_err(|e| self.err(format!("{e}; raise memory.managed in the job file")))?;
        self.reserved += cost;
        Ok(())
    }

    fn release(&mut self, windows: usize, key: usize) {
        let cost = (windows * self.window_cost(key)).min(self.reserved);
        self.pools.managed.release(cost);
        self.reserved -= cost;
    }

    /// Charges (or gives back) the change in size of aggregate-function accumulators
    /// from `before` to `after` bytes: the plugin decides how big they grow, the
    /// managed pool whether the host keeps them.
    fn charge_accs(&mut self, before: usize, after: usize) -> Result<(), OperatorError> {
        if after > before {
            let grown = after - before;
            self.pools.managed.try_reserve(grown).map_err(|e| {
                self.err(format!(
                    "the aggregate function's accumulators grew by {}: {e}; raise \
                     memory.managed in the job file",
                    ByteSize(grown)
                ))
            })?;
            self.reserved += grown;
        } else {
            let shrunk = (before - after).min(self.reserved);
            self.pools.managed.release(shrunk);
            self.reserved -= shrunk;
        }
        Ok(())
    }

    fn fresh(&mut self) -> Result<WindowState, OperatorError> {
        let plugin_acc = match &mut self.function {
            Some((function, _)) => function.create()?,
            None => Vec::new(),
        };
        Ok(WindowState {
            accs: self.aggregates.iter().map(|(_, a)| Acc::new(a)).collect(),
            events: 0,
            plugin_acc,
            buffer: Batch::default(),
            fired: false,
        })
    }

    /// Hands the events gathered per window to the aggregate function, one call each.
    fn flush(&mut self, pending: &mut BTreeMap<WindowKey, Batch>) -> Result<(), OperatorError> {
        let Some((function, _)) = &mut self.function else {
            pending.clear();
            return Ok(());
        };
        let (mut before, mut after) = (0, 0);
        for ((key, window), events) in std::mem::take(pending) {
            if let Some(state) = self.state.get_mut(&key).and_then(|w| w.get_mut(&window)) {
                let acc = std::mem::take(&mut state.plugin_acc);
                before += acc.len();
                state.plugin_acc = function.add(acc, events)?;
                after += state.plugin_acc.len();
            }
        }
        self.charge_accs(before, after)
    }

    fn add(
        &mut self,
        event: EventRef<'_>,
        pending: &mut BTreeMap<WindowKey, Batch>,
        updates: &mut Vec<WindowKey>,
        complete: &mut Vec<WindowKey>,
    ) -> Result<(), OperatorError> {
        let key = event
            .key
            .ok_or_else(|| self.err("event has no key; put a `key-by` step before `window`"))?;
        let ts = match (&self.clock, self.assigner) {
            (_, Assigner::Global(_)) => 0,
            (Some(clock), _) => clock.now_ms(),
            (None, _) => event.timestamp.ok_or_else(|| {
                self.err("event has no timestamp; give its source an `event-time` field")
            })?,
        };
        let json: Value = if self.reads_fields {
            serde_json::from_slice(event.value).map_err(|e| self.err(format!("not JSON: {e}")))?
        } else {
            serde_json::from_slice::<serde::de::IgnoredAny>(event.value)
                .map_err(|e| self.err(format!("not JSON: {e}")))?;
            Value::Null
        };
        let mut windows: Vec<(i64, i64)> = self
            .assigner
            .windows(ts)
            .into_iter()
            .filter(|w| !self.expired(w.1))
            .collect();
        if windows.is_empty() {
            self.counters.late_dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(side) = &self.late_output {
                side.send(event).map_err(|e| self.err(e.to_string()))?;
            }
            return Ok(());
        }
        self.store.touch(key);
        if let Assigner::Session(_) = self.assigner {
            // Merging moves accumulators: fold what is gathered first.
            self.flush(pending)?;
            updates.retain(|(k, _)| k != key);
            windows = vec![self.merge_sessions(key, windows[0])?];
        }
        for window in windows {
            if !self.state.get(key).is_some_and(|w| w.contains_key(&window)) {
                self.reserve(key)?;
                let fresh = self.fresh()?;
                self.charge_accs(0, fresh.plugin_acc.len())?;
                self.state
                    .entry(key.to_vec())
                    .or_default()
                    .insert(window, fresh);
                self.ends.insert((window.1, key.to_vec()));
            }
            let aggregates = &self.aggregates;
            let Some(state) = self.state.get_mut(key).and_then(|w| w.get_mut(&window)) else {
                continue;
            };
            for (acc, (_, spec)) in state.accs.iter_mut().zip(aggregates) {
                acc.add(spec, &json)
                    .map_err(|m| OperatorError::new(&self.step, m))?;
            }
            state.events += 1;
            if self.process.is_some() {
                let bytes = buffered_cost(event);
                self.pools.managed.try_reserve(bytes).map_err(|e| {
                    OperatorError::new(
                        &self.step,
                        format!("{e}; raise memory.managed in the job file"),
                    )
                })?;
                self.reserved += bytes;
                state
                    .buffer
                    .push(event)
                    .map_err(|e| OperatorError::new(&self.step, e.to_string()))?;
            }
            if self.function.is_some() {
                // One event always fits a batch.
                let _ = pending
                    .entry((key.to_vec(), window))
                    .or_default()
                    .push(event);
            }
            if let Assigner::Global(count) = self.assigner
                && state.events >= count
            {
                complete.push((key.to_vec(), window));
                continue;
            }
            // A late event inside the allowed lateness: the window fires again.
            if self.clock.is_none() && window.1 - 1 <= self.watermark {
                state.fired = true;
                self.counters.late_updates.fetch_add(1, Ordering::Relaxed);
                if !updates.iter().any(|(k, w)| k == key && *w == window) {
                    updates.push((key.to_vec(), window));
                }
            }
        }
        Ok(())
    }

    /// Merges the new session `window` with the key's sessions it overlaps.
    fn merge_sessions(
        &mut self,
        key: &[u8],
        window: (i64, i64),
    ) -> Result<(i64, i64), OperatorError> {
        let Some(sessions) = self.state.get_mut(key) else {
            return Ok(window);
        };
        let overlapping: Vec<(i64, i64)> = sessions
            .keys()
            .filter(|(s, e)| *s < window.1 && window.0 < *e)
            .copied()
            .collect();
        if overlapping.is_empty() {
            return Ok(window);
        }
        let start = overlapping.iter().map(|w| w.0).fold(window.0, i64::min);
        let end = overlapping.iter().map(|w| w.1).fold(window.1, i64::max);
        let mut parts: Vec<WindowState> = overlapping
            .iter()
            .filter_map(|w| sessions.remove(w))
            .collect();
        let before: usize = parts.iter().map(|p| p.plugin_acc.len()).sum();
        let mut merged = parts.remove(0);
        for part in parts {
            for ((acc, other), (_, spec)) in
                merged.accs.iter_mut().zip(&part.accs).zip(&self.aggregates)
            {
                acc.merge(other, spec);
            }
            if let Some((function, _)) = &mut self.function {
                let a = std::mem::take(&mut merged.plugin_acc);
                merged.plugin_acc = function.merge(a, part.plugin_acc)?;
            }
            for i in 0..part.buffer.len() {
                merged
                    .buffer
                    .push_from(&part.buffer, i)
                    .map_err(|e| OperatorError::new(&self.step, e.to_string()))?;
            }
            merged.events += part.events;
            merged.fired |= part.fired;
        }
        let after = merged.plugin_acc.len();
        // A merged session that reaches past the watermark fires again in time.
        if end - 1 > self.watermark {
            merged.fired = false;
        }
        self.state
            .entry(key.to_vec())
            .or_default()
            .insert((start, end), merged);
        self.ends.insert((end, key.to_vec()));
        self.release(overlapping.len().saturating_sub(1), key.len());
        self.charge_accs(before, after)?;
        Ok((start, end))
    }
}

impl Operator for WindowOperator {
    fn process(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        let mut pending = BTreeMap::new();
        let mut updates = Vec::new();
        let mut out = Batch::default();
        for event in input.iter() {
            let mut complete = Vec::new();
            self.add(event, &mut pending, &mut updates, &mut complete)?;
            // A count trigger fired: emit the window and start it over.
            for (key, window) in complete {
                self.flush(&mut pending)?;
                self.emit(&mut out, &key, window, false)?;
                let mut acc = 0;
                if let Some(windows) = self.state.get_mut(&key) {
                    acc = windows.remove(&window).map_or(0, |w| w.plugin_acc.len());
                    if windows.is_empty() {
                        self.state.remove(&key);
                    }
                }
                self.store.touch(&key);
                self.release(1, key.len());
                self.charge_accs(acc, 0)?;
            }
        }
        self.flush(&mut pending)?;
        for (key, window) in updates {
            self.emit(&mut out, &key, window, true)?;
        }
        Ok(out)
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Batch, OperatorError> {
        // Processing-time windows only follow the watermark to the end of the input.
        if self.clock.is_some() && watermark < crate::exec::watermark::END_OF_TIME {
            return Ok(Batch::default());
        }
        self.fire(watermark)
    }

    fn on_processing_time(&mut self, now: i64) -> Result<Batch, OperatorError> {
        if self.clock.is_none() {
            return Ok(Batch::default());
        }
        self.fire(now)
    }

    fn snapshot(&mut self, target: Option<&Path>) -> Result<Vec<StateEntry>, OperatorError> {
        let state = &self.state;
        self.store
            .snapshot(
                target,
                state.keys().map(Vec::as_slice),
                |key| Ok(state.get(key).map(encode_windows)),
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
            let windows = decode_windows(&mut Decoder::new(&bytes))
                .map_err(|e| self.err(format!("checkpoint state: {e}")))?;
            for w in windows.values() {
                self.reserve(&key)?;
                self.charge_accs(0, w.plugin_acc.len())?;
                if self.process.is_some() {
                    let bytes: usize = w.buffer.iter().map(buffered_cost).sum();
                    self.pools.managed.try_reserve(bytes).map_err(|e| {
                        self.err(format!("{e}; raise memory.managed in the job file"))
                    })?;
                    self.reserved += bytes;
                }
            }
            for &(_, end) in windows.keys() {
                self.ends.insert((end, key.clone()));
            }
            self.state.insert(key, windows);
        }
        Ok(())
    }
}

/// One key's windows, as its entry in the state backend holds them.
fn encode_windows(windows: &Windows) -> Vec<u8> {
    let mut e = Encoder::new();
    e.count(windows.len());
    for (&(start, end), w) in windows {
        e.i64(start).i64(end).u64(w.events).u8(u8::from(w.fired));
        e.bytes(&w.plugin_acc).batch(&w.buffer).count(w.accs.len());
        for acc in &w.accs {
            acc.encode(&mut e);
        }
    }
    e.finish()
}

/// One key's windows as [`encode_windows`] wrote them.
fn decode_windows(d: &mut Decoder<'_>) -> Result<Windows, StateError> {
    let mut windows = BTreeMap::new();
    for _ in 0..d.count()? {
        let window = (d.i64()?, d.i64()?);
        let events = d.u64()?;
        let fired = d.u8()? != 0;
        let plugin_acc = d.bytes()?.to_vec();
        let buffer = d.batch()?;
        let accs = (0..d.count()?)
            .map(|_| Acc::decode(d))
            .collect::<Result<_, _>>()?;
        windows.insert(
            window,
            WindowState {
                accs,
                events,
                plugin_acc,
                buffer,
                fired,
            },
        );
    }
    d.end()?;
    Ok(windows)
}

impl WindowOperator {
    /// Time reached `time`: fires the windows it completes, drops those it expires.
    fn fire(&mut self, time: i64) -> Result<Batch, OperatorError> {
        self.watermark = self.watermark.max(time);
        let watermark = self.watermark;
        // Windows fire when time reaches `end - 1`.
        let mut due: Vec<(i64, i64, Vec<u8>)> = Vec::new();
        while let Some((end, key)) = self.ends.first().cloned() {
            if end - 1 > watermark {
                break;
            }
            self.ends.pop_first();
            if let Some(windows) = self.state.get(&key) {
                for (&(start, e), state) in windows {
                    if e == end && !state.fired {
                        due.push((end, start, key.clone()));
                    }
                }
            }
            self.expiring.insert((end, key));
        }
        due.sort();
        let mut out = Batch::default();
        for (end, start, key) in due {
            if let Some(state) = self
                .state
                .get_mut(&key)
                .and_then(|w| w.get_mut(&(start, end)))
            {
                state.fired = true;
            }
            self.store.touch(&key);
            self.emit(&mut out, &key, (start, end), false)?;
        }
        // And are dropped when it passes `end - 1 + allowed-lateness`.
        let lateness = self.lateness;
        while let Some((end, key)) = self.expiring.first().cloned() {
            if (end - 1).saturating_add(lateness) > watermark {
                break;
            }
            self.expiring.pop_first();
            let Some(windows) = self.state.get_mut(&key) else {
                continue;
            };
            let before = windows.len();
            let mut accs = 0;
            windows.retain(|w, state| {
                let keep = w.1 != end || (w.1 - 1).saturating_add(lateness) > watermark;
                if !keep {
                    accs += state.plugin_acc.len();
                }
                keep
            });
            let freed = before - windows.len();
            if windows.is_empty() {
                self.state.remove(&key);
            }
            if freed > 0 {
                self.store.touch(&key);
            }
            self.release(freed, key.len());
            self.charge_accs(accs, 0)?;
        }
        Ok(out)
    }
}

impl Drop for WindowOperator {
    fn drop(&mut self) {
        self.pools.managed.release(self.reserved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::job::memory::{ByteSize, MemoryBudget};
    use crate::state::backend::HeapBackend;
    use crate::time::ManualClock;

    fn spec(text: &str) -> WindowSpec {
        serde_saphyr::from_str(text).unwrap()
    }

    fn keyed(key: &str, value: &str) -> Batch {
        let mut b = Batch::default();
        b.push(EventRef {
            key: Some(key.as_bytes()),
            value: value.as_bytes(),
            timestamp: None,
        })
        .unwrap();
        b
    }

    fn rows(b: &Batch) -> Vec<String> {
        b.iter()
            .map(|e| String::from_utf8_lossy(e.value).into_owned())
            .collect()
    }

    /// An aggregate function whose accumulator grows by `step` bytes per event.
    struct Growing {
        step: usize,
    }

    impl AggregateFunction for Growing {
        fn create(&mut self) -> Result<Vec<u8>, OperatorError> {
            Ok(Vec::new())
        }
        fn add(&mut self, mut acc: Vec<u8>, events: Batch) -> Result<Vec<u8>, OperatorError> {
            acc.resize(acc.len() + self.step * events.len(), b'x');
            Ok(acc)
        }
        fn merge(&mut self, mut a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, OperatorError> {
            a.extend(b);
            Ok(a)
        }
        fn result(&mut self, acc: Vec<u8>) -> Result<Vec<u8>, OperatorError> {
            Ok(acc.len().to_string().into_bytes())
        }
    }

    #[test]
    fn a_growing_accumulator_is_charged_to_managed_memory_and_given_back() {
        let pools = Arc::new(Pools::new(&MemoryBudget {
            process: ByteSize(1 << 30),
            network: ByteSize(1 << 20),
            managed: ByteSize(1 << 20),
            wasm: ByteSize(1 << 20),
        }));
        let functions = WindowFunctions {
            aggregate: Some(Box::new(Growing { step: 100 << 10 })),
            process: None,
        };
        let mut op = WindowOperator::new(
            "w",
            &spec("tumbling: 1s\ntime: processing\nfunction: { plugin: grow.wasm }"),
            functions,
            None,
            WindowEnv {
                pools: pools.clone(),
                counters: Arc::default(),
                clock: Arc::new(ManualClock::new(10_000)),
                store: KeyedStore::new(Box::new(HeapBackend::new(None)), "window", 128),
            },
        )
        .unwrap();
        op.process(keyed("a", "{}")).unwrap();
        let used = pools.managed.used();
        assert!(used >= 100 << 10, "{used}");
        // The window fires and is dropped: its accumulator's bytes come back.
        assert_eq!(rows(&op.on_processing_time(10_999).unwrap()).len(), 1);
        assert!(pools.managed.used() < 1024, "{}", pools.managed.used());
        // An accumulator beyond the pool fails the step, naming what grew.
        let error = (0..20)
            .find_map(|_| op.process(keyed("b", "{}")).err())
            .expect("the pool runs out");
        assert!(
            error
                .to_string()
                .contains("the aggregate function's accumulators grew by 100.0 KiB"),
            "{error}"
        );
    }

    #[test]
    fn processing_time_windows_follow_the_clock() {
        let clock = Arc::new(ManualClock::new(10_000));
        let pools = Arc::new(Pools::new(&MemoryBudget {
            process: ByteSize(1 << 30),
            network: ByteSize(1 << 20),
            managed: ByteSize(1 << 20),
            wasm: ByteSize(1 << 20),
        }));
        let mut op = WindowOperator::new(
            "w",
            &spec("tumbling: 1s\ntime: processing\naggregate: { n: count }"),
            WindowFunctions::default(),
            None,
            WindowEnv {
                pools,
                counters: Arc::default(),
                clock: clock.clone(),
                store: KeyedStore::new(Box::new(HeapBackend::new(None)), "window", 128),
            },
        )
        .unwrap();
        op.process(keyed("a", "{}")).unwrap();
        clock.set(10_400);
        op.process(keyed("a", "{}")).unwrap();
        assert!(op.on_processing_time(10_998).unwrap().is_empty());
        assert!(
            op.on_watermark(99_999_999).unwrap().is_empty(),
            "event time does not fire it"
        );
        clock.set(11_500);
        op.process(keyed("b", "{}")).unwrap();
        let fired = op.on_processing_time(10_999).unwrap();
        assert_eq!(
            rows(&fired),
            [r#"{"key":"a","window_start":10000,"window_end":11000,"n":2}"#]
        );
        // An event in the very millisecond its window fired still counts.
        clock.set(10_999);
        op.process(keyed("a", "{}")).unwrap();
        let straggler = op.on_processing_time(11_000).unwrap();
        assert_eq!(
            rows(&straggler),
            [r#"{"key":"a","window_start":10000,"window_end":11000,"n":1}"#]
        );
        let rest = op
            .on_watermark(crate::exec::watermark::END_OF_TIME)
            .unwrap();
        assert_eq!(
            rows(&rest),
            [r#"{"key":"b","window_start":11000,"window_end":12000,"n":1}"#]
        );
    }

    fn pools() -> Arc<Pools> {
        Arc::new(Pools::new(&MemoryBudget {
            process: ByteSize(1 << 30),
            network: ByteSize(1 << 20),
            managed: ByteSize(16 << 20),
            wasm: ByteSize(1 << 20),
        }))
    }

    fn tumbling(store: KeyedStore) -> WindowOperator {
        WindowOperator::new(
            "w",
            &spec("tumbling: 10ms\naggregate: { n: count, total: { sum: x } }"),
            WindowFunctions::default(),
            None,
            WindowEnv {
                pools: pools(),
                counters: Arc::default(),
                clock: Arc::new(ManualClock::new(0)),
                store,
            },
        )
        .unwrap()
    }

    fn heap_store() -> KeyedStore {
        KeyedStore::new(Box::new(HeapBackend::new(None)), "window", 128)
    }

    /// Events of keys `k0`..`k9` at times `from..to`, the ones `keep` accepts.
    fn events(from: i64, to: i64, keep: impl Fn(&[u8]) -> bool) -> Batch {
        let mut b = Batch::default();
        for ts in from..to {
            let key = format!("k{}", ts % 10);
            if keep(key.as_bytes()) {
                b.push(EventRef {
                    key: Some(key.as_bytes()),
                    value: format!(r#"{{"x":{ts}}}"#).as_bytes(),
                    timestamp: Some(ts),
                })
                .unwrap();
            }
        }
        b
    }

    #[test]
    fn window_state_goes_through_the_backend_and_restores_split_by_key_group() {
        let everything = |_: &[u8]| true;
        let mut reference = tumbling(heap_store());
        reference.process(events(0, 25, everything)).unwrap();
        reference.process(events(25, 40, everything)).unwrap();
        let mut expected = rows(&reference.on_watermark(i64::MAX).unwrap());
        expected.sort();

        let (backend, shared) = crate::state::store::SharedIncremental::new();
        let mut first = tumbling(KeyedStore::new(Box::new(backend), "window", 128));
        first.process(events(0, 25, everything)).unwrap();
        let mut got = rows(&first.on_watermark(9).unwrap());
        let entries = first.snapshot(Some(Path::new("unused"))).unwrap();
        // Every key with an open window has its entry in the backend.
        let stored = crate::state::store::SharedIncremental::contents(&shared);
        assert_eq!(stored.len(), 10);
        // Windows that fire and expire leave it at the next checkpoint.
        first.on_watermark(29).unwrap();
        first.snapshot(Some(Path::new("unused"))).unwrap();
        assert!(crate::state::store::SharedIncremental::contents(&shared).is_empty());

        for subtask in 0..2 {
            let range = crate::keygroup::key_group_range(subtask, 2, 128);
            let mine = |k: &[u8]| range.contains(&crate::keygroup::key_group(k, 128));
            let mut part = tumbling(heap_store());
            part.restore(
                crate::state::entries_for(&entries, subtask, 2, 128),
                Path::new("unused"),
            )
            .unwrap();
            part.process(events(25, 40, mine)).unwrap();
            got.extend(rows(&part.on_watermark(i64::MAX).unwrap()));
        }
        got.sort();
        assert_eq!(got, expected);
    }

    #[test]
    fn assigners_cover_the_right_windows() {
        assert_eq!(Assigner::Tumbling(10).windows(25), vec![(20, 30)]);
        assert_eq!(Assigner::Tumbling(10).windows(-5), vec![(-10, 0)]);
        assert_eq!(
            Assigner::Sliding(10, 5).windows(12),
            vec![(10, 20), (5, 15)]
        );
        assert_eq!(Assigner::Session(5).windows(7), vec![(7, 12)]);
    }
}
