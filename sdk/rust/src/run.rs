//! Batch drivers: run an operator over a packed batch. The exported component calls
//! them, and native builds call them directly, so both run the very same code.

use eddy_batch::Batch;

use crate::{
    Aggregate, Emitter, Error, Event, Filter, FlatMap, Map, Process, Timer, Window, WindowProcess,
};

fn at(index: usize) -> impl FnOnce(Error) -> Error {
    move |mut e| {
        e.event.get_or_insert(index as u32);
        e
    }
}

/// Runs a [`Map`] over `input`; the output has one event per input event.
pub fn run_map<T: Map>(op: &mut T, input: &Batch) -> Result<Batch, Error> {
    let mut out = Batch::with_capacity(input.len(), input.values.len());
    let mut origins = Vec::with_capacity(input.len());
    for (i, event) in input.iter().enumerate() {
        let before = out.len();
        let mut emit = Emitter {
            out: &mut out,
            origins: &mut origins,
            origin: i as u32,
        };
        op.map(&Event { inner: event }, &mut emit).map_err(at(i))?;
        if out.len() != before + 1 {
            return Err(at(i)(Error::msg(format_args!(
                "map must emit exactly one event per input, emitted {}",
                out.len() - before
            ))));
        }
    }
    Ok(out)
}

/// Runs a [`Filter`] over `input`, returning the indices of the events that pass.
pub fn run_filter<T: Filter>(op: &mut T, input: &Batch) -> Result<Vec<u32>, Error> {
    let mut keep = Vec::with_capacity(input.len());
    for (i, event) in input.iter().enumerate() {
        if op.filter(&Event { inner: event }).map_err(at(i))? {
            keep.push(i as u32);
        }
    }
    Ok(keep)
}

/// Runs a [`FlatMap`] over `input`, returning the output and each output's input index.
pub fn run_flat_map<T: FlatMap>(op: &mut T, input: &Batch) -> Result<(Batch, Vec<u32>), Error> {
    let mut out = Batch::with_capacity(input.len(), input.values.len());
    let mut origins = Vec::with_capacity(input.len());
    for (i, event) in input.iter().enumerate() {
        let mut emit = Emitter {
            out: &mut out,
            origins: &mut origins,
            origin: i as u32,
        };
        op.flat_map(&Event { inner: event }, &mut emit)
            .map_err(at(i))?;
    }
    Ok((out, origins))
}

/// Runs `f` with an emitter into a fresh batch, for outputs that do not descend from
/// single input events (so no origins are kept).
fn collect(f: impl FnOnce(&mut Emitter<'_>) -> Result<(), Error>) -> Result<Batch, Error> {
    let mut out = Batch::default();
    let mut origins = Vec::new();
    f(&mut Emitter {
        out: &mut out,
        origins: &mut origins,
        origin: 0,
    })?;
    Ok(out)
}

/// Runs a [`WindowProcess`] over one key's window.
pub fn run_window<W: WindowProcess>(
    op: &mut W,
    key: &[u8],
    window: Window,
    input: &Batch,
) -> Result<Batch, Error> {
    let events: Vec<Event<'_>> = input.iter().map(|inner| Event { inner }).collect();
    collect(|emit| op.process(key, window, &events, emit))
}

/// Runs a [`Process`] function over the events of one key.
pub fn run_process<P: Process>(op: &mut P, key: &[u8], input: &Batch) -> Result<Batch, Error> {
    let events: Vec<Event<'_>> = input.iter().map(|inner| Event { inner }).collect();
    collect(|emit| op.process(key, &events, emit))
}

/// Runs a [`Process`] function's timer callback.
pub fn run_timer<P: Process>(op: &mut P, key: &[u8], timer: Timer) -> Result<Batch, Error> {
    collect(|emit| op.on_timer(key, timer, emit))
}

fn decode<A: Aggregate>(acc: &[u8]) -> Result<A::Acc, Error> {
    if acc.is_empty() {
        return Ok(A::Acc::default());
    }
    serde_json::from_slice(acc).map_err(|e| Error::msg(format_args!("accumulator: {e}")))
}

fn encode<A: Aggregate>(acc: &A::Acc) -> Result<Vec<u8>, Error> {
    Ok(serde_json::to_vec(acc)?)
}

/// A fresh accumulator of an [`Aggregate`], encoded.
pub fn aggregate_create<A: Aggregate>() -> Vec<u8> {
    encode::<A>(&A::Acc::default()).unwrap_or_default()
}

/// Folds the events of `input` into the encoded accumulator `acc`.
pub fn aggregate_add<A: Aggregate>(
    op: &mut A,
    acc: &[u8],
    input: &Batch,
) -> Result<Vec<u8>, Error> {
    let mut state = decode::<A>(acc)?;
    for (i, event) in input.iter().enumerate() {
        op.add(&mut state, &Event { inner: event }).map_err(at(i))?;
    }
    encode::<A>(&state)
}

/// Merges two encoded accumulators.
pub fn aggregate_merge<A: Aggregate>(op: &mut A, a: &[u8], b: &[u8]) -> Result<Vec<u8>, Error> {
    let mut state = decode::<A>(a)?;
    op.merge(&mut state, decode::<A>(b)?)?;
    encode::<A>(&state)
}

/// The result of an encoded accumulator, as JSON bytes.
pub fn aggregate_result<A: Aggregate>(op: &mut A, acc: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(serde_json::to_vec(&op.result(&decode::<A>(acc)?)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Context;

    struct Twice;
    impl FlatMap for Twice {
        fn open(_: &Context) -> Result<Self, Error> {
            Ok(Twice)
        }
        fn flat_map(&mut self, e: &Event<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
            let n: u32 = e.json()?;
            out.json(&n)?;
            out.json(&(n * 10))
        }
    }

    struct Odd;
    impl Map for Odd {
        fn open(_: &Context) -> Result<Self, Error> {
            Ok(Odd)
        }
        fn map(&mut self, e: &Event<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
            let n: u32 = e.json()?;
            if n.is_multiple_of(2) {
                return Err("even".into());
            }
            out.bytes(b"odd")
        }
    }

    fn batch(values: &[&str]) -> Batch {
        let mut b = Batch::default();
        for v in values {
            b.push_value(v.as_bytes()).unwrap();
        }
        b
    }

    #[test]
    fn flat_map_records_origins() {
        let (out, origins) = run_flat_map(&mut Twice, &batch(&["1", "2"])).unwrap();
        let values: Vec<_> = out.iter().map(|e| e.value.to_vec()).collect();
        assert_eq!(
            values,
            [b"1".to_vec(), b"10".to_vec(), b"2".to_vec(), b"20".to_vec()]
        );
        assert_eq!(origins, [0, 0, 1, 1]);
    }

    #[test]
    fn errors_carry_the_event_index() {
        let err = run_map(&mut Odd, &batch(&["1", "3", "4"])).unwrap_err();
        assert_eq!(err.event, Some(2));
        assert_eq!(err.message, "even");
    }
}
