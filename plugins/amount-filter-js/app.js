// Keeps the events whose numeric field reaches a minimum: the JavaScript twin of the
// Rust `amount-filter` plugin, with the same params and the same output.

import { exportFilter } from './eddy.js';

class AmountFilter {
  open(params) {
    this.field = params.field ?? 'amount';
    this.min = Number(params.min);
    this.strict = Boolean(params.strict);
  }

  filter(event) {
    const value = event.json()[this.field];
    if (typeof value === 'number') {
      return value >= this.min;
    }
    if (this.strict) {
      throw new Error(`field "${this.field}" is missing or not a number`);
    }
    return false;
  }
}

export const filterOperator = exportFilter(AmountFilter);
