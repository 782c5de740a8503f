//! Plugin connectors as the engine's sources and sinks: a source instance reads the
//! splits assigned to its subtask and reports their positions for checkpoints; a sink
//! instance writes and prepares transactions, and a second instance of the same
//! component commits them for the checkpoint coordinator. Both run on the shared
//! [`Instance`], which sandboxes, times and checks every call.

use std::collections::HashMap;
use std::time::Duration;

use eddy_core::connectors::{Connector, Opening};
use eddy_core::job::{SinkSpec, SourceSpec};
use eddy_core::registry::Registry;
use eddy_core::sink::{Committer, Connected, Sink, SinkError, commit_restored};
use eddy_core::source::{Source, SourceError};
use eddy_core::state::{Decoder, Encoder, StateError};
use eddy_core::{Batch, ErrorClass};

use crate::Runtime;
use crate::bindings::{WitBatch, sink::SinkPlugin, source};
use crate::error::WasmError;
use crate::instance::{Instance, with_event};
use crate::runtime::instance_info;

impl Runtime {
    /// `registry`, building plugin steps on this runtime, which is also its `plugin`
    /// connector.
    pub fn register<'a>(&'a self, registry: Registry<'a>) -> Registry<'a> {
        registry.plugins(self).connector("plugin", self)
    }
}

/// The runtime is the `plugin` connector: a source or sink is a component of the
/// `source-plugin` or `sink-plugin` world.
impl Connector for Runtime {
    fn source(&self, at: &Opening<'_>, spec: &SourceSpec) -> Result<Box<dyn Source>, SourceError> {
        let SourceSpec::Plugin {
            plugin,
            params,
            parallelism,
            grants,
            ..
        } = spec
        else {
            return Err(SourceError::fatal(at.name, "not a plugin source"));
        };
        let parallelism = parallelism.unwrap_or(1);
        let params = serde_json::Value::Object(params.clone()).to_string();
        let info = instance_info(at.job, at.name, (at.subtask, parallelism), params, grants);
        let instance = self
            .instance::<source::SourcePlugin>(plugin, info)
            .map_err(|e| error(at.name, &e))?;
        Ok(Box::new(WasmSource::new(
            at.name,
            instance,
            at.subtask,
            parallelism,
        )?))
    }

    fn sink(&self, at: &Opening<'_>, spec: &SinkSpec) -> Result<Connected, SinkError> {
        let name = at.name;
        let SinkSpec::Plugin {
            plugin,
            params,
            grants,
            ..
        } = spec
        else {
            let message = "not a plugin sink".to_owned();
            return Err(sink_failure(name, message, ErrorClass::INTERNAL));
        };
        let open = || {
            let params = serde_json::Value::Object(params.clone()).to_string();
            let info = instance_info(at.job, name, (0, 1), params, grants);
            self.instance::<SinkPlugin>(plugin, info)
                .map_err(|e| sink_failure(name, e.to_string(), e.class()))
        };
        let writer: Box<dyn Sink> = Box::new(WasmSink::new(name, open()?));
        let committer: Box<dyn Committer> = Box::new(WasmCommitter::new(name, open()?));
        commit_restored((writer, committer), at.restored)
    }
}

/// A split of a plugin source, as the plugin listed it.
pub type SplitInfo = source::exports::eddy::plugin::source_connector::Split;
/// What one poll of a plugin source's split produced.
pub type Polled = source::exports::eddy::plugin::source_connector::PollResult;

/// How long a source whose splits are all idle waits before polling again.
const IDLE_PAUSE: Duration = Duration::from_millis(5);

struct SplitState {
    info: SplitInfo,
    opened: bool,
    ended: bool,
}

/// One subtask of a plugin source: splits `i, i + p, …` of the plugin's list.
pub struct WasmSource {
    name: String,
    instance: Instance<source::SourcePlugin>,
    splits: Vec<SplitState>,
    next: usize,
    /// The split the last batch came from.
    last: usize,
    idle: bool,
    /// Positions to open splits at, from a checkpoint.
    restored: HashMap<String, Vec<u8>>,
}

impl WasmSource {
    /// Subtask `subtask` of `parallelism` of the source `name` run by the opened
    /// `instance`.
    pub fn new(
        name: &str,
        mut instance: Instance<source::SourcePlugin>,
        subtask: u32,
        parallelism: u32,
    ) -> Result<WasmSource, SourceError> {
        let splits = instance
            .call("list-splits", |b, store| {
                b.eddy_plugin_source_connector().call_list_splits(store)
            })
            .map_err(|e| error(name, &e))?
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 % parallelism.max(1) == subtask)
            .map(|(_, info)| SplitState {
                info,
                opened: false,
                ended: false,
            })
            .collect();
        Ok(WasmSource {
            name: name.to_owned(),
            instance,
            splits,
            next: 0,
            last: 0,
            idle: false,
            restored: HashMap::new(),
        })
    }

    fn err(&self, e: &WasmError) -> SourceError {
        error(&self.name, e)
    }

    /// Opens `split`, after `position` if restoring.
    fn open_split(&mut self, split: &SplitInfo, position: Option<&[u8]>) -> Result<(), WasmError> {
        self.instance.call("open-split", |b, store| {
            b.eddy_plugin_source_connector()
                .call_open_split(store, split, position)
        })
    }

    /// Polls up to `max` events of split `id`, checked.
    fn poll_split(&mut self, id: &str, max: u32) -> Result<Polled, WasmError> {
        let polled = self.instance.call("poll", |b, store| {
            b.eddy_plugin_source_connector().call_poll(store, id, max)
        })?;
        if let Polled::Events(batch) = polled {
            let batch = Batch::from(batch);
            self.instance.check_output(&batch, "poll")?;
            return Ok(Polled::Events(WitBatch::from(batch)));
        }
        Ok(polled)
    }

    /// The position of split `id` after its last polled event.
    fn split_position(&mut self, id: &str) -> Result<Vec<u8>, WasmError> {
        self.instance.call("position", |b, store| {
            b.eddy_plugin_source_connector().call_position(store, id)
        })
    }
}

/// A plugin source's failure, of the class of the plugin's error.
pub(crate) fn error(name: &str, e: &WasmError) -> SourceError {
    SourceError::Failed {
        source_name: name.to_owned(),
        message: e.to_string(),
        class: e.class(),
    }
}

impl Source for WasmSource {
    fn poll(&mut self, max: usize) -> Result<Option<Batch>, SourceError> {
        for i in 0..self.splits.len() {
            if !self.splits[i].opened {
                let position = self.restored.get(&self.splits[i].info.id).cloned();
                let info = self.splits[i].info.clone();
                self.open_split(&info, position.as_deref())
                    .map_err(|e| self.err(&e))?;
                self.splits[i].opened = true;
            }
        }
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        for _ in 0..self.splits.len() {
            let i = self.next % self.splits.len();
            self.next = i + 1;
            if self.splits[i].ended {
                continue;
            }
            let id = self.splits[i].info.id.clone();
            match self.poll_split(&id, max).map_err(|e| self.err(&e))? {
                Polled::Events(batch) => {
                    self.idle = false;
                    self.last = i;
                    return Ok(Some(Batch::from(batch)));
                }
                Polled::Idle => {}
                Polled::End => self.splits[i].ended = true,
            }
        }
        if self.splits.iter().all(|s| s.ended) {
            return Ok(None);
        }
        self.idle = true;
        std::thread::sleep(IDLE_PAUSE);
        Ok(Some(Batch::default()))
    }

    fn idle(&self) -> bool {
        self.idle
    }

    fn splits(&self) -> usize {
        self.splits.len()
    }

    fn last_split(&self) -> usize {
        self.last
    }

    fn split_ended(&self, split: usize) -> bool {
        self.splits.get(split).is_some_and(|s| s.ended)
    }

    fn position(&mut self) -> Result<Vec<u8>, SourceError> {
        let mut e = Encoder::new();
        e.count(self.splits.len());
        for i in 0..self.splits.len() {
            let id = self.splits[i].info.id.clone();
            let position = if self.splits[i].opened {
                Some(self.split_position(&id).map_err(|e| self.err(&e))?)
            } else {
                self.restored.get(&id).cloned()
            };
            e.bytes(id.as_bytes()).opt_bytes(position.as_deref());
        }
        Ok(e.finish())
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let decode = || -> Result<HashMap<String, Vec<u8>>, StateError> {
            let mut d = Decoder::new(position);
            let mut restored = HashMap::new();
            for _ in 0..d.count()? {
                let id = d.str()?.to_owned();
                if let Some(p) = d.opt_bytes()? {
                    restored.insert(id, p.to_vec());
                }
            }
            d.end()?;
            Ok(restored)
        };
        self.restored = decode()
            .map_err(|e| SourceError::fatal(&self.name, format!("checkpointed position: {e}")))?;
        Ok(())
    }
}

/// What a plugin sink prepared: the checkpoint id, then the plugin's committable.
fn prepared(id: u64, committable: &[u8]) -> Vec<u8> {
    let mut out = id.to_le_bytes().to_vec();
    out.extend_from_slice(committable);
    out
}

fn split_prepared(prepared: &[u8]) -> Option<(u64, &[u8])> {
    let (id, committable) = prepared.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*id), committable))
}

/// A plugin sink instance.
type SinkInstance = Instance<SinkPlugin>;

fn sink_error(name: &str, e: &WasmError) -> SinkError {
    sink_failure(name, e.to_string(), e.class())
}

/// A plugin sink's failure (its message names the plugin): one a restart cannot get
/// past is reported as invalid data, which is how [`SinkError::class`] tells it;
/// anything else as a transient failure.
pub(crate) fn sink_failure(name: &str, message: String, class: ErrorClass) -> SinkError {
    let kind = if class.retryable() {
        std::io::ErrorKind::Other
    } else {
        std::io::ErrorKind::InvalidData
    };
    SinkError::of(name, std::io::Error::new(kind, message))
}

/// A plugin sink's writer.
pub struct WasmSink {
    name: String,
    instance: SinkInstance,
}

impl WasmSink {
    /// The sink `name` run by the opened `instance`.
    pub fn new(name: &str, instance: SinkInstance) -> Self {
        WasmSink {
            name: name.to_owned(),
            instance,
        }
    }
}

impl Sink for WasmSink {
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let wit = WitBatch::from(batch.clone());
        let written = self.instance.call("write", |b, store| {
            b.eddy_plugin_sink_connector().call_write(store, &wit)
        });
        written
            .map_err(|e| with_event(e, batch))
            .map_err(|e| sink_error(&self.name, &e))
    }

    fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, SinkError> {
        let committable = self
            .instance
            .call("prepare-commit", |b, store| {
                b.eddy_plugin_sink_connector()
                    .call_prepare_commit(store, checkpoint)
            })
            .map_err(|e| sink_error(&self.name, &e))?;
        Ok(prepared(checkpoint, &committable))
    }

    fn publish(&mut self) -> Result<(), SinkError> {
        let prepared = self.finish()?;
        WasmCommitter::settle(&self.name, &mut self.instance, &prepared, true)
    }
}

/// A plugin sink's committer: its own instance of the sink's component.
pub struct WasmCommitter {
    name: String,
    instance: SinkInstance,
}

impl WasmCommitter {
    /// Commits for sink `name` through the opened `instance`.
    pub fn new(name: &str, instance: SinkInstance) -> Self {
        WasmCommitter {
            name: name.to_owned(),
            instance,
        }
    }

    /// Commits (or with `commit` false, aborts) what a writer prepared.
    fn settle(
        name: &str,
        instance: &mut SinkInstance,
        prepared: &[u8],
        commit: bool,
    ) -> Result<(), SinkError> {
        let (id, committable) = split_prepared(prepared).ok_or_else(|| {
            let message = format!(
                "plugin {}: a prepared transaction is truncated",
                instance.plugin_path().display()
            );
            sink_failure(name, message, ErrorClass::USER_FATAL)
        })?;
        let function = if commit { "commit" } else { "abort" };
        let settled = instance.call(function, |b, store| {
            let c = b.eddy_plugin_sink_connector();
            if commit {
                c.call_commit(store, id, committable)
            } else {
                c.call_abort(store, id, committable)
            }
        });
        settled.map_err(|e| sink_error(name, &e))
    }
}

impl Committer for WasmCommitter {
    fn commit(&mut self, prepared: &[u8]) -> Result<(), SinkError> {
        WasmCommitter::settle(&self.name, &mut self.instance, prepared, true)
    }

    fn abort(&mut self, prepared: &[u8]) -> Result<(), SinkError> {
        WasmCommitter::settle(&self.name, &mut self.instance, prepared, false)
    }
}
