//! What a worker reports of each attempt it runs: per vertex its totals, rates,
//! busy and backpressured shares and watermark, its checkpoint history and its memory
//! pools. Rates are over the time since the attempt's previous report.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eddy_core::metrics::{JobMetrics, NodeTotals, Role};

use crate::wire::{NodeSample, PoolSample, Report};

/// Makes the reports of the attempts running on a worker.
#[derive(Default)]
pub(crate) struct Reporter {
    /// Each attempt's totals at its previous report, and when.
    last: HashMap<(u64, u32), (Instant, Vec<NodeTotals>)>,
}

impl Reporter {
    /// The report of attempt `key` (job, attempt) now.
    pub(crate) fn report(&mut self, key: (u64, u32), metrics: &JobMetrics) -> Report {
        let now = Instant::now();
        let totals: Vec<NodeTotals> = [Role::Source, Role::Step, Role::Sink]
            .into_iter()
            .flat_map(|role| metrics.totals(role))
            .collect();
        let before = self.last.get(&key);
        let nodes = totals
            .iter()
            .map(|t| {
                let subtasks = metrics
                    .nodes
                    .iter()
                    .find(|n| n.name == t.name)
                    .map_or(1, |n| n.subtasks.len());
                let then = before
                    .and_then(|(at, b)| Some((now - *at, b.iter().find(|b| b.name == t.name)?)));
                sample(t, then, subtasks)
            })
            .collect();
        let pools = metrics
            .pools
            .all()
            .iter()
            .map(|p| PoolSample {
                name: p.name().into(),
                used: p.used() as u64,
                capacity: p.capacity() as u64,
            })
            .collect();
        self.last.insert(key, (now, totals));
        Report {
            job: key.0,
            attempt: key.1,
            nodes,
            checkpoints: metrics.checkpoints.history(),
            pools,
        }
    }

    /// Keeps only the attempts `running` says still run.
    pub(crate) fn keep(&mut self, running: impl Fn(&(u64, u32)) -> bool) {
        self.last.retain(|key, _| running(key));
    }

    /// Forgets attempt `key`, which has ended.
    pub(crate) fn forget(&mut self, key: (u64, u32)) {
        self.last.remove(&key);
    }
}

/// A node's totals `now`, with rates since `then` (time elapsed and the totals
/// then). Busy and backpressured shares are of all `subtasks` of the node, wherever
/// they run, so the coordinator sums the shares the workers report.
fn sample(now: &NodeTotals, then: Option<(Duration, &NodeTotals)>, subtasks: usize) -> NodeSample {
    let mut sample = NodeSample {
        name: now.name.clone(),
        records_in: now.records_in,
        records_out: now.records_out,
        in_per_s: 0.0,
        out_per_s: 0.0,
        busy: 0.0,
        backpressured: 0.0,
        watermark: now.watermark,
    };
    if let Some((elapsed, then)) = then {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let per_s = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        let share = |now: Duration, then: Duration| {
            (now.saturating_sub(then).as_secs_f64() / secs / subtasks.max(1) as f64).min(1.0)
        };
        sample.in_per_s = per_s(now.records_in, then.records_in);
        sample.out_per_s = per_s(now.records_out, then.records_out);
        sample.busy = share(now.busy, then.busy);
        sample.backpressured = share(now.backpressure, then.backpressure);
    }
    sample
}
