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
  constructor(value, key, timestamp) {
    /** The value bytes (a Uint8Array). */
    this.value = value;
    /** The key bytes, or null. */
    this.key = key;
    /** Event time in ms since the epoch, or null. */
    this.timestamp = timestamp;
  }

  /** The value as text. */
  text() {
    return decoder.decode(this.value);
  }

  /** The value parsed as JSON. */
  json() {
    return JSON.parse(decoder.decode(this.value));
  }
}

/** An error a plugin reports on purpose; the host names the event it points at. */
export class PluginError extends Error {}

/**
 * A number written as a JSON float, as the Rust SDK writes an `f64`: shortest digits
 * that read back the same, with `.0` on whole numbers (`new Float(2)` is `2.0`).
 */
export class Float {
  constructor(value) {
    this.value = value;
  }
}

/** Writes `x` as Rust's `f64` Display does in JSON (ryu's layout). */
function floatText(x) {
  if (!Number.isFinite(x)) {
    return 'null';
  }
  if (x === 0) {
    return Object.is(x, -0) ? '-0.0' : '0.0';
  }
  const [mantissa, exp] = Math.abs(x).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const point = Number(exp) + 1; // digits before the decimal point
  const sign = x < 0 ? '-' : '';
  if (point > 16 || point <= -5) {
    const rest = digits.length > 1 ? `.${digits.slice(1)}` : '';
    return `${sign}${digits[0]}${rest}e${point - 1}`;
  }
  if (point <= 0) {
    return `${sign}0.${'0'.repeat(-point)}${digits}`;
  }
  if (digits.length <= point) {
    return `${sign}${digits}${'0'.repeat(point - digits.length)}.0`;
  }
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** Compact JSON text as the Rust SDK writes it; `Float`s keep their `.0`. */
export function stringify(value) {
  if (value instanceof Float) {
    return floatText(value.value);
  }
  if (Array.isArray(value)) {
    return `[${value.map((v) => stringify(v === undefined ? null : v)).join(',')}]`;
  }
  if (value !== null && typeof value === 'object' && typeof value.toJSON !== 'function') {
    const fields = [];
    for (const [k, v] of Object.entries(value)) {
      if (v !== undefined) {
        fields.push(`${JSON.stringify(k)}:${stringify(v)}`);
      }
    }
    return `{${fields.join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Rounds halves away from zero, as Rust's `f64::round` does (`Math.round` goes up). */
export function roundHalfAway(x) {
  return Math.sign(x) * Math.floor(Math.abs(x) + 0.5);
}

/** Writes a line to the host's log (`level`: trace, debug, info, warn or error). */
export function log(level, message) {
  hostLog(level, message);
}

/** The events of a packed batch. */
export function events(batch) {
  const out = [];
  const { values, valueEnds, keys, keyEnds, timestamps } = batch;
  let start = 0;
  let keyStart = 0;
  for (let i = 0; i < valueEnds.length; i++) {
    let key = null;
    if (keyEnds.length > 0) {
      const keyEnd = keyEnds[i];
      if (keyEnd > keyStart) {
        key = keys.subarray(keyStart, keyEnd);
      }
      keyStart = keyEnd;
    }
    const ts = timestamps.length > 0 ? timestamps[i] : NO_TIMESTAMP;
    out.push(new Event(values.subarray(start, valueEnds[i]), key, ts === NO_TIMESTAMP ? null : Number(ts)));
    start = valueEnds[i];
  }
  return out;
}

/** Bytes of an output value: bytes as they are, text as UTF-8, anything else as JSON. */
export function encode(value) {
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  return encoder.encode(typeof value === 'string' ? value : stringify(value));
}

/** A packed batch of values (keys and timestamps are inherited by the host). */
export function pack(values) {
  const parts = values.map(encode);
  const valueEnds = new Uint32Array(parts.length);
  let len = 0;
  parts.forEach((p, i) => {
    len += p.length;
    valueEnds[i] = len;
  });
  const buf = new Uint8Array(len);
  parts.forEach((p, i) => buf.set(p, valueEnds[i] - p.length));
  return { values: buf, valueEnds, keys: new Uint8Array(0), keyEnds: [], timestamps: [], headers: [] };
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
