//! A window process function: summarizes a user's session from all of its events.
//!
//! Param `field` (default `page`) names the field to follow. For each window it emits
//! `{"user", "start", "end", "events", "path"}`, where `path` lists the field's values
//! in event-time order (ties in arrival order), which needs the whole window at once.

use eddy_sdk::serde::Deserialize;
use eddy_sdk::{Context, Emitter, Error, Event, Value, Window, WindowProcess, json};

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Params {
    #[serde(default = "default_field")]
    field: String,
}

fn default_field() -> String {
    "page".into()
}

/// The window function.
pub struct SessionSummary {
    field: String,
}

impl WindowProcess for SessionSummary {
    fn open(ctx: &Context) -> Result<Self, Error> {
        let params: Params = ctx.params()?;
        Ok(SessionSummary {
            field: params.field,
        })
    }

    fn process(
        &mut self,
        key: &[u8],
        window: Window,
        events: &[Event<'_>],
        out: &mut Emitter<'_>,
    ) -> Result<(), Error> {
        let mut steps: Vec<(i64, Value)> = Vec::with_capacity(events.len());
        for event in events {
            let value: Value = event.json()?;
            let step = value.get(&self.field).cloned().unwrap_or(Value::Null);
            steps.push((event.timestamp().unwrap_or(window.start), step));
        }
        steps.sort_by_key(|(ts, _)| *ts);
        let path: Vec<Value> = steps.into_iter().map(|(_, v)| v).collect();
        out.json(&json!({
            "user": String::from_utf8_lossy(key),
            "start": window.start,
            "end": window.end,
            "events": events.len(),
            "path": path,
        }))
    }
}

eddy_sdk::export_window!(SessionSummary);
