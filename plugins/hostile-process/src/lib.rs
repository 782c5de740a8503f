//! A deliberately misbehaving process function, for testing that the host contains
//! what crosses its `side-output` import.
//!
//! Param `mode` picks the misbehaviour, on every event:
//! - `malformed-side-output`: emits a side-output batch whose value offsets point far
//!   past its buffer, bypassing the SDK, as a non-SDK plugin could.
//! - `side-output-flood`: emits `count` (default 2000) side-output events of 1 MiB each
//!   in one call.
//! - `timer-loop`: registers an event-time timer at time 0; when it fires, registers it
//!   again, so that it is always due.
//!
//! Process functions use host-owned state, so the crate has code only as a component.

#[cfg(target_arch = "wasm32")]
mod hostile {
    use eddy_sdk::serde::Deserialize;
    use eddy_sdk::{Batch, Context, Emitter, Error, Event, Process, TimeDomain, Timer, keyed};

    #[derive(Deserialize, Clone, Copy)]
    #[serde(crate = "eddy_sdk::serde", rename_all = "kebab-case")]
    enum Mode {
        MalformedSideOutput,
        SideOutputFlood,
        TimerLoop,
    }

    #[derive(Deserialize)]
    #[serde(crate = "eddy_sdk::serde")]
    struct Params {
        mode: Mode,
        #[serde(default = "default_count")]
        count: usize,
    }

    fn default_count() -> usize {
        2000
    }

    /// The hostile process function.
    pub struct HostileProcess {
        params: Params,
    }

    impl Process for HostileProcess {
        fn open(ctx: &Context) -> Result<Self, Error> {
            Ok(HostileProcess {
                params: ctx.params()?,
            })
        }

        fn process(
            &mut self,
            _key: &[u8],
            events: &[Event<'_>],
            out: &mut Emitter<'_>,
        ) -> Result<(), Error> {
            match self.params.mode {
                Mode::MalformedSideOutput => {
                    let mut batch = Batch::default();
                    batch.push_value(b"{}").map_err(Error::msg)?;
                    batch.value_ends = vec![u32::MAX];
                    let side = eddy_sdk::__private::process::eddy::plugin::side_output::emit;
                    side("bad", &batch.into());
                }
                Mode::SideOutputFlood => {
                    let megabyte = "x".repeat(1 << 20);
                    for _ in 0..self.params.count {
                        keyed::side_output("flood", &megabyte)?;
                    }
                }
                Mode::TimerLoop => keyed::register_timer(TimeDomain::EventTime, 0),
            }
            for event in events {
                out.bytes(event.value())?;
            }
            Ok(())
        }

        fn on_timer(
            &mut self,
            _key: &[u8],
            timer: Timer,
            _out: &mut Emitter<'_>,
        ) -> Result<(), Error> {
            keyed::register_timer(timer.domain, timer.timestamp);
            Ok(())
        }
    }
}

#[cfg(target_arch = "wasm32")]
eddy_sdk::export_process!(hostile::HostileProcess);
