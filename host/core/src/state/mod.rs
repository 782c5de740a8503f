//! Operator state as it travels into checkpoints: entries tagged with their key group,
//! so that a job restored at another parallelism hands every subtask exactly the keys
//! it owns, in a small length-prefixed binary encoding.

pub mod backend;
pub mod keyed;
pub mod store;

use crate::batch::{Batch, EventRef};
use crate::keygroup::key_group_range;

/// One piece of an operator's snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateEntry {
    /// The key group the entry belongs to; `None` for state of the operator as a whole,
    /// which every subtask of a rescaled operator receives (so it must merge safely).
    pub key_group: Option<u32>,
    /// The entry, in the operator's own encoding.
    pub bytes: Vec<u8>,
}

/// Snapshot bytes that cannot be decoded.
#[derive(Debug, thiserror::Error)]
#[error("corrupt state: {0}")]
pub struct StateError(pub String);

/// The entries of `entries` that subtask `subtask` of `parallelism` restores: its key
/// groups' and every operator-wide one.
pub fn entries_for(
    entries: &[StateEntry],
    subtask: u32,
    parallelism: u32,
    max_parallelism: u32,
) -> Vec<StateEntry> {
    let range = key_group_range(subtask, parallelism, max_parallelism);
    entries
        .iter()
        .filter(|e| e.key_group.is_none_or(|g| range.contains(&g)))
        .cloned()
        .collect()
}

/// The operator-wide entry carrying an operator's watermark.
pub fn watermark_entry(watermark: i64) -> StateEntry {
    StateEntry {
        key_group: None,
        bytes: watermark.to_le_bytes().to_vec(),
    }
}

/// `current` after taking up a restored watermark entry: former subtasks saw the same
/// watermarks, so the least of theirs is safe.
pub fn restore_watermark(current: i64, entry: &StateEntry) -> Result<i64, StateError> {
    let restored = Decoder::new(&entry.bytes).i64()?;
    Ok(if current == crate::exec::watermark::BEGINNING_OF_TIME {
        restored
    } else {
        current.min(restored)
    })
}

/// Writes values in the snapshot encoding (little-endian, lengths as u32).
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Encoder::default()
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// A byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// A 32-bit count or index.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A 64-bit unsigned number.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A 64-bit signed number (times in ms).
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A float, bit for bit.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.u64(v.to_bits())
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.count(v.len());
        self.buf.extend_from_slice(v);
        self
    }

    /// A collection's length.
    pub fn count(&mut self, n: usize) -> &mut Self {
        // State entries are far below 4 GiB: a batch's own offsets are 32-bit.
        self.u32(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// An optional byte string.
    pub fn opt_bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(v) => self.u8(1).bytes(v),
        }
    }

    /// An optional number.
    pub fn opt_i64(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(v) => self.u8(1).i64(v),
        }
    }

    /// Every event of a batch (key, value, timestamp, headers).
    pub fn batch(&mut self, batch: &Batch) -> &mut Self {
        self.count(batch.len());
        for e in batch.iter() {
            self.opt_bytes(e.key).bytes(e.value).opt_i64(e.timestamp);
        }
        self.count(batch.headers.len());
        for h in &batch.headers {
            self.u32(h.event).bytes(h.name.as_bytes()).bytes(&h.value);
        }
        self
    }
}

/// Reads what an [`Encoder`] wrote; every read checks the bounds.
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if self.buf.len() < n {
            return Err(StateError(format!(
                "needs {n} more bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?[0])
    }

    /// A 32-bit number.
    pub fn u32(&mut self) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A 64-bit unsigned number.
    pub fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A 64-bit signed number.
    pub fn i64(&mut self) -> Result<i64, StateError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A float.
    pub fn f64(&mut self) -> Result<f64, StateError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// A collection's length.
    pub fn count(&mut self) -> Result<usize, StateError> {
        let n = self.u32()? as usize;
        // Every element takes at least a byte: a larger count is corruption, not a
        // reason to allocate.
        if n > self.buf.len() {
            return Err(StateError(format!(
                "a count of {n} with {} bytes left",
                self.buf.len()
            )));
        }
        Ok(n)
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], StateError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str, StateError> {
        std::str::from_utf8(self.bytes()?).map_err(|e| StateError(e.to_string()))
    }

    fn flag(&mut self) -> Result<bool, StateError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(StateError(format!("flag byte {b}"))),
        }
    }

    /// An optional byte string.
    pub fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, StateError> {
        Ok(if self.flag()? {
            Some(self.bytes()?)
        } else {
            None
        })
    }

    /// An optional number.
    pub fn opt_i64(&mut self) -> Result<Option<i64>, StateError> {
        Ok(if self.flag()? {
            Some(self.i64()?)
        } else {
            None
        })
    }

    /// A batch written by [`Encoder::batch`].
    pub fn batch(&mut self) -> Result<Batch, StateError> {
        let n = self.count()?;
        let mut batch = Batch::default();
        for _ in 0..n {
            let key = self.opt_bytes()?;
            let value = self.bytes()?;
            let timestamp = self.opt_i64()?;
            batch
                .push(EventRef {
                    key,
                    value,
                    timestamp,
                })
                .map_err(|e| StateError(e.to_string()))?;
        }
        for _ in 0..self.count()? {
            let (event, name, value) = (self.u32()?, self.str()?, self.bytes()?);
            if event as usize >= n {
                return Err(StateError(format!(
                    "header of event {event} in a batch of {n}"
                )));
            }
            batch.headers.push(crate::Header {
                event,
                name: name.to_owned(),
                value: value.to_vec(),
            });
        }
        Ok(batch)
    }

    /// Fails unless everything was read: trailing bytes mean a format mismatch.
    pub fn end(&self) -> Result<(), StateError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(StateError(format!(
                "{} unexpected bytes at the end",
                self.buf.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let mut batch = Batch::default();
        batch
            .push(EventRef {
                key: Some(b"k"),
                value: b"{}",
                timestamp: Some(-5),
            })
            .unwrap();
        batch.push_value(b"x").unwrap();
        let mut e = Encoder::new();
        e.u8(7).u32(9).i64(-3).f64(1.5).bytes(b"abc").opt_i64(None);
        e.batch(&batch);
        let bytes = e.finish();
        let mut d = Decoder::new(&bytes);
        assert_eq!(d.u8().unwrap(), 7);
        assert_eq!(d.u32().unwrap(), 9);
        assert_eq!(d.i64().unwrap(), -3);
        assert_eq!(d.f64().unwrap(), 1.5);
        assert_eq!(d.bytes().unwrap(), b"abc");
        assert_eq!(d.opt_i64().unwrap(), None);
        let back = d.batch().unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.event(0), batch.event(0));
        assert_eq!(back.event(1), batch.event(1));
        d.end().unwrap();
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut e = Encoder::new();
        e.bytes(b"hello").u64(1);
        let bytes = e.finish();
        for cut in 0..bytes.len() {
            let mut d = Decoder::new(&bytes[..cut]);
            let r = d.bytes().and_then(|_| d.u64());
            assert!(r.is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn entries_follow_key_group_ranges() {
        let entries: Vec<StateEntry> = (0..8)
            .map(|g| StateEntry {
                key_group: Some(g),
                bytes: vec![g as u8],
            })
            .chain([StateEntry {
                key_group: None,
                bytes: vec![],
            }])
            .collect();
        let a = entries_for(&entries, 0, 2, 8);
        let b = entries_for(&entries, 1, 2, 8);
        assert_eq!(a.len() + b.len(), 8 + 2);
        assert!(a.iter().all(|e| e.key_group.is_none_or(|g| g < 4)));
    }
}
