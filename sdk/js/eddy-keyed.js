// Keyed state, timers and side outputs for JavaScript process functions.
//
// A process function is a class with `open(params)` (optional), `process(key, events,
// out)` and `onTimer(key, timer, out)` (optional), exported with
// `export const processFunction = exportProcess(MyFunction)`. The host owns the state:
// every handle reads and writes the state of the key being processed. Values are stored
// as JSON, as the Rust SDK stores them, so a job can move between languages and keep its
// state.

import { ValueState as HostValueState, ListState as HostListState, MapState as HostMapState } from 'eddy:plugin/state@0.1.0';
import * as timers from 'eddy:plugin/timers@0.1.0';
import { emit } from 'eddy:plugin/side-output@0.1.0';
import { events, opener, pack, pluginError, stringify } from './eddy.js';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function ttl(ms) {
  return ms === undefined || ms === null ? undefined : BigInt(ms);
}

function load(bytes) {
  return bytes === undefined ? undefined : JSON.parse(decoder.decode(bytes));
}

function store(value) {
  return encoder.encode(stringify(value));
}

/** One value per key; with `ttlMs`, an entry not written for that long reads as empty. */
export class ValueState {
  constructor(name, ttlMs) {
    this.handle = new HostValueState(name, ttl(ttlMs));
  }

  /** The current key's value, or undefined. */
  get() {
    return load(this.handle.get());
  }

  /** Sets the current key's value. */
  set(value) {
    this.handle.set(store(value));
  }

  /** Removes the current key's value. */
  clear() {
    this.handle.clear();
  }
}

/** A list per key. */
export class ListState {
  constructor(name, ttlMs) {
    this.handle = new HostListState(name, ttl(ttlMs));
  }

  /** The current key's list. */
  get() {
    return this.handle.get().map(load);
  }

  /** Appends to the current key's list. */
  add(value) {
    this.handle.add(store(value));
  }

  /** Replaces the current key's list. */
  replace(values) {
    this.handle.replace(values.map(store));
  }

  /** Empties the current key's list. */
  clear() {
    this.handle.clear();
  }
}

/** A map per key, from string keys to values. */
export class MapState {
  constructor(name, ttlMs) {
    this.handle = new HostMapState(name, ttl(ttlMs));
  }

  /** The value at `key` in the current key's map, or undefined. */
  get(key) {
    return load(this.handle.get(encoder.encode(key)));
  }

  /** Sets `key` in the current key's map. */
  put(key, value) {
    this.handle.put(encoder.encode(key), store(value));
  }

  /** Removes `key` from the current key's map. */
  remove(key) {
    this.handle.remove(encoder.encode(key));
  }

  /** Every entry of the current key's map, in key order. */
  entries() {
    return this.handle.entries().map(([k, v]) => [decoder.decode(k), load(v)]);
  }

  /** Empties the current key's map. */
  clear() {
    this.handle.clear();
  }
}

/** Asks for `onTimer` for the current key once `domain`'s clock ('event-time' or
 * 'processing-time') passes `timestamp` (ms). */
export function registerTimer(domain, timestamp) {
  timers.register(domain, BigInt(timestamp));
}

/** Cancels a timer of the current key. */
export function deleteTimer(domain, timestamp) {
  timers.delete(domain, BigInt(timestamp));
}

/** The operator's current event-time watermark (ms). */
export function watermark() {
  return Number(timers.currentWatermark());
}

/** The host's processing-time clock (ms). */
export function processingTime() {
  return Number(timers.currentProcessingTime());
}

/** Sends `value` (bytes, text or JSON) to the side output `tag`. */
export function sideOutput(tag, value) {
  emit(tag, pack([value]));
}

/** Packs what `call(out)` pushes to `out`; a failure is the plugin's error. */
function emitting(call) {
  const out = [];
  try {
    call(out);
  } catch (e) {
    throw pluginError(e);
  }
  return pack(out);
}

/** The `process-function` export for a class with `process(key, events, out)` and
 * `onTimer(key, timer, out)`; `out` is an array the function pushes output values to,
 * `key` is the key's text and `timer` is `{ domain, timestamp }`. */
export function exportProcess(Class) {
  const op = opener(Class);
  return {
    open: op.open,
    processBatch(key, input) {
      return emitting((out) => op.instance.process(decoder.decode(key), events(input), out));
    },
    onTimer(key, domain, timestamp) {
      return emitting((out) => op.instance.onTimer?.(decoder.decode(key), { domain, timestamp: Number(timestamp) }, out));
    },
  };
}
