//! The aggregator's deterministic core: telemetry in, window aggregates (and late events) out.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use llmopt_events::{AnyEvent, LlmCall, WindowKind};
use llmopt_runtime::{Input, Output, PartitionState, Processor};
use llmopt_transport::LogicalTopic;
use serde::{Deserialize, Serialize};

use crate::config::{AggregatorConfig, HoppingConfig};
use crate::dedup::{SeenBucket, SeenIds};
use crate::error::{ConfigError, SnapshotError};
use crate::series::{SeriesId, SeriesTable, WindowPos, WindowState};
use crate::watermark::{WatermarkState, WatermarkTracker};
use crate::window::{
    call_fields, window_id, SeriesKey, WindowAssigner, WindowBounds, WindowEmission, WindowMetrics,
};
use crate::SERVICE_NAME;

/// Version of the [`Aggregator::snapshot`] format; bumped on incompatible changes.
pub const SNAPSHOT_VERSION: u32 = 1;

/// A window's place in the state: its series and its position there.
type WindowSlot = (SeriesId, WindowPos);

/// The aggregator core (see `docs/closed-loop.md`, "Windows (aggregator)").
///
/// For every `LlmCall` on `telemetry` it updates the tumbling window and each hopping window of
/// the call's (app, route, provider, model) series, advances the event-time watermarks, and
/// emits each window whose end its input partition's closing watermark has passed
/// ([`WatermarkTracker::closing`]) as a `WindowAggregate` (revision 0) on `windows`. Emitted
/// windows are kept until that watermark is more than `allowed_lateness_ms` past their end; a
/// late call for such a window re-emits it with the next revision. A call for which every
/// window is gone goes to `telemetry.late` unchanged.
///
/// A call whose id its partition already delivered is not counted again ([`Processor::admit`]):
/// ingest republishes calls, with the same ids, after a crash.
///
/// Outputs of one input are ordered by window end, then window id; ids derive from the inputs
/// only, so a replay of the same inputs yields byte-identical outputs.
#[derive(Debug)]
pub struct Aggregator {
    config: AggregatorConfig,
    assigner: WindowAssigner,
    watermark: WatermarkTracker,
    series: SeriesTable,
    /// Windows not yet emitted, per input partition, in emission order.
    pending: BTreeMap<i32, BTreeSet<(i64, String, WindowSlot)>>,
    /// Emitted windows kept for late events, per input partition, by end (expiry order).
    retained: BTreeMap<i32, BTreeSet<(i64, WindowSlot)>>,
    /// Ids of the calls counted in windows that may still take calls.
    seen: SeenIds,
    scratch_bounds: Vec<WindowBounds>,
}

impl Aggregator {
    /// A core with no state, or an error if the configuration cannot cut time into windows.
    pub fn new(config: AggregatorConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            assigner: WindowAssigner::new(&config),
            watermark: WatermarkTracker::new(
                config.allowed_out_of_orderness_ms,
                config.idle_timeout_ms,
            ),
            seen: SeenIds::new(config.tumbling_size_ms),
            config,
            series: SeriesTable::default(),
            pending: BTreeMap::new(),
            retained: BTreeMap::new(),
            scratch_bounds: Vec::new(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &AggregatorConfig {
        &self.config
    }

    /// Current operator watermark (`None` before the first event): for lag metrics.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark.current()
    }

    /// Windows still open (not yet emitted): for state-size metrics.
    pub fn open_windows(&self) -> usize {
        self.pending.values().map(BTreeSet::len).sum()
    }

    /// Emitted windows still kept for late events: for state-size metrics.
    pub fn retained_windows(&self) -> usize {
        self.retained.values().map(BTreeSet::len).sum()
    }

    /// Call ids kept to recognise copies: for state-size metrics.
    pub fn seen_ids(&self) -> usize {
        self.seen.len()
    }

    /// Emits every open window now (revision 0), in window-end then window-id order, whatever
    /// the watermark: the end of a bounded run, where no later event will close them. Their
    /// `watermark` field is their partition's closing watermark (`i64::MIN` if none is known).
    /// They are then retained like any emitted window, so a later event still revises them.
    pub fn flush(&mut self) -> Vec<Output> {
        let mut ready = Vec::new();
        for (partition, pending) in std::mem::take(&mut self.pending) {
            let watermark = self.watermark.close(partition).unwrap_or(i64::MIN);
            let retained = self.retained.entry(partition).or_default();
            for (end, id, slot) in pending {
                retained.insert((end, slot));
                ready.push((end, id, slot, watermark));
            }
        }
        self.emit_sorted(ready)
    }

    /// Serialises the state (watermarks and every held window) for a checkpoint. Windows are
    /// written in a fixed order, so equal states give equal bytes.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        self.snapshot_of(None)
    }

    /// Like [`Aggregator::snapshot`], for the series read from one input partition only: the
    /// unit the runtime checkpoints and moves between instances.
    pub fn partition_snapshot(&self, partition: i32) -> Result<Vec<u8>, SnapshotError> {
        self.snapshot_of(Some(partition))
    }

    /// Adds a [`Aggregator::partition_snapshot`] to this core's state (the partition was just
    /// assigned to this instance).
    pub fn restore_partition(&mut self, partition: i32, bytes: &[u8]) -> Result<(), SnapshotError> {
        let snapshot = self.decode_snapshot(bytes)?;
        self.watermark
            .restore_partition(partition, snapshot.watermark);
        self.insert_snapshot_windows(snapshot.windows, partition);
        self.seen
            .restore(partition, &snapshot.seen)
            .map_err(SnapshotError::Corrupt)?;
        Ok(())
    }

    /// Adds the windows of a snapshot to the state, their series tagged with `partition`.
    fn insert_snapshot_windows(&mut self, windows: Vec<WindowSnapshot<'_>>, partition: i32) {
        for w in windows {
            let start = w.start_ms;
            let bounds = WindowBounds {
                kind: w.kind,
                start_ms: start,
                end_ms: start.saturating_add(self.assigner.size_ms(w.kind)),
            };
            let sid = self.series.intern(w.series.fields());
            self.retag(sid, partition);
            self.insert_window(sid, bounds, w.metrics, w.revision);
        }
    }

    /// Forgets the windows of the series read from `partition` (it moved to another instance,
    /// which restores them from the last checkpoint).
    fn drop_partition(&mut self, partition: i32) {
        self.seen.drop_partition(partition);
        let pending = self.pending.remove(&partition).unwrap_or_default();
        let retained = self.retained.remove(&partition).unwrap_or_default();
        let slots = pending
            .into_iter()
            .map(|(_, _, slot)| slot)
            .chain(retained.into_iter().map(|(_, slot)| slot));
        for (sid, pos) in slots {
            self.series.remove_window(sid, pos);
        }
    }

    /// Moves a series' windows to `partition` (its calls now come from there: the topic was
    /// repartitioned, or a whole-core restore did not know where it came from).
    fn retag(&mut self, sid: SeriesId, partition: i32) {
        let Some(series) = self.series.get_mut(sid) else {
            return;
        };
        let from = std::mem::replace(&mut series.input_partition, partition);
        if from == partition {
            return;
        }
        for (pos, w) in &series.windows {
            let end = w.bounds.end_ms;
            if w.revision.is_none() {
                let entry = (end, w.id.clone(), (sid, *pos));
                if let Some(set) = self.pending.get_mut(&from) {
                    set.remove(&entry);
                }
                self.pending.entry(partition).or_default().insert(entry);
            } else {
                if let Some(set) = self.retained.get_mut(&from) {
                    set.remove(&(end, (sid, *pos)));
                }
                self.retained
                    .entry(partition)
                    .or_default()
                    .insert((end, (sid, *pos)));
            }
        }
    }

    fn snapshot_of(&self, partition: Option<i32>) -> Result<Vec<u8>, SnapshotError> {
        let mut windows: Vec<_> = self
            .series
            .iter()
            .filter(|series| partition.is_none_or(|p| series.input_partition == p))
            .flat_map(|series| {
                series.windows.values().map(|w| WindowSnapshot {
                    series: series.key.clone(),
                    kind: w.bounds.kind,
                    start_ms: w.bounds.start_ms,
                    revision: w.revision,
                    metrics: w.metrics.clone(),
                    end_ms: w.bounds.end_ms,
                    id: &w.id,
                })
            })
            .collect();
        windows.sort_by(|a, b| (a.end_ms, a.id).cmp(&(b.end_ms, b.id)));
        let watermark = match partition {
            Some(p) => self.watermark.partition_state(p),
            None => self.watermark.state().clone(),
        };
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            tumbling_size_ms: self.config.tumbling_size_ms,
            hopping: self.config.hopping,
            watermark,
            windows,
            seen: self.seen.snapshot(partition),
        };
        serde_json::to_vec(&snapshot).map_err(SnapshotError::Encode)
    }

    /// Rebuilds a core from [`Aggregator::snapshot`] bytes. Tolerances may differ from the run
    /// that wrote the snapshot; window sizes may not, since the held windows were cut with them.
    pub fn restore(config: AggregatorConfig, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut core = Self::new(config)?;
        let snapshot = core.decode_snapshot(bytes)?;
        core.watermark = WatermarkTracker::from_state(
            core.config.allowed_out_of_orderness_ms,
            core.config.idle_timeout_ms,
            snapshot.watermark,
        );
        // A whole-core snapshot does not say which partition a series came from: its next
        // call tags it.
        core.insert_snapshot_windows(snapshot.windows, -1);
        core.seen
            .restore(-1, &snapshot.seen)
            .map_err(SnapshotError::Corrupt)?;
        Ok(core)
    }

    /// Decodes snapshot bytes and checks they were cut with this core's window sizes.
    fn decode_snapshot(&self, bytes: &[u8]) -> Result<Snapshot<'static>, SnapshotError> {
        let core = self;
        let snapshot: Snapshot<'static> =
            serde_json::from_slice(bytes).map_err(SnapshotError::Decode)?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion {
                found: snapshot.version,
                supported: SNAPSHOT_VERSION,
            });
        }
        let geometry = AggregatorConfig {
            tumbling_size_ms: snapshot.tumbling_size_ms,
            hopping: snapshot.hopping,
            ..core.config.clone()
        };
        if !geometry.same_geometry(&core.config) {
            let pair = |h: Option<HoppingConfig>| h.map(|h| (h.size_ms, h.hop_ms));
            return Err(SnapshotError::GeometryMismatch {
                snapshot_tumbling_ms: snapshot.tumbling_size_ms,
                snapshot_hopping: pair(snapshot.hopping),
                config_tumbling_ms: core.config.tumbling_size_ms,
                config_hopping: pair(core.config.hopping),
            });
        }
        Ok(snapshot)
    }

    fn on_call(&mut self, partition: i32, input_id: &str, call: &LlmCall) -> Vec<Output> {
        let t = call.event_time;
        let lateness = self.config.allowed_lateness_ms;
        let before = self.watermark.closing(partition);
        let mut bounds = std::mem::take(&mut self.scratch_bounds);
        bounds.clear();
        self.assigner.assign(t, &mut bounds);
        // A window still takes events while the watermark is within the lateness of its end.
        bounds.retain(|b| before.is_none_or(|wm| wm <= b.end_ms.saturating_add(lateness)));

        let mut out = Vec::new();
        let mut revised = Vec::new();
        if bounds.is_empty() {
            out.push(Output {
                topic: LogicalTopic::TelemetryLate,
                id: input_id.to_string(),
                key: format!("{}/{}", call.app, call.route),
                time_ms: t,
                event: AnyEvent::LlmCall(call.clone()),
            });
        } else {
            let sid = self.series.intern(call_fields(call));
            self.retag(sid, partition);
            for b in &bounds {
                let pos = pos_of(b);
                let existing = self
                    .series
                    .get_mut(sid)
                    .and_then(|s| s.windows.get_mut(&pos));
                match existing {
                    Some(w) => {
                        w.metrics.add(call);
                        if w.revision.is_some() {
                            revised.push((sid, pos));
                        }
                    }
                    None => {
                        let mut metrics = WindowMetrics::default();
                        metrics.add(call);
                        self.insert_window(sid, *b, metrics, None);
                    }
                }
            }
        }
        self.scratch_bounds = bounds;

        let operator = self.watermark.current();
        self.watermark.observe(partition, t);
        let Some(closing) = self.watermark.close(partition) else {
            return out;
        };
        // Other partitions' closing watermarks move only with the operator watermark.
        let scope = if self.watermark.current() == operator {
            Scope::One(partition, closing)
        } else {
            Scope::All
        };
        self.emit_ready(Some((revised, closing)), scope, &mut out);
        self.expire(scope);
        out
    }

    /// Emits the windows a call revised (with its partition's closing watermark) and every open
    /// window whose partition's closing watermark passed its end, in the partitions of `scope`;
    /// all in one order (window end, then id).
    fn emit_ready(
        &mut self,
        revised: Option<(Vec<WindowSlot>, i64)>,
        scope: Scope,
        out: &mut Vec<Output>,
    ) {
        let mut ready: Vec<(i64, String, WindowSlot, i64)> = Vec::new();
        for (slot, watermark) in revised
            .into_iter()
            .flat_map(|(slots, watermark)| slots.into_iter().map(move |s| (s, watermark)))
        {
            if let Some(w) = self.window_mut(slot) {
                w.revision = Some(w.revision.map_or(0, |r| r.saturating_add(1)));
                ready.push((w.bounds.end_ms, w.id.clone(), slot, watermark));
            }
        }
        match scope {
            Scope::One(partition, watermark) => self.settle(partition, watermark, &mut ready),
            Scope::All => {
                let partitions: Vec<i32> = self.pending.keys().copied().collect();
                for partition in partitions {
                    if let Some(watermark) = self.watermark.close(partition) {
                        self.settle(partition, watermark, &mut ready);
                    }
                }
            }
        }
        out.extend(self.emit_sorted(ready));
    }

    /// Moves `partition`'s open windows that end at or before `watermark` to `ready`.
    fn settle(
        &mut self,
        partition: i32,
        watermark: i64,
        ready: &mut Vec<(i64, String, WindowSlot, i64)>,
    ) {
        let Some(pending) = self.pending.get_mut(&partition) else {
            return;
        };
        while pending.first().is_some_and(|(end, _, _)| *end <= watermark) {
            if let Some((end, id, slot)) = pending.pop_first() {
                self.retained
                    .entry(partition)
                    .or_default()
                    .insert((end, slot));
                ready.push((end, id, slot, watermark));
            }
        }
        if pending.is_empty() {
            self.pending.remove(&partition);
        }
    }

    /// The outputs of `ready` windows (end, id, slot, watermark), in end then id order.
    fn emit_sorted(&mut self, mut ready: Vec<(i64, String, WindowSlot, i64)>) -> Vec<Output> {
        ready.sort_unstable();
        ready
            .into_iter()
            .filter_map(|(_, _, slot, watermark)| self.emit_window(slot, watermark))
            .collect()
    }

    /// The output of a window at its current revision (0 when it is emitted for the first time).
    fn emit_window(&mut self, (sid, pos): WindowSlot, watermark: i64) -> Option<Output> {
        let series = self.series.get_mut(sid)?;
        let w = series.windows.get_mut(&pos)?;
        let revision = *w.revision.get_or_insert(0);
        let aggregate = w.metrics.to_aggregate(WindowEmission {
            series: &series.key,
            window_id: &w.id,
            bounds: w.bounds,
            revision,
            watermark,
        });
        Some(Output {
            topic: LogicalTopic::Windows,
            id: aggregate.id.clone(),
            key: series.partition_key.clone(),
            time_ms: w.bounds.end_ms,
            event: AnyEvent::WindowAggregate(aggregate),
        })
    }

    /// Drops emitted windows their partition's closing watermark has left more than
    /// `allowed_lateness_ms` behind, and the ids of calls that no window could take any more, in
    /// the partitions of `scope`.
    fn expire(&mut self, scope: Scope) {
        match scope {
            Scope::One(partition, watermark) => self.expire_partition(partition, watermark),
            Scope::All => {
                let partitions: BTreeSet<i32> = self
                    .retained
                    .keys()
                    .copied()
                    .chain(self.seen.partitions())
                    .collect();
                for partition in partitions {
                    // Expiring windows raises the floor (an expired window must not be opened
                    // again); a partition with only call ids left keeps none.
                    let watermark = if self.retained.contains_key(&partition) {
                        self.watermark.close(partition)
                    } else {
                        self.watermark.closing(partition)
                    };
                    if let Some(watermark) = watermark {
                        self.expire_partition(partition, watermark);
                    }
                }
            }
        }
    }

    /// [`Aggregator::expire`] for one partition whose closing watermark is `watermark`.
    fn expire_partition(&mut self, partition: i32, watermark: i64) {
        let horizon = self.late_before(watermark);
        self.seen.forget_before(partition, horizon);
        let lateness = self.config.allowed_lateness_ms;
        let Some(retained) = self.retained.get_mut(&partition) else {
            return;
        };
        while let Some(&(end, slot)) = retained.first() {
            if watermark <= end.saturating_add(lateness) {
                break;
            }
            retained.pop_first();
            self.series.remove_window(slot.0, slot.1);
        }
        if retained.is_empty() {
            self.retained.remove(&partition);
        }
    }

    /// Adds a window to the state (open if `revision` is `None`, else retained).
    fn insert_window(
        &mut self,
        sid: SeriesId,
        bounds: WindowBounds,
        metrics: WindowMetrics,
        revision: Option<i32>,
    ) {
        let Some(series) = self.series.get_mut(sid) else {
            return;
        };
        let partition = series.input_partition;
        let pos = pos_of(&bounds);
        let id = window_id(&series.id_prefix, &bounds);
        match series.windows.entry(pos) {
            Entry::Occupied(_) => return, // Only a corrupt snapshot lists a window twice.
            Entry::Vacant(e) => {
                e.insert(WindowState {
                    id: id.clone(),
                    bounds,
                    metrics,
                    revision,
                });
            }
        }
        match revision {
            None => {
                self.pending
                    .entry(partition)
                    .or_default()
                    .insert((bounds.end_ms, id, (sid, pos)));
            }
            Some(_) => {
                self.retained
                    .entry(partition)
                    .or_default()
                    .insert((bounds.end_ms, (sid, pos)));
            }
        }
    }

    fn window_mut(&mut self, (sid, pos): WindowSlot) -> Option<&mut WindowState> {
        self.series.get_mut(sid)?.windows.get_mut(&pos)
    }
}

impl Aggregator {
    /// Event time before which a call is late at `watermark`: every window it belongs to ends
    /// at most the longest window size after it, and takes calls until the watermark is
    /// `allowed_lateness_ms` past its end.
    fn late_before(&self, watermark: i64) -> i64 {
        let longest = self
            .config
            .hopping
            .map_or(self.config.tumbling_size_ms, |h| {
                h.size_ms.max(self.config.tumbling_size_ms)
            });
        watermark
            .saturating_sub(self.config.allowed_lateness_ms)
            .saturating_sub(longest)
    }

    /// Whether the call was not counted before; records it. A call that is late at its
    /// partition's closing watermark is not recorded: it changes no window, wherever it goes.
    fn first_delivery(&mut self, partition: i32, id: &str, call: &LlmCall) -> bool {
        let late = self
            .watermark
            .closing(partition)
            .is_some_and(|wm| call.event_time < self.late_before(wm));
        late || self.seen.insert(partition, id, call.event_time)
    }
}

/// The partitions whose windows an input may close: one (with its closing watermark) when the
/// operator watermark did not move, all of them when it did.
#[derive(Debug, Clone, Copy)]
enum Scope {
    One(i32, i64),
    All,
}

fn pos_of(bounds: &WindowBounds) -> WindowPos {
    (bounds.kind == WindowKind::Hopping, bounds.start_ms)
}

impl Processor for Aggregator {
    fn name(&self) -> &'static str {
        SERVICE_NAME
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![LogicalTopic::Telemetry]
    }

    /// A call whose id its partition already delivered is a copy: not counted again.
    fn admit(&mut self, input: &Input) -> bool {
        match &input.event {
            AnyEvent::LlmCall(call) => self.first_delivery(input.partition, &input.id, call),
            _ => true,
        }
    }

    /// Handles one `LlmCall`; any other event on the topic is ignored (no output).
    fn process(&mut self, input: &Input) -> Vec<Output> {
        match &input.event {
            AnyEvent::LlmCall(call) => self.on_call(input.partition, &input.id, call),
            _ => Vec::new(),
        }
    }

    fn checkpoint(&self, topic: LogicalTopic, partition: i32) -> Option<Vec<u8>> {
        if topic != LogicalTopic::Telemetry {
            return None;
        }
        // Serialising plain data cannot fail; if it ever did, the previous checkpoint would stay
        // and more would be replayed after a restart.
        self.partition_snapshot(partition).ok()
    }

    fn restore(&mut self, topic: LogicalTopic, partition: i32, state: &[u8]) -> Result<(), String> {
        if topic != LogicalTopic::Telemetry {
            return Ok(());
        }
        self.restore_partition(partition, state)
            .map_err(|e| e.to_string())
    }

    /// Feeds the runtime's partition report to the watermark (a revoked partition's windows
    /// are dropped first); emits what an advance closes.
    fn on_partition(
        &mut self,
        topic: LogicalTopic,
        partition: i32,
        state: PartitionState,
    ) -> Vec<Output> {
        if topic != LogicalTopic::Telemetry {
            return Vec::new();
        }
        if state == PartitionState::Revoked {
            self.drop_partition(partition);
        }
        let before = self.watermark.current();
        if self.watermark.report(partition, state) == before {
            return Vec::new();
        }
        // Nothing is closed at the reported partition itself unless it holds windows: a
        // revoked partition must not leave a floor behind.
        let mut out = Vec::new();
        self.emit_ready(None, Scope::All, &mut out);
        self.expire(Scope::All);
        out
    }
}

/// Checkpoint format (JSON).
#[derive(Serialize, Deserialize)]
struct Snapshot<'a> {
    version: u32,
    tumbling_size_ms: i64,
    hopping: Option<HoppingConfig>,
    watermark: WatermarkState,
    windows: Vec<WindowSnapshot<'a>>,
    /// Ids of the calls counted (absent in checkpoints written before deduplication).
    #[serde(default)]
    seen: Vec<SeenBucket>,
}

#[derive(Serialize, Deserialize)]
struct WindowSnapshot<'a> {
    series: SeriesKey,
    kind: WindowKind,
    start_ms: i64,
    revision: Option<i32>,
    metrics: WindowMetrics,
    /// Sort key only: recomputed from the configuration on restore.
    #[serde(skip)]
    end_ms: i64,
    /// Sort key only: recomputed from the series and bounds on restore.
    #[serde(skip)]
    id: &'a str,
}
