//! Event-time watermarks: per input partition, combined over the partitions that are not idle.

use std::collections::BTreeMap;

use llmopt_runtime::PartitionState;
use serde::{Deserialize, Serialize};

/// Tracks how far event time has progressed, so windows can be closed without a wall clock.
///
/// Each partition's watermark is its max event time minus the allowed out-of-orderness. The
/// operator watermark is the minimum over the partitions that hold it back:
///
/// - a partition the runtime reports [`PartitionState::Behind`] (records waiting) always holds
///   it, and one that has not delivered anything yet holds it entirely: reading a backlog in
///   any interleaving of partitions then closes the same windows as reading it live;
/// - a partition reported [`PartitionState::Idle`] (caught up, silent for a processing-time
///   interval) never holds it, until its next event;
/// - any other partition holds it unless its max event time is more than `idle_timeout_ms`
///   behind the max over all partitions (idleness in event time, which a replay reproduces).
///
/// The runtime's reports are not part of the checkpoint: the runtime repeats them after every
/// (re)assignment. The operator watermark never goes back: a partition that appears (or wakes
/// up) behind it does not reopen closed windows; its events are late and handled by the allowed
/// lateness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkTracker {
    out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
    state: WatermarkState,
    reported: BTreeMap<i32, PartitionState>,
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
            reported: BTreeMap::new(),
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
            reported: BTreeMap::new(),
        }
    }

    pub(crate) fn state(&self) -> &WatermarkState {
        &self.state
    }

    /// Records an event of `partition` at `event_time_ms` and returns the operator watermark.
    pub fn observe(&mut self, partition: i32, event_time_ms: i64) -> Option<i64> {
        if let Some(reported) = self.reported.get_mut(&partition) {
            // An event wakes an idle partition: it holds the watermark again.
            if *reported == PartitionState::Idle {
                *reported = PartitionState::CaughtUp;
            }
        }
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
        self.advance()
    }

    /// Takes the runtime's report on `partition` and returns the operator watermark, which may
    /// advance (a partition caught up or went idle) but never goes back. A revoked partition
    /// is forgotten.
    pub fn report(&mut self, partition: i32, state: PartitionState) -> Option<i64> {
        if state == PartitionState::Revoked {
            self.reported.remove(&partition);
            self.state.partitions.remove(&partition);
        } else {
            self.reported.insert(partition, state);
        }
        self.advance()
    }

    fn advance(&mut self) -> Option<i64> {
        let waiting_for_first_record = self
            .reported
            .iter()
            .any(|(p, s)| *s == PartitionState::Behind && !self.state.partitions.contains_key(p));
        if waiting_for_first_record {
            return self.state.current;
        }
        let Some(global_max) = self.state.partitions.values().copied().max() else {
            return self.state.current;
        };
        let candidate = self
            .state
            .partitions
            .iter()
            .filter(|(p, &m)| self.holds(**p, m, global_max))
            .map(|(_, &m)| m.saturating_sub(self.out_of_orderness_ms))
            .min();
        self.state.current = match (self.state.current, candidate) {
            (Some(current), Some(c)) => Some(current.max(c)),
            (current, c) => current.or(c),
        };
        self.state.current
    }

    /// Whether `partition`, whose max event time is `max`, holds the operator watermark back.
    fn holds(&self, partition: i32, max: i64, global_max: i64) -> bool {
        match self.reported.get(&partition) {
            Some(PartitionState::Behind) => true,
            Some(PartitionState::Idle) => false,
            _ => global_max.saturating_sub(max) <= self.idle_timeout_ms,
        }
    }

    /// The part of the state a checkpoint of one input partition keeps: that partition's max
    /// event time and the operator watermark.
    pub(crate) fn partition_state(&self, partition: i32) -> WatermarkState {
        WatermarkState {
            partitions: self
                .state
                .partitions
                .get(&partition)
                .map(|m| (partition, *m))
                .into_iter()
                .collect(),
            current: self.state.current,
        }
    }

    /// Takes back a partition's checkpointed state. The operator watermark becomes the larger of
    /// the two: windows the previous owner closed stay closed (an event for one is late, as it
    /// would have been there), at the cost of closing this instance's own windows early if it
    /// was far behind the previous owner.
    pub(crate) fn restore_partition(&mut self, partition: i32, state: WatermarkState) {
        if let Some(max) = state.partitions.get(&partition) {
            let entry = self.state.partitions.entry(partition).or_insert(*max);
            *entry = (*entry).max(*max);
        }
        self.state.current = match (self.state.current, state.current) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
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

    /// Whether `partition` is idle: it does not hold the watermark back (reported idle, or too
    /// far behind the newest partition while not behind on records).
    pub fn is_idle(&self, partition: i32) -> bool {
        let global_max = self.state.partitions.values().copied().max();
        match (self.state.partitions.get(&partition), global_max) {
            (Some(&m), Some(g)) => !self.holds(partition, m, g),
            _ => self.reported.get(&partition) == Some(&PartitionState::Idle),
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

    #[test]
    fn a_partition_behind_on_records_is_never_idle() {
        let mut w = WatermarkTracker::new(5_000, 30_000);
        w.report(0, PartitionState::Behind);
        w.report(1, PartitionState::Behind);
        w.observe(1, 100_000);
        // Partition 0 has records waiting but none read yet: nothing advances.
        assert_eq!(w.observe(1, 4_000_000), None);
        assert_eq!(w.observe(0, 100_000), Some(95_000));
        // Hours ahead on partition 1; partition 0 is still behind, so it holds.
        assert_eq!(w.observe(1, 9_000_000), Some(95_000));
        assert!(!w.is_idle(0));
        // Caught up: the event-time rule applies again, and it is far behind.
        assert_eq!(w.report(0, PartitionState::CaughtUp), Some(8_995_000));
        assert!(w.is_idle(0));
    }

    #[test]
    fn processing_time_idleness_releases_and_an_event_wakes() {
        let mut w = WatermarkTracker::new(5_000, 300_000);
        w.observe(0, 100_000);
        w.observe(1, 200_000);
        assert_eq!(w.current(), Some(95_000));
        // Within the event-time idle timeout, only the runtime's report releases it.
        assert_eq!(w.report(0, PartitionState::Idle), Some(195_000));
        assert!(w.is_idle(0));
        // An event from it wakes it: it holds again (from its new max).
        assert_eq!(w.observe(0, 196_000), Some(195_000));
        assert!(!w.is_idle(0));
        assert_eq!(w.observe(1, 260_000), Some(195_000));
        // Revoked: forgotten.
        assert_eq!(w.report(0, PartitionState::Revoked), Some(255_000));
    }
}
