//! A job's subtasks placed on workers, as the core's [`Network`]: slot `i` holds
//! subtask `i` of every stage, and channels to subtasks of other workers' slots go over
//! the data plane.

use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_core::checkpoint::link::{CoordinatorLink, PartMessage};
use eddy_core::exec::channel::Channel;
use eddy_core::exec::exchange::Outlet;
use eddy_core::exec::network::Network;

use crate::DataPlane;

/// Where each slot of one attempt of a job is, seen from one worker.
pub struct Placement {
    plane: Arc<DataPlane>,
    me: String,
    /// Per slot: the worker holding it and its data-plane address.
    slots: Vec<(String, SocketAddr)>,
    /// Distinguishes this attempt's channels from every other's on the data plane.
    attempt: u64,
    /// The coordinators' messages to this part.
    control: Arc<Link>,
}

/// The checkpoint coordinators' link of one attempt, over the data plane.
struct Link {
    plane: Arc<DataPlane>,
    me: String,
    slots: Vec<(String, SocketAddr)>,
    attempt: u64,
    inbox: Mutex<Receiver<Vec<u8>>>,
}

impl Placement {
    /// Slots `slots` (worker and data-plane address of each), seen from worker `me`
    /// whose data plane is `plane`; `attempt` must differ between attempts and jobs.
    pub fn new(
        plane: Arc<DataPlane>,
        me: &str,
        slots: Vec<(String, SocketAddr)>,
        attempt: u64,
    ) -> Placement {
        let inbox = Mutex::new(plane.register_control(attempt));
        let control = Arc::new(Link {
            plane: plane.clone(),
            me: me.to_owned(),
            slots: slots.clone(),
            attempt,
            inbox,
        });
        Placement {
            plane,
            me: me.to_owned(),
            slots,
            attempt,
            control,
        }
    }

    /// The channel between subtask `from` of stage `stage - 1` and subtask `to` of
    /// stage `stage`, unique on the data plane.
    fn channel(&self, stage: usize, from: u32, to: u32) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for part in [self.attempt, stage as u64, u64::from(from), u64::from(to)] {
            for byte in part.to_le_bytes() {
                h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}

impl Network for Placement {
    fn is_local(&self, subtask: u32) -> bool {
        self.slots
            .get(subtask as usize)
            .is_some_and(|(worker, _)| *worker == self.me)
    }

    fn outlet(
        &self,
        stage: usize,
        from: u32,
        to: u32,
        capacity: usize,
    ) -> Result<Arc<dyn Outlet>, String> {
        let (peer, addr) = self
            .slots
            .get(to as usize)
            .ok_or_else(|| format!("no slot for subtask {to}"))?;
        let channel = self.channel(stage, from, to);
        let outlet = self
            .plane
            .outlet(peer, *addr, channel, capacity)
            .map_err(|e| e.to_string())?;
        Ok(outlet)
    }

    fn inlet(&self, stage: usize, from: u32, to: u32, channel: Arc<Channel>, window: usize) {
        let id = self.channel(stage, from, to);
        self.plane.register_inlet(id, channel, from, window);
    }

    fn link(&self) -> Arc<dyn CoordinatorLink> {
        self.control.clone()
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        self.plane.unregister_control(self.attempt);
    }
}

impl CoordinatorLink for Link {
    /// Slot 0's worker leads: the job's sinks run there.
    fn leads(&self) -> bool {
        self.slots.first().is_some_and(|(w, _)| *w == self.me)
    }

    fn send(&self, message: &PartMessage) {
        let body = message.encode();
        let mut sent: Vec<&str> = Vec::new();
        let leader = self.slots.first().map(|(w, _)| w.as_str());
        for (worker, addr) in &self.slots {
            let to_this = if self.leads() {
                *worker != self.me
            } else {
                Some(worker.as_str()) == leader
            };
            if !to_this || sent.contains(&worker.as_str()) {
                continue;
            }
            sent.push(worker);
            if let Err(e) = self
                .plane
                .send_control(worker, *addr, self.attempt, body.clone())
            {
                // The attempt fails over as the coordinator learns of the loss.
                tracing::warn!(%worker, "cannot reach another part's coordinator: {e}");
            }
        }
    }

    fn recv(&self, timeout: Duration) -> Option<PartMessage> {
        let inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        let body = if timeout.is_zero() {
            inbox.try_recv().ok()?
        } else {
            inbox.recv_timeout(timeout).ok()?
        };
        match PartMessage::decode(&body) {
            Ok(message) => Some(message),
            Err(e) => {
                tracing::warn!("a malformed message from another part's coordinator: {e}");
                None
            }
        }
    }
}
