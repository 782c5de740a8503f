//! The order summary process function (keyed state lives in the host, so it runs as a
//! component only).

use eddy_sdk::keyed::{MapState, register_timer, side_output};
use eddy_sdk::serde::Deserialize;
use eddy_sdk::serde_json::value::RawValue;
use eddy_sdk::{Context, Emitter, Error, Event, Process, TimeDomain, Timer, json};

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Params {
    #[serde(default = "default_big")]
    big: f64,
}

fn default_big() -> f64 {
    400.0
}

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Order {
    amount: f64,
    ts: i64,
}

/// Length of a bucket, in ms of event time.
const BUCKET: i64 = 10_000;

/// The process function; its state handle points into the host's keyed state.
/// `VERSION` 2 is an upgrade that also reports each bucket's average order, reading
/// the state version 1 wrote.
pub struct OrderSummary<const VERSION: u8 = 1> {
    big: f64,
    /// Per customer: bucket end → (orders, total in cents).
    buckets: MapState<(u64, i64)>,
}

impl<const VERSION: u8> Process for OrderSummary<VERSION> {
    fn open(ctx: &Context) -> Result<Self, Error> {
        let params: Params = ctx.params()?;
        Ok(OrderSummary {
            big: params.big,
            buckets: MapState::new("buckets", None),
        })
    }

    fn process(
        &mut self,
        _key: &[u8],
        events: &[Event<'_>],
        _out: &mut Emitter<'_>,
    ) -> Result<(), Error> {
        for event in events {
            let order: Order = event.json()?;
            // A negative amount is a bug upstream: the plugin stops hard (a trap), which
            // the tests use to show that host-owned state survives a restarted instance.
            assert!(order.amount >= 0.0, "negative amount {}", order.amount);
            let end = order.ts - order.ts.rem_euclid(BUCKET) + BUCKET;
            let (orders, cents) = self.buckets.get(&end.to_string())?.unwrap_or((0, 0));
            let cents = cents + (order.amount * 100.0).round() as i64;
            self.buckets.put(&end.to_string(), &(orders + 1, cents))?;
            register_timer(TimeDomain::EventTime, end - 1);
            if order.amount > self.big {
                // Forwarded as it came.
                side_output("big-orders", &event.json::<&RawValue>()?)?;
            }
        }
        Ok(())
    }

    fn on_timer(&mut self, key: &[u8], timer: Timer, out: &mut Emitter<'_>) -> Result<(), Error> {
        let end = timer.timestamp + 1;
        let Some((orders, cents)) = self.buckets.get(&end.to_string())? else {
            return Ok(());
        };
        self.buckets.remove(&end.to_string());
        let mut row = json!({
            "customer": String::from_utf8_lossy(key),
            "until": end,
            "orders": orders,
            "total": cents as f64 / 100.0,
        });
        if VERSION >= 2 {
            row["average"] = json!((cents as f64 / orders.max(1) as f64).round() / 100.0);
        }
        out.json(&row)
    }
}
