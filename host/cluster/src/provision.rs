//! Native mode: the coordinator starts workers as jobs need slots and stops those its
//! jobs left idle, through a [`Provisioner`] (on Kubernetes, worker pods created and
//! deleted through the API server: `eddy-kube`'s `WorkerPods`).
//!
//! Every tick it counts the slots that jobs waiting or restarting need beyond the free
//! slots and the workers already asked for, and asks for enough workers of
//! [`Provisioner::slots`] each. A worker it started that was lost (its pod died) is
//! stopped for good, so its job restarts on a new one; one idle for the idle timeout
//! while no job waits is stopped. Workers it did not start are never stopped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::coordinator::{JobState, State};

/// Starts and stops workers for the coordinator.
pub trait Provisioner: Send + Sync {
    /// Slots of each worker it starts.
    fn slots(&self) -> u32;

    /// The workers it started before (a coordinator that took over finds them).
    fn existing(&self) -> Result<Vec<String>, String>;

    /// Starts a worker; the id it registers as.
    fn start(&self) -> Result<String, String>;

    /// Stops worker `id` for good.
    fn stop(&self, id: &str) -> Result<(), String>;
}

/// How long a worker asked for may take to register before it is given up.
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// Where a worker the provisioner started is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Life {
    /// Asked for at this time, not registered yet.
    Starting(Instant),
    /// Registered; idle (no slot used) since this time, if it is.
    Registered(Option<Instant>),
}

/// The coordinator's native mode: its provisioner and the workers it started.
pub struct Native {
    provisioner: Arc<dyn Provisioner>,
    idle: Duration,
    workers: Mutex<BTreeMap<String, Life>>,
}

impl Native {
    /// Native mode through `provisioner`, stopping workers idle for `idle`.
    pub fn new(provisioner: Arc<dyn Provisioner>, idle: Duration) -> Native {
        Native {
            provisioner,
            idle,
            workers: Mutex::default(),
        }
    }

    /// Takes the workers started before this coordinator as its own.
    pub(crate) fn adopt(&self) {
        match self.provisioner.existing() {
            Ok(ids) => {
                let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
                for id in ids {
                    workers.insert(id, Life::Starting(Instant::now()));
                }
            }
            Err(e) => tracing::warn!("cannot list the workers started before: {e}"),
        }
    }

    /// Worker `id` registered: if it is one it started, it is no longer starting (and
    /// will be replaced if it is lost, however soon).
    pub(crate) fn registered(&self, id: &str) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(life) = workers.get_mut(id)
            && matches!(life, Life::Starting(_))
        {
            *life = Life::Registered(None);
        }
    }

    /// Starts the workers jobs need, stops the lost and the idle ones.
    pub(crate) fn tick(&self, state: &State) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut gone = Vec::new();
        for (id, life) in workers.iter_mut() {
            match (state.workers.get(id), *life) {
                (Some(w), _) => {
                    let idle = match *life {
                        Life::Registered(Some(since)) if w.used == 0 => Some(since),
                        _ => (w.used == 0).then_some(now),
                    };
                    *life = Life::Registered(idle);
                }
                (None, Life::Starting(at)) if now.duration_since(at) > START_TIMEOUT => {
                    tracing::warn!(worker = %id, "the worker asked for never registered");
                    gone.push(id.clone());
                }
                (None, Life::Starting(_)) => {}
                // It registered, then was lost: its pod is not coming back.
                (None, Life::Registered(_)) => gone.push(id.clone()),
            }
        }
        let waiting: u32 = state
            .jobs
            .values()
            .filter(|j| matches!(j.state, JobState::Waiting(_) | JobState::Restarting { .. }))
            .map(|j| j.slots)
            .sum();
        if waiting == 0 {
            for (id, life) in workers.iter() {
                if matches!(life, Life::Registered(Some(since)) if now.duration_since(*since) > self.idle)
                {
                    tracing::info!(worker = %id, "stopping an idle worker");
                    gone.push(id.clone());
                }
            }
        }
        for id in gone {
            workers.remove(&id);
            if let Err(e) = self.provisioner.stop(&id) {
                tracing::warn!(worker = %id, "cannot stop the worker: {e}");
            }
        }
        let free: u32 = state
            .workers
            .values()
            .map(|w| w.slots.saturating_sub(w.used))
            .sum();
        let per = self.provisioner.slots().max(1);
        let starting = workers
            .values()
            .filter(|l| matches!(l, Life::Starting(_)))
            .count() as u32;
        let missing = waiting.saturating_sub(free + starting * per);
        for _ in 0..missing.div_ceil(per) {
            match self.provisioner.start() {
                Ok(id) => {
                    tracing::info!(worker = %id, slots = per, "asked for a worker");
                    workers.insert(id, Life::Starting(now));
                }
                Err(e) => {
                    tracing::warn!("cannot start a worker: {e}");
                    break;
                }
            }
        }
    }
}
