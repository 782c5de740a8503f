"""Per customer, the orders and their total in each 10-second bucket of event time,
emitted by an event-time timer when the watermark passes the bucket's end; orders above
`big` also go to the side output `big-orders` at once. The Python twin of the Rust
`order-summary` plugin: same params, same state layout, same output."""

from eddy_keyed import EVENT_TIME, MapState, Process, export_process, register_timer, side_output
from eddy_sdk import round_half_away

# Length of a bucket, in ms of event time.
BUCKET = 10_000


class OrderSummary(Process):
    def open(self, params):
        self.big = float(params.get("big", 400.0))
        # Per customer: bucket end -> [orders, total in cents].
        self.buckets = MapState("buckets")

    def process(self, key, events, out):
        for event in events:
            order = event.json()
            amount = float(order["amount"])
            if amount < 0:
                raise ValueError(f"negative amount {amount}")
            ts = order["ts"]
            end = ts - ts % BUCKET + BUCKET
            orders, cents = self.buckets.get(str(end)) or (0, 0)
            self.buckets.put(str(end), [orders + 1, cents + int(round_half_away(amount * 100.0))])
            register_timer(EVENT_TIME, end - 1)
            if amount > self.big:
                side_output("big-orders", event.value)

    def on_timer(self, key, timer, out):
        end = timer.timestamp + 1
        bucket = self.buckets.get(str(end))
        if bucket is None:
            return
        self.buckets.remove(str(end))
        orders, cents = bucket
        out.append({"customer": key, "until": end, "orders": orders, "total": cents / 100.0})


ProcessFunction = export_process(OrderSummary)
