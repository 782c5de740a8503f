// Write Eddy plugins in JavaScript.
//
// A plugin is a class with `open(params)` (optional) and `map(event)`, `filter(event)`
// or `flatMap(event)`, exported with `exportMap`, `exportFilter` or `exportFlatMap` under
// the interface's name (`export const mapOperator = exportMap(MyMap)`). The SDK unpacks
// the host's packed batches into `Event`s and packs what the plugin returns. Keyed state,
// timers and side outputs for process functions are in `eddy-keyed.js`. `eddy build`
// turns the plugin into a component with componentize-js.

import { params } from 'eddy:plugin/config@0.1.0';
import { log as hostLog } from 'eddy:plugin/host@0.1.0';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** The host's marker for "no timestamp" in a batch's `timestamps`. */
const NO_TIMESTAMP = -9223372036854775808n;

/** One input event: value bytes, optional key and timestamp, with a JSON helper. */
export class Event {
  constructor(value, key, timestamp, text) {
    /** The value bytes (a Uint8Array). */
    this.value = value;
    /** The key bytes, or null. */
    this.key = key;
    /** Event time in ms since the epoch, or null. */
    this.timestamp = timestamp;
    this.decoded = text;
  }

  /** The value as text. */
  text() {
    if (this.decoded === undefined) {
      this.decoded = decoder.decode(this.value);
    }
    return this.decoded;
  }

  /** The value parsed as JSON. */
  json() {
    return JSON.parse(this.text());
  }
}

/**
 * A number written as a JSON float, as the Rust SDK writes an `f64`: shortest digits
 * that read back the same, with `.0` on whole numbers (`new Float(2)` is `2.0`).
 */
export class Float {
  constructor(value) {
    this.value = value;
  }
}

/** Whether Rust and JavaScript both write `abs` (positive) in plain notation with the
 * same shortest digits: from 1e-5 to below 1e16. */
function plain(abs) {
  return abs >= 1e-5 && abs < 1e16;
}

/** Writes `x` as Rust's `f64` Display does in JSON (ryu's layout). */
function floatText(x) {
  if (!Number.isFinite(x)) {
    return 'null';
  }
  if (x === 0) {
    return Object.is(x, -0) ? '-0.0' : '0.0';
  }
  const abs = Math.abs(x);
  if (plain(abs)) {
    return Number.isInteger(x) ? `${x}.0` : String(x);
  }
  // Beyond that range Rust writes an exponent without a sign or padding: 1e16, 1.5e-7.
  const [mantissa, exp] = abs.toExponential().split('e');
  return `${x < 0 ? '-' : ''}${mantissa}e${Number(exp)}`;
}

/** Brackets a `Float`'s text inside a JSON string so that `stringify` can unquote it
 * (a private-use character, which JSON.stringify leaves as it is). */
const MARK = '\ue000';

/** Called by JSON.stringify for Floats only: the engine's own stringify does the rest
 * (a replacer function, called for every field, costs several times more). */
Float.prototype.toJSON = function toJSON() {
  const x = this.value;
  // Fractions in plain range print the same in both languages: no marking needed.
  return plain(Math.abs(x)) && !Number.isInteger(x) ? x : MARK + floatText(x) + MARK;
};

/** Compact JSON text as the Rust SDK writes it; `Float`s keep their `.0`. */
export function stringify(value) {
  if (value instanceof Float) {
    return floatText(value.value);
  }
  const text = JSON.stringify(value);
  return text !== undefined && text.includes(MARK)
    ? text.replaceAll(`"${MARK}`, '').replaceAll(`${MARK}"`, '')
    : text;
}

/** Rounds halves away from zero, as Rust's `f64::round` does (`Math.round` goes up). */
export function roundHalfAway(x) {
  return Math.sign(x) * Math.floor(Math.abs(x) + 0.5);
}

/** Writes a line to the host's log (`level`: trace, debug, info, warn or error). */
export function log(level, message) {
  hostLog(level, message);
}

/** The events of a packed batch. An ASCII batch (the usual JSON) is decoded in one go
 * and sliced, as its byte offsets are also string offsets. */
export function events(batch) {
  const out = [];
  const { values, valueEnds, keys, keyEnds, timestamps } = batch;
  const all = decoder.decode(values);
  const ascii = all.length === values.length;
  let start = 0;
  let keyStart = 0;
  for (let i = 0; i < valueEnds.length; i++) {
    const end = valueEnds[i];
    let key = null;
    if (keyEnds.length > 0) {
      const keyEnd = keyEnds[i];
      if (keyEnd > keyStart) {
        key = keys.subarray(keyStart, keyEnd);
      }
      keyStart = keyEnd;
    }
    const ts = timestamps.length > 0 ? timestamps[i] : NO_TIMESTAMP;
    const text = ascii ? all.slice(start, end) : undefined;
    out.push(new Event(values.subarray(start, end), key, ts === NO_TIMESTAMP ? null : Number(ts), text));
    start = end;
  }
  return out;
}

/** The text of an output value that is not bytes: itself, or its JSON. */
function textOf(value) {
  return typeof value === 'string' ? value : stringify(value);
}

/** Bytes of an output value: bytes as they are, text as UTF-8, anything else as JSON. */
export function encode(value) {
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  return encoder.encode(textOf(value));
}

/** A packed batch of `values` (bytes) and their end offsets. */
function batchOf(values, valueEnds) {
  return { values, valueEnds, keys: new Uint8Array(0), keyEnds: [], timestamps: [], headers: [] };
}

/** The end offset of each of `parts` laid end to end. */
function endsOf(parts) {
  const ends = new Uint32Array(parts.length);
  let len = 0;
  parts.forEach((p, i) => {
    len += p.length;
    ends[i] = len;
  });
  return ends;
}

/** A packed batch of values (keys and timestamps are inherited by the host). Text
 * values are joined and encoded once when they are all ASCII. */
export function pack(values) {
  if (!values.some((v) => ArrayBuffer.isView(v))) {
    const texts = values.map(textOf);
    const joined = texts.join('');
    const buf = encoder.encode(joined);
    if (buf.length === joined.length) {
      return batchOf(buf, endsOf(texts));
    }
  }
  const parts = values.map(encode);
  const valueEnds = endsOf(parts);
  const buf = new Uint8Array(valueEnds.at(-1) ?? 0);
  parts.forEach((p, i) => buf.set(p, valueEnds[i] - p.length));
  return batchOf(buf, valueEnds);
}

/** The host's `plugin-error` for a failure, pointing at event `index` when known. */
export function pluginError(e, index) {
  const message = e instanceof Error ? e.message : String(e);
  return index === undefined ? { message } : { message, event: index };
}

/** A holder whose `instance` is created from `Class` and opened with the params. */
export function opener(Class) {
  const holder = { instance: null };
  holder.open = () => {
    try {
      holder.instance = new Class();
      if (holder.instance.open) {
        holder.instance.open(JSON.parse(params()));
      }
    } catch (e) {
      throw pluginError(e);
    }
  };
  return holder;
}

/** Calls `call(i, event)` for every event of `batch`; a failure names the event. */
export function each(batch, call) {
  events(batch).forEach((event, i) => {
    try {
      call(i, event);
    } catch (e) {
      throw pluginError(e, i);
    }
  });
}

/** The `map-operator` export for a class with `map(event)` returning the output value. */
export function exportMap(Class) {
  const op = opener(Class);
  return {
    open: op.open,
    mapBatch(input) {
      const out = [];
      each(input, (_, event) => out.push(op.instance.map(event)));
      return pack(out);
    },
  };
}

/** The `filter-operator` export for a class with `filter(event)` returning whether to
 * keep it; only the indices of the kept events cross back. */
export function exportFilter(Class) {
  const op = opener(Class);
  return {
    open: op.open,
    filterBatch(input) {
      const keep = [];
      each(input, (i, event) => {
        if (op.instance.filter(event)) {
          keep.push(i);
        }
      });
      return keep;
    },
  };
}

/** The `flat-map-operator` export for a class with `flatMap(event)` returning any number
 * of values; each output inherits the key and timestamp of its input. */
export function exportFlatMap(Class) {
  const op = opener(Class);
  return {
    open: op.open,
    flatMapBatch(input) {
      const out = [];
      const origins = [];
      each(input, (i, event) => {
        for (const value of op.instance.flatMap(event)) {
          out.push(value);
          origins.push(i);
        }
      });
      return { events: pack(out), origins };
    },
  };
}
