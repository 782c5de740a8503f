//! Barrier alignment at a task with several senders: once a sender's barrier has
//! arrived, what it sends next belongs to the next checkpoint, so it is held back until
//! the barrier has arrived from every sender still running. Then the task snapshots,
//! and the held messages are replayed in the order they came.
//!
//! Unaligned checkpoints hold nothing back: the task snapshots at the first barrier
//! (which overtook the data queued before it), and records what it then takes in from
//! the senders whose barrier has not come yet; those in-flight messages complete the
//! checkpoint once every barrier has arrived.

use std::collections::VecDeque;

use crate::exec::channel::Message;

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
    /// An unaligned checkpoint in progress.
    recording: Option<Recording>,
    /// An unaligned checkpoint whose barriers have all arrived: its id and, per
    /// sender, the messages taken in after the snapshot.
    completed: Option<(u64, InFlight)>,
}

/// Messages taken in per sender after an unaligned snapshot.
pub type InFlight = Vec<(u32, Vec<Message>)>;

#[derive(Debug)]
struct Recording {
    id: u64,
    seen: Vec<bool>,
    taken: Vec<Vec<Message>>,
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
            recording: None,
            completed: None,
        }
    }

    /// Takes an unaligned barrier `id` from sender `from`; returns `true` if it is the
    /// first of its checkpoint, so the task must snapshot now.
    pub fn offer_unaligned(&mut self, from: u32, id: u64) -> bool {
        if id <= self.last {
            return false;
        }
        let first = self.recording.as_ref().is_none_or(|r| id > r.id);
        if first {
            // A newer checkpoint supersedes anything still in progress.
            self.release();
            self.current = 0;
            let n = self.blocked.len();
            self.recording = Some(Recording {
                id,
                seen: vec![false; n],
                taken: vec![Vec::new(); n],
            });
        }
        if let Some(r) = &mut self.recording
            && r.id == id
        {
            r.seen[from as usize] = true;
        }
        self.check_recording();
        first
    }

    /// The unaligned checkpoint whose barriers have all arrived, with what was taken
    /// in from each sender after the snapshot.
    pub fn take_completed(&mut self) -> Option<(u64, InFlight)> {
        self.completed.take()
    }

    fn check_recording(&mut self) {
        let done = self
            .recording
            .as_ref()
            .is_some_and(|r| (0..r.seen.len()).all(|i| r.seen[i] || self.ended[i]));
        if !done {
            return;
        }
        if let Some(r) = self.recording.take() {
            self.last = r.id;
            let taken = r
                .taken
                .into_iter()
                .enumerate()
                .filter(|(_, t)| !t.is_empty())
                .map(|(i, t)| (i as u32, t))
                .collect();
            self.completed = Some((r.id, taken));
        }
    }

    /// Messages to handle before anything read from the channel (a restored
    /// checkpoint's in-flight data).
    pub fn replay_first(&mut self, messages: Vec<(u32, Message)>) {
        let rest = std::mem::take(&mut self.replay);
        self.replay.extend(messages);
        self.replay.extend(rest);
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
                if self.recording.as_ref().is_some_and(|r| id > r.id) {
                    self.recording = None;
                }
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
                self.check_recording();
                Some(Message::EndOfInput)
            }
            other => {
                if let Some(r) = &mut self.recording
                    && !r.seen[i]
                {
                    r.taken[i].push(other.clone());
                }
                Some(other)
            }
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
    fn unaligned_barriers_snapshot_at_once_and_record_what_the_others_send() {
        let mut a = Aligner::new(2);
        assert!(a.offer(1, data(1)).is_some());
        assert!(a.offer_unaligned(0, 1), "the first barrier snapshots");
        assert_eq!(a.take_completed(), None);
        // Nothing is held back: sender 0's later data flows, sender 1's is recorded.
        assert!(a.offer(0, data(2)).is_some());
        assert!(a.offer(1, data(3)).is_some());
        assert!(!a.offer_unaligned(1, 1));
        assert!(a.offer(1, data(4)).is_some());
        let (id, taken) = a.take_completed().expect("complete");
        assert_eq!(id, 1);
        assert_eq!(taken, vec![(1, vec![data(3)])]);
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
