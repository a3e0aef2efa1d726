//! A backlog read in any interleaving of partitions closes the same windows as the live run,
//! with no on-time event sent to the late topic, once the runtime reports which partitions are
//! behind (issue 9: previously one partition raced hours ahead and the others were judged idle
//! in event time).

use std::collections::BTreeMap;

use llmopt_aggregator::{Aggregator, AggregatorConfig};
use llmopt_events::{AnyEvent, CallStatus, LlmCall, WindowAggregate};
use llmopt_runtime::{Input, Output, PartitionState, Processor};
use llmopt_transport::LogicalTopic;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PARTITIONS: i32 = 6;
const HOUR_MS: i64 = 3_600_000;

/// One partition's calls, in the order its producer wrote them: one app per partition, a call
/// every 2 s of event time for `hours`, out of order by up to 2 s (within the 5 s allowed).
fn partition_log(partition: i32, hours: i64, rng: &mut ChaCha8Rng) -> Vec<Input> {
    let start = 1_700_000_000_000;
    (0..hours * HOUR_MS / 2_000)
        .enumerate()
        .map(|(offset, i)| {
            let t = start + i * 2_000 + rng.gen_range(0..2_000);
            let call = LlmCall {
                event_time: t,
                request_id: format!("req-{partition}-{i}"),
                app: format!("app-{partition}"),
                route: "answer".to_string(),
                tenant: None,
                gen_ai_operation_name: "chat".to_string(),
                gen_ai_provider_name: "openai".to_string(),
                gen_ai_request_model: "gpt-4o".to_string(),
                gen_ai_response_model: None,
                gen_ai_usage_input_tokens: 100,
                gen_ai_usage_output_tokens: 10,
                latency_ms: rng.gen_range(50.0..900.0),
                time_to_first_token_ms: None,
                status: CallStatus::Ok,
                error_type: None,
                cost_usd: Some(0.001),
                quality_score: None,
                config_version: None,
                gen_ai_usage_cache_read_input_tokens: None,
                gen_ai_usage_reasoning_output_tokens: None,
                gen_ai_request_max_tokens: None,
                gen_ai_request_temperature: None,
                gen_ai_response_finish_reasons: Vec::new(),
            };
            Input {
                topic: LogicalTopic::Telemetry,
                partition,
                offset: offset as i64,
                id: format!("call/{partition}/{i}"),
                source: "llmopt/ingest".to_string(),
                time_ms: Some(t),
                event: AnyEvent::LlmCall(call),
            }
        })
        .collect()
}

/// Final content of every window (latest revision, the emission watermark left out) and how
/// many calls went to the late topic.
#[derive(Default)]
struct Result {
    windows: BTreeMap<String, WindowAggregate>,
    late: usize,
}

impl Result {
    /// The windows of `apps`.
    fn of_apps(&self, apps: &[&str]) -> BTreeMap<String, WindowAggregate> {
        self.windows
            .iter()
            .filter(|(_, w)| apps.contains(&w.app.as_str()))
            .map(|(id, w)| (id.clone(), w.clone()))
            .collect()
    }

    fn take(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output.event {
                AnyEvent::WindowAggregate(mut w) => {
                    w.watermark = 0;
                    self.windows.insert(w.window_id.clone(), w);
                }
                AnyEvent::LlmCall(_) => self.late += 1,
                other => panic!("unexpected output {other:?}"),
            }
        }
    }
}

fn logs(hours: i64) -> Vec<Vec<Input>> {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    (0..PARTITIONS)
        .map(|p| partition_log(p, hours, &mut rng))
        .collect()
}

/// The live run: records arrive as they are produced, every partition caught up.
fn live(logs: &[Vec<Input>]) -> Result {
    let mut core = Aggregator::new(AggregatorConfig::default()).expect("config");
    let mut result = Result::default();
    let mut arrivals: Vec<&Input> = logs.iter().flatten().collect();
    // Arrival order: production time, which is the call's slot (2 s), partitions interleaved.
    arrivals.sort_by_key(|i| (i.offset, i.partition));
    for input in arrivals {
        result.take(core.process(input));
    }
    result.take(core.flush());
    result
}

/// The backlog read in `order` (partition, number of records) chunks; with `reports`, the
/// runtime's partition states are fed as the runner does.
fn backlog(logs: &[Vec<Input>], order: &[(i32, usize)], reports: bool) -> Result {
    let mut core = Aggregator::new(AggregatorConfig::default()).expect("config");
    let mut result = Result::default();
    if reports {
        for p in 0..PARTITIONS {
            result.take(core.on_partition(LogicalTopic::Telemetry, p, PartitionState::Behind));
        }
    }
    let mut next = vec![0usize; PARTITIONS as usize];
    for &(p, n) in order {
        let log = &logs[p as usize];
        let from = next[p as usize];
        let to = (from + n).min(log.len());
        for input in &log[from..to] {
            result.take(core.process(input));
        }
        next[p as usize] = to;
        if reports && to == log.len() && from < to {
            result.take(core.on_partition(LogicalTopic::Telemetry, p, PartitionState::CaughtUp));
        }
    }
    result.take(core.flush());
    result
}

fn assert_same_windows(live: &Result, other: &Result, what: &str) {
    assert_eq!(
        other.late, 0,
        "{what}: on-time events sent to the late topic"
    );
    assert_eq!(
        live.windows.len(),
        other.windows.len(),
        "{what}: window count"
    );
    for (id, w) in &live.windows {
        assert_eq!(Some(w), other.windows.get(id), "{what}: window {id}");
    }
}

#[test]
fn a_backlog_in_any_interleaving_closes_the_live_windows_with_nothing_late() {
    let logs = logs(2);
    let live = live(&logs);
    assert_eq!(live.late, 0);
    assert!(
        live.windows.len() > 6 * 120,
        "{} windows",
        live.windows.len()
    );
    let per_partition = logs[0].len();

    // Partition after partition: the worst a fetcher can do.
    let sequential: Vec<(i32, usize)> = (0..PARTITIONS).map(|p| (p, per_partition)).collect();
    // Large fetch batches, partitions in a shuffled order each round.
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut batched = Vec::new();
    for _ in 0..(per_partition / 500 + 1) * PARTITIONS as usize {
        batched.push((rng.gen_range(0..PARTITIONS), rng.gen_range(1..1_500)));
    }
    for p in 0..PARTITIONS {
        batched.push((p, per_partition));
    }
    for (what, order) in [("sequential", &sequential), ("batched", &batched)] {
        assert_same_windows(&live, &backlog(&logs, order, true), what);
    }

    // Without the runtime's reports the old behaviour shows: idleness judged in event time
    // sends most of the slower partitions' events to the late topic.
    let blind = backlog(&logs, &sequential, false);
    assert!(
        blind.late > per_partition,
        "late without reports: {}",
        blind.late
    );
}

#[test]
fn a_partition_reported_idle_stops_holding_the_watermark() {
    let logs = logs(1);
    let mut core = Aggregator::new(AggregatorConfig::default()).expect("config");
    // Partition 1 delivered its first minutes, then went quiet (caught up); partition 0 goes on.
    for input in &logs[1][..60] {
        core.process(input);
    }
    let mut before = Vec::new();
    for input in &logs[0][..150] {
        before.extend(core.process(input));
    }
    let windows_of = |out: &[llmopt_runtime::Output], app: &str| {
        out.iter()
            .filter(|o| matches!(&o.event, AnyEvent::WindowAggregate(w) if w.app == app))
            .count()
    };
    assert!(
        windows_of(&before, "app-0") > 0,
        "partition 0's windows close by its own time, whatever partition 1 does"
    );
    assert_eq!(windows_of(&before, "app-1"), 0);
    let held = core.watermark().expect("watermark");
    // Within the event-time idle timeout (5 min), partition 1 still holds the watermark back.
    assert!(held < logs[1][60].time_ms.expect("time"), "{held}");
    let out = core.on_partition(LogicalTopic::Telemetry, 1, PartitionState::Idle);
    let released = core.watermark().expect("watermark");
    assert!(released > held + 60_000, "{held} -> {released}");
    assert!(
        windows_of(&out, "app-1") > 0,
        "the quiet partition's last windows closed by the report"
    );
}

#[test]
fn per_partition_checkpoints_restored_into_a_new_core_continue_the_run() {
    let logs = logs(2);
    let expected = live(&logs);
    let mut arrivals: Vec<&Input> = logs.iter().flatten().collect();
    arrivals.sort_by_key(|i| (i.offset, i.partition));
    let (first, second) = arrivals.split_at(arrivals.len() / 3);

    let mut result = Result::default();
    let mut core = Aggregator::new(AggregatorConfig::default()).expect("config");
    for input in first {
        result.take(core.process(input));
    }
    let checkpoints: Vec<(i32, Vec<u8>)> = (0..PARTITIONS)
        .map(|p| {
            (
                p,
                core.checkpoint(LogicalTopic::Telemetry, p)
                    .expect("checkpoint"),
            )
        })
        .collect();
    drop(core);
    let mut restored = Aggregator::new(AggregatorConfig::default()).expect("config");
    for (p, bytes) in &checkpoints {
        restored
            .restore(LogicalTopic::Telemetry, *p, bytes)
            .expect("restore");
    }
    for input in second {
        result.take(restored.process(input));
    }
    result.take(restored.flush());
    assert_same_windows(&expected, &result, "restored");
}

/// Issue 9, scale-out: a partition moving in from an instance far ahead (it read its partition's
/// backlog to the end while this one is still reading its own) must not close this instance's
/// windows early. Before windows closed per partition, the restored checkpoint's operator
/// watermark (hours ahead) closed every window of the partition still behind, and the rest of
/// its backlog went to the late topic.
#[test]
fn a_partition_moving_in_far_ahead_does_not_close_the_new_owners_windows() {
    let logs = logs(3);
    let expected = live(&logs);
    let telemetry = LogicalTopic::Telemetry;

    // The old owner reads all of partition 1 and checkpoints it.
    let mut old_owner = Aggregator::new(AggregatorConfig::default()).expect("config");
    let mut result = Result::default();
    result.take(old_owner.on_partition(telemetry, 1, PartitionState::Behind));
    for input in &logs[1] {
        result.take(old_owner.process(input));
    }
    result.take(old_owner.on_partition(telemetry, 1, PartitionState::CaughtUp));
    let checkpoint = old_owner.checkpoint(telemetry, 1).expect("checkpoint");

    // The new owner is an hour into partition 0's backlog when partition 1 moves in.
    let mut new_owner = Aggregator::new(AggregatorConfig::default()).expect("config");
    result.take(new_owner.on_partition(telemetry, 0, PartitionState::Behind));
    let (first_hour, rest) = logs[0].split_at(logs[0].len() / 3);
    for input in first_hour {
        result.take(new_owner.process(input));
    }
    new_owner
        .restore(telemetry, 1, &checkpoint)
        .expect("restore");
    result.take(new_owner.on_partition(telemetry, 1, PartitionState::Behind));
    result.take(new_owner.on_partition(telemetry, 1, PartitionState::CaughtUp));
    for input in rest {
        result.take(new_owner.process(input));
    }
    result.take(new_owner.on_partition(telemetry, 0, PartitionState::CaughtUp));
    result.take(new_owner.flush());

    assert_eq!(result.late, 0, "on-time calls of partition 0 sent late");
    let apps = ["app-0", "app-1"];
    assert_eq!(result.of_apps(&apps), expected.of_apps(&apps));
}

/// A partition revoked and later assigned back (a rebalance) closes by its checkpoint, not by
/// the watermark of the partitions that stayed: the revocation leaves nothing of it behind.
#[test]
fn a_partition_revoked_and_assigned_back_resumes_from_its_checkpoint() {
    let logs = logs(2);
    let expected = live(&logs);
    let telemetry = LogicalTopic::Telemetry;
    let mut core = Aggregator::new(AggregatorConfig::default()).expect("config");
    let mut result = Result::default();
    for p in [0, 1] {
        result.take(core.on_partition(telemetry, p, PartitionState::Behind));
    }
    let (head, tail) = logs[1].split_at(logs[1].len() / 3);
    for input in head {
        result.take(core.process(input));
    }
    for input in &logs[0] {
        result.take(core.process(input));
    }
    let checkpoint = core.checkpoint(telemetry, 1).expect("checkpoint");
    result.take(core.on_partition(telemetry, 1, PartitionState::Revoked));
    core.restore(telemetry, 1, &checkpoint).expect("restore");
    result.take(core.on_partition(telemetry, 1, PartitionState::Behind));
    for input in tail {
        result.take(core.process(input));
    }
    result.take(core.on_partition(telemetry, 1, PartitionState::CaughtUp));
    result.take(core.on_partition(telemetry, 0, PartitionState::CaughtUp));
    result.take(core.flush());

    assert_eq!(
        result.late, 0,
        "calls of the partition assigned back sent late"
    );
    assert_eq!(result.of_apps(&["app-1"]), expected.of_apps(&["app-1"]));
}

/// Every partition assigned while empty (the runtime reports it caught up), then a burst of
/// seven minutes of event time written into all of them and fetched one partition after the
/// other, as a consumer's fetches of a fresh burst arrive: the first record of each partition
/// fetched later is older than what the first partition delivered, but not late, because a
/// partition that has delivered nothing yet is judged by its own event time (the runner reports
/// it behind only once that record has told it about the new end).
#[test]
fn a_burst_into_partitions_assigned_empty_makes_nothing_late() {
    let burst = 210; // a call every 2 s: seven minutes
    let logs: Vec<Vec<Input>> = logs(1)
        .into_iter()
        .map(|mut log| {
            log.truncate(burst);
            log
        })
        .collect();
    let live = live(&logs);
    assert_eq!(live.late, 0);

    let mut core = Aggregator::new(AggregatorConfig::default()).expect("config");
    let mut fetched = Result::default();
    for p in 0..PARTITIONS {
        fetched.take(core.on_partition(LogicalTopic::Telemetry, p, PartitionState::CaughtUp));
    }
    for (p, log) in logs.iter().enumerate() {
        let p = p as i32;
        // As the runner does: a partition read to its end is caught up until a record of it
        // arrives; after that first record it is behind until read to its end again.
        for (i, input) in log.iter().enumerate() {
            fetched.take(core.process(input));
            if i == 0 {
                fetched.take(core.on_partition(LogicalTopic::Telemetry, p, PartitionState::Behind));
            }
        }
        fetched.take(core.on_partition(LogicalTopic::Telemetry, p, PartitionState::CaughtUp));
    }
    fetched.take(core.flush());
    assert_same_windows(&live, &fetched, "a burst into empty partitions");
}
