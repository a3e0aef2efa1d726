//! Scale-out and scale-in at load: `llmopt loadgen` free-running (paced by `--rate`) into ingest
//! and the aggregator as processes on the real broker and a Redis of their own, run twice over
//! the same simulated fleet: once with one aggregator (the reference), once with three in one
//! consumer group, one of them killed with SIGKILL for good a third of the way through and a new
//! one started at two thirds. Nothing else of the loop runs, so no decision changes the routing
//! and the fleet's telemetry is the same in both runs whatever the pace; the windows must be the
//! same too: every window id with the same content (a window emitted early and revised would
//! show as an extra id), and no event on the late topic in either run.
//!
//! The killed instance's partitions move only when its session times out (6 s here); the
//! survivors restore its last checkpoints and re-read what follows them. At the load test's pace
//! (about 170× real time at 2,000 events/s) those seconds are many minutes of event time, so
//! both runs raise the aggregator's event-time idle timeout to an hour; the checkpoint interval
//! is 1 s.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use llmopt_sim::Scenario;
use llmopt_transport::LogicalTopic;

use crate::chaos::{compare_topics, fleet_config, path, read_topics, Env, Redis, Topic};
use crate::pipeline::{
    counter, free_port, http_get, published_calls, spawn_logged, wait_idle, wait_ready,
    PipelineRun, Process,
};

/// The topics compared between the two runs.
const COMPARED: [LogicalTopic; 3] = [
    LogicalTopic::Telemetry,
    LogicalTopic::Windows,
    LogicalTopic::TelemetryLate,
];

/// Settings of a scale run.
pub struct ScaleRun {
    /// Binary, broker, partitions and simulated seconds (`duration_s`).
    pub pipeline: PipelineRun,
    /// Events per second loadgen publishes at most.
    pub rate: u64,
    /// Aggregator instances at the start of the scaled run.
    pub instances: usize,
}

/// What one run published.
struct Outcome {
    calls: u64,
    wall: Duration,
    topics: Vec<Topic>,
    /// Records each aggregator consumed (the killed one as of its kill).
    consumed: Vec<u64>,
}

/// One `llmopt run aggregator` of a run.
struct Aggregator {
    port: u16,
    process: Option<Process>,
}

impl ScaleRun {
    /// Runs the reference, then the scaled run; prints the comparison and fails on any
    /// difference.
    pub fn run(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.instances >= 2, "--instances must be at least 2");
        let reference = self.one("single", None)?;
        let scaled = self.one("scaled", Some(reference.calls))?;
        println!(
            "scale: {} events ({} simulated s of the default scenario, at most {} events/s), {} partitions",
            scaled.calls, self.pipeline.duration_s, self.rate, self.pipeline.partitions
        );
        println!(
            "single aggregator: {:.0} s; {} aggregators, one killed -9 for good at 1/3, one added at 2/3: {:.0} s",
            reference.wall.as_secs_f64(),
            self.instances,
            scaled.wall.as_secs_f64()
        );
        println!(
            "records consumed per aggregator of the scaled run (the second was killed, the last one added): {:?}",
            scaled.consumed
        );
        let mut failures = Vec::new();
        if scaled.calls != reference.calls {
            failures.push(format!(
                "loadgen published {} events in the scaled run, {} in the reference",
                scaled.calls, reference.calls
            ));
        }
        if let Some(idle) = scaled.consumed.iter().position(|c| *c == 0) {
            failures.push(format!(
                "aggregator {idle} of the scaled run consumed nothing (consumed: {:?})",
                scaled.consumed
            ));
        }
        let late = |topics: &[Topic]| {
            topics
                .iter()
                .find(|t| t.logical == LogicalTopic::TelemetryLate)
                .map_or(0, |t| t.messages)
        };
        let (want_late, got_late) = (late(&reference.topics), late(&scaled.topics));
        for (want_topic, diff) in
            compare_topics(("single", &reference.topics), ("scaled", &scaled.topics))
        {
            let topic = want_topic.logical;
            let want = &want_topic.records;
            if topic == LogicalTopic::TelemetryLate {
                if want_late + got_late > 0 {
                    failures.push(format!(
                        "late events: {want_late} in the single run, {got_late} in the scaled run"
                    ));
                }
                continue;
            }
            if want.is_empty() {
                failures.push(format!(
                    "{}: the reference published nothing to compare",
                    topic.logical_name()
                ));
            }
            if !diff.is_empty() || diff.repeated > 0 {
                failures.push(format!(
                    "{}: {diff}, {} with more than one content",
                    topic.logical_name(),
                    diff.repeated
                ));
            }
        }
        anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
        println!("every window of the scaled run equals the single aggregator's; nothing late");
        Ok(())
    }

    /// One run: a single aggregator (`reference_calls` is `None`), or `instances` of them with
    /// one killed for good and one added, at a third and two thirds of `reference_calls`.
    fn one(&self, label: &str, reference_calls: Option<u64>) -> anyhow::Result<Outcome> {
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();
        let prefix = format!("llmopt-scale-{suffix}-{label}.");
        let dir = std::env::temp_dir().join(format!("llmopt-scale-{suffix}-{label}"));
        std::fs::create_dir_all(dir.join("redis"))?;
        let config = dir.join("llmopt.toml");
        std::fs::write(&config, fleet_config(&self.pipeline.llmopt, "")?)?;
        let scenario = dir.join("scenario.toml");
        let longer = Scenario {
            duration_s: self.pipeline.duration_s,
            ..Scenario::default()
        };
        std::fs::write(&scenario, toml::to_string(&longer)?)?;
        let redis = Redis::start(free_port()?, &dir.join("redis"))?;
        let env = Env {
            prefix: prefix.clone(),
            config,
            redis: redis.url(),
        };
        let spawn = |name: &str, port: u16| -> anyhow::Result<Process> {
            let mut cmd = env.command(
                &self.pipeline,
                &["run", name, "--admin-listen", &format!("127.0.0.1:{port}")],
            );
            cmd.env("LLMOPT_AGGREGATOR__IDLE_TIMEOUT_MS", "3600000")
                .env("LLMOPT_RUNTIME__CHECKPOINT_INTERVAL_MS", "1000");
            let log = dir.join(format!("{name}-{port}.log"));
            let process = spawn_logged(cmd, name, &log)?;
            wait_ready(port, name, &log, Duration::from_secs(120))?;
            Ok(process)
        };
        let ingest_port = free_port()?;
        let ingest = spawn("ingest", ingest_port)?;
        let start_instances = if reference_calls.is_some() {
            self.instances
        } else {
            1
        };
        let mut aggregators = Vec::new();
        for _ in 0..start_instances {
            let port = free_port()?;
            aggregators.push(Aggregator {
                port,
                process: Some(spawn("aggregator", port)?),
            });
        }
        let loadgen_out = dir.join("loadgen.out");
        let mut loadgen = env
            .command(
                &self.pipeline,
                &[
                    "loadgen",
                    "--speed",
                    "0",
                    "--rate",
                    &self.rate.to_string(),
                    "--scenario",
                    path(&scenario)?,
                ],
            )
            .stdout(std::fs::File::create(&loadgen_out)?)
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting llmopt loadgen")?;
        let started = Instant::now();
        let mut consumed_at_kill = None;
        if let Some(total) = reference_calls {
            let ingested = || {
                http_get(ingest_port, "/metrics")
                    .map(|(_, m)| counter(&m, "llmopt_events_in_total", ""))
                    .unwrap_or(0)
            };
            // Ingest may trail loadgen: the points are counted in events through ingest.
            let deadline = Instant::now() + Duration::from_secs(900);
            let wait_for = |n: u64| -> anyhow::Result<()> {
                while ingested() < n {
                    anyhow::ensure!(Instant::now() < deadline, "ingest never reached {n} events");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(())
            };
            wait_for(total / 3)?;
            let victim = &mut aggregators[1];
            consumed_at_kill = Some(consumed(victim.port));
            if let Some(mut process) = victim.process.take() {
                eprintln!("{label}: kill -9 of an aggregator, for good");
                let _ = process.0.kill();
                let _ = process.0.wait();
            }
            wait_for(2 * total / 3)?;
            eprintln!("{label}: one more aggregator joins");
            let port = free_port()?;
            aggregators.push(Aggregator {
                port,
                process: Some(spawn("aggregator", port)?),
            });
        }
        let status = loadgen.wait()?;
        let out = std::fs::read_to_string(&loadgen_out).unwrap_or_default();
        anyhow::ensure!(
            status.success(),
            "{label}: loadgen failed ({status}):\n{out}"
        );
        let calls = published_calls(&out)?;
        let live: Vec<u16> = std::iter::once(ingest_port)
            .chain(
                aggregators
                    .iter()
                    .filter(|a| a.process.is_some())
                    .map(|a| a.port),
            )
            .collect();
        wait_idle(&live, Duration::from_secs(600))?;
        let wall = started.elapsed();
        let consumed: Vec<u64> = aggregators
            .iter()
            .map(|a| match (&a.process, consumed_at_kill) {
                (None, Some(at_kill)) => at_kill,
                _ => consumed(a.port),
            })
            .collect();
        let topics = read_topics(&self.pipeline.bootstrap, &prefix, &COMPARED)?;
        drop(aggregators);
        drop(ingest);
        drop(redis);
        eprintln!(
            "{label}: {calls} events in {:.0} s (logs: {})",
            wall.as_secs_f64(),
            dir.display()
        );
        Ok(Outcome {
            calls,
            wall,
            topics,
            consumed,
        })
    }
}

/// Records an aggregator has consumed so far (0 if it does not answer).
fn consumed(port: u16) -> u64 {
    http_get(port, "/metrics")
        .map(|(_, m)| counter(&m, "llmopt_events_in_total", ""))
        .unwrap_or(0)
}
