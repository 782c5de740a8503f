// Converts order amounts into one target currency: the JavaScript twin of the Rust
// `currency-convert` plugin, with the same params and byte-identical output.

import { Float, exportMap, roundHalfAway } from './eddy.js';

class CurrencyConvert {
  open(params) {
    this.target = params.target ?? 'EUR';
    this.rates = { ...params.rates };
    this.rates[this.target] ??= 1.0;
  }

  map(event) {
    const order = event.json();
    const rate = this.rates[order.currency];
    if (rate === undefined) {
      throw new Error(`no exchange rate for currency "${order.currency}"`);
    }
    return {
      id: order.id,
      customer: order.customer,
      amount: new Float(roundHalfAway(order.amount * rate * 100.0) / 100.0),
      currency: this.target,
      original_amount: new Float(order.amount),
      original_currency: order.currency,
      ts: order.ts,
    };
  }
}

export const mapOperator = exportMap(CurrencyConvert);
