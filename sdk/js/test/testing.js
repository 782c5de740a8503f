// Drives a JavaScript process function natively in unit tests, on the in-memory host of
// host.js: events per key, watermarks, processing time. Plugins import it as
// `./eddy-testing.js` (the test loader resolves it here). State TTLs are not applied.
//
//   const h = new Harness(Summary, { big: 400 });
//   h.process('c1', [{ amount: 500, ts: 1000 }], [1000]);
//   h.advanceWatermark(10000);   // [[key, value], ...] from the fired timers, in order
//   h.sideOutput('big-orders');  // ['{"amount":500,"ts":1000}']

import { Event, encode } from '../eddy.js';
import { nativeHost } from './host.js';

const encoder = new TextEncoder();

export class Harness {
  /** A fresh host and an opened instance of `Class`. */
  constructor(Class, params = {}) {
    nativeHost.reset();
    this.fn = new Class();
    this.fn.open?.(params);
  }

  /** Calls `process` with events of `key` (values: bytes, text or JSON objects, with
   * optional `timestamps`); returns what it emitted. */
  process(key, values, timestamps = []) {
    nativeHost.key = key;
    const events = values.map((v, i) => new Event(encode(v), encoder.encode(key), timestamps[i] ?? null));
    const out = [];
    this.fn.process(key, events, out);
    return out;
  }

  /** Moves event time to `watermark`; returns `[key, value]` for what the fired timers
   * emitted, earliest timer first. */
  advanceWatermark(watermark) {
    nativeHost.watermark = BigInt(watermark);
    return this.#fire('event-time', BigInt(watermark));
  }

  /** Moves processing time to `now`; returns what the fired timers emitted. */
  advanceProcessingTime(now) {
    nativeHost.now = BigInt(now);
    return this.#fire('processing-time', BigInt(now));
  }

  /** The values sent to the side output `tag` so far, as text. */
  sideOutput(tag) {
    return [...(nativeHost.side.get(tag) ?? [])];
  }

  #fire(domain, until) {
    const emitted = [];
    for (;;) {
      const due = [...nativeHost.timers]
        .filter(([, t]) => t.domain === domain && t.timestamp <= until)
        .sort(([, a], [, b]) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : a.key < b.key ? -1 : 1));
      if (due.length === 0) {
        return emitted;
      }
      const [id, timer] = due[0];
      nativeHost.timers.delete(id);
      nativeHost.key = timer.key;
      const out = [];
      this.fn.onTimer?.(timer.key, { domain, timestamp: Number(timer.timestamp) }, out);
      emitted.push(...out.map((v) => [timer.key, v]));
    }
  }
}
