//! Watermarks: how far event time has progressed. A task's watermark is the minimum
//! over its inputs (source splits or upstream subtasks), leaving out idle inputs and
//! counting ended ones as finished; it only ever moves forward. Pure decision logic,
//! so that it can be tested apart from threads and channels.

/// The watermark of an input that has ended: every window may fire.
pub const END_OF_TIME: i64 = i64::MAX;
/// The watermark before anything is known.
pub const BEGINNING_OF_TIME: i64 = i64::MIN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Input {
    watermark: i64,
    idle: bool,
}

/// What changed after an update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The combined watermark advanced to this.
    pub watermark: Option<i64>,
    /// Whether every input is now idle (`Some(true)`) or one became active again.
    pub idle: Option<bool>,
}

/// Combines the watermarks of several inputs.
#[derive(Clone, Debug)]
pub struct WatermarkTracker {
    inputs: Vec<Input>,
    current: i64,
    idle: bool,
}

impl WatermarkTracker {
    /// A tracker of `inputs` inputs, all active and at the beginning of time.
    pub fn new(inputs: usize) -> Self {
        WatermarkTracker {
            inputs: vec![
                Input {
                    watermark: BEGINNING_OF_TIME,
                    idle: false,
                };
                inputs
            ],
            current: BEGINNING_OF_TIME,
            idle: false,
        }
    }

    /// The combined watermark.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Input `i` reports watermark `w` (which also makes it active).
    pub fn update(&mut self, i: usize, w: i64) -> Change {
        let input = &mut self.inputs[i];
        input.watermark = input.watermark.max(w);
        input.idle = false;
        self.recompute()
    }

    /// Input `i` became idle or active.
    pub fn set_idle(&mut self, i: usize, idle: bool) -> Change {
        self.inputs[i].idle = idle;
        self.recompute()
    }

    /// Input `i` ended: it will hold nothing back any more.
    pub fn end(&mut self, i: usize) -> Change {
        self.inputs[i] = Input {
            watermark: END_OF_TIME,
            idle: false,
        };
        self.recompute()
    }

    fn recompute(&mut self) -> Change {
        let active = self.inputs.iter().filter(|i| !i.idle);
        let min = active.clone().map(|i| i.watermark).min();
        let all_idle = min.is_none() && !self.inputs.is_empty();
        let mut change = Change::default();
        if all_idle != self.idle {
            self.idle = all_idle;
            change.idle = Some(all_idle);
        }
        if let Some(min) = min
            && min > self.current
        {
            self.current = min;
            change.watermark = Some(min);
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_of_active_inputs_moves_forward_only() {
        let mut t = WatermarkTracker::new(2);
        assert_eq!(t.update(0, 10).watermark, None, "input 1 holds it back");
        assert_eq!(t.update(1, 5).watermark, Some(5));
        assert_eq!(t.update(1, 20).watermark, Some(10));
        assert_eq!(t.update(1, 3).watermark, None, "inputs never go back");
        assert_eq!(t.current(), 10);
    }

    #[test]
    fn idle_inputs_do_not_stall_and_all_idle_is_reported() {
        let mut t = WatermarkTracker::new(2);
        t.update(0, 100);
        assert_eq!(t.set_idle(1, true).watermark, Some(100));
        let change = t.set_idle(0, true);
        assert_eq!(change.idle, Some(true));
        assert_eq!(change.watermark, None);
        let back = t.update(1, 50);
        assert_eq!(back.idle, Some(false));
        assert_eq!(
            back.watermark, None,
            "an input coming back behind does not pull it back"
        );
        assert_eq!(t.current(), 100);
    }

    #[test]
    fn ended_inputs_release_everything() {
        let mut t = WatermarkTracker::new(2);
        t.update(0, 7);
        assert_eq!(t.end(1).watermark, Some(7));
        assert_eq!(t.end(0).watermark, Some(END_OF_TIME));
    }
}

/// Splits that read in step: a split whose watermark runs ahead of the slowest active
/// split of its group by more than the allowed drift pauses until the others catch up,
/// so that one fast split does not fill state with events the others are far behind.
#[derive(Debug)]
pub struct AlignmentGroup {
    max_drift: i64,
    /// Per split: watermark, idle, ended.
    splits: std::sync::Mutex<Vec<(i64, bool, bool)>>,
}

impl AlignmentGroup {
    /// A group allowing `max_drift` ms between its splits.
    pub fn new(max_drift: i64) -> Self {
        AlignmentGroup {
            max_drift,
            splits: std::sync::Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(i64, bool, bool)>> {
        self.splits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the group; returns the split's number.
    pub fn join(&self) -> usize {
        let mut splits = self.lock();
        splits.push((BEGINNING_OF_TIME, false, false));
        splits.len() - 1
    }

    /// Split `split` is at `watermark` and is idle or not.
    pub fn report(&self, split: usize, watermark: i64, idle: bool) {
        if let Some(s) = self.lock().get_mut(split) {
            s.0 = s.0.max(watermark);
            s.1 = idle;
        }
    }

    /// Split `split` ended.
    pub fn end(&self, split: usize) {
        if let Some(s) = self.lock().get_mut(split) {
            s.2 = true;
        }
    }

    /// Whether split `split` may read on: it is not ahead of the slowest active split
    /// by more than the drift.
    pub fn may_read(&self, split: usize) -> bool {
        let splits = self.lock();
        let Some(own) = splits.get(split).map(|s| s.0) else {
            return true;
        };
        let slowest = splits
            .iter()
            .filter(|(_, idle, ended)| !idle && !ended)
            .map(|s| s.0)
            .min();
        slowest.is_none_or(|min| own <= min.saturating_add(self.max_drift))
    }
}

#[cfg(test)]
mod alignment_tests {
    use super::*;

    #[test]
    fn a_split_ahead_by_more_than_the_drift_waits() {
        let group = AlignmentGroup::new(100);
        let (a, b) = (group.join(), group.join());
        group.report(a, 1_000, false);
        group.report(b, 950, false);
        assert!(group.may_read(a), "50 ms ahead is within the drift");
        group.report(a, 1_200, false);
        assert!(!group.may_read(a), "250 ms ahead must wait");
        assert!(group.may_read(b));
        group.report(b, 1_150, false);
        assert!(group.may_read(a), "caught up");
        group.report(a, 5_000, false);
        group.report(b, 1_150, true);
        assert!(group.may_read(a), "an idle split holds nobody back");
        group.report(b, 1_150, false);
        group.end(b);
        assert!(group.may_read(a), "an ended split holds nobody back");
    }
}
