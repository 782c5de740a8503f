//! Channels between tasks, bounded in bytes and charged to the network pool: a full
//! channel blocks its senders, which is how a slow sink slows the sources down.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::memory::Pools;
use crate::state::{Decoder, Encoder, StateError};

/// What travels between tasks: data and in-band control messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A batch of events.
    Data(Batch),
    /// The sender's event time reached this: it sends no older events.
    Watermark(i64),
    /// The sender has gone idle (`true`) and must not hold watermarks back, or is
    /// active again (`false`).
    Idle(bool),
    /// The sender has no more input: after one from every sender, the input ended.
    EndOfInput,
    /// Everything the sender sent before belongs to checkpoint `id`, nothing after.
    Barrier(u64),
}

impl Message {
    /// Writes the message for a checkpoint's in-flight data.
    pub fn encode(&self, e: &mut Encoder) {
        match self {
            Message::Data(batch) => {
                e.u8(0).batch(batch).count(batch.headers.len());
                for h in &batch.headers {
                    e.u32(h.event).bytes(h.name.as_bytes()).bytes(&h.value);
                }
            }
            Message::Watermark(w) => {
                e.u8(1).i64(*w);
            }
            Message::Idle(idle) => {
                e.u8(2).u8(u8::from(*idle));
            }
            Message::EndOfInput => {
                e.u8(3);
            }
            Message::Barrier(id) => {
                e.u8(4).u64(*id);
            }
        }
    }

    /// Reads what [`Message::encode`] wrote.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Message, StateError> {
        Ok(match d.u8()? {
            0 => {
                let mut batch = d.batch()?;
                for _ in 0..d.count()? {
                    batch.headers.push(crate::batch::Header {
                        event: d.u32()?,
                        name: d.str()?.to_owned(),
                        value: d.bytes()?.to_vec(),
                    });
                }
                Message::Data(batch)
            }
            1 => Message::Watermark(d.i64()?),
            2 => Message::Idle(d.u8()? != 0),
            3 => Message::EndOfInput,
            4 => Message::Barrier(d.u64()?),
            tag => return Err(StateError(format!("message tag {tag}"))),
        })
    }

    /// Bytes the message holds in the network pool.
    pub fn byte_size(&self) -> usize {
        match self {
            Message::Data(b) => b.byte_size(),
            Message::Watermark(_)
            | Message::Idle(_)
            | Message::EndOfInput
            | Message::Barrier(_) => 0,
        }
    }
}

/// The channel was closed because the job is being torn down.
#[derive(Debug, thiserror::Error)]
#[error("channel closed")]
pub struct Closed;

/// Told, with the sender and the bytes, each time a message admitted on credit is
/// taken out: the network data plane grants that sender as much credit again.
pub type CreditReturn = Arc<dyn Fn(u32, usize) + Send + Sync>;

/// What a queued message holds: bytes of the network pool, or of a remote sender's
/// credit window (reserved by the data plane, handed back through [`CreditReturn`]).
#[derive(Clone, Copy, Debug)]
enum Charge {
    Pool(usize),
    Credit(usize),
}

#[derive(Default)]
struct State {
    queue: VecDeque<(u32, Message, Charge)>,
    /// Bytes queued of either charge: local senders wait while this is at capacity.
    bytes: usize,
    closed: bool,
    credit_return: Option<CreditReturn>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("queued", &self.queue.len())
            .field("bytes", &self.bytes)
            .field("closed", &self.closed)
            .finish()
    }
}

/// The inbound channel of one subtask, fed by every subtask of the stage before.
#[derive(Debug)]
pub struct Channel {
    state: Mutex<State>,
    readable: Condvar,
    writable: Condvar,
    capacity: usize,
    pools: Arc<Pools>,
}

impl Channel {
    /// A channel holding at most `capacity` bytes, charged to `pools.network`.
    pub fn new(capacity: usize, pools: Arc<Pools>) -> Self {
        Channel {
            state: Mutex::default(),
            readable: Condvar::new(),
            writable: Condvar::new(),
            capacity,
            pools,
        }
    }

    /// Most bytes one message may hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Only this module touches the state, and never panics while holding it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `message` from sender `from`, waiting while the channel is full; returns
    /// how long it waited (backpressure). Messages larger than the capacity must be
    /// split by the caller.
    pub fn send(&self, from: u32, message: Message) -> Result<Duration, Closed> {
        let bytes = message.byte_size();
        debug_assert!(bytes <= self.capacity, "oversized message");
        let mut state = self.lock();
        let mut waited = Duration::ZERO;
        while !state.closed && state.bytes + bytes > self.capacity {
            let start = Instant::now();
            state = self.writable.wait(state).unwrap_or_else(|p| p.into_inner());
            waited += start.elapsed();
        }
        if state.closed {
            return Err(Closed);
        }
        // Channel capacities add up to at most the pool, so this cannot fail.
        if self.pools.network.try_reserve(bytes).is_err() {
            return Err(Closed);
        }
        state.bytes += bytes;
        state.queue.push_back((from, message, Charge::Pool(bytes)));
        self.readable.notify_one();
        Ok(waited)
    }

    /// Queues `message` of remote sender `from` without waiting: the sender had credit
    /// for it, so its bytes are already reserved. They are handed back through the
    /// [`CreditReturn`] once the message is taken out.
    pub fn admit(&self, from: u32, message: Message) -> Result<(), Closed> {
        let bytes = message.byte_size();
        let mut state = self.lock();
        if state.closed {
            return Err(Closed);
        }
        state.bytes += bytes;
        state
            .queue
            .push_back((from, message, Charge::Credit(bytes)));
        self.readable.notify_one();
        Ok(())
    }

    /// Where the bytes of messages admitted on credit go back once taken out.
    pub fn on_credit_return(&self, credit_return: CreditReturn) {
        self.lock().credit_return = Some(credit_return);
    }

    /// Bytes queued now, of local and remote senders alike.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Puts an unaligned barrier of sender `from` at the head of the queue, ahead of
    /// everything waiting, and returns copies of what `from` sent before it that is
    /// still queued: the in-flight data the barrier overtook, which belongs to the
    /// checkpoint.
    pub fn overtake(&self, from: u32, id: u64) -> Result<Vec<Message>, Closed> {
        let mut state = self.lock();
        if state.closed {
            return Err(Closed);
        }
        let overtaken = state
            .queue
            .iter()
            .filter(|(sender, _, _)| *sender == from)
            .map(|(_, m, _)| m.clone())
            .collect();
        state
            .queue
            .push_front((from, Message::Barrier(id), Charge::Pool(0)));
        self.readable.notify_one();
        Ok(overtaken)
    }

    /// The next message and its sender, waiting while the channel is empty.
    pub fn recv(&self) -> Result<(u32, Message), Closed> {
        loop {
            if let Some(received) = self.recv_timeout(Duration::from_secs(3600))? {
                return Ok(received);
            }
        }
    }

    /// The next message and its sender, or `None` after waiting `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<(u32, Message)>, Closed> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some((from, message, charge)) = state.queue.pop_front() {
                let credit = match charge {
                    Charge::Pool(bytes) => {
                        state.bytes -= bytes;
                        self.pools.network.release(bytes);
                        None
                    }
                    Charge::Credit(bytes) => {
                        state.bytes -= bytes;
                        state.credit_return.clone().map(|give| (give, bytes))
                    }
                };
                self.writable.notify_all();
                drop(state);
                if let Some((give, bytes)) = credit {
                    give(from, bytes);
                }
                return Ok(Some((from, message)));
            }
            if state.closed {
                return Err(Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            state = self
                .readable
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Wakes every waiter with [`Closed`] and drops what is queued.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let pooled: usize = state
            .queue
            .iter()
            .map(|(_, _, charge)| match charge {
                Charge::Pool(bytes) => *bytes,
                Charge::Credit(_) => 0,
            })
            .sum();
        self.pools.network.release(pooled);
        state.bytes = 0;
        state.queue.clear();
        self.readable.notify_all();
        self.writable.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::memory::{ByteSize, MemoryBudget};

    fn pools(network: usize) -> Arc<Pools> {
        Arc::new(Pools::new(&MemoryBudget {
            process: ByteSize(1 << 30),
            network: ByteSize(network),
            managed: ByteSize(1 << 20),
            wasm: ByteSize(1 << 20),
        }))
    }

    fn batch(bytes: usize) -> Batch {
        let mut b = Batch::default();
        b.push_value(&vec![b'x'; bytes - 4]).unwrap();
        b
    }

    #[test]
    fn a_full_channel_blocks_until_drained() {
        let pools = pools(1 << 20);
        let ch = Arc::new(Channel::new(100, pools.clone()));
        ch.send(0, Message::Data(batch(60))).unwrap();
        let sender = {
            let ch = ch.clone();
            std::thread::spawn(move || ch.send(1, Message::Data(batch(60))).unwrap())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pools.network.used(), 60, "the second send must wait");
        let (from, _) = ch.recv().unwrap();
        assert_eq!(from, 0);
        let waited = sender.join().unwrap();
        assert!(waited > Duration::ZERO);
        let (from, _) = ch.recv().unwrap();
        assert_eq!(from, 1);
        assert_eq!(pools.network.used(), 0);
        assert!(pools.network.peak() <= 100);
    }

    #[test]
    fn close_wakes_everyone() {
        let ch = Arc::new(Channel::new(100, pools(1 << 20)));
        let receiver = {
            let ch = ch.clone();
            std::thread::spawn(move || ch.recv().is_err())
        };
        std::thread::sleep(Duration::from_millis(20));
        ch.close();
        assert!(receiver.join().unwrap());
        assert!(ch.send(0, Message::EndOfInput).is_err());
    }

    #[test]
    fn credited_messages_never_wait_and_their_bytes_go_back_to_their_sender() {
        let channel = Channel::new(100, pools(1 << 20));
        let returned = Arc::new(Mutex::new(Vec::new()));
        let log = returned.clone();
        channel.on_credit_return(Arc::new(move |from, bytes| {
            log.lock().unwrap().push((from, bytes));
        }));
        let mut big = Batch::default();
        big.push_value(&[b'x'; 80]).unwrap();
        let size = big.byte_size();
        // Admitted past the capacity: the remote sender's credit had room for them.
        channel.admit(4, Message::Data(big.clone())).unwrap();
        channel.admit(4, Message::Data(big.clone())).unwrap();
        assert_eq!(channel.queued_bytes(), 2 * size);
        channel.recv().unwrap();
        assert_eq!(*returned.lock().unwrap(), [(4, size)]);
        channel.recv().unwrap();
        assert_eq!(channel.queued_bytes(), 0);
        assert_eq!(returned.lock().unwrap().len(), 2);
    }
}
