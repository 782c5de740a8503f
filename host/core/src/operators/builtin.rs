//! Built-in declarative operators: key-by, where, select and rolling aggregates.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::batch::{Batch, EventRef};
use crate::error::ErrorClass;
use crate::expr::Expr;
use crate::job::window::{FunctionSpec, WindowSpec};
use crate::job::{Job, RollingSpec, Step, StepOp};
use crate::memory::Pools;
use crate::metrics::Counters;
use crate::operator::{Operator, OperatorError, OperatorFactory};
use crate::operators::join::JoinOperator;
use crate::operators::window::{WindowEnv, WindowFunctions, WindowOperator};
use crate::sideoutput::SideOutput;
use crate::state::backend::BackendFactory;
use crate::state::store::KeyedStore;
use crate::state::{Decoder, Encoder, StateEntry, StateError};
use crate::time::Clock;

/// A built-in step failed on an event.
#[derive(Debug, thiserror::Error)]
#[error("{message} (event: {event})")]
pub struct BuiltinError {
    /// What went wrong.
    pub message: String,
    /// A preview of the event.
    pub event: String,
}

fn fail(step: &str, message: impl Into<String>, value: &[u8]) -> OperatorError {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(&value[..value.len().min(MAX)]);
    OperatorError::new(
        step,
        BuiltinError {
            message: message.into(),
            event: if value.len() > MAX {
                format!("{text}…")
            } else {
                text.into_owned()
            },
        },
    )
    // The same event fails the same way on every replay.
    .with_class(ErrorClass::USER_FATAL)
}

fn parse(step: &str, value: &[u8]) -> Result<Value, OperatorError> {
    serde_json::from_slice(value).map_err(|e| fail(step, format!("not JSON: {e}"), value))
}

fn push(step: &str, out: &mut Batch, event: EventRef<'_>) -> Result<(), OperatorError> {
    out.push(event).map_err(|e| OperatorError::new(step, e))
}

/// Appends `object` as the value of an event keeping `event`'s key and timestamp.
fn push_object(
    step: &str,
    out: &mut Batch,
    event: EventRef<'_>,
    object: &Map<String, Value>,
) -> Result<(), OperatorError> {
    let value = serde_json::to_vec(object).map_err(|e| OperatorError::new(step, e))?;
    push(
        step,
        out,
        EventRef {
            value: &value,
            ..event
        },
    )
}

/// What built-in operators may need beyond their step.
pub struct BuiltinContext<'a> {
    /// The job's memory pools (state is charged to `managed`).
    pub pools: &'a Arc<Pools>,
    /// The job's side outputs by name.
    pub side_outputs: &'a HashMap<String, Arc<SideOutput>>,
    /// The counters of the step's subtask.
    pub counters: Arc<Counters>,
    /// Creates WASM functions that built-in steps call (window aggregate functions).
    pub factory: &'a dyn OperatorFactory,
    /// The job.
    pub job: &'a Job,
    /// The subtask being built.
    pub subtask: u32,
    /// The processing-time clock.
    pub clock: Arc<dyn Clock>,
    /// Opens the keyed state backends of the job's stateful steps.
    pub state: &'a dyn BackendFactory,
}

impl BuiltinContext<'_> {
    /// The store of `step`'s per-key state for the subtask being built, named `name`
    /// in its backend.
    fn store(&self, step: &Step, name: &'static str) -> Result<KeyedStore, OperatorError> {
        let backend = self
            .state
            .open(self.job, &step.name, self.subtask, step.parallelism)
            // State lives in storage outside the job, which may come back.
            .map_err(|e| OperatorError::new(&step.name, e).with_class(ErrorClass::EXTERNAL))?;
        Ok(KeyedStore::new(backend, name, self.job.max_parallelism))
    }
}

/// A window step's operator, with its WASM functions instantiated.
fn window_operator(
    step: &Step,
    spec: &WindowSpec,
    ctx: BuiltinContext<'_>,
) -> Result<Box<dyn Operator>, OperatorError> {
    let late = spec
        .late_output
        .as_ref()
        .and_then(|o| ctx.side_outputs.get(o).cloned());
    let params =
        |f: &FunctionSpec| serde_json::to_string(&f.params).unwrap_or_else(|_| "{}".into());
    let function = spec
        .function
        .as_ref()
        .map(|f| {
            ctx.factory
                .aggregate(ctx.job, step, &f.plugin, &params(f), ctx.subtask)
        })
        .transpose()?;
    let process = spec
        .process
        .as_ref()
        .map(|f| {
            ctx.factory
                .window_function(ctx.job, step, &f.plugin, &params(f), ctx.subtask)
        })
        .transpose()?;
    let store = ctx.store(step, "window")?;
    let op = WindowOperator::new(
        &step.name,
        spec,
        WindowFunctions {
            aggregate: function,
            process,
        },
        late,
        WindowEnv {
            pools: ctx.pools.clone(),
            counters: ctx.counters,
            clock: ctx.clock,
            store,
        },
    )
    .map_err(|m| OperatorError::new(&step.name, m))?;
    Ok(Box::new(op))
}

/// The operator of a built-in step, or `None` for plugin steps.
pub fn builtin_operator(
    step: &Step,
    ctx: BuiltinContext<'_>,
) -> Option<Result<Box<dyn Operator>, OperatorError>> {
    let name = step.name.clone();
    let pools = ctx.pools;
    Some(Ok(match &step.op {
        StepOp::Plugin { .. } => return None,
        StepOp::Join(spec) => {
            let store = match ctx.store(step, "join") {
                Ok(store) => store,
                Err(e) => return Some(Err(e)),
            };
            match JoinOperator::new(&name, spec, pools.clone(), store) {
                Ok(op) => Box::new(op),
                Err(m) => return Some(Err(OperatorError::new(&name, m))),
            }
        }
        StepOp::Window(spec) => match window_operator(step, spec, ctx) {
            Ok(op) => op,
            Err(e) => return Some(Err(e)),
        },
        StepOp::KeyBy(path) => Box::new(KeyBy {
            step: name,
            path: path.clone(),
        }),
        StepOp::Where(expr) => Box::new(Where {
            step: name,
            expr: expr.clone(),
        }),
        StepOp::Select(fields) => Box::new(Select {
            step: name,
            fields: fields.clone(),
        }),
        StepOp::Rolling(spec) => {
            let store = match ctx.store(step, "rolling") {
                Ok(store) => store,
                Err(e) => return Some(Err(e)),
            };
            Box::new(Rolling {
                step: name,
                spec: spec.clone(),
                state: HashMap::new(),
                reserved: 0,
                pools: pools.clone(),
                store,
            })
        }
    }))
}

struct KeyBy {
    step: String,
    path: Vec<String>,
}

impl Operator for KeyBy {
    fn process(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        let mut out = Batch::with_capacity(input.len(), input.values.len());
        for event in input.iter() {
            let key = self.key(event.value)?;
            push(
                &self.step,
                &mut out,
                EventRef {
                    key: Some(&key),
                    ..event
                },
            )?;
        }
        Ok(out)
    }
}

impl KeyBy {
    /// The key of an event: read straight from its JSON text (strings unescaped,
    /// integers as written), as [`crate::fields::key_bytes`] of the field's value.
    fn key<'a>(&self, value: &'a [u8]) -> Result<Cow<'a, [u8]>, OperatorError> {
        let missing = || {
            fail(
                &self.step,
                format!("no key field `{}`", self.path.join(".")),
                value,
            )
        };
        let Ok(raw) = crate::fields::path(value, &self.path) else {
            // Not a JSON object: say whether it is JSON at all.
            parse(&self.step, value)?;
            return Err(missing());
        };
        let raw = raw.filter(|r| r.get() != "null").ok_or_else(missing)?;
        let text = raw.get();
        if let Some(s) = crate::fields::string(raw) {
            return Ok(match s {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            });
        }
        let integer = text.strip_prefix('-').unwrap_or(text);
        if !integer.is_empty() && integer.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Cow::Borrowed(text.as_bytes()));
        }
        // Other numbers, booleans, arrays, objects: as their compact JSON.
        Ok(Cow::Owned(crate::fields::key_bytes(&parse(
            &self.step,
            text.as_bytes(),
        )?)))
    }
}

struct Where {
    step: String,
    expr: Expr,
}

impl Operator for Where {
    fn process(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        let mut keep = Vec::with_capacity(input.len());
        for (i, event) in input.iter().enumerate() {
            if self.expr.test(&parse(&self.step, event.value)?) {
                keep.push(i as u32);
            }
        }
        if keep.len() == input.len() {
            return Ok(input);
        }
        input
            .select(&keep)
            .map_err(|e| OperatorError::new(&self.step, e))
    }
}

struct Select {
    step: String,
    fields: Vec<(String, Expr)>,
}

impl Operator for Select {
    fn process(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        let mut out = Batch::with_capacity(input.len(), input.values.len());
        for event in input.iter() {
            let json = parse(&self.step, event.value)?;
            let object: Map<String, Value> = self
                .fields
                .iter()
                .map(|(name, expr)| (name.clone(), expr.eval(&json)))
                .collect();
            push_object(&self.step, &mut out, event, &object)?;
        }
        Ok(out)
    }
}

#[derive(Default)]
struct Aggregate {
    count: u64,
    int_sum: Option<i64>,
    float_sum: f64,
}

/// Bytes of managed memory one key's state is charged, beyond the key itself.
const STATE_OVERHEAD: usize = 64;

struct Rolling {
    step: String,
    spec: RollingSpec,
    state: HashMap<Vec<u8>, Aggregate>,
    reserved: usize,
    pools: Arc<Pools>,
    /// The per-key state in the job's state backend, written back at checkpoints.
    store: KeyedStore,
}

impl Rolling {
    /// Charges a new key's state to managed memory.
    fn reserve(&mut self, key: &[u8]) -> Result<(), OperatorError> {
        let cost = key.len() + STATE_OVERHEAD;
        self.pools.managed.try_reserve(cost).map_err(|e| {
            OperatorError::new(
                &self.step,
                format!("{e}; raise memory.managed in the job file"),
            )
        })?;
        self.reserved += cost;
        Ok(())
    }
}

impl Operator for Rolling {
    fn process(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        let mut out = Batch::with_capacity(input.len(), input.len() * 32);
        for event in input.iter() {
            let Some(key) = event.key else {
                return Err(fail(
                    &self.step,
                    "event has no key; put a `key-by` step before `rolling`",
                    event.value,
                ));
            };
            if !self.state.contains_key(key) {
                self.reserve(key)?;
            }
            let agg = self.state.entry(key.to_vec()).or_insert_with(|| Aggregate {
                int_sum: Some(0),
                ..Aggregate::default()
            });
            agg.count += 1;
            self.store.touch(key);
            let key_value = match std::str::from_utf8(key) {
                Ok(s) => Value::String(s.to_owned()),
                Err(_) => Value::from(key.to_vec()),
            };
            let result = match &self.spec {
                RollingSpec::Count => ("count", Value::from(agg.count)),
                RollingSpec::Sum(field) => {
                    let json = parse(&self.step, event.value)?;
                    match json.get(field) {
                        Some(Value::Number(n)) => {
                            agg.int_sum = agg
                                .int_sum
                                .zip(n.as_i64())
                                .and_then(|(a, b)| a.checked_add(b));
                            agg.float_sum += n.as_f64().unwrap_or(0.0);
                        }
                        Some(Value::Null) | None => {}
                        Some(_) => {
                            return Err(fail(
                                &self.step,
                                format!("field `{field}` is not a number"),
                                event.value,
                            ));
                        }
                    }
                    let sum = match agg.int_sum {
                        Some(i) => Value::from(i),
                        None => Value::from(agg.float_sum),
                    };
                    ("sum", sum)
                }
            };
            let mut object = Map::new();
            object.insert("key".into(), key_value);
            object.insert(result.0.into(), result.1);
            push_object(&self.step, &mut out, event, &object)?;
        }
        Ok(out)
    }

    fn snapshot(&mut self, target: Option<&Path>) -> Result<Vec<StateEntry>, OperatorError> {
        let state = &self.state;
        self.store
            .snapshot(
                target,
                state.keys().map(Vec::as_slice),
                |key| {
                    Ok(state.get(key).map(|agg| {
                        let mut e = Encoder::new();
                        e.u64(agg.count).opt_i64(agg.int_sum).f64(agg.float_sum);
                        e.finish()
                    }))
                },
                Vec::new(),
            )
            .map_err(|e| OperatorError::new(&self.step, format!("checkpoint state: {e}")))
    }

    fn restore(&mut self, entries: Vec<StateEntry>, from: &Path) -> Result<(), OperatorError> {
        let step = self.step.clone();
        let corrupt =
            |e: &dyn std::fmt::Display| OperatorError::new(&step, format!("checkpoint state: {e}"));
        let restored = self.store.restore(entries, from).map_err(|e| corrupt(&e))?;
        for (key, bytes) in restored.keys {
            let mut d = Decoder::new(&bytes);
            let decoded = (|| -> Result<_, StateError> {
                let agg = Aggregate {
                    count: d.u64()?,
                    int_sum: d.opt_i64()?,
                    float_sum: d.f64()?,
                };
                d.end()?;
                Ok(agg)
            })();
            let agg = decoded.map_err(|e| corrupt(&e))?;
            self.reserve(&key)?;
            self.state.insert(key, agg);
        }
        Ok(())
    }
}

impl Drop for Rolling {
    fn drop(&mut self) {
        self.pools.managed.release(self.reserved);
    }
}
