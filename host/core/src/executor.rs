//! Runs a job: sources, then each step in order, then every sink.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::job::Job;
use crate::operator::{Operator, OperatorError, OperatorFactory};
use crate::sink::{Sink, SinkError, open_sink};
use crate::source::{Source, SourceError, open_source};

/// Why a run stopped before its input ended.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// An operator failed.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Counts of one stage of the pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageMetrics {
    /// Name of the source, step or sink.
    pub name: String,
    /// Events received.
    pub records_in: u64,
    /// Events emitted.
    pub records_out: u64,
    /// Bytes emitted.
    pub bytes_out: u64,
    /// Time spent inside the stage.
    pub busy: Duration,
}

/// What a finished run did, stage by stage.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Per source.
    pub sources: Vec<StageMetrics>,
    /// Per step.
    pub steps: Vec<StageMetrics>,
    /// Per sink.
    pub sinks: Vec<StageMetrics>,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

struct Stage<T: ?Sized> {
    metrics: StageMetrics,
    inner: Box<T>,
}

impl<T: ?Sized> Stage<T> {
    fn new(name: &str, inner: Box<T>) -> Self {
        Stage {
            metrics: StageMetrics {
                name: name.to_owned(),
                ..StageMetrics::default()
            },
            inner,
        }
    }

    fn record(&mut self, started: Instant, records_in: usize, out: Option<&Batch>) {
        self.metrics.busy += started.elapsed();
        self.metrics.records_in += records_in as u64;
        if let Some(out) = out {
            self.metrics.records_out += out.len() as u64;
            self.metrics.bytes_out += out.byte_size() as u64;
        }
    }
}

/// A job with every source, operator instance and sink open, ready to run.
pub struct Pipeline {
    batch_size: usize,
    sources: Vec<Stage<dyn Source>>,
    steps: Vec<Stage<dyn Operator>>,
    sinks: Vec<Stage<dyn Sink>>,
}

impl Pipeline {
    /// Opens everything `job` needs, creating plugin operators through `factory`.
    pub fn build(job: &Job, factory: &dyn OperatorFactory) -> Result<Pipeline, RunError> {
        let sources = job
            .sources
            .iter()
            .map(|(name, spec)| Ok(Stage::new(name, open_source(name, spec)?)))
            .collect::<Result<_, SourceError>>()?;
        let steps = job
            .steps
            .iter()
            .map(|step| Ok(Stage::new(&step.name, factory.create(job, step, 0, 1)?)))
            .collect::<Result<_, OperatorError>>()?;
        let sinks = job
            .sinks
            .iter()
            .map(|(name, spec)| Ok(Stage::new(name, open_sink(name, spec)?)))
            .collect::<Result<_, SinkError>>()?;
        Ok(Pipeline {
            batch_size: job.batch_size,
            sources,
            steps,
            sinks,
        })
    }

    /// Runs until every source has ended or `stop` is set; sinks finish only when the
    /// input ended, so a stopped or failed run publishes no partial file.
    pub fn run(mut self, stop: &AtomicBool) -> Result<RunSummary, RunError> {
        let started = Instant::now();
        let mut live: Vec<usize> = (0..self.sources.len()).collect();
        while !live.is_empty() && !stop.load(Ordering::Relaxed) {
            let mut i = 0;
            while i < live.len() {
                let source = &mut self.sources[live[i]];
                let t = Instant::now();
                let polled = source.inner.poll(self.batch_size)?;
                source.record(t, 0, polled.as_ref());
                match polled {
                    None => {
                        live.remove(i);
                        continue;
                    }
                    Some(batch) => self.push(batch)?,
                }
                i += 1;
            }
        }
        if !stop.load(Ordering::Relaxed) {
            for sink in &mut self.sinks {
                let t = Instant::now();
                sink.inner.finish()?;
                sink.record(t, 0, None);
            }
        }
        Ok(RunSummary {
            sources: self.sources.into_iter().map(|s| s.metrics).collect(),
            steps: self.steps.into_iter().map(|s| s.metrics).collect(),
            sinks: self.sinks.into_iter().map(|s| s.metrics).collect(),
            elapsed: started.elapsed(),
        })
    }

    fn push(&mut self, mut batch: Batch) -> Result<(), RunError> {
        for step in &mut self.steps {
            if batch.is_empty() {
                return Ok(());
            }
            let t = Instant::now();
            let n = batch.len();
            batch = step.inner.process(batch)?;
            step.record(t, n, Some(&batch));
        }
        if batch.is_empty() {
            return Ok(());
        }
        for sink in &mut self.sinks {
            let t = Instant::now();
            sink.inner.write(&batch)?;
            sink.record(t, batch.len(), None);
        }
        Ok(())
    }
}
