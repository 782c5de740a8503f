//! {{name}}: an Eddy process function. Counts each user's events per window of event
//! time (param `window-ms`, default 10000) in host-owned map state, and emits each count
//! from an event-time timer once the watermark passes the window's end.

use eddy_sdk::keyed::{MapState, register_timer};
use eddy_sdk::{Context, Emitter, Error, Event, Process, TimeDomain, Timer, json};

/// The function: its state handle points into the host's keyed state.
pub struct Plugin {
    window: i64,
    /// Per user: window end → events.
    counts: MapState<u64>,
}

impl Process for Plugin {
    fn open(ctx: &Context) -> Result<Self, Error> {
        let window = ctx.param("window-ms")?.unwrap_or(10_000);
        Ok(Plugin {
            window,
            counts: MapState::new("counts", None),
        })
    }

    fn process(&mut self, _key: &[u8], events: &[Event<'_>], _out: &mut Emitter<'_>) -> Result<(), Error> {
        for event in events {
            let ts = event
                .timestamp()
                .ok_or_else(|| Error::msg("the job needs event time"))?;
            let end = ts - ts.rem_euclid(self.window) + self.window;
            let count = self.counts.get(&end.to_string())?.unwrap_or(0);
            self.counts.put(&end.to_string(), &(count + 1))?;
            register_timer(TimeDomain::EventTime, end - 1);
        }
        Ok(())
    }

    fn on_timer(&mut self, key: &[u8], timer: Timer, out: &mut Emitter<'_>) -> Result<(), Error> {
        let end = timer.timestamp + 1;
        let Some(count) = self.counts.get(&end.to_string())? else {
            return Ok(());
        };
        self.counts.remove(&end.to_string());
        out.json(&json!({ "user": String::from_utf8_lossy(key), "window_end": end, "events": count }))
    }
}

eddy_sdk::export_process!(Plugin);
