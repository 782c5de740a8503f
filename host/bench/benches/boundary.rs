//! The cost of the WASM boundary: events/s through the currency-convert map as a
//! component and compiled natively, at several batch sizes, and instance start time.
//!
//! Also the choice of the batch shape: the same events crossing as a `list<record>`
//! against one packed record of columns, echoed by the guest in `guest/`.
//!
//! Run: `cargo bench -p eddy-bench --bench boundary` (prints a table; `--json` for JSON
//! after `--`). Ratios compare numbers measured in the same run.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use currency_convert::CurrencyConvert;
use eddy_core::Batch;
use eddy_core::connectors::generator::Generator;
use eddy_core::job::GeneratorShape;
use eddy_core::job::sandbox::Sandbox;
use eddy_sdk::{Context, Map};
use eddy_testkit::plugins::{CURRENCY_CONVERT, EDDY_BENCH_GUEST};
use eddy_wasm::bindings::map::MapPlugin;
use eddy_wasm::{InstanceInfo, Runtime, RuntimeConfig, WasmStateless};

const EVENTS: usize = 200_000;
const BATCH_SIZES: [usize; 3] = [1, 64, 1024];

fn params() -> serde_json::Value {
    serde_json::json!({
        "target": "EUR",
        "rates": { "USD": 0.92, "GBP": 1.17, "JPY": 0.0062, "CHF": 1.05 }
    })
}

fn info() -> InstanceInfo {
    InstanceInfo {
        job: "bench".into(),
        step: "to-eur".into(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        params_json: params().to_string(),
        sandbox: Sandbox::default(),
    }
}

fn batches(size: usize) -> Vec<Batch> {
    let generator = Generator::new(GeneratorShape::Orders, 7);
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut batch = Batch::default();
    for id in 0..EVENTS as u64 {
        line.clear();
        generator.write_event(id, &mut line);
        batch.push_value(&line).expect("small batch");
        if batch.len() == size {
            out.push(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// Best of `rounds` timings of `f` over all batches, as events per second.
fn measure(rounds: usize, input: &[Batch], mut f: impl FnMut(Batch) -> Batch) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let copies: Vec<Batch> = input.to_vec();
        let start = Instant::now();
        for b in copies {
            black_box(f(b));
        }
        best = best.min(start.elapsed());
    }
    EVENTS as f64 / best.as_secs_f64()
}

fn instance_start(runtime: &Runtime, iterations: u32) -> Duration {
    let plugin = runtime
        .load(CURRENCY_CONVERT.as_ref())
        .expect("plugin loads");
    let prepared = runtime.prepare::<MapPlugin>(&plugin).expect("map world");
    let start = Instant::now();
    for _ in 0..iterations {
        let mut op = runtime
            .instantiate::<MapPlugin>(&plugin, &prepared, info())
            .expect("instantiate");
        op.open().expect("open");
        black_box(op);
    }
    start.elapsed() / iterations
}

/// Events/s of the map at batches of 256 with no interruption, with epoch deadlines,
/// and with fuel metering: what each sandbox limit costs.
fn limits() -> [(&'static str, f64); 3] {
    let input = batches(256);
    let run = |epoch: bool, fuel: bool| {
        let runtime = Runtime::new(&RuntimeConfig {
            epoch,
            fuel,
            ..RuntimeConfig::default()
        })
        .expect("engine");
        let mut op = runtime
            .instance::<MapPlugin>(CURRENCY_CONVERT.as_ref(), info())
            .map(WasmStateless::new)
            .expect("wasm operator");
        measure(5, &input, |b| op.call(b).expect("wasm map"))
    };
    [
        ("none", run(false, false)),
        ("epoch", run(true, false)),
        ("fuel", run(false, true)),
    ]
}

/// Host bindings of the shape benchmark's guest.
mod echo {
    wasmtime::component::bindgen!({ path: "wit/boundary.wit", world: "boundary" });
}

struct Wasi {
    ctx: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for Wasi {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Events/s echoed through the guest as records and as a packed batch, batches of 256.
fn shapes(engine: &wasmtime::Engine) -> (f64, f64) {
    use echo::exports::eddy::bench::echo::{Event, Packed};
    let component = wasmtime::component::Component::from_file(engine, EDDY_BENCH_GUEST)
        .expect("bench guest compiles");
    let mut linker = wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi links");
    let mut store = wasmtime::Store::new(
        engine,
        Wasi {
            ctx: wasmtime_wasi::WasiCtx::builder().build(),
            table: wasmtime::component::ResourceTable::new(),
        },
    );
    let guest = echo::Boundary::instantiate(&mut store, &component, &linker).expect("instantiate");
    let echo = guest.eddy_bench_echo();
    let mut input = batches(256);
    for batch in &mut input {
        let n = batch.len();
        for i in 0..n {
            batch
                .keys
                .extend_from_slice(format!("c-{}", i % 100).as_bytes());
            batch.key_ends.push(batch.keys.len() as u32);
        }
        batch.timestamps = (0..n as i64).collect();
    }
    let records = measure(3, &input, |b| {
        let events: Vec<Event> = b
            .iter()
            .map(|e| Event {
                key: e.key.unwrap_or_default().to_vec(),
                value: e.value.to_vec(),
                timestamp: e.timestamp.unwrap_or(eddy_core::NO_TIMESTAMP),
            })
            .collect();
        let back = echo
            .call_echo_records(&mut store, &events)
            .expect("records call");
        let mut out = Batch::with_capacity(back.len(), b.values.len());
        for e in &back {
            out.push(eddy_core::EventRef {
                key: Some(&e.key),
                value: &e.value,
                timestamp: Some(e.timestamp),
            })
            .expect("small batch");
        }
        out
    });
    let packed = measure(3, &input, |b| {
        let wit = Packed {
            values: b.values,
            value_ends: b.value_ends,
            keys: b.keys,
            key_ends: b.key_ends,
            timestamps: b.timestamps,
        };
        let back = echo
            .call_echo_packed(&mut store, &wit)
            .expect("packed call");
        Batch {
            values: back.values,
            value_ends: back.value_ends,
            keys: back.keys,
            key_ends: back.key_ends,
            timestamps: back.timestamps,
            headers: Vec::new(),
        }
    });
    (records, packed)
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let runtime = Runtime::new(&RuntimeConfig::default()).expect("engine");
    let mut rows = Vec::new();
    for size in BATCH_SIZES {
        let input = batches(size);
        let mut wasm = runtime
            .instance::<MapPlugin>(CURRENCY_CONVERT.as_ref(), info())
            .map(WasmStateless::new)
            .expect("wasm operator");
        let wasm_eps = measure(3, &input, |b| wasm.call(b).expect("wasm map"));
        let mut native = CurrencyConvert::open(&Context::new(params(), "bench", "to-eur"))
            .expect("native operator");
        let native_eps = measure(3, &input, |b| {
            let mut out = eddy_sdk::run_map(&mut native, &b).expect("native map");
            out.inherit_aligned(b);
            out
        });
        rows.push((size, wasm_eps, native_eps));
    }
    let pooled = instance_start(&runtime, 2000);
    let on_demand_runtime = Runtime::new(&RuntimeConfig {
        pooling: false,
        ..RuntimeConfig::default()
    })
    .expect("engine");
    let on_demand = instance_start(&on_demand_runtime, 2000);
    // The shapes are compared on a plain engine: no deadlines, no fuel.
    let plain = wasmtime::Engine::default();
    let (records, packed) = shapes(&plain);
    let limits = limits();

    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(size, w, n)| serde_json::json!({"batch": size, "wasm_events_per_s": w, "native_events_per_s": n, "native_over_wasm": n / w}))
            .collect();
        let doc = serde_json::json!({
            "operator": "currency-convert (map, JSON parse + serialize)",
            "events": EVENTS,
            "rows": rows,
            "instance_start_us": { "pooling": pooled.as_secs_f64() * 1e6, "on_demand": on_demand.as_secs_f64() * 1e6 },
            "echo_batch_256_events_per_s": { "records": records, "packed": packed, "packed_over_records": packed / records },
            "limits_batch_256_events_per_s": limits.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        println!("{doc}");
        return;
    }
    println!("currency-convert map, {EVENTS} events, best of 3");
    println!(
        "{:>6} {:>16} {:>16} {:>14}",
        "batch", "wasm events/s", "native events/s", "native/wasm"
    );
    for (size, w, n) in &rows {
        println!("{size:>6} {w:>16.0} {n:>16.0} {:>14.2}", n / w);
    }
    println!(
        "instance start + open: pooling {:.1} µs, on-demand {:.1} µs",
        pooled.as_secs_f64() * 1e6,
        on_demand.as_secs_f64() * 1e6
    );
    println!(
        "echo of 256-event batches: list<record> {records:.0} events/s, packed {packed:.0} events/s ({:.2}x)",
        packed / records
    );
    let base = limits[0].1;
    for (name, eps) in &limits {
        println!(
            "sandbox limit {name:<6} {eps:>12.0} events/s  ({:.2}x of none)",
            eps / base
        );
    }
}
