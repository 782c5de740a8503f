// Lets Node run a plugin's unit tests: `node --import SDK/sdk/js/test/register.js --test`.
// The plugin's `./eddy.js` and `./eddy-keyed.js` resolve to the SDK, and the host's WIT
// imports (`eddy:plugin/...`) to native stand-ins (host.js).

import { register } from 'node:module';

register('./hooks.js', import.meta.url);
