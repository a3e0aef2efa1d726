//! Event-time watermarks: per input partition, combined over the partitions that are not idle.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Tracks how far event time has progressed, so windows can be closed without a wall clock.
///
/// Each partition's watermark is its max event time minus the allowed out-of-orderness. The
/// operator watermark is the minimum over partitions that are not idle, where a partition is idle
/// when its max event time is more than `idle_timeout_ms` behind the max over all partitions.
/// Idleness is judged in event time only, so a replay reproduces the same watermarks; a silent
/// partition therefore cannot stall the others for longer than the idle timeout.
///
/// The operator watermark never goes back: a partition that appears (or wakes up) behind it does
/// not reopen closed windows; its events are late and handled by the allowed lateness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkTracker {
    out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
    state: WatermarkState,
}

/// What a checkpoint must keep of a [`WatermarkTracker`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WatermarkState {
    /// Max event time seen per partition.
    partitions: BTreeMap<i32, i64>,
    /// Operator watermark so far (monotonic).
    current: Option<i64>,
}

impl WatermarkTracker {
    /// A tracker that has seen nothing yet (no watermark).
    pub fn new(out_of_orderness_ms: i64, idle_timeout_ms: i64) -> Self {
        Self {
            out_of_orderness_ms,
            idle_timeout_ms,
            state: WatermarkState::default(),
        }
    }

    pub(crate) fn from_state(
        out_of_orderness_ms: i64,
        idle_timeout_ms: i64,
        state: WatermarkState,
    ) -> Self {
        Self {
            out_of_orderness_ms,
            idle_timeout_ms,
            state,
        }
    }

    pub(crate) fn state(&self) -> &WatermarkState {
        &self.state
    }

    /// Records an event of `partition` at `event_time_ms` and returns the operator watermark.
    pub fn observe(&mut self, partition: i32, event_time_ms: i64) -> Option<i64> {
        let max = self
            .state
            .partitions
            .entry(partition)
            .or_insert(event_time_ms);
        if event_time_ms < *max {
            // Nothing moved forward: neither this partition's watermark nor idleness changed.
            return self.state.current;
        }
        *max = event_time_ms;
        let global_max = self
            .state
            .partitions
            .values()
            .copied()
            .max()
            .unwrap_or(event_time_ms);
        let candidate = self
            .state
            .partitions
            .values()
            .filter(|&&m| global_max.saturating_sub(m) <= self.idle_timeout_ms)
            .map(|&m| m.saturating_sub(self.out_of_orderness_ms))
            .min();
        self.state.current = match (self.state.current, candidate) {
            (Some(current), Some(c)) => Some(current.max(c)),
            (current, c) => current.or(c),
        };
        self.state.current
    }

    /// The operator watermark: every window ending at or before it is complete (up to lateness).
    pub fn current(&self) -> Option<i64> {
        self.state.current
    }

    /// Watermark of one partition (its max event time minus the out-of-orderness), if seen.
    pub fn partition_watermark(&self, partition: i32) -> Option<i64> {
        self.state
            .partitions
            .get(&partition)
            .map(|m| m.saturating_sub(self.out_of_orderness_ms))
    }

    /// Whether `partition` is idle (too far behind the newest partition to hold the watermark).
    pub fn is_idle(&self, partition: i32) -> bool {
        let global_max = self.state.partitions.values().copied().max();
        match (self.state.partitions.get(&partition), global_max) {
            (Some(&m), Some(g)) => g.saturating_sub(m) > self.idle_timeout_ms,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_partition_lags_by_out_of_orderness() {
        let mut w = WatermarkTracker::new(5_000, 30_000);
        assert_eq!(w.current(), None);
        assert_eq!(w.observe(0, 100_000), Some(95_000));
        // An older event does not move it back.
        assert_eq!(w.observe(0, 97_000), Some(95_000));
        assert_eq!(w.observe(0, 110_000), Some(105_000));
        assert_eq!(w.partition_watermark(0), Some(105_000));
    }

    #[test]
    fn minimum_over_active_partitions() {
        let mut w = WatermarkTracker::new(5_000, 30_000);
        w.observe(0, 100_000);
        assert_eq!(w.observe(1, 120_000), Some(95_000));
        assert_eq!(w.observe(0, 110_000), Some(105_000));
        assert!(!w.is_idle(0));
    }

    #[test]
    fn idle_partition_stops_holding_the_watermark_back() {
        let mut w = WatermarkTracker::new(5_000, 30_000);
        w.observe(0, 100_000);
        w.observe(1, 100_000);
        // Partition 1 goes silent; 0 advances. Within the idle timeout, 1 still holds it.
        assert_eq!(w.observe(0, 130_000), Some(95_000));
        // More than 30 s behind: idle, ignored.
        assert_eq!(w.observe(0, 130_001), Some(125_001));
        assert!(w.is_idle(1));
        // It wakes up behind the watermark: the watermark does not go back.
        assert_eq!(w.observe(1, 110_000), Some(125_001));
    }
}
