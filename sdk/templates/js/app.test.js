// Runs the plugin natively: `node --import {{sdk}}/sdk/js/test/register.js --test`
// (the SDK's test loader stands in for the host's imports).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Event, stringify } from './eddy.js';
import { Plugin } from './app.js';

test('upper-cases the field', () => {
  const op = new Plugin();
  op.open({});
  const out = op.map(new Event(new TextEncoder().encode('{"id":1,"text":"hello"}'), null, null));
  assert.equal(stringify(out), '{"id":1,"text":"HELLO"}');
});
