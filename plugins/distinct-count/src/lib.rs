//! A window aggregate: the number of distinct values of a field in each window.
//!
//! Param `field` (required) names the JSON field; its values are compared as JSON text.
//! The accumulator is the sorted set of values seen, kept by the host between calls.

use std::collections::BTreeSet;

use eddy_sdk::serde::Deserialize;
use eddy_sdk::{Aggregate, Context, Error, Event, Value};

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Params {
    field: String,
}

/// The aggregate function.
pub struct DistinctCount {
    field: String,
}

impl Aggregate for DistinctCount {
    type Acc = BTreeSet<String>;

    fn open(ctx: &Context) -> Result<Self, Error> {
        let params: Params = ctx.params()?;
        Ok(DistinctCount {
            field: params.field,
        })
    }

    fn add(&mut self, acc: &mut Self::Acc, event: &Event<'_>) -> Result<(), Error> {
        let value: Value = event.json()?;
        if let Some(v) = value.get(&self.field).filter(|v| !v.is_null()) {
            acc.insert(v.to_string());
        }
        Ok(())
    }

    fn merge(&mut self, acc: &mut Self::Acc, other: Self::Acc) -> Result<(), Error> {
        acc.extend(other);
        Ok(())
    }

    fn result(&mut self, acc: &Self::Acc) -> Result<Value, Error> {
        Ok(Value::from(acc.len()))
    }
}

eddy_sdk::export_aggregate!(DistinctCount);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_sdk::{
        Batch, aggregate_add, aggregate_create, aggregate_merge, aggregate_result, json,
    };

    #[test]
    fn counts_distinct_values_across_merges() {
        let mut f = DistinctCount::open(&Context::new(json!({"field": "user"}), "t", "s")).unwrap();
        let mut batch = Batch::default();
        for u in ["a", "b", "a"] {
            batch
                .push_value(json!({ "user": u }).to_string().as_bytes())
                .unwrap();
        }
        let acc = aggregate_add(&mut f, &aggregate_create::<DistinctCount>(), &batch).unwrap();
        let mut other = Batch::default();
        other.push_value(br#"{"user":"c"}"#).unwrap();
        let acc2 = aggregate_add(&mut f, &aggregate_create::<DistinctCount>(), &other).unwrap();
        let merged = aggregate_merge(&mut f, &acc, &acc2).unwrap();
        assert_eq!(aggregate_result(&mut f, &merged).unwrap(), b"3");
    }
}
