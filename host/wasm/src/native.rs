//! Native twins: a plugin's Rust code compiled into the host and run as the operator in
//! place of its component, so that a benchmark measures exactly what the WASM boundary
//! and sandbox cost. A twin gets the same parameters, and a process function the same
//! host-owned keyed state, timers, checkpoints and rollback on failure, as a component.

use std::collections::HashMap;
use std::path::Path;

use eddy_core::operator::{AggregateFunction, WindowFunction};
use eddy_core::sink::{Connected, SinkError};
use eddy_core::source::{Source, SourceError};
use eddy_core::state::StateEntry;
use eddy_core::state::backend::BackendFactory;
use eddy_core::time::{Clock, SystemClock};
use eddy_core::{Batch, Job, Operator, OperatorError, OperatorFactory, Step, StepOp};
use eddy_sdk::keyed::native::with_host;
use eddy_sdk::{Context, FlatMap, Map, Process, TimeDomain, Timer};

use crate::Runtime;
use crate::keyed::{KeyedState, append_keyed, group_by_key, latest_timestamp, wit_domain};

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

/// An operator factory that runs the registered plugins natively and everything else
/// as `inner` would.
pub struct NativeTwins<'a> {
    inner: &'a dyn OperatorFactory,
    runtime: &'a Runtime,
    twins: HashMap<String, Build<'a>>,
}

fn sdk_error(step: &str, e: eddy_sdk::Error) -> OperatorError {
    OperatorError::new(step, e.to_string())
}

impl<'a> NativeTwins<'a> {
    /// No twins yet: every step as `inner` makes it. `runtime` serves the twins' keyed
    /// state (the job's backend and memory pools).
    pub fn new(inner: &'a dyn OperatorFactory, runtime: &'a Runtime) -> Self {
        NativeTwins {
            inner,
            runtime,
            twins: HashMap::new(),
        }
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
                let op = with_host(&mut keyed, || T::open(&ctx))
                    .map_err(|e| sdk_error(&step.name, e))?;
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
            return self.inner.create(job, step, subtask, parallelism, state);
        };
        let file = plugin.file_name().map(|f| f.to_string_lossy());
        let Some(build) = file.and_then(|f| self.twins.get(f.as_ref())) else {
            return self.inner.create(job, step, subtask, parallelism, state);
        };
        let params: serde_json::Value = serde_json::from_str(params_json)
            .map_err(|e| OperatorError::new(&step.name, format!("params: {e}")))?;
        let ctx = Context::new(params, &job.name, &step.name).at(subtask, parallelism);
        build(job, step, ctx, subtask, parallelism, state)
    }

    fn aggregate(
        &self,
        job: &Job,
        step: &Step,
        plugin: &Path,
        params_json: &str,
        subtask: u32,
    ) -> Result<Box<dyn AggregateFunction>, OperatorError> {
        self.inner
            .aggregate(job, step, plugin, params_json, subtask)
    }

    fn source(
        &self,
        job: &Job,
        name: &str,
        spec: &eddy_core::job::SourceSpec,
        subtask: u32,
    ) -> Result<Box<dyn Source>, SourceError> {
        self.inner.source(job, name, spec, subtask)
    }

    fn sink(
        &self,
        job: &Job,
        name: &str,
        spec: &eddy_core::job::SinkSpec,
    ) -> Result<Connected, SinkError> {
        self.inner.sink(job, name, spec)
    }

    fn window_function(
        &self,
        job: &Job,
        step: &Step,
        plugin: &Path,
        params_json: &str,
        subtask: u32,
    ) -> Result<Box<dyn WindowFunction>, OperatorError> {
        self.inner
            .window_function(job, step, plugin, params_json, subtask)
    }
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
        let result = with_host(&mut self.keyed, || call(op));
        if let Some(failure) = self.keyed.take_failure() {
            return Err(OperatorError::new(&self.step, failure));
        }
        result.map_err(|e| sdk_error(&self.step, e))
    }

    fn process_keyed(&mut self, input: Batch) -> Result<Batch, OperatorError> {
        let mut out = Batch::default();
        for (key, events) in group_by_key(&input) {
            let latest = latest_timestamp(&events);
            self.keyed.key.clone_from(&key);
            self.keyed.now = SystemClock.now_ms();
            let produced = self.call(|op| eddy_sdk::run_process(op, &key, &events))?;
            append_keyed(&mut out, &produced, &key, latest)
                .map_err(|e| OperatorError::new(&self.step, e.to_string()))?;
        }
        Ok(out)
    }

    fn fire_timers(&mut self, domain: TimeDomain, time: i64) -> Result<Batch, OperatorError> {
        let mut out = Batch::default();
        while let Some((ts, key)) = self.keyed.pop_due(wit_domain(domain), time) {
            self.keyed.key.clone_from(&key);
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
        self.keyed.watermark = watermark;
        self.atomically(|p| p.fire_timers(TimeDomain::EventTime, watermark))
    }

    fn on_processing_time(&mut self, now: i64) -> Result<Batch, OperatorError> {
        self.keyed.now = now;
        self.atomically(|p| p.fire_timers(TimeDomain::ProcessingTime, now))
    }

    fn take_side_outputs(&mut self) -> Vec<(String, Batch)> {
        std::mem::take(&mut self.keyed.side)
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
