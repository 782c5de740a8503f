//! `eddy bench nexmark`: runs one Nexmark query on the built-in generator, with its
//! operators as WASM components or as their native twins, and reports throughput,
//! end-to-end latency, peak memory and the result digest (NEXMARK.md's canonical one).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use eddy_core::latency::EventClock;
use eddy_core::memory::Pools;
use eddy_core::{BuildOptions, Dataflow, Job};
use eddy_wasm::NativeTwins;

/// The queries, as the job files in `plugins/nexmark/queries/` state them.
const QUERIES: [(&str, &str); 8] = [
    (
        "q0",
        include_str!("../../../plugins/nexmark/queries/q0.yaml"),
    ),
    (
        "q1",
        include_str!("../../../plugins/nexmark/queries/q1.yaml"),
    ),
    (
        "q2",
        include_str!("../../../plugins/nexmark/queries/q2.yaml"),
    ),
    (
        "q3",
        include_str!("../../../plugins/nexmark/queries/q3.yaml"),
    ),
    (
        "q4",
        include_str!("../../../plugins/nexmark/queries/q4.yaml"),
    ),
    (
        "q5",
        include_str!("../../../plugins/nexmark/queries/q5.yaml"),
    ),
    (
        "q7",
        include_str!("../../../plugins/nexmark/queries/q7.yaml"),
    ),
    (
        "q8",
        include_str!("../../../plugins/nexmark/queries/q8.yaml"),
    ),
];

/// Event time of the first Nexmark event (2015-07-15T00:00:00Z).
const NEXMARK_EPOCH_MS: i64 = 1_436_918_400_000;

/// What to run.
#[derive(clap::Args)]
pub struct NexmarkArgs {
    /// The query: q0, q1, q2, q3, q4, q5, q7 or q8.
    #[arg(long)]
    query: String,
    /// Events to generate.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Parallelism of the job (sources and every step).
    #[arg(long, default_value_t = 1)]
    parallelism: u32,
    /// Run the operators' native twins instead of their components.
    #[arg(long)]
    native: bool,
    /// Generate the events with the WASM source plugin (`nexmark_source.wasm`) instead
    /// of the built-in generator.
    #[arg(long)]
    wasm_source: bool,
    /// Take exactly-once checkpoints this often (`1s`, `500ms`); none when absent.
    #[arg(long, value_name = "DURATION")]
    checkpoint_interval: Option<String>,
    /// Also write the final rows, sorted, to this file (keeps them all in memory).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Where the components are (default: `plugins/dist`).
    #[arg(long, env = "EDDY_PLUGIN_DIR")]
    plugin_dir: Option<PathBuf>,
    /// Run the job as two workers' parts in this process (slots alternating between
    /// them), exchanging batches over the network data plane on localhost: what the
    /// network costs against the same run in one part.
    #[arg(long)]
    over_network: bool,
}

/// The measurements of one run.
#[derive(serde::Serialize)]
struct Report {
    query: String,
    events: u64,
    parallelism: u32,
    native: bool,
    wasm_source: bool,
    over_network: bool,
    checkpoint_interval: Option<String>,
    checkpoints: u64,
    seconds: f64,
    events_per_s: f64,
    cpu_seconds: f64,
    events_per_cpu_s: f64,
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    peak_rss_mib: f64,
    rows: i64,
    digest: String,
}

/// A scratch directory for the run's job file, summary and checkpoints.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The query's job file adapted to the run: event count, parallelism, checkpoints,
/// and the digest written into `scratch`.
fn job_text(args: &NexmarkArgs, scratch: &Path) -> Result<String> {
    let Some((_, text)) = QUERIES.iter().find(|(q, _)| *q == args.query) else {
        bail!(
            "unknown query {:?}: expected one of {}",
            args.query,
            QUERIES.map(|(q, _)| q).join(", ")
        );
    };
    let mut text = (*text).to_owned();
    let mut replace = |from: &str, to: &str| -> Result<()> {
        if !text.contains(from) {
            bail!("the {} job file lost its line {from:?}", args.query);
        }
        text = text.replace(from, to);
        Ok(())
    };
    if args.wasm_source {
        replace(
            "  - type: generator\n    shape: nexmark\n    count: 1000000\n",
            &format!(
                "  - type: plugin\n    plugin: nexmark_source.wasm\n    \
                 params: {{ count: {}, splits: {} }}\n",
                args.events, args.parallelism
            ),
        )?;
    } else {
        replace("count: 1000000", &format!("count: {}", args.events))?;
    }
    let summary = scratch.join("summary.json");
    let mut sink = format!("path: {}", summary.display());
    if let Some(rows) = &args.output {
        sink.push_str(&format!(
            "\n    rows: {}",
            std::path::absolute(rows)?.display()
        ));
    }
    replace(&format!("path: out/{}.json", args.query), &sink)?;
    let mut head = format!("parallelism: {}\n", args.parallelism);
    if let Some(interval) = &args.checkpoint_interval {
        head.push_str(&format!(
            "checkpoints: {{ interval: {interval}, dir: {} }}\n",
            scratch.join("checkpoints").display()
        ));
    }
    replace("plugin-dir: ../../dist\n", &head)?;
    Ok(text)
}

/// Runs the benchmark and prints its report.
pub fn nexmark(args: &NexmarkArgs) -> Result<()> {
    let scratch = Scratch(std::env::temp_dir().join(format!("eddy-bench-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)?;
    let file = scratch.0.join(format!("{}.yaml", args.query));
    std::fs::write(&file, job_text(args, &scratch.0)?)?;
    let plugin_dir = args
        .plugin_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("plugins/dist"));
    if !plugin_dir.join("nexmark_select.wasm").exists() {
        bail!(
            "no Nexmark components in {}: build them with ./.ci/setup, or name their \
             directory with --plugin-dir",
            plugin_dir.display()
        );
    }
    let job = Job::load(&file, Some(&std::path::absolute(&plugin_dir)?))?;
    let report = run(args, &job, &scratch.0)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn run(args: &NexmarkArgs, job: &Job, scratch: &Path) -> Result<Report> {
    // 10,000 events per second of event time, and some room for the last windows.
    let span_ms = (args.events / 10 + 60_000) as usize;
    let latency = Arc::new(EventClock::new(NEXMARK_EPOCH_MS, span_ms));
    let pools = Arc::new(Pools::new(&job.memory));
    let runtime = crate::runtime(job, Some(pools.clone()))?;
    let twins = NativeTwins::new(&runtime)
        .flat_map::<nexmark::Select>("nexmark_select.wasm")
        .process::<nexmark::Stateful>("nexmark_state.wasm");
    let mut registry = crate::registry(&runtime);
    if args.native {
        registry = twins.register(registry);
    }
    let options = BuildOptions {
        latency: Some(latency),
        state: Some(crate::state_backend(job, &pools)),
        ..BuildOptions::default()
    };
    let cpu_before = cpu_time()?;
    let (summary, checkpoints) = if args.over_network {
        if args.checkpoint_interval.is_some() {
            bail!(
                "--over-network runs without checkpoints (they are not yet coordinated across parts)"
            );
        }
        run_in_two_parts(job, &registry, pools, options)?
    } else {
        let dataflow = Dataflow::build_with_options(job, &registry, pools, options)?;
        let metrics = dataflow.metrics();
        let summary = dataflow.run(&crate::STOP)?;
        (
            summary,
            metrics
                .checkpoints
                .completed
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    let cpu_seconds = (cpu_time()? - cpu_before).as_secs_f64();
    let text = std::fs::read_to_string(scratch.join("summary.json"))
        .context("the digest sink wrote no summary")?;
    let digest: serde_json::Value = serde_json::from_str(&text)?;
    let seconds = summary.elapsed.as_secs_f64();
    let events = summary.sources.iter().map(|s| s.records_out).sum::<u64>();
    Ok(Report {
        query: args.query.clone(),
        events,
        parallelism: args.parallelism,
        native: args.native,
        wasm_source: args.wasm_source,
        over_network: args.over_network,
        checkpoint_interval: args.checkpoint_interval.clone(),
        checkpoints,
        seconds,
        events_per_s: events as f64 / seconds,
        cpu_seconds,
        events_per_cpu_s: events as f64 / cpu_seconds.max(1e-9),
        latency_p50_ms: digest["latency_p50_ms"].as_f64(),
        latency_p99_ms: digest["latency_p99_ms"].as_f64(),
        peak_rss_mib: peak_rss()? as f64 / (1 << 20) as f64,
        rows: digest["rows"].as_i64().unwrap_or_default(),
        digest: digest["digest"].as_str().unwrap_or_default().to_owned(),
    })
}

/// Runs `job` as two parts, slots alternating between two data planes on localhost;
/// the summary counts both parts' sources, over the longer part's time.
fn run_in_two_parts(
    job: &Job,
    registry: &eddy_core::Registry<'_>,
    pools: Arc<Pools>,
    options: BuildOptions<'_>,
) -> Result<(eddy_core::RunSummary, u64)> {
    let any: std::net::SocketAddr = "127.0.0.1:0".parse()?;
    let a = Arc::new(eddy_net::DataPlane::bind("a", 1, any)?);
    let b = Arc::new(eddy_net::DataPlane::bind("b", 1, any)?);
    let slots = (0..job.parallelism.max(1))
        .map(|i| match i % 2 {
            0 => ("a".to_owned(), a.local_addr()),
            _ => ("b".to_owned(), b.local_addr()),
        })
        .collect::<Vec<_>>();
    let on_a = eddy_net::Placement::new(a, "a", slots.clone(), 1);
    let on_b = eddy_net::Placement::new(b, "b", slots, 1);
    let part = |network: &'_ eddy_net::Placement| {
        let options = BuildOptions {
            network: Some(network),
            ..options.clone()
        };
        Dataflow::build_with_options(job, registry, pools.clone(), options)
    };
    let (part_a, part_b) = (part(&on_a)?, part(&on_b)?);
    let (a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| part_b.run(&crate::STOP));
        let a = part_a.run(&crate::STOP);
        (a, b.join())
    });
    let (a, b) = (a?, b.map_err(|_| anyhow::anyhow!("part b panicked"))??);
    let mut summary = a.clone();
    summary.elapsed = a.elapsed.max(b.elapsed);
    summary.sources.extend(b.sources);
    Ok((summary, 0))
}

fn print_report(r: &Report) {
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} ms"));
    println!(
        "nexmark {} ({}{}{}): {} events at parallelism {}, checkpoints {}",
        r.query,
        if r.native { "native" } else { "wasm" },
        if r.wasm_source { ", WASM source" } else { "" },
        if r.over_network {
            ", two parts over the network"
        } else {
            ""
        },
        r.events,
        r.parallelism,
        r.checkpoint_interval
            .as_deref()
            .map_or("off".to_owned(), |i| format!(
                "every {i} ({} taken)",
                r.checkpoints
            )),
    );
    println!(
        "  throughput  {:.0} events/s ({:.0} per CPU-second, {:.2} s wall, {:.2} s CPU)",
        r.events_per_s, r.events_per_cpu_s, r.seconds, r.cpu_seconds
    );
    println!(
        "  latency     p50 {}, p99 {} (sink time minus when the sources reached the row's event time)",
        ms(r.latency_p50_ms),
        ms(r.latency_p99_ms)
    );
    println!("  peak RSS    {:.0} MiB", r.peak_rss_mib);
    println!("  result      {} rows, digest {}", r.rows, r.digest);
}

/// CPU time of this process so far (user + system), from `/proc/self/stat`.
fn cpu_time() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .context("malformed /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("malformed /proc/self/stat")
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 of `rest`.
    let total = ticks(11)? + ticks(12)?;
    // The kernel's USER_HZ is 100 on every Linux architecture we run on.
    Ok(Duration::from_millis(total * 10))
}

/// Peak resident memory of this process, in bytes (`VmHWM`).
fn peak_rss() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kib * 1024)
}
