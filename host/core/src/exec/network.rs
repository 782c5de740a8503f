//! A job that spans processes: which of its subtasks run here, and how channels to and
//! from the others cross. The core knows only this contract; the cluster provides it
//! over the network data plane. Slot `i` of a job holds subtask `i` of every stage
//! (slot sharing), so where a subtask runs is a matter of its index alone.

use std::sync::Arc;

use crate::checkpoint::link::CoordinatorLink;
use crate::exec::channel::Channel;
use crate::exec::exchange::Outlet;

/// The other processes of a job.
pub trait Network: Send + Sync {
    /// Whether subtask `subtask` (of any stage) runs in this process.
    fn is_local(&self, subtask: u32) -> bool;

    /// Where subtask `from` of stage `stage - 1` sends to remote subtask `to` of stage
    /// `stage`, in messages of at most `capacity` bytes.
    fn outlet(
        &self,
        stage: usize,
        from: u32,
        to: u32,
        capacity: usize,
    ) -> Result<Arc<dyn Outlet>, String>;

    /// Feeds what remote subtask `from` of stage `stage - 1` sends to local subtask
    /// `to` of stage `stage` into `channel`, holding at most `window` bytes of it.
    fn inlet(&self, stage: usize, from: u32, to: u32, channel: Arc<Channel>, window: usize);

    /// How this part's checkpoint coordinator reaches the other parts'.
    fn link(&self) -> Arc<dyn CoordinatorLink>;
}
