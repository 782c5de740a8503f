// Native stand-ins for the host's imports in plugin unit tests: the step's params are
// `{}` unless a test sets `globalThis.eddyParams` (a JSON string), logs go to the
// console. Keyed state, timers and side outputs belong to the host: test process
// functions by running their job (`eddy test`).

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

function hostOnly() {
  throw new Error('keyed state, timers and side outputs need the host: run the job (eddy test)');
}

class HostOnly {
  constructor() {
    hostOnly();
  }
}

export const ValueState = HostOnly;
export const ListState = HostOnly;
export const MapState = HostOnly;
export const register = hostOnly;
export { hostOnly as delete };
export const currentWatermark = hostOnly;
export const currentProcessingTime = hostOnly;
export const emit = hostOnly;
