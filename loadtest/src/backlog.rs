//! Each service alone on a backlog: `llmopt loadgen` fills the raw topic first, then ingest is
//! started on it and timed until it has consumed every record; then the aggregator on what
//! ingest wrote. Each is set against a bare rdkafka consumer counting the same topic in the
//! same run, so the figures are ratios (this is issue 14's "≥ 0.7 × a bare consumer").
//!
//! Both sides are timed in the same band, from 20 % to 80 % of the records: the steady rate,
//! without process start, the group join or librdkafka's first prefetch (which fills its local
//! queue while a slow consumer starts up, and would flatter whoever is timed from the first
//! record). A service's progress is read from its own `llmopt_events_in_total` counter every
//! 10 ms; the bare consumer is assigned every partition directly (no group) and counts.

use std::time::{Duration, Instant};

use crate::pipeline::{counter, http_get, PipelineRun};

/// Settings of a backlog run.
pub struct BacklogRun {
    /// The stack and the simulated seconds of the default scenario to load.
    pub pipeline: PipelineRun,
    /// State store of ingest's deduplication: `redis` or `embedded`.
    pub state: String,
}

/// One service's figures.
struct Timed {
    events: u64,
    rate: f64,
    cpu_s: Option<f64>,
}

impl BacklogRun {
    /// Runs it; prints the figures.
    pub fn run(&self) -> anyhow::Result<()> {
        let run = &self.pipeline;
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();
        let prefix = format!("llmopt-backlog-{suffix}.");
        let logs = std::env::temp_dir().join(format!("llmopt-backlog-{suffix}"));
        std::fs::create_dir_all(&logs)?;
        let calls = run.loadgen(&prefix, run.duration_s)?;
        let raw = format!("{prefix}telemetry.raw");
        let telemetry = format!("{prefix}telemetry");

        let ingest = self.time_service(&prefix, "ingest", &raw, calls, &logs)?;
        let bare_raw = bare_band_rate(&run.bootstrap, &raw, calls)?;
        let aggregator =
            self.time_service(&prefix, "aggregator", &telemetry, ingest.events, &logs)?;
        let bare_telemetry = bare_band_rate(&run.bootstrap, &telemetry, ingest.events)?;

        println!(
            "backlog: {calls} events ({} simulated s of the default scenario), {} partitions, \
             ingest state store {}",
            run.duration_s, run.partitions, self.state
        );
        let line = |what: &str, t: &Timed, bare: f64| {
            let cpu = t
                .cpu_s
                .map(|c| format!(", {:.1} µs CPU/event", c * 1e6 / t.events.max(1) as f64))
                .unwrap_or_default();
            println!(
                "{what:<44} {:>10.0} events/s  (bare {:>10.0}, ratio {:.2}{cpu})",
                t.rate,
                bare,
                t.rate / bare
            );
        };
        line("ingest on the raw topic:", &ingest, bare_raw);
        line(
            "aggregator on the telemetry topic:",
            &aggregator,
            bare_telemetry,
        );
        Ok(())
    }

    /// Starts `llmopt run NAME` on `topic`'s backlog of `events` records and times it.
    fn time_service(
        &self,
        prefix: &str,
        name: &str,
        topic: &str,
        events: u64,
        logs: &std::path::Path,
    ) -> anyhow::Result<Timed> {
        let run = &self.pipeline;
        let port = crate::pipeline::free_port()?;
        let mut cmd = run.command(
            prefix,
            &["run", name, "--admin-listen", &format!("127.0.0.1:{port}")],
        );
        if self.state != "redis" {
            cmd.env("LLMOPT_STATE__KIND", &self.state);
        }
        let log = logs.join(format!("{name}.log"));
        let process = crate::pipeline::spawn_logged(cmd, name, &log)?;
        let pid = process.0.id();
        let label = format!("topic=\"{topic}\"");
        let consumed = || {
            http_get(port, "/metrics")
                .map(|(_, m)| counter(&m, "llmopt_events_in_total", &label))
                .unwrap_or(0)
        };
        let deadline = Instant::now() + Duration::from_secs(900);
        let (low, high) = band(events);
        let mut entered: Option<(Instant, u64, Option<f64>)> = None;
        loop {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{name} stalled (log: {})",
                log.display()
            );
            let seen = consumed();
            if entered.is_none() && seen >= low {
                entered = Some((Instant::now(), seen, cpu_seconds(pid)));
            }
            if seen >= high {
                let (since, at, cpu_then) = entered.unwrap_or((Instant::now(), 0, None));
                let done = seen - at;
                let elapsed = since.elapsed().as_secs_f64().max(1e-3);
                let cpu_s = cpu_seconds(pid).zip(cpu_then).map(|(now, then)| now - then);
                return Ok(Timed {
                    events: done,
                    rate: done as f64 / elapsed,
                    cpu_s,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The timed band of `events` records: from 20 % to 80 %.
fn band(events: u64) -> (u64, u64) {
    (events / 5, events * 4 / 5)
}

/// A bare rdkafka `BaseConsumer` assigned every partition of `topic` from the start (no group,
/// no commits), counting records: its rate over the band, in events/s.
fn bare_band_rate(bootstrap: &str, topic: &str, events: u64) -> anyhow::Result<f64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let bare: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-bare"))
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = bare.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    anyhow::ensure!(partitions > 0, "topic {topic} has no partitions");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    bare.assign(&assignment)?;
    let (low, high) = band(events);
    let mut seen = 0u64;
    let mut entered = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen < high {
        anyhow::ensure!(
            Instant::now() < deadline,
            "bare consumer stalled at {seen}/{events}"
        );
        let Some(result) = bare.poll(Duration::from_millis(500)) else {
            continue;
        };
        result?;
        seen += 1;
        if seen == low {
            entered = Some(Instant::now());
        }
    }
    let since = entered.ok_or_else(|| anyhow::anyhow!("the band is empty"))?;
    Ok((high - low) as f64 / since.elapsed().as_secs_f64().max(1e-6))
}

/// User + system CPU seconds of process `pid`, from `/proc` (Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
