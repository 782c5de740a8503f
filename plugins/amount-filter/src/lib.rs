//! Keeps events whose numeric field is at least a minimum.
//!
//! Params: `field` (default `amount`) and `min` (required). An event without the field
//! or with a non-numeric one is dropped unless `strict` is true, which makes it an error.

use eddy_sdk::serde::Deserialize;
use eddy_sdk::{Context, Error, Event, Filter, Value};

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Params {
    #[serde(default = "default_field")]
    field: String,
    min: f64,
    #[serde(default)]
    strict: bool,
}

fn default_field() -> String {
    "amount".into()
}

/// The filter operator.
pub struct AmountFilter {
    params: Params,
}

impl Filter for AmountFilter {
    fn open(ctx: &Context) -> Result<Self, Error> {
        Ok(AmountFilter {
            params: ctx.params()?,
        })
    }

    fn filter(&mut self, event: &Event<'_>) -> Result<bool, Error> {
        let value: Value = event.json()?;
        match value.get(&self.params.field).and_then(Value::as_f64) {
            Some(x) => Ok(x >= self.params.min),
            None if self.params.strict => Err(Error::msg(format_args!(
                "field {:?} is missing or not a number",
                self.params.field
            ))),
            None => Ok(false),
        }
    }
}

eddy_sdk::export_filter!(AmountFilter);
