// The SDK's own tests: `node --import ./test/register.js --test test/` in sdk/js.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Event, Float, events, pack, roundHalfAway, stringify } from '../eddy.js';

test('floats are written as the Rust SDK writes them', () => {
  const cases = [
    [2, '2.0'], [0, '0.0'], [-0, '-0.0'], [150.5, '150.5'], [-3.25, '-3.25'], [0.1, '0.1'],
    [1e15, '1000000000000000.0'], [1e16, '1e16'], [1.5e17, '1.5e17'], [0.0001, '0.0001'],
    [0.00001, '0.00001'], [0.000001, '1e-6'], [1.25e-7, '1.25e-7'], [123456789.125, '123456789.125'],
    [Number.MAX_VALUE, '1.7976931348623157e308'], [NaN, 'null'],
  ];
  for (const [x, text] of cases) {
    assert.equal(stringify(new Float(x)), text, `${x}`);
  }
});

test('objects keep their order and skip undefined fields', () => {
  assert.equal(stringify({ b: 1, a: [new Float(1), 'x', null], c: undefined, d: { e: true } }),
    '{"b":1,"a":[1.0,"x",null],"d":{"e":true}}');
});

test('halves round away from zero', () => {
  assert.deepEqual([2.5, -2.5, 0.49, 1.5].map(roundHalfAway), [3, -3, 0, 2]);
});

test('batches unpack and pack', () => {
  const batch = pack(['a', { n: 1 }, new Uint8Array([120])]);
  assert.deepEqual(Array.from(batch.valueEnds), [1, 8, 9]);
  const all = events({ ...batch, keys: new Uint8Array([107]), keyEnds: [1, 1, 1], timestamps: [5n, -9223372036854775808n, 7n] });
  assert.deepEqual(all.map((e) => e.text()), ['a', '{"n":1}', 'x']);
  assert.deepEqual(all.map((e) => e.timestamp), [5, null, 7]);
  assert.deepEqual(all.map((e) => e.key && e.key.length), [1, null, null]);
  assert.ok(all[0] instanceof Event);
});
