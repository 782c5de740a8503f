//! Barrier alignment at a task with several senders: once a sender's barrier has
//! arrived, what it sends next belongs to the next checkpoint, so it is held back until
//! the barrier has arrived from every sender still running. Then the task snapshots,
//! and the held messages are replayed in the order they came.

use std::collections::VecDeque;

use crate::channel::Message;

/// The alignment state of one task's input.
#[derive(Debug)]
pub struct Aligner {
    blocked: Vec<bool>,
    ended: Vec<bool>,
    held: Vec<VecDeque<Message>>,
    replay: VecDeque<(u32, Message)>,
    /// The barrier being aligned (0: none).
    current: u64,
    /// The last barrier aligned.
    last: u64,
}

impl Aligner {
    /// Alignment over `senders` senders.
    pub fn new(senders: usize) -> Self {
        Aligner {
            blocked: vec![false; senders],
            ended: vec![false; senders],
            held: vec![VecDeque::new(); senders],
            replay: VecDeque::new(),
            current: 0,
            last: 0,
        }
    }

    /// A held message whose turn has come, to be handled before reading on.
    pub fn replayed(&mut self) -> Option<(u32, Message)> {
        self.replay.pop_front()
    }

    /// Whether every sender has ended and nothing is left to replay.
    pub fn done(&self) -> bool {
        self.ended.iter().all(|e| *e) && self.replay.is_empty()
    }

    /// Takes a message from sender `from`: returns it if the task should handle it
    /// now, or `None` if it is held back (or is a barrier).
    pub fn offer(&mut self, from: u32, message: Message) -> Option<Message> {
        let i = from as usize;
        if self.blocked[i] {
            self.held[i].push_back(message);
            return None;
        }
        match message {
            Message::Barrier(id) if id <= self.last => None,
            Message::Barrier(id) => {
                if id > self.current {
                    // A newer checkpoint supersedes one that never aligned.
                    self.release();
                    self.current = id;
                }
                self.blocked[i] = true;
                None
            }
            Message::EndOfInput => {
                self.ended[i] = true;
                Some(Message::EndOfInput)
            }
            other => Some(other),
        }
    }

    /// The barrier that has now arrived from every running sender, if one has: the
    /// task snapshots for it, and held messages are released.
    pub fn aligned(&mut self) -> Option<u64> {
        if self.current == 0 || (0..self.blocked.len()).any(|i| !self.blocked[i] && !self.ended[i])
        {
            return None;
        }
        let id = std::mem::take(&mut self.current);
        self.last = id;
        self.release();
        Some(id)
    }

    fn release(&mut self) {
        for (i, held) in self.held.iter_mut().enumerate() {
            self.blocked[i] = false;
            self.replay.extend(held.drain(..).map(|m| (i as u32, m)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: u8) -> Message {
        let mut b = crate::Batch::default();
        b.push_value(&[n]).unwrap();
        Message::Data(b)
    }

    fn tag(m: &Message) -> String {
        match m {
            Message::Data(b) => format!("d{}", b.value(0)[0]),
            Message::Barrier(id) => format!("b{id}"),
            Message::EndOfInput => "end".into(),
            other => format!("{other:?}"),
        }
    }

    /// Feeds `input` through alignment as a task would; returns what it handled.
    fn run(senders: usize, input: Vec<(u32, Message)>) -> Vec<String> {
        let mut a = Aligner::new(senders);
        let mut input: VecDeque<_> = input.into();
        let mut seen = Vec::new();
        while let Some((from, m)) = a.replayed().or_else(|| input.pop_front()) {
            if let Some(m) = a.offer(from, m) {
                seen.push(format!("{from}:{}", tag(&m)));
            }
            if let Some(id) = a.aligned() {
                seen.push(format!("snapshot{id}"));
            }
        }
        assert!(a.done());
        seen
    }

    #[test]
    fn messages_after_a_barrier_wait_for_the_other_senders() {
        let seen = run(
            2,
            vec![
                (0, data(1)),
                (0, Message::Barrier(1)),
                (0, data(2)),
                (1, data(3)),
                (1, Message::Barrier(1)),
                (1, data(4)),
                (0, Message::EndOfInput),
                (1, Message::EndOfInput),
            ],
        );
        assert_eq!(
            seen,
            [
                "0:d1",
                "1:d3",
                "snapshot1",
                "0:d2",
                "1:d4",
                "0:end",
                "1:end"
            ]
        );
    }

    #[test]
    fn an_ended_sender_does_not_hold_a_checkpoint_back() {
        let seen = run(
            2,
            vec![
                (1, Message::EndOfInput),
                (0, Message::Barrier(1)),
                (0, data(1)),
                (0, Message::Barrier(2)),
                (0, Message::EndOfInput),
            ],
        );
        assert_eq!(seen, ["1:end", "snapshot1", "0:d1", "snapshot2", "0:end"]);
    }

    #[test]
    fn a_newer_barrier_supersedes_an_unaligned_one() {
        let seen = run(
            2,
            vec![
                (0, Message::Barrier(1)),
                (0, data(1)),
                (1, Message::Barrier(2)),
                (0, Message::Barrier(2)),
                (0, Message::EndOfInput),
                (1, Message::EndOfInput),
            ],
        );
        assert_eq!(seen, ["0:d1", "snapshot2", "0:end", "1:end"]);
    }
}
