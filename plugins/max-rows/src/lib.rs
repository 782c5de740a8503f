//! A window process function: the events of a window whose numeric `field` (default
//! `price`) equals the window's maximum, in arrival order (ties keep them all). With the
//! whole stream under one key this is "highest bid" (Nexmark q7's shape).

use eddy_sdk::serde::Deserialize;
use eddy_sdk::{Context, Emitter, Error, Event, Value, Window, WindowProcess};

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Params {
    #[serde(default = "default_field")]
    field: String,
}

fn default_field() -> String {
    "price".into()
}

/// The window function.
pub struct MaxRows {
    field: String,
}

impl WindowProcess for MaxRows {
    fn open(ctx: &Context) -> Result<Self, Error> {
        let params: Params = ctx.params()?;
        Ok(MaxRows {
            field: params.field,
        })
    }

    fn process(
        &mut self,
        _key: &[u8],
        _window: Window,
        events: &[Event<'_>],
        out: &mut Emitter<'_>,
    ) -> Result<(), Error> {
        let mut rows = Vec::with_capacity(events.len());
        for event in events {
            let value: Value = event.json()?;
            let x = value
                .get(&self.field)
                .and_then(Value::as_f64)
                .ok_or_else(|| Error::msg(format_args!("no numeric field {:?}", self.field)))?;
            rows.push((x, event.value()));
        }
        let max = rows.iter().map(|r| r.0).fold(f64::NEG_INFINITY, f64::max);
        for (x, value) in rows {
            if x == max {
                out.bytes(value)?;
            }
        }
        Ok(())
    }
}

eddy_sdk::export_window!(MaxRows);
