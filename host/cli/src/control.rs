//! The control socket of a running job, in its checkpoint directory: `eddy savepoint`
//! connects to it to take a savepoint, or to stop the job with one. One request per
//! connection, one line each way: `savepoint` or `stop`, answered `ok <dir>` or
//! `error <message>`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use eddy_core::checkpoint::coordinator::Savepoints;

/// Where a job with checkpoint directory `dir` listens.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// A listening control socket; closed and removed when dropped.
pub struct Control {
    path: PathBuf,
    closed: Arc<AtomicBool>,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves savepoint requests for the job whose checkpoints go to `dir`.
pub fn serve(dir: &Path, savepoints: Savepoints, timeout: Duration) -> Result<Control> {
    std::fs::create_dir_all(dir)?;
    let path = socket_path(dir);
    // A socket left by a killed run answers no one.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    listener.set_nonblocking(true)?;
    let closed = Arc::new(AtomicBool::new(false));
    let done = closed.clone();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            while !done.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(e) = answer(stream, &savepoints, timeout) {
                            tracing::warn!("control socket: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        tracing::warn!("control socket: {e}");
                        return;
                    }
                }
            }
        })?;
    Ok(Control { path, closed })
}

fn answer(stream: UnixStream, savepoints: &Savepoints, timeout: Duration) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let reply = match line.trim() {
        "savepoint" => savepoints.trigger(false, timeout),
        "stop" => savepoints.trigger(true, timeout),
        other => Err(format!("unknown request {other:?}")),
    };
    let mut out = &stream;
    match reply {
        Ok(dir) => writeln!(out, "ok {}", dir.display())?,
        Err(message) => writeln!(out, "error {message}")?,
    }
    Ok(())
}

/// Asks the job running with checkpoint directory `dir` for a savepoint (and to stop
/// after it, if `stop`); returns the savepoint's directory.
pub fn request(dir: &Path, stop: bool) -> Result<PathBuf> {
    let path = socket_path(dir);
    let stream = UnixStream::connect(&path).with_context(|| {
        format!(
            "no running job listens on {} (is it running, with checkpoints on?)",
            path.display()
        )
    })?;
    let mut out = &stream;
    writeln!(out, "{}", if stop { "stop" } else { "savepoint" })?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    match line.trim_end().split_once(' ') {
        Some(("ok", dir)) => Ok(PathBuf::from(dir)),
        Some(("error", message)) => bail!("savepoint failed: {message}"),
        _ => bail!("the job closed the control socket without an answer"),
    }
}
