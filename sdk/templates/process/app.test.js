// Runs the process function natively: `node --import {{sdk}}/sdk/js/test/register.js --test`
// (the SDK's test loader stands in for the host's state and timers).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Harness } from './eddy-testing.js';
import { Plugin } from './app.js';

test('counts per user and window', () => {
  const h = new Harness(Plugin, { 'window-ms': 10000 });
  h.process('ann', [{ ts: 1000 }, { ts: 4000 }], [1000, 4000]);
  h.process('bob', [{ ts: 2000 }], [2000]);
  h.process('ann', [{ ts: 12000 }], [12000]);
  assert.deepEqual(h.advanceWatermark(12000), [
    ['ann', { user: 'ann', window_end: 10000, events: 2 }],
    ['bob', { user: 'bob', window_end: 10000, events: 1 }],
  ]);
  assert.deepEqual(h.advanceWatermark(20000), [['ann', { user: 'ann', window_end: 20000, events: 1 }]]);
});
