// Native stand-ins for the host's imports in plugin unit tests (module hooks resolve
// every `eddy:plugin/...` import here): the step's params are `{}` unless a test sets
// `globalThis.eddyParams` (a JSON string), logs go to the console, and keyed state,
// timers and side outputs live in memory (`nativeHost`), driven by testing.js.

const decoder = new TextDecoder();

/** What the host keeps: state per key, timers, side outputs, clocks. */
export const nativeHost = {
  reset() {
    this.key = '';
    this.store = new Map();
    this.timers = new Map();
    this.side = new Map();
    this.watermark = -9223372036854775808n;
    this.now = 0n;
  },
};
nativeHost.reset();

export function params() {
  return globalThis.eddyParams ?? '{}';
}

export function jobName() {
  return 'test';
}

export function operatorName() {
  return 'test';
}

export function subtaskIndex() {
  return 0;
}

export function parallelism() {
  return 1;
}

export function log(level, message) {
  console.error(`[${level}] ${message}`);
}

export function counterAdd() {}

export function gaugeSet() {}

/** One state of the current key. */
class Handle {
  constructor(kind, name) {
    this.slot = `${kind}\u0000${name}`;
  }

  load(fallback) {
    const id = `${nativeHost.key}\u0000${this.slot}`;
    return nativeHost.store.has(id) ? nativeHost.store.get(id) : fallback;
  }

  save(value) {
    nativeHost.store.set(`${nativeHost.key}\u0000${this.slot}`, value);
  }

  clear() {
    nativeHost.store.delete(`${nativeHost.key}\u0000${this.slot}`);
  }
}

export class ValueState extends Handle {
  constructor(name) {
    super('value', name);
  }

  get() {
    return this.load(undefined);
  }

  set(value) {
    this.save(Uint8Array.from(value));
  }
}

export class ListState extends Handle {
  constructor(name) {
    super('list', name);
  }

  get() {
    return [...this.load([])];
  }

  add(value) {
    this.save([...this.get(), Uint8Array.from(value)]);
  }

  replace(values) {
    this.save(values.map((v) => Uint8Array.from(v)));
  }
}

/** Map keys are kept as text (the SDK encodes string keys) and listed in byte order. */
export class MapState extends Handle {
  constructor(name) {
    super('map', name);
  }

  get(key) {
    return this.load(new Map()).get(decoder.decode(key));
  }

  put(key, value) {
    this.save(new Map(this.load(new Map())).set(decoder.decode(key), Uint8Array.from(value)));
  }

  remove(key) {
    const entries = new Map(this.load(new Map()));
    entries.delete(decoder.decode(key));
    this.save(entries);
  }

  entries() {
    const encoder = new TextEncoder();
    return [...this.load(new Map())]
      .map(([k, v]) => [encoder.encode(k), v])
      .sort(([a], [b]) => Buffer.compare(a, b));
  }
}

export function register(domain, timestamp) {
  nativeHost.timers.set(`${domain}\u0000${timestamp}\u0000${nativeHost.key}`, { domain, timestamp, key: nativeHost.key });
}

function deleteTimer(domain, timestamp) {
  nativeHost.timers.delete(`${domain}\u0000${timestamp}\u0000${nativeHost.key}`);
}
export { deleteTimer as delete };

export function currentWatermark() {
  return nativeHost.watermark;
}

export function currentProcessingTime() {
  return nativeHost.now;
}

export function emit(tag, batch) {
  const values = nativeHost.side.get(tag) ?? [];
  let start = 0;
  for (const end of batch.valueEnds) {
    values.push(decoder.decode(batch.values.subarray(start, end)));
    start = end;
  }
  nativeHost.side.set(tag, values);
}
