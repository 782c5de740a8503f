//! A sink connector plugin with two-phase commit into a directory the job grants it:
//! events go to a hidden in-progress file; at a barrier it becomes a hidden pending file
//! (prepared); when the checkpoint completes it is renamed `part-<checkpoint>-<subtask>.jsonl`
//! (committed). Readers look at `part-*` files only, so they never see uncommitted
//! output, and a commit repeated after a failure finds its part already in place.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use eddy_sdk::serde::Deserialize;
use eddy_sdk::{Context, Error, Event, SinkConnector};

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Params {
    /// The directory, as granted in the job's sandbox.
    dir: PathBuf,
}

/// The sink of one subtask.
pub struct DirSink {
    dir: PathBuf,
    subtask: u32,
    out: Option<BufWriter<File>>,
    written: u64,
}

impl DirSink {
    fn in_progress(&self) -> PathBuf {
        self.dir.join(format!(".inprogress-{}", self.subtask))
    }

    fn part(&self, checkpoint: u64) -> PathBuf {
        let label = if checkpoint == u64::MAX {
            "final".to_owned()
        } else {
            format!("{checkpoint:010}")
        };
        self.dir
            .join(format!("part-{label}-{}.jsonl", self.subtask))
    }
}

impl SinkConnector for DirSink {
    fn open(ctx: &Context) -> Result<Self, Error> {
        let params: Params = ctx.params()?;
        let sink = DirSink {
            dir: params.dir,
            subtask: ctx.subtask(),
            out: None,
            written: 0,
        };
        // What a previous attempt wrote but never prepared is dropped.
        let _ = std::fs::remove_file(sink.in_progress());
        Ok(sink)
    }

    fn write(&mut self, events: &[Event<'_>]) -> Result<(), Error> {
        if self.out.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.in_progress())?;
            self.out = Some(BufWriter::new(file));
        }
        if let Some(out) = &mut self.out {
            for event in events {
                out.write_all(event.value())?;
                out.write_all(b"\n")?;
                self.written += 1;
            }
        }
        Ok(())
    }

    fn prepare_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>, Error> {
        let Some(mut out) = self.out.take() else {
            return Ok(Vec::new());
        };
        out.flush()?;
        out.get_ref().sync_all()?;
        let pending = self
            .dir
            .join(format!(".pending-{checkpoint}-{}", self.subtask));
        std::fs::rename(self.in_progress(), &pending)?;
        self.written = 0;
        Ok(format!("{checkpoint}").into_bytes())
    }

    fn commit(&mut self, _checkpoint: u64, committable: &[u8]) -> Result<(), Error> {
        if committable.is_empty() {
            return Ok(());
        }
        let prepared: u64 = std::str::from_utf8(committable)
            .ok()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| Error::msg("not a committable of this sink"))?;
        let pending = self
            .dir
            .join(format!(".pending-{prepared}-{}", self.subtask));
        let part = self.part(prepared);
        match std::fs::rename(&pending, &part) {
            Ok(()) => Ok(()),
            Err(_) if part.exists() => Ok(()),
            Err(e) => Err(Error::msg(format_args!(
                "cannot commit {}: {e}",
                pending.display()
            ))),
        }
    }

    fn abort(&mut self, _checkpoint: u64, committable: &[u8]) -> Result<(), Error> {
        if let Ok(prepared) = std::str::from_utf8(committable) {
            let pending = self
                .dir
                .join(format!(".pending-{prepared}-{}", self.subtask));
            let _ = std::fs::remove_file(pending);
        }
        Ok(())
    }
}

eddy_sdk::export_sink!(DirSink);
