// {{name}}: an Eddy process function. Counts each user's events per window of event
// time (param `window-ms`, default 10000) in host-owned map state, and emits each count
// from an event-time timer once the watermark passes the window's end.

import { MapState, exportProcess, registerTimer } from './eddy-keyed.js';

export class Plugin {
  open(params) {
    this.window = params['window-ms'] ?? 10000;
    // Per user: window end → events.
    this.counts = new MapState('counts');
  }

  process(key, events, out) {
    for (const event of events) {
      if (event.timestamp === null) {
        throw new Error('the job needs event time');
      }
      const ts = event.timestamp;
      const end = ts - (((ts % this.window) + this.window) % this.window) + this.window;
      this.counts.put(String(end), (this.counts.get(String(end)) ?? 0) + 1);
      registerTimer('event-time', end - 1);
    }
  }

  onTimer(key, timer, out) {
    const end = timer.timestamp + 1;
    const count = this.counts.get(String(end));
    if (count === undefined) {
      return;
    }
    this.counts.remove(String(end));
    out.push({ user: key, window_end: end, events: count });
  }
}

export const processFunction = exportProcess(Plugin);
