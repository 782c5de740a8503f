//! A deliberately misbehaving map operator, for testing that the host contains it.
//!
//! Param `mode` picks the misbehaviour, triggered by events whose JSON has
//! `"trigger": true` (other events pass through unchanged):
//! - `panic`: panics (a trap in the host's eyes).
//! - `error`: returns a plugin error.
//! - `memory-bomb`: allocates memory until the host refuses to grow it.
//! - `wrong-count` and `bad-offsets`: bypass the SDK's checks and return a batch with
//!   an extra event, or with offsets past its buffer, as a non-SDK plugin could.

use eddy_sdk::serde::Deserialize;
use eddy_sdk::{Batch, Context, Emitter, Error, Event, Map, Value};

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(crate = "eddy_sdk::serde", rename_all = "kebab-case")]
enum Mode {
    Panic,
    Error,
    MemoryBomb,
    WrongCount,
    BadOffsets,
}

/// The hostile map operator.
pub struct Hostile {
    mode: Mode,
}

impl Map for Hostile {
    fn open(ctx: &Context) -> Result<Self, Error> {
        Ok(Hostile {
            mode: ctx.require("mode")?,
        })
    }

    fn map(&mut self, event: &Event<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
        let value: Value = event.json()?;
        if value.get("trigger") == Some(&Value::Bool(true)) {
            match self.mode {
                Mode::Panic => panic!("hostile plugin panicked on purpose"),
                Mode::Error => return Err(Error::msg("hostile plugin refused the event")),
                Mode::MemoryBomb => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; 16 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                Mode::WrongCount | Mode::BadOffsets => {}
            }
        }
        out.bytes(event.value())
    }
}

impl Hostile {
    /// Runs the SDK's map driver, then breaks the result the way `mode` asks.
    pub fn corrupt(&mut self, input: &Batch) -> Result<Batch, Error> {
        let mut out = eddy_sdk::run_map(self, input)?;
        match self.mode {
            Mode::WrongCount => {
                out.push_value(b"{\"extra\":true}").map_err(Error::msg)?;
            }
            Mode::BadOffsets => {
                if let Some(last) = out.value_ends.last_mut() {
                    *last += 1_000_000;
                }
            }
            Mode::Panic | Mode::Error | Mode::MemoryBomb => {}
        }
        Ok(out)
    }
}

#[cfg(target_arch = "wasm32")]
const _: () = {
    use eddy_sdk::__private::{PluginError, WitBatch, call, map, open};

    struct Export;

    impl map::exports::eddy::plugin::map_operator::Guest for Export {
        fn open() -> Result<(), PluginError> {
            open::<Hostile>(<Hostile as Map>::open)
        }

        fn map_batch(input: WitBatch) -> Result<WitBatch, PluginError> {
            call::<Hostile, _>(input, Hostile::corrupt)
        }
    }

    map::__export_map_plugin!(Export);
};
