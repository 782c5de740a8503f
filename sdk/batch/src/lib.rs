//! Events in packed columnar batches: the unit the engine moves and plugins receive.
//!
//! Shared by the host and the plugin SDK so that both sides read and build batches
//! with the same code; the WIT `batch` record has exactly these fields.

/// Marks an event without a timestamp inside [`Batch::timestamps`].
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// A header carried by one event of a batch; stored sparsely because few events have any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Index of the event in its batch.
    pub event: u32,
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: Vec<u8>,
}

/// A batch of events, packed so that it crosses into WebAssembly in one copy per column.
///
/// Event `i`'s value is `values[value_ends[i-1]..value_ends[i]]`. Keys use the same
/// scheme and `key_ends` is empty when no event has a key; a zero-length key means none.
/// `timestamps` is empty when no event has one, else one per event ([`NO_TIMESTAMP`]
/// for none). This is exactly the WIT `batch` record, so conversion is a move.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// All values back to back.
    pub values: Vec<u8>,
    /// Exclusive end offset of each value.
    pub value_ends: Vec<u32>,
    /// All keys back to back.
    pub keys: Vec<u8>,
    /// Exclusive end offset of each key, or empty.
    pub key_ends: Vec<u32>,
    /// Event time per event in ms since the epoch, or empty.
    pub timestamps: Vec<i64>,
    /// Headers of the events that have any.
    pub headers: Vec<Header>,
}

/// A borrowed view of one event of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// The key, when the event has one.
    pub key: Option<&'a [u8]>,
    /// The value bytes.
    pub value: &'a [u8],
    /// Event time in ms since the epoch, when known.
    pub timestamp: Option<i64>,
}

/// A batch does not fit the packed layout (offsets are 32-bit).
#[derive(Debug, thiserror::Error)]
#[error("batch column exceeds 4 GiB")]
pub struct BatchOverflow;

/// A packed batch arrived with offsets that do not describe its buffers.
#[derive(Debug, thiserror::Error)]
#[error("malformed batch: {0}")]
pub struct MalformedBatch(pub String);

/// Implements moves (no copies) between [`Batch`] and a WIT-generated `batch` record
/// and its `header` record, for whichever bindings generator (host or guest) made them.
#[macro_export]
macro_rules! wit_batch_conversions {
    ($wit_batch:ty, $wit_header:ident) => {
        impl From<$wit_batch> for $crate::Batch {
            fn from(b: $wit_batch) -> Self {
                $crate::Batch {
                    values: b.values,
                    value_ends: b.value_ends,
                    keys: b.keys,
                    key_ends: b.key_ends,
                    timestamps: b.timestamps,
                    headers: b
                        .headers
                        .into_iter()
                        .map(|h| $crate::Header {
                            event: h.event,
                            name: h.name,
                            value: h.value,
                        })
                        .collect(),
                }
            }
        }

        impl From<$crate::Batch> for $wit_batch {
            fn from(b: $crate::Batch) -> Self {
                Self {
                    values: b.values,
                    value_ends: b.value_ends,
                    keys: b.keys,
                    key_ends: b.key_ends,
                    timestamps: b.timestamps,
                    headers: b
                        .headers
                        .into_iter()
                        .map(|h| $wit_header {
                            event: h.event,
                            name: h.name,
                            value: h.value,
                        })
                        .collect(),
                }
            }
        }
    };
}

fn span(ends: &[u32], i: usize) -> (usize, usize) {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    (start, ends[i] as usize)
}

fn check_column(name: &str, buf: &[u8], ends: &[u32]) -> Result<(), MalformedBatch> {
    let mut prev = 0u32;
    for (i, &end) in ends.iter().enumerate() {
        if end < prev {
            return Err(MalformedBatch(format!(
                "{name} offset {i} ({end}) is below the previous one ({prev})"
            )));
        }
        prev = end;
    }
    if prev as usize > buf.len() {
        return Err(MalformedBatch(format!(
            "{name} offsets reach {prev} but the buffer holds {} bytes",
            buf.len()
        )));
    }
    Ok(())
}

impl Batch {
    /// An empty batch with room for `events` events of `bytes` value bytes in total.
    pub fn with_capacity(events: usize, bytes: usize) -> Self {
        Batch {
            values: Vec::with_capacity(bytes),
            value_ends: Vec::with_capacity(events),
            ..Batch::default()
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.value_ends.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.value_ends.is_empty()
    }

    /// Bytes of payload held, the measure that channels and pools account in.
    pub fn byte_size(&self) -> usize {
        self.values.len()
            + self.keys.len()
            + 4 * (self.value_ends.len() + self.key_ends.len())
            + 8 * self.timestamps.len()
            + self
                .headers
                .iter()
                .map(|h| h.name.len() + h.value.len() + 4)
                .sum::<usize>()
    }

    /// Value of event `i`.
    pub fn value(&self, i: usize) -> &[u8] {
        let (s, e) = span(&self.value_ends, i);
        &self.values[s..e]
    }

    /// Key of event `i`, if it has one.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        if self.key_ends.is_empty() {
            return None;
        }
        let (s, e) = span(&self.key_ends, i);
        (e > s).then(|| &self.keys[s..e])
    }

    /// Timestamp of event `i`, if it has one.
    pub fn timestamp(&self, i: usize) -> Option<i64> {
        self.timestamps
            .get(i)
            .copied()
            .filter(|&t| t != NO_TIMESTAMP)
    }

    /// A view of event `i`.
    pub fn event(&self, i: usize) -> EventRef<'_> {
        EventRef {
            key: self.key(i),
            value: self.value(i),
            timestamp: self.timestamp(i),
        }
    }

    /// All events in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventRef<'_>> + '_ {
        (0..self.len()).map(|i| self.event(i))
    }

    /// Appends an event.
    pub fn push(&mut self, event: EventRef<'_>) -> Result<(), BatchOverflow> {
        let n = self.len();
        self.values.extend_from_slice(event.value);
        self.value_ends.push(offset(self.values.len())?);
        if let Some(key) = event.key.filter(|k| !k.is_empty()) {
            if self.key_ends.len() < n {
                self.key_ends.resize(n, offset(self.keys.len())?);
            }
            self.keys.extend_from_slice(key);
            self.key_ends.push(offset(self.keys.len())?);
        } else if !self.key_ends.is_empty() {
            self.key_ends.push(offset(self.keys.len())?);
        }
        if let Some(ts) = event.timestamp {
            if self.timestamps.len() < n {
                self.timestamps.resize(n, NO_TIMESTAMP);
            }
            self.timestamps.push(ts);
        } else if !self.timestamps.is_empty() {
            self.timestamps.push(NO_TIMESTAMP);
        }
        Ok(())
    }

    /// Ends a keyless, timeless event whose value bytes the caller appended to `values`
    /// directly, so that serializers write into the batch without an extra copy.
    pub fn seal_value(&mut self) -> Result<(), BatchOverflow> {
        self.value_ends.push(offset(self.values.len())?);
        if !self.key_ends.is_empty() {
            self.key_ends.push(offset(self.keys.len())?);
        }
        if !self.timestamps.is_empty() {
            self.timestamps.push(NO_TIMESTAMP);
        }
        Ok(())
    }

    /// Appends a keyless, timeless event from its value alone.
    pub fn push_value(&mut self, value: &[u8]) -> Result<(), BatchOverflow> {
        self.push(EventRef {
            key: None,
            value,
            timestamp: None,
        })
    }

    /// Appends event `i` of `src` with its headers.
    pub fn push_from(&mut self, src: &Batch, i: usize) -> Result<(), BatchOverflow> {
        let index = self.len() as u32;
        self.push(src.event(i))?;
        self.headers.extend(
            src.headers
                .iter()
                .filter(|h| h.event as usize == i)
                .map(|h| Header {
                    event: index,
                    ..h.clone()
                }),
        );
        Ok(())
    }

    /// Appends every event of `src` with its headers, in one pass over them (unlike
    /// [`Batch::push_from`] per event, which looks through all of `src`'s headers).
    pub fn append(&mut self, src: &Batch) -> Result<(), BatchOverflow> {
        let base = self.len() as u32;
        for event in src.iter() {
            self.push(event)?;
        }
        self.headers.extend(src.headers.iter().map(|h| Header {
            event: base + h.event,
            ..h.clone()
        }));
        Ok(())
    }

    /// Splits into batches of at most `max_bytes` each (by [`Batch::byte_size`]); fails
    /// with the size of the first event that alone exceeds the limit.
    pub fn split_by_bytes(self, max_bytes: usize) -> Result<Vec<Batch>, usize> {
        if self.byte_size() <= max_bytes {
            return Ok(vec![self]);
        }
        let mut parts = Vec::new();
        let mut part = Batch::default();
        for i in 0..self.len() {
            let mut single = Batch::default();
            single.push_from(&self, i).map_err(|_| usize::MAX)?;
            let size = single.byte_size();
            if size > max_bytes {
                return Err(size);
            }
            if part.byte_size() + size > max_bytes {
                parts.push(std::mem::take(&mut part));
            }
            part.push_from(&self, i).map_err(|_| usize::MAX)?;
        }
        if !part.is_empty() {
            parts.push(part);
        }
        Ok(parts)
    }

    /// The events at `indices` (ascending), with their headers.
    pub fn select(&self, indices: &[u32]) -> Result<Batch, MalformedBatch> {
        let mut out = Batch::with_capacity(indices.len(), self.values.len());
        let mut prev: Option<u32> = None;
        for &i in indices {
            if i as usize >= self.len() || prev.is_some_and(|p| p >= i) {
                return Err(MalformedBatch(format!(
                    "selected index {i} is out of range or not ascending (batch of {})",
                    self.len()
                )));
            }
            prev = Some(i);
            let new_index = out.len() as u32;
            out.push(self.event(i as usize))
                .map_err(|e| MalformedBatch(e.to_string()))?;
            out.headers.extend(
                self.headers
                    .iter()
                    .filter(|h| h.event == i)
                    .map(|h| Header {
                        event: new_index,
                        ..h.clone()
                    }),
            );
        }
        Ok(out)
    }

    /// Checks that the offsets describe the buffers; used on batches a plugin returned.
    pub fn validate(&self) -> Result<(), MalformedBatch> {
        check_column("value", &self.values, &self.value_ends)?;
        if !self.key_ends.is_empty() {
            if self.key_ends.len() != self.len() {
                return Err(MalformedBatch(format!(
                    "{} key offsets for {} events",
                    self.key_ends.len(),
                    self.len()
                )));
            }
            check_column("key", &self.keys, &self.key_ends)?;
        }
        if !self.timestamps.is_empty() && self.timestamps.len() != self.len() {
            return Err(MalformedBatch(format!(
                "{} timestamps for {} events",
                self.timestamps.len(),
                self.len()
            )));
        }
        if let Some(h) = self.headers.iter().find(|h| h.event as usize >= self.len()) {
            return Err(MalformedBatch(format!(
                "header {:?} points at event {} of {}",
                h.name,
                h.event,
                self.len()
            )));
        }
        Ok(())
    }

    /// Fills missing keys and timestamps from `input`, whose event `i` this batch's
    /// event `i` replaced (a map's output), moving whole columns where it can.
    pub fn inherit_aligned(&mut self, input: Batch) {
        if self.key_ends.is_empty() && self.timestamps.is_empty() {
            self.keys = input.keys;
            self.key_ends = input.key_ends;
            self.timestamps = input.timestamps;
        } else {
            let identity: Vec<u32> = (0..self.len() as u32).collect();
            self.inherit_from(&input, &identity);
        }
    }

    /// Fills missing keys and timestamps of this batch's events from the input events
    /// they came from (`origins[i]` is the input index of output `i`).
    pub fn inherit_from(&mut self, input: &Batch, origins: &[u32]) {
        let n = self.len();
        if !input.key_ends.is_empty() && (0..n).any(|i| self.key(i).is_none()) {
            let mut keys = Vec::with_capacity(self.keys.len());
            let mut ends = Vec::with_capacity(n);
            for (i, &o) in origins.iter().enumerate().take(n) {
                if let Some(k) = self.key(i).or_else(|| input.key(o as usize)) {
                    keys.extend_from_slice(k);
                }
                ends.push(keys.len() as u32);
            }
            self.keys = keys;
            self.key_ends = ends;
        }
        if !input.timestamps.is_empty() {
            if self.timestamps.is_empty() {
                self.timestamps = vec![NO_TIMESTAMP; n];
            }
            for (t, &o) in self.timestamps.iter_mut().zip(origins) {
                if *t == NO_TIMESTAMP {
                    *t = input.timestamps[o as usize];
                }
            }
        }
    }
}

fn offset(len: usize) -> Result<u32, BatchOverflow> {
    u32::try_from(len).map_err(|_| BatchOverflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(key: Option<&'a [u8]>, value: &'a [u8], ts: Option<i64>) -> EventRef<'a> {
        EventRef {
            key,
            value,
            timestamp: ts,
        }
    }

    #[test]
    fn push_backfills_keys_and_timestamps() {
        let mut b = Batch::default();
        b.push(ev(None, b"a", None)).unwrap();
        b.push(ev(Some(b"k"), b"bb", Some(5))).unwrap();
        b.push(ev(None, b"", None)).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b.event(0), ev(None, b"a", None));
        assert_eq!(b.event(1), ev(Some(b"k"), b"bb", Some(5)));
        assert_eq!(b.event(2), ev(None, b"", None));
        b.validate().unwrap();
    }

    #[test]
    fn append_equals_pushing_each_event_with_its_headers() {
        let mut src = Batch::default();
        src.push(ev(Some(b"k"), b"a", Some(1))).unwrap();
        src.push(ev(None, b"b", None)).unwrap();
        src.headers.push(Header {
            event: 1,
            name: "h".into(),
            value: b"v".to_vec(),
        });
        let mut appended = Batch::default();
        appended.push(ev(None, b"first", None)).unwrap();
        let mut pushed = appended.clone();
        appended.append(&src).unwrap();
        for i in 0..src.len() {
            pushed.push_from(&src, i).unwrap();
        }
        assert_eq!(appended, pushed);
        assert_eq!(appended.headers[0].event, 2);
    }

    #[test]
    fn select_keeps_headers_and_rejects_bad_indices() {
        let mut b = Batch::default();
        for v in [b"x", b"y", b"z"] {
            b.push_value(v).unwrap();
        }
        b.headers.push(Header {
            event: 2,
            name: "h".into(),
            value: b"1".to_vec(),
        });
        let s = b.select(&[0, 2]).unwrap();
        assert_eq!(s.value(1), b"z");
        assert_eq!(s.headers[0].event, 1);
        assert!(b.select(&[2, 1]).is_err());
        assert!(b.select(&[3]).is_err());
    }

    #[test]
    fn split_by_bytes_keeps_every_event_within_the_limit() {
        let mut b = Batch::default();
        for v in [&b"aaaa"[..], b"bb", b"cccccc", b"d"] {
            b.push_value(v).unwrap();
        }
        let parts = b.clone().split_by_bytes(14).unwrap();
        assert!(parts.iter().all(|p| p.byte_size() <= 14));
        let joined: Vec<_> = parts
            .iter()
            .flat_map(|p| p.iter().map(|e| e.value.to_vec()))
            .collect();
        let original: Vec<_> = b.iter().map(|e| e.value.to_vec()).collect();
        assert_eq!(joined, original);
        assert_eq!(b.split_by_bytes(9), Err(10));
    }

    #[test]
    fn validate_rejects_offsets_past_the_buffer() {
        let b = Batch {
            values: b"ab".to_vec(),
            value_ends: vec![1, 5],
            ..Batch::default()
        };
        assert!(b.validate().is_err());
    }

    #[test]
    fn inherit_fills_only_missing() {
        let mut input = Batch::default();
        input.push(ev(Some(b"k1"), b"a", Some(10))).unwrap();
        input.push(ev(Some(b"k2"), b"b", Some(20))).unwrap();
        let mut out = Batch::default();
        out.push(ev(None, b"x", None)).unwrap();
        out.push(ev(None, b"y", Some(99))).unwrap();
        out.push(ev(Some(b"own"), b"z", None)).unwrap();
        out.inherit_from(&input, &[1, 1, 0]);
        assert_eq!(out.event(0), ev(Some(b"k2"), b"x", Some(20)));
        assert_eq!(out.event(1), ev(Some(b"k2"), b"y", Some(99)));
        assert_eq!(out.event(2), ev(Some(b"own"), b"z", Some(10)));
    }
}
