// Module resolution hooks for plugin unit tests (registered by register.js).

const SDK_DIR = new URL('..', import.meta.url).href;
/** What a plugin's `./eddy*.js` imports stand for. */
const SDK_MODULES = new Map([
  ['./eddy.js', new URL('eddy.js', SDK_DIR).href],
  ['./eddy-keyed.js', new URL('eddy-keyed.js', SDK_DIR).href],
  ['./eddy-testing.js', new URL('testing.js', import.meta.url).href],
]);

export async function resolve(specifier, context, next) {
  if (specifier.startsWith('eddy:plugin/')) {
    return { url: new URL(`./host.js`, import.meta.url).href, shortCircuit: true };
  }
  if (SDK_MODULES.has(specifier)) {
    return { url: SDK_MODULES.get(specifier), shortCircuit: true };
  }
  return next(specifier, context);
}
