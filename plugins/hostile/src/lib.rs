//! A deliberately misbehaving map operator, for testing that the host contains it.
//!
//! Param `mode` picks the misbehaviour, triggered by events whose JSON has
//! `"trigger": true` (or the field named by param `on`; other events pass through
//! unchanged):
//! - `panic`: panics (a trap in the host's eyes).
//! - `error`: returns a plugin error.
//! - `loop`: spins forever.
//! - `recursion`: recurses without end.
//! - `memory-bomb`: allocates memory until the host refuses to grow it.
//! - `flood`: prints 10 MB to stdout, then passes the event on.
//! - `huge-output`: emits one value of `size` bytes (default 8 MiB).
//! - `open-file`: reads the file `path` (default `/etc/passwd`) and emits its length.
//! - `connect`: opens a TCP connection to `addr` (default `127.0.0.1:9`).
//! - `crash-once`: panics unless the file `path` exists, creating it first (in a granted
//!   directory), so that a job restarted after the crash gets past the event.
//! - `log-flood`: sends `count` (default 200) messages of 1 MiB each to the host log,
//!   then passes the event on.
//! - `huge-error`: returns a plugin error whose message is `size` bytes long.
//! - `wrong-count` and `bad-offsets`: bypass the SDK's checks and return a batch with
//!   an extra event, or with offsets past its buffer, as a non-SDK plugin could.

use std::hint::black_box;

use eddy_sdk::serde::Deserialize;
use eddy_sdk::{Batch, Context, Emitter, Error, Event, Map, Value, json};

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(crate = "eddy_sdk::serde", rename_all = "kebab-case")]
enum Mode {
    Panic,
    Error,
    Loop,
    Recursion,
    MemoryBomb,
    Flood,
    HugeOutput,
    OpenFile,
    Connect,
    CrashOnce,
    WrongCount,
    BadOffsets,
    LogFlood,
    HugeError,
}

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Params {
    mode: Mode,
    #[serde(default = "default_size")]
    size: usize,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default = "default_addr")]
    addr: String,
    #[serde(default = "default_on")]
    on: String,
    #[serde(default = "default_count")]
    count: usize,
}

fn default_count() -> usize {
    200
}

fn default_on() -> String {
    "trigger".into()
}

fn default_size() -> usize {
    8 << 20
}

fn default_path() -> String {
    "/etc/passwd".into()
}

fn default_addr() -> String {
    "127.0.0.1:9".into()
}

/// The hostile map operator.
pub struct Hostile {
    params: Params,
}

/// Recursion that lives on the WASM stack (no shadow-stack frame), so that it is the
/// host's stack limit that stops it.
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(black_box(depth + 1)).wrapping_add(black_box(depth))
}

impl Map for Hostile {
    fn open(ctx: &Context) -> Result<Self, Error> {
        Ok(Hostile {
            params: ctx.params()?,
        })
    }

    fn map(&mut self, event: &Event<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
        let value: Value = event.json()?;
        if value.get(&self.params.on) != Some(&Value::Bool(true)) {
            return out.bytes(event.value());
        }
        let p = &self.params;
        match p.mode {
            Mode::Panic => panic!("hostile plugin panicked on purpose"),
            Mode::Error => Err(Error::msg("hostile plugin refused the event")),
            Mode::Loop => {
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            Mode::Recursion => {
                black_box(recurse(0));
                out.bytes(event.value())
            }
            Mode::MemoryBomb => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    black_box(&hoard);
                }
            }
            #[allow(clippy::print_stdout, reason = "flooding stdout is the point")]
            Mode::Flood => {
                let line = "x".repeat(999);
                for _ in 0..10_000 {
                    println!("{line}");
                }
                out.bytes(event.value())
            }
            Mode::HugeOutput => out.bytes(&vec![b'x'; p.size]),
            Mode::OpenFile => {
                let text = std::fs::read_to_string(&p.path)
                    .map_err(|e| Error::msg(format_args!("cannot open {}: {e}", p.path)))?;
                out.json(&json!({ "read": text.len() }))
            }
            Mode::Connect => {
                std::net::TcpStream::connect(&p.addr)
                    .map_err(|e| Error::msg(format_args!("cannot connect to {}: {e}", p.addr)))?;
                out.json(&json!({ "connected": p.addr }))
            }
            Mode::CrashOnce => {
                if std::fs::metadata(&p.path).is_err() {
                    std::fs::write(&p.path, b"crashed")?;
                    panic!("hostile plugin crashed once on purpose");
                }
                out.bytes(event.value())
            }
            Mode::LogFlood => {
                let megabyte = "y".repeat(1 << 20);
                for _ in 0..p.count {
                    eddy_sdk::log::log(eddy_sdk::log::Level::Warn, &megabyte);
                }
                out.bytes(event.value())
            }
            Mode::HugeError => Err(Error::msg("z".repeat(p.size))),
            Mode::WrongCount | Mode::BadOffsets => out.bytes(event.value()),
        }
    }
}

impl Hostile {
    /// Runs the SDK's map driver, then, when an event of the batch triggers, breaks
    /// the result the way `mode` asks.
    pub fn corrupt(&mut self, input: &Batch) -> Result<Batch, Error> {
        let mut out = eddy_sdk::run_map(self, input)?;
        let on = &self.params.on;
        let triggered = input.iter().any(|e| {
            serde_json::from_slice::<Value>(e.value)
                .is_ok_and(|v| v.get(on) == Some(&Value::Bool(true)))
        });
        if !triggered {
            return Ok(out);
        }
        match self.params.mode {
            Mode::WrongCount => {
                out.push_value(b"{\"extra\":true}").map_err(Error::msg)?;
            }
            Mode::BadOffsets => {
                if let Some(last) = out.value_ends.last_mut() {
                    *last += 1_000_000;
                }
            }
            _ => {}
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
