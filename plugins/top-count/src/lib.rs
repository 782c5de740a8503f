//! A window aggregate: the items that share the largest count (ties keep them all).
//!
//! Each event carries an item and a count (params `item`, default `key`, and `count`,
//! default `num`); the result is `{"count": max, "items": [...]}` with the items in
//! ascending order. Used for "hot items" (Nexmark q5's shape) over the per-item counts a
//! sliding window produced.

use std::collections::BTreeSet;

use eddy_sdk::serde::{Deserialize, Serialize};
use eddy_sdk::{Aggregate, Context, Error, Event, Value, json};

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Params {
    #[serde(default = "default_item")]
    item: String,
    #[serde(default = "default_count")]
    count: String,
}

fn default_item() -> String {
    "key".into()
}

fn default_count() -> String {
    "num".into()
}

/// The best count so far and the items that reach it.
#[derive(Default, Serialize, Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub struct Best {
    count: u64,
    items: BTreeSet<String>,
}

impl Best {
    fn offer(&mut self, count: u64, items: impl IntoIterator<Item = String>) {
        if count > self.count {
            self.count = count;
            self.items.clear();
        }
        if count == self.count {
            self.items.extend(items);
        }
    }
}

/// The aggregate function.
pub struct TopCount {
    params: Params,
}

impl Aggregate for TopCount {
    type Acc = Best;

    fn open(ctx: &Context) -> Result<Self, Error> {
        Ok(TopCount {
            params: ctx.params()?,
        })
    }

    fn add(&mut self, acc: &mut Best, event: &Event<'_>) -> Result<(), Error> {
        let value: Value = event.json()?;
        let count = value
            .get(&self.params.count)
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::msg(format_args!("no count field {:?}", self.params.count)))?;
        let item = match value.get(&self.params.item) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => {
                return Err(Error::msg(format_args!(
                    "no item field {:?}",
                    self.params.item
                )));
            }
        };
        acc.offer(count, [item]);
        Ok(())
    }

    fn merge(&mut self, acc: &mut Best, other: Best) -> Result<(), Error> {
        acc.offer(other.count, other.items);
        Ok(())
    }

    fn result(&mut self, acc: &Best) -> Result<Value, Error> {
        Ok(json!({ "count": acc.count, "items": acc.items }))
    }
}

eddy_sdk::export_aggregate!(TopCount);
