//! Keyed state served by the WIT imports of the `process-plugin` world.

use crate::__private::WitTimeDomain;
use crate::__private::process::eddy::plugin::{side_output as host_side, timers};
use crate::{Batch, TimeDomain};

pub(crate) use crate::__private::process::eddy::plugin::state::{ListState, MapState, ValueState};

fn wit(domain: TimeDomain) -> WitTimeDomain {
    match domain {
        TimeDomain::EventTime => WitTimeDomain::EventTime,
        TimeDomain::ProcessingTime => WitTimeDomain::ProcessingTime,
    }
}

pub(crate) fn register_timer(domain: TimeDomain, timestamp: i64) {
    timers::register(wit(domain), timestamp);
}

pub(crate) fn delete_timer(domain: TimeDomain, timestamp: i64) {
    timers::delete(wit(domain), timestamp);
}

pub(crate) fn watermark() -> i64 {
    timers::current_watermark()
}

pub(crate) fn processing_time() -> i64 {
    timers::current_processing_time()
}

pub(crate) fn side_output(tag: &str, events: Batch) {
    host_side::emit(tag, &events.into());
}
