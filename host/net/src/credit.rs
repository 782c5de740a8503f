//! The sender's side of credit-based flow control: bytes a receiver has room for, which
//! a task thread takes before it sends and waits for when there are not enough.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use eddy_core::exec::channel::{Closed, Message};

#[derive(Default)]
struct State {
    available: usize,
    /// Whether the receiver granted the channel's window yet: until then it has no
    /// inlet for it, and nothing may be sent, not even a control message.
    opened: bool,
    closed: bool,
    /// The reply to an overtake request, once it came.
    overtaken: Option<Vec<Message>>,
}

/// The credit of one channel, shared by the task thread that sends and the connection
/// that receives grants.
#[derive(Default)]
pub(crate) struct Credit {
    state: Mutex<State>,
    changed: Condvar,
}

impl Credit {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `bytes` of credit, waiting while there is not enough or the channel is not
    /// open yet; `backlog` is called once, before the first wait, to announce what
    /// waits. Returns the time waited.
    pub(crate) fn take(&self, bytes: usize, backlog: impl FnOnce()) -> Result<Duration, Closed> {
        let mut state = self.lock();
        let mut waited = Duration::ZERO;
        let mut backlog = Some(backlog);
        while !state.closed && (!state.opened || state.available < bytes) {
            if let Some(announce) = backlog.take() {
                announce();
            }
            let start = Instant::now();
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            waited += start.elapsed();
        }
        if state.closed {
            return Err(Closed);
        }
        state.available -= bytes;
        Ok(waited)
    }

    /// The receiver granted `bytes` more.
    pub(crate) fn grant(&self, bytes: usize) {
        let mut state = self.lock();
        state.available += bytes;
        state.opened = true;
        drop(state);
        self.changed.notify_all();
    }

    /// The connection is gone: every wait ends with [`Closed`].
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The receiver's answer to an overtake request arrived.
    pub(crate) fn overtaken(&self, messages: Vec<Message>) {
        self.lock().overtaken = Some(messages);
        self.changed.notify_all();
    }

    /// Waits for the answer to an overtake request.
    pub(crate) fn wait_overtaken(&self) -> Result<Vec<Message>, Closed> {
        let mut state = self.lock();
        loop {
            if let Some(messages) = state.overtaken.take() {
                return Ok(messages);
            }
            if state.closed {
                return Err(Closed);
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}
