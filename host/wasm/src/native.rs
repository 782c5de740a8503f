//! Native twins: a plugin's Rust code compiled into the host and run as the operator in
//! place of its component, so that a benchmark measures exactly what the WASM boundary
//! and sandbox cost. A twin gets the same parameters, and a process function the same
//! host-owned keyed state, timers, checkpoints and rollback on failure, as a component.

use std::collections::HashMap;
use std::path::Path;

use eddy_core::operator::{AggregateFunction, WindowFunction};
use eddy_core::registry::Registry;
use eddy_core::state::StateEntry;
use eddy_core::state::backend::BackendFactory;
use eddy_core::time::{Clock, SystemClock};
use eddy_core::{Batch, Job, Operator, OperatorError, OperatorFactory, Step, StepOp};
use eddy_sdk::keyed::native::with_host;
use eddy_sdk::{Context, FlatMap, Map, Process, TimeDomain, Timer};

use crate::Runtime;
use eddy_core::state::keyed::{KeyedState, append_keyed, group_by_key, latest_timestamp};

use crate::keyed::{NativeHost, sdk_domain};

/// Builds a twin for one subtask of a step (with the job's state backend).
type Build<'a> = Box<
    dyn Fn(
            &Job,
            &Step,
            Context,
            u32,
            u32,
            &dyn BackendFactory,
        ) -> Result<Box<dyn Operator>, OperatorError>
        + 'a,
>;

/// Plugins compiled into the host, by component file: [`NativeTwins::register`] makes a
/// registry build them natively wherever a step uses one of those files.
pub struct NativeTwins<'a> {
    runtime: &'a Runtime,
    twins: HashMap<String, Build<'a>>,
}

fn sdk_error(step: &str, e: eddy_sdk::Error) -> OperatorError {
    OperatorError::new(step, e.to_string())
}

impl<'a> NativeTwins<'a> {
    /// No twins yet. `runtime` serves the twins' keyed state (the job's memory pools).
    pub fn new(runtime: &'a Runtime) -> Self {
        NativeTwins {
            runtime,
            twins: HashMap::new(),
        }
    }

    /// `registry`, building each plugin that has a twin here natively.
    pub fn register<'r>(&'r self, registry: Registry<'r>) -> Registry<'r> {
        self.twins
            .keys()
            .fold(registry, |registry, file| registry.native(file, self))
    }

    /// Runs the map `T` wherever a step uses the component file `file`.
    pub fn map<T: Map + Send>(self, file: &str) -> Self {
        self.stateless(file, T::open, |op: &mut T, input: Batch| {
            let mut out = eddy_sdk::run_map(op, &input)?;
            out.inherit_aligned(input);
            Ok(out)
        })
    }

    /// Runs the flat-map `T` wherever a step uses the component file `file`.
    pub fn flat_map<T: FlatMap + Send>(self, file: &str) -> Self {
        self.stateless(file, T::open, |op: &mut T, input: Batch| {
            let (mut out, origins) = eddy_sdk::run_flat_map(op, &input)?;
            out.inherit_from(&input, &origins);
            Ok(out)
        })
    }

    /// Registers a stateless twin: opened by `open`, each batch through `apply`.
    fn stateless<T: Send + 'static>(
        mut self,
        file: &str,
        open: fn(&Context) -> Result<T, eddy_sdk::Error>,
        apply: fn(&mut T, Batch) -> Result<Batch, eddy_sdk::Error>,
    ) -> Self {
        self.twins.insert(
            file.to_owned(),
            Box::new(move |_, step, ctx, _, _, _| {
                let op = open(&ctx).map_err(|e| sdk_error(&step.name, e))?;
                Ok(Box::new(Stateless {
                    op,
                    step: step.name.clone(),
                    apply,
                }))
            }),
        );
        self
    }

    /// Runs the process function `T` wherever a step uses the component file `file`.
    pub fn process<T: Process + Send>(mut self, file: &str) -> Self {
        let runtime = self.runtime;
        self.twins.insert(
            file.to_owned(),
            Box::new(move |job, step, ctx, subtask, parallelism, state| {
                let mut keyed =
                    runtime.keyed_state(job, &step.name, subtask, parallelism, state)?;
                // Like a component, the function declares its state handles in `open`.
                let mut host = NativeHost::new(&mut keyed);
                let opened = with_host(&mut host, || T::open(&ctx));
                if let Some(failure) = host.into_failure() {
                    return Err(OperatorError::new(&step.name, failure));
                }
                let op = opened.map_err(|e| sdk_error(&step.name, e))?;
                Ok(Box::new(NativeProcess {
                    op,
                    keyed,
                    step: step.name.clone(),
                }))
            }),
        );
        self
    }
}

impl OperatorFactory for NativeTwins<'_> {
    fn create(
        &self,
        job: &Job,
        step: &Step,
        subtask: u32,
        parallelism: u32,
        state: &dyn BackendFactory,
    ) -> Result<Box<dyn Operator>, OperatorError> {
        let StepOp::Plugin {
            plugin,
            params_json,
            ..
        } = &step.op
        else {
            return Err(no_twin(&step.name, "a built-in step"));
        };
        let file = plugin.file_name().map(|f| f.to_string_lossy());
        let Some(build) = file.and_then(|f| self.twins.get(f.as_ref())) else {
            return Err(no_twin(&step.name, &plugin.display().to_string()));
        };
        let params: serde_json::Value = serde_json::from_str(params_json)
            .map_err(|e| OperatorError::new(&step.name, format!("params: {e}")))?;
        let ctx = Context::new(params, &job.name, &step.name).at(subtask, parallelism);
        build(job, step, ctx, subtask, parallelism, state)
    }

    fn aggregate(
        &self,
        _job: &Job,
        step: &Step,
        plugin: &Path,
        _params_json: &str,
        _subtask: u32,
    ) -> Result<Box<dyn AggregateFunction>, OperatorError> {
        Err(no_twin(&step.name, &plugin.display().to_string()))
    }

    fn window_function(
        &self,
        _job: &Job,
        step: &Step,
        plugin: &Path,
        _params_json: &str,
        _subtask: u32,
    ) -> Result<Box<dyn WindowFunction>, OperatorError> {
        Err(no_twin(&step.name, &plugin.display().to_string()))
    }
}

/// Step `step` asked for a twin of `what`, which has none here (twins are operators).
fn no_twin(step: &str, what: &str) -> OperatorError {
    let message = format!("{what} has no native twin of this kind");
    OperatorError::new(step, message).with_class(eddy_core::ErrorClass::USER_FATAL)
}

/// A native map or flat-map.
struct Stateless<T> {
    op: T,
    step: String,
    apply: fn(&mut T, Batch) -> Result<Batch, eddy_sdk::Error>,
}

impl<T: Send> Operator for Stateless<T> {
    fn process(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        (self.apply)(&mut self.op, input).map_err(|e| sdk_error(&self.step, e))
    }
}

/// A native process function over host-owned keyed state.
struct NativeProcess<T> {
    op: T,
    keyed: KeyedState,
    step: String,
}

impl<T: Process> NativeProcess<T> {
    /// Runs one call of the function with the keyed state as its host; a failed state
    /// access fails the call.
    fn call(
        &mut self,
        call: impl FnOnce(&mut T) -> Result<Batch, eddy_sdk::Error>,
    ) -> Result<Batch, OperatorError> {
        let op = &mut self.op;
        let mut host = NativeHost::new(&mut self.keyed);
        let result = with_host(&mut host, || call(op));
        if let Some(failure) = host.into_failure() {
            return Err(OperatorError::new(&self.step, failure));
        }
        result.map_err(|e| sdk_error(&self.step, e))
    }

    fn process_keyed(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        let mut out = Batch::default();
        for (key, events) in group_by_key(&input) {
            let latest = latest_timestamp(&events);
            self.keyed.set_key(&key);
            self.keyed.set_now(SystemClock.now_ms());
            let produced = self.call(|op| eddy_sdk::run_process(op, &key, &events))?;
            append_keyed(&mut out, &produced, &key, latest)
                .map_err(|e| OperatorError::new(&self.step, e.to_string()))?;
        }
        Ok(out)
    }

    fn fire_timers(&mut self, domain: TimeDomain, time: i64) -> Result<Batch, OperatorError> {
        let mut out = Batch::default();
        let mut advance = self.keyed.advance(sdk_domain(domain), time);
        while let Some((ts, key)) = self
            .keyed
            .pop_due_in(&mut advance)
            .map_err(|e| OperatorError::new(&self.step, e.to_string()))?
        {
            self.keyed.set_key(&key);
            let timer = Timer {
                domain,
                timestamp: ts,
            };
            let produced = self.call(|op| eddy_sdk::run_timer(op, &key, timer))?;
            append_keyed(&mut out, &produced, &key, Some(ts))
                .map_err(|e| OperatorError::new(&self.step, e.to_string()))?;
        }
        Ok(out)
    }

    /// Runs `f` under one journal: if it fails, none of its state changes stay.
    fn atomically(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Batch, OperatorError>,
    ) -> Result<Batch, OperatorError> {
        self.keyed.begin();
        let result = f(self);
        match &result {
            Ok(_) => self.keyed.commit(),
            Err(_) => self.keyed.rollback(),
        }
        result
    }
}

impl<T: Process + Send> Operator for NativeProcess<T> {
    fn process(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        self.atomically(|p| p.process_keyed(input))
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Batch, OperatorError> {
        self.keyed.set_watermark(watermark);
        self.atomically(|p| p.fire_timers(TimeDomain::EventTime, watermark))
    }

    fn on_processing_time(&mut self, now: i64) -> Result<Batch, OperatorError> {
        self.keyed.set_now(now);
        self.atomically(|p| p.fire_timers(TimeDomain::ProcessingTime, now))
    }

    fn take_side_outputs(&mut self) -> Vec<(String, Batch)> {
        self.keyed.take_side_outputs()
    }

    fn snapshot(&mut self, target: Option<&Path>) -> Result<Vec<StateEntry>, OperatorError> {
        self.keyed
            .snapshot(target)
            .map_err(|e| OperatorError::new(&self.step, e))
    }

    fn restore(&mut self, entries: Vec<StateEntry>, from: &Path) -> Result<(), OperatorError> {
        self.keyed
            .restore(entries, from)
            .map_err(|e| OperatorError::new(&self.step, e))
    }
}
