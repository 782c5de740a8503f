//! Captures a plugin's stdout and stderr so they reach the host log, tagged and bounded,
//! and so that a trap's error can quote the plugin's last words (a panic message).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes a plugin may write between two drains; the rest is counted and dropped.
const PENDING_CAP: usize = 64 * 1024;
/// Lines kept for error messages.
const TAIL_LINES: usize = 20;

/// Longest message of a plugin's (a log line, an error) the host keeps or prints.
pub const MAX_MESSAGE: usize = 4 * 1024;

/// `text` cut to [`MAX_MESSAGE`] bytes (at a character boundary), saying how much was
/// cut: a plugin decides how long its messages are, the host how much of them it keeps.
pub(crate) fn clip(mut text: String) -> String {
    if text.len() <= MAX_MESSAGE {
        return text;
    }
    let mut end = MAX_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("… ({cut} more bytes cut)"));
    text
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<u8>,
    dropped: u64,
    tail: VecDeque<String>,
}

/// One captured stream (stdout or stderr) of one plugin instance.
#[derive(Clone, Debug, Default)]
pub struct CapturedOutput {
    state: Arc<Mutex<State>>,
}

impl CapturedOutput {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a logging thread panicked; the bytes are still fine.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, bytes: &[u8]) {
        let mut state = self.lock();
        let room = PENDING_CAP.saturating_sub(state.pending.len());
        let take = room.min(bytes.len());
        state.pending.extend_from_slice(&bytes[..take]);
        state.dropped += (bytes.len() - take) as u64;
    }

    /// Takes the complete lines written since the last drain, and the count of dropped bytes.
    pub fn drain(&self) -> (Vec<String>, u64) {
        let mut state = self.lock();
        let Some(end) = state.pending.iter().rposition(|&b| b == b'\n') else {
            if state.pending.len() < PENDING_CAP {
                return (Vec::new(), std::mem::take(&mut state.dropped));
            }
            let text = String::from_utf8_lossy(&state.pending).into_owned();
            state.pending.clear();
            return (vec![text], std::mem::take(&mut state.dropped));
        };
        let rest = state.pending.split_off(end + 1);
        let done = std::mem::replace(&mut state.pending, rest);
        let lines: Vec<String> = String::from_utf8_lossy(&done)
            .lines()
            .map(str::to_owned)
            .collect();
        for line in &lines {
            if state.tail.len() == TAIL_LINES {
                state.tail.pop_front();
            }
            state.tail.push_back(line.clone());
        }
        (lines, std::mem::take(&mut state.dropped))
    }

    /// The last lines written, including an unterminated one; for error messages.
    pub fn tail(&self) -> Vec<String> {
        let state = self.lock();
        let pending = String::from_utf8_lossy(&state.pending);
        state
            .tail
            .iter()
            .map(String::as_str)
            .chain(pending.lines())
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(PENDING_CAP)
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_complete_lines_and_keeps_a_tail() {
        let out = CapturedOutput::default();
        out.append(b"one\ntwo\nthr");
        assert_eq!(out.drain(), (vec!["one".to_string(), "two".to_string()], 0));
        assert_eq!(out.tail(), ["one", "two", "thr"]);
        out.append(b"ee\n");
        assert_eq!(out.drain().0, ["three"]);
    }

    #[test]
    fn a_flood_is_bounded_and_counted() {
        let out = CapturedOutput::default();
        out.append(&vec![b'x'; PENDING_CAP + 10]);
        let (lines, dropped) = out.drain();
        assert_eq!(lines.len(), 1);
        assert_eq!(dropped, 10);
    }
}

#[cfg(test)]
mod clip_tests {
    use super::{MAX_MESSAGE, clip};

    #[test]
    fn long_messages_are_cut_at_a_character_boundary_and_say_so() {
        assert_eq!(clip("short".into()), "short");
        let long = "é".repeat(MAX_MESSAGE);
        let clipped = clip(long);
        assert!(clipped.len() < MAX_MESSAGE + 40, "{}", clipped.len());
        assert!(
            clipped.ends_with(&format!("… ({} more bytes cut)", MAX_MESSAGE)),
            "{clipped}"
        );
    }
}
