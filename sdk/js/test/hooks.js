// Module resolution hooks for plugin unit tests (registered by register.js).

const SDK_MODULES = new Set(['./eddy.js', './eddy-keyed.js']);
const SDK_DIR = new URL('..', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier.startsWith('eddy:plugin/')) {

    return { url: new URL(`./host.js`, import.meta.url).href, shortCircuit: true };
  }
  if (SDK_MODULES.has(specifier)) {
    return { url: new URL(specifier, SDK_DIR).href, shortCircuit: true };
  }
  return next(specifier, context);
}
