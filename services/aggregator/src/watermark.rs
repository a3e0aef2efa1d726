//! Event-time watermarks: per input partition, combined over the partitions that are not idle.

use std::collections::{BTreeMap, BTreeSet};

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
/// A partition's windows close at its *closing watermark* ([`WatermarkTracker::closing`]): its
/// own watermark while it holds the operator watermark, the larger of the two when it does not
/// (it is idle), and never below where it closed before; a partition that has delivered nothing
/// yet closes nothing until its first record or an idle report. Its windows close by its own event
/// time alone (Kafka Streams' per-task stream time): which other partitions an instance owns,
/// how their reads interleave, and how far ahead they are when a partition moves in, does not
/// change them; the operator watermark closes the windows of idle partitions, so a quiet series
/// still gets its last windows.
///
/// The runtime's reports are not part of the checkpoint: the runtime repeats them after every
/// (re)assignment. The operator watermark never goes back: a partition that appears (or wakes
/// up) behind it does not reopen closed windows; its events are late and handled by the allowed
/// lateness. A partition's checkpoint keeps its closing watermark, which its next owner never
/// goes below, but not the operator watermark: a partition moving in does not close the new
/// owner's windows early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkTracker {
    out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
    state: WatermarkState,
    reported: BTreeMap<i32, PartitionState>,
    /// Partitions reported read to their end whose first record here is the last one they
    /// delivered, with no report since: they hold the watermark (see
    /// [`WatermarkTracker::observe`]).
    fresh: BTreeSet<i32>,
    /// Max event time over all partitions (derived from `state`).
    global_max: Option<i64>,
}

/// What a checkpoint must keep of a [`WatermarkTracker`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WatermarkState {
    /// Max event time seen per partition.
    partitions: BTreeMap<i32, i64>,
    /// Operator watermark so far (monotonic). Only whole-core checkpoints restore it.
    current: Option<i64>,
    /// Per partition: the highest closing watermark its windows were closed at, here or by a
    /// previous owner (from a partition checkpoint): windows below it stay closed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    floors: BTreeMap<i32, i64>,
}

impl WatermarkTracker {
    /// A tracker that has seen nothing yet (no watermark).
    pub fn new(out_of_orderness_ms: i64, idle_timeout_ms: i64) -> Self {
        Self {
            out_of_orderness_ms,
            idle_timeout_ms,
            state: WatermarkState::default(),
            reported: BTreeMap::new(),
            fresh: BTreeSet::new(),
            global_max: None,
        }
    }

    pub(crate) fn from_state(
        out_of_orderness_ms: i64,
        idle_timeout_ms: i64,
        state: WatermarkState,
    ) -> Self {
        let global_max = state.partitions.values().copied().max();
        Self {
            out_of_orderness_ms,
            idle_timeout_ms,
            state,
            reported: BTreeMap::new(),
            fresh: BTreeSet::new(),
            global_max,
        }
    }

    pub(crate) fn state(&self) -> &WatermarkState {
        &self.state
    }

    /// Records an event of `partition` at `event_time_ms` and returns the operator watermark.
    ///
    /// The first record here of a partition the runtime reported read to its end (empty when
    /// assigned) makes it hold the watermark until its next record or report, however far
    /// behind the others it is: it has just started delivering (a burst fetched one partition
    /// after another), it is not idle. The runner reports such a partition behind right after
    /// that record, once it has learnt the partition's new end.
    pub fn observe(&mut self, partition: i32, event_time_ms: i64) -> Option<i64> {
        let reported = self.reported.get_mut(&partition);
        let read_to_end = matches!(
            reported.as_deref(),
            Some(PartitionState::CaughtUp | PartitionState::Idle)
        );
        if let Some(reported) = reported {
            // An event wakes an idle partition: it holds the watermark again.
            if *reported == PartitionState::Idle {
                *reported = PartitionState::CaughtUp;
            }
        }
        if read_to_end && !self.state.partitions.contains_key(&partition) {
            self.fresh.insert(partition);
        } else {
            self.fresh.remove(&partition);
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
        self.fresh.remove(&partition);
        if state == PartitionState::Revoked {
            self.reported.remove(&partition);
            self.state.partitions.remove(&partition);
            self.state.floors.remove(&partition);
        } else {
            self.reported.insert(partition, state);
        }
        self.advance()
    }

    fn advance(&mut self) -> Option<i64> {
        self.global_max = self.state.partitions.values().copied().max();
        let waiting_for_first_record = self
            .reported
            .iter()
            .any(|(p, s)| *s == PartitionState::Behind && !self.state.partitions.contains_key(p));
        if waiting_for_first_record {
            return self.state.current;
        }
        let Some(global_max) = self.global_max else {
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
        if self.fresh.contains(&partition) {
            return true;
        }
        match self.reported.get(&partition) {
            Some(PartitionState::Behind) => true,
            Some(PartitionState::Idle) => false,
            _ => global_max.saturating_sub(max) <= self.idle_timeout_ms,
        }
    }

    /// The part of the state a checkpoint of one input partition keeps: that partition's max
    /// event time and its closing watermark.
    pub(crate) fn partition_state(&self, partition: i32) -> WatermarkState {
        WatermarkState {
            partitions: self
                .state
                .partitions
                .get(&partition)
                .map(|m| (partition, *m))
                .into_iter()
                .collect(),
            current: None,
            floors: self
                .closing(partition)
                .map(|c| (partition, c))
                .into_iter()
                .collect(),
        }
    }

    /// Takes back a partition's checkpointed state: its max event time, and its closing
    /// watermark as a floor, so windows the previous owner closed stay closed (an event for one
    /// is late, as it would have been there). This instance's operator watermark is left alone.
    /// (A checkpoint written before closing watermarks existed gives its operator watermark as
    /// the floor.)
    pub(crate) fn restore_partition(&mut self, partition: i32, state: WatermarkState) {
        if let Some(max) = state.partitions.get(&partition) {
            let entry = self.state.partitions.entry(partition).or_insert(*max);
            *entry = (*entry).max(*max);
            self.global_max = self.global_max.max(Some(*max));
        }
        let floor = if state.floors.is_empty() {
            state.current
        } else {
            state.floors.get(&partition).copied()
        };
        if let Some(floor) = floor {
            let entry = self.state.floors.entry(partition).or_insert(floor);
            *entry = (*entry).max(floor);
        }
    }

    /// Where `partition`'s windows close (`None` while nothing is known): its own watermark,
    /// or the operator watermark if that is larger and the partition does not hold it (idle),
    /// but never below its floor.
    ///
    /// A partition that has delivered nothing here (and brought no checkpoint) has no event time
    /// of its own yet: until the runtime reports it idle, its first records are judged by their
    /// own time, not by how far the other partitions have gone. Otherwise a burst written into
    /// every partition, fetched one partition after another, would make the first records of a
    /// partition that was empty when assigned late (Kafka Streams' per-task stream time starts
    /// at the task's first record the same way).
    pub fn closing(&self, partition: i32) -> Option<i64> {
        let holds = match (self.state.partitions.get(&partition), self.global_max) {
            (Some(&max), Some(global_max)) => self.holds(partition, max, global_max),
            _ => self.reported.get(&partition) != Some(&PartitionState::Idle),
        };
        [
            self.partition_watermark(partition),
            self.state.current.filter(|_| !holds),
            self.state.floors.get(&partition).copied(),
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// [`WatermarkTracker::closing`], remembered as the partition's floor: the core closes
    /// windows with it, and they must stay closed when the partition holds the operator
    /// watermark again or moves to another instance.
    pub fn close(&mut self, partition: i32) -> Option<i64> {
        let closing = self.closing(partition)?;
        let floor = self.state.floors.entry(partition).or_insert(closing);
        *floor = (*floor).max(closing);
        Some(closing)
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

    #[test]
    fn a_partition_closes_by_its_own_time_or_the_operator_watermark() {
        let mut w = WatermarkTracker::new(5_000, 300_000);
        w.observe(0, 100_000);
        w.observe(1, 200_000);
        assert_eq!(w.current(), Some(95_000));
        assert_eq!(w.close(0), Some(95_000));
        assert_eq!(w.closing(1), Some(195_000), "ahead: its own time");
        w.report(0, PartitionState::Idle);
        assert_eq!(w.close(0), Some(195_000), "idle: the operator watermark");
        assert_eq!(w.closing(7), None, "unseen: closes nothing yet");
        w.report(7, PartitionState::CaughtUp);
        assert_eq!(
            w.closing(7),
            None,
            "caught up (empty), nothing read: its own time, none yet"
        );
        w.report(7, PartitionState::Behind);
        assert_eq!(w.closing(7), None, "behind, nothing read: closes nothing");
        w.report(7, PartitionState::Idle);
        assert_eq!(
            w.closing(7),
            Some(195_000),
            "idle, nothing read: the operator watermark"
        );
        // Partition 0 wakes up: it holds again, but what it closed stays closed.
        w.observe(0, 150_000);
        assert_eq!(w.closing(0), Some(195_000));
        w.observe(0, 250_000);
        assert_eq!(w.closing(0), Some(245_000));
    }

    #[test]
    fn a_moved_partition_keeps_its_closing_but_not_the_operator_watermark() {
        let mut old_owner = WatermarkTracker::new(5_000, 300_000);
        old_owner.observe(0, 900_000);
        old_owner.observe(1, 400_000);
        old_owner.report(1, PartitionState::Idle);
        assert_eq!(old_owner.close(1), Some(895_000));
        let moved = old_owner.partition_state(1);

        let mut new_owner = WatermarkTracker::new(5_000, 300_000);
        new_owner.report(2, PartitionState::Behind);
        new_owner.observe(2, 300_000);
        new_owner.restore_partition(1, moved);
        new_owner.report(1, PartitionState::Behind);
        assert_eq!(
            new_owner.closing(1),
            Some(895_000),
            "never below the old owner's"
        );
        assert_eq!(
            new_owner.closing(2),
            Some(295_000),
            "its own partition is not pushed ahead"
        );

        // The other way round: a partition behind moving into an instance far ahead closes by
        // its own time, not by the new owner's operator watermark.
        let mut ahead = WatermarkTracker::new(5_000, 300_000);
        ahead.observe(3, 2_000_000);
        ahead.restore_partition(2, new_owner.partition_state(2));
        ahead.report(2, PartitionState::Behind);
        assert_eq!(ahead.current(), Some(1_995_000));
        assert_eq!(ahead.closing(2), Some(295_000));
        ahead.report(2, PartitionState::Revoked);
        assert_eq!(
            ahead.closing(2),
            None,
            "forgotten: its own time again, none until its next record or checkpoint"
        );
    }

    #[test]
    fn an_old_partition_checkpoint_floors_at_its_operator_watermark() {
        let old: WatermarkState =
            serde_json::from_str(r#"{"partitions":{"3":500000},"current":450000}"#)
                .expect("old format");
        let mut w = WatermarkTracker::new(5_000, 300_000);
        w.restore_partition(3, old);
        assert_eq!(w.closing(3), Some(495_000));
        assert_eq!(w.current(), None);
        let old: WatermarkState =
            serde_json::from_str(r#"{"partitions":{"4":100000},"current":450000}"#)
                .expect("old format");
        w.restore_partition(4, old);
        assert_eq!(
            w.closing(4),
            Some(450_000),
            "the old operator watermark as floor"
        );
    }
}
