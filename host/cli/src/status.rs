//! What `eddy run` shows while and after it runs: a live status line and a summary.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use eddy_core::RunSummary;
use eddy_core::job::memory::ByteSize;
use eddy_core::metrics::{JobMetrics, PluginMetrics, Role};

/// The live status line's thread.
pub struct Live {
    done: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Live {
    /// Stops the status line and clears it.
    pub fn stop(self) {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        eprint!("\r\x1b[2K");
    }
}

/// Prints a one-line status every second until stopped.
pub fn spawn(metrics: Arc<JobMetrics>) -> Live {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let thread = std::thread::spawn(move || {
        let mut last_in = 0u64;
        while !flag.load(Ordering::SeqCst) {
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(100));
                if flag.load(Ordering::SeqCst) {
                    return;
                }
            }
            let read: u64 = metrics
                .totals(Role::Source)
                .iter()
                .map(|t| t.records_out)
                .sum();
            let written: u64 = metrics
                .totals(Role::Sink)
                .iter()
                .map(|t| t.records_in)
                .sum();
            let pools: Vec<String> = metrics
                .pools
                .all()
                .iter()
                .map(|p| format!("{} {}", p.name(), ByteSize(p.used())))
                .collect();
            eprint!(
                "\r\x1b[2K[{}] {:.0} s  read {read}  written {written}  {} events/s  {}",
                metrics.job,
                metrics.started.elapsed().as_secs_f64(),
                read - last_in,
                pools.join("  ")
            );
            let _ = std::io::stderr().flush();
            last_in = read;
        }
    });
    Live { done, thread }
}

/// Prints what each node did, the pools' peaks and the process's peak RSS.
pub fn print_summary(file: &Path, summary: &RunSummary, budget: ByteSize) {
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    eprintln!("{}: finished in {:.3} s", file.display(), secs);
    let rows = summary
        .sources
        .iter()
        .map(|m| ("source", m))
        .chain(summary.steps.iter().map(|m| ("step", m)))
        .chain(summary.sinks.iter().map(|m| ("sink", m)));
    for (role, m) in rows {
        let count = if role == "sink" {
            m.records_in
        } else {
            m.records_out
        };
        eprintln!(
            "  {role:<6} {:<20} in {:>10}  out {:>10}  busy {:>8.3} s  backpressured {:>8.3} s  {:>12.0} events/s",
            m.name,
            m.records_in,
            m.records_out,
            m.busy.as_secs_f64(),
            m.backpressure.as_secs_f64(),
            count as f64 / secs
        );
    }
    let pools: Vec<String> = summary
        .pools
        .iter()
        .map(|(name, peak, cap)| format!("{name} {} of {}", ByteSize(*peak), ByteSize(*cap)))
        .collect();
    eprintln!("  memory peaks: {}", pools.join(", "));
    if let Some((id, dir)) = &summary.checkpoint {
        eprintln!("  last checkpoint: {id} in {}", dir.display());
    }

    if let Some(rss) = peak_rss() {
        eprintln!("  peak RSS {} (process budget {budget})", ByteSize(rss));
    }
}

/// The process's peak resident set size, from /proc on Linux.
pub fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Prints what each plugin instance cost: calls, CPU, fuel, memory high-water mark, traps.
pub fn print_plugins(metrics: &JobMetrics) {
    use std::sync::atomic::Ordering::Relaxed;
    for p in &metrics.plugins {
        let c = &p.counters;
        let fuel = c.fuel.load(Relaxed);
        eprintln!(
            "  plugin {} [{}#{}] tenant {}: {} calls, {:.3} s CPU{}, memory peak {}, {} traps",
            p.plugin,
            p.step,
            p.subtask,
            metrics.tenant,
            c.calls.load(Relaxed),
            c.cpu_ns.load(Relaxed) as f64 / 1e9,
            if fuel > 0 {
                format!(", {fuel} fuel")
            } else {
                String::new()
            },
            ByteSize(c.memory_peak.load(Relaxed) as usize),
            c.traps.load(Relaxed)
        );
        if let Some(line) = reported_line(&c.reported.snapshot(), c.reported.refused.load(Relaxed))
        {
            eprintln!("    {line}");
        }
    }
}

/// What a plugin instance reported itself, for the summary: `counters: words 42;
/// gauges: most-words 9`, or nothing when it reported nothing.
fn reported_line(reported: &PluginMetrics, refused: u64) -> Option<String> {
    let list = |values: Vec<String>| values.join(", ");
    let mut parts = Vec::new();
    if !reported.counters.is_empty() {
        let counters = reported.counters.iter().map(|(k, v)| format!("{k} {v}"));
        parts.push(format!("counters: {}", list(counters.collect())));
    }
    if !reported.gauges.is_empty() {
        let gauges = reported.gauges.iter().map(|(k, v)| format!("{k} {v}"));
        parts.push(format!("gauges: {}", list(gauges.collect())));
    }
    if refused > 0 {
        parts.push(format!("{refused} updates refused (too many names)"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The checkpoint line of the summary, for jobs that checkpoint.
pub fn print_checkpoints(metrics: &JobMetrics) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &metrics.checkpoints;
    let completed = c.completed.load(Relaxed);
    if completed == 0 {
        return;
    }
    eprintln!(
        "  checkpoints: {completed} completed, {} abandoned; the last took {} ms, {}",
        c.abandoned.load(Relaxed),
        c.last_duration_ms.load(Relaxed),
        ByteSize(c.last_size_bytes.load(Relaxed) as usize)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reported_line_lists_counters_then_gauges() {
        assert_eq!(reported_line(&PluginMetrics::default(), 0), None);
        let mut reported = PluginMetrics::default();
        reported.counters.insert("words".into(), 42);
        reported.counters.insert("lines".into(), 7);
        reported.gauges.insert("most-words".into(), 9.5);
        assert_eq!(
            reported_line(&reported, 0).as_deref(),
            Some("counters: lines 7, words 42; gauges: most-words 9.5")
        );
        assert_eq!(
            reported_line(&PluginMetrics::default(), 3).as_deref(),
            Some("3 updates refused (too many names)")
        );
    }
}
