// Per customer, the orders and their total in each 10-second bucket of event time,
// emitted by an event-time timer when the watermark passes the bucket's end; orders
// above `big` also go to the side output `big-orders` at once. The JavaScript twin of
// the Rust `order-summary` plugin: same params, same state layout, same output.

import { Float, roundHalfAway } from './eddy.js';
import { MapState, exportProcess, registerTimer, sideOutput } from './eddy-keyed.js';

/** Length of a bucket, in ms of event time. */
const BUCKET = 10000;

class OrderSummary {
  open(params) {
    this.big = params.big ?? 400.0;
    // Per customer: bucket end → [orders, total in cents].
    this.buckets = new MapState('buckets');
  }

  process(key, events, out) {
    for (const event of events) {
      const order = event.json();
      if (order.amount < 0) {
        throw new Error(`negative amount ${order.amount}`);
      }
      const end = order.ts - (((order.ts % BUCKET) + BUCKET) % BUCKET) + BUCKET;
      const [orders, cents] = this.buckets.get(String(end)) ?? [0, 0];
      this.buckets.put(String(end), [orders + 1, cents + roundHalfAway(order.amount * 100.0)]);
      registerTimer('event-time', end - 1);
      if (order.amount > this.big) {
        sideOutput('big-orders', event.value);
      }
    }
  }

  onTimer(key, timer, out) {
    const end = timer.timestamp + 1;
    const bucket = this.buckets.get(String(end));
    if (bucket === undefined) {
      return;
    }
    this.buckets.remove(String(end));
    const [orders, cents] = bucket;
    out.push({ customer: key, until: end, orders, total: new Float(cents / 100.0) });
  }
}

export const processFunction = exportProcess(OrderSummary);
