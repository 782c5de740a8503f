//! Converts order amounts into one target currency.
//!
//! Params: `target` (currency code, default `EUR`) and `rates`, the value of one unit
//! of each source currency in the target currency. An order in a currency without a
//! rate is a plugin error naming the currency.

use std::collections::HashMap;

use eddy_sdk::serde::{Deserialize, Serialize};
use eddy_sdk::{Context, Emitter, Error, Event, Map};

/// An order as the generator and the example inputs produce it.
#[derive(Deserialize, Serialize)]
#[serde(crate = "eddy_sdk::serde")]
pub struct Order<'a> {
    id: u64,
    customer: &'a str,
    amount: f64,
    currency: &'a str,
    ts: i64,
}

#[derive(Serialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Converted<'a> {
    id: u64,
    customer: &'a str,
    amount: f64,
    currency: &'a str,
    original_amount: f64,
    original_currency: &'a str,
    ts: i64,
}

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Params {
    #[serde(default = "default_target")]
    target: String,
    rates: HashMap<String, f64>,
}

fn default_target() -> String {
    "EUR".into()
}

/// The map operator.
pub struct CurrencyConvert {
    params: Params,
}

impl Map for CurrencyConvert {
    fn open(ctx: &Context) -> Result<Self, Error> {
        let mut params: Params = ctx.params()?;
        params.rates.entry(params.target.clone()).or_insert(1.0);
        Ok(CurrencyConvert { params })
    }

    fn map(&mut self, event: &Event<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
        let order: Order = event.json()?;
        let rate = self.params.rates.get(order.currency).ok_or_else(|| {
            Error::msg(format_args!(
                "no exchange rate for currency {:?}",
                order.currency
            ))
        })?;
        out.json(&Converted {
            id: order.id,
            customer: order.customer,
            amount: (order.amount * rate * 100.0).round() / 100.0,
            currency: &self.params.target,
            original_amount: order.amount,
            original_currency: order.currency,
            ts: order.ts,
        })
    }
}

eddy_sdk::export_map!(CurrencyConvert);
