// The native host of the test loader: state per key, timers in order, side outputs.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ListState, MapState, ValueState, deleteTimer, exportProcess, registerTimer, sideOutput, watermark,
} from '../eddy-keyed.js';
import { Harness } from './testing.js';

class Probe {
  open() {
    this.last = new ValueState('last');
    this.seen = new ListState('seen');
    this.byTs = new MapState('by-ts');
  }

  process(key, events, out) {
    for (const event of events) {
      const { n } = event.json();
      this.last.set(n);
      this.seen.add(n);
      this.byTs.put(String(event.timestamp), n);
      registerTimer('event-time', event.timestamp + 10);
      registerTimer('processing-time', 5);
      if (n < 0) sideOutput('negative', event.value);
      if (n === 99) deleteTimer('event-time', event.timestamp + 10);
    }
    out.push({ key, watermark: watermark() });
  }

  onTimer(key, timer, out) {
    out.push({ at: timer.timestamp, domain: timer.domain, last: this.last.get(), seen: this.seen.get(), entries: this.byTs.entries() });
    if (timer.domain === 'event-time') {
      this.seen.replace([]);
      this.byTs.clear();
    }
  }
}

test('state is per key and timers fire in order', () => {
  const h = new Harness(Probe);
  assert.deepEqual(h.process('a', [{ n: 1 }, { n: -2 }], [100, 105]), [{ key: 'a', watermark: -9223372036854775808 }]);
  h.process('b', [{ n: 3 }], [90]);
  h.process('c', [{ n: 99 }], [95]);
  const fired = h.advanceWatermark(112);
  assert.deepEqual(fired.map(([k, v]) => [k, v.at]), [['b', 100], ['a', 110]]);
  assert.deepEqual(fired[1][1].seen, [1, -2]);
  assert.deepEqual(fired[1][1].entries, [['100', 1], ['105', -2]]);
  assert.equal(fired[1][1].last, -2);
  assert.deepEqual(h.advanceWatermark(200).map(([k, v]) => [k, v.at]), [['a', 115]]);
  assert.deepEqual(h.advanceWatermark(300), []); // c's timer was deleted
  assert.deepEqual(h.sideOutput('negative'), ['{"n":-2}']);
  assert.deepEqual(
    h.advanceProcessingTime(5).map(([k, v]) => [k, v.domain, v.seen]),
    [['a', 'processing-time', []], ['b', 'processing-time', []], ['c', 'processing-time', [99]]],
  );
});

test('the export wraps the same class for the host', () => {
  assert.equal(typeof exportProcess(Probe).processBatch, 'function');
});
