//! End-to-end throughput through Kafka: `llmopt loadgen` at full speed into the raw topic, the
//! ingest and aggregator services as separate processes, and the time until the aggregator has
//! consumed every event that ingest accepted. The baseline is a bare rdkafka consume of the same
//! raw topic, in the same run, so the figure is a ratio.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A child process killed on drop.
pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: l\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

/// Sum of a counter's series whose labels contain `label`.
pub(crate) fn counter(metrics: &str, name: &str, label: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Settings of a pipeline run.
pub struct PipelineRun {
    /// The `llmopt` binary.
    pub llmopt: PathBuf,
    /// Broker.
    pub bootstrap: String,
    /// Redis URL.
    pub redis: String,
    /// Simulated seconds of the default scenario to run.
    pub duration_s: u64,
    /// Partitions of the topics.
    pub partitions: i32,
}

impl PipelineRun {
    pub(crate) fn command(&self, prefix: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.llmopt);
        cmd.args(args)
            .env("LLMOPT_TRANSPORT__KIND", "kafka")
            .env("LLMOPT_TRANSPORT__TOPIC_PREFIX", prefix)
            .env("LLMOPT_TRANSPORT__PARTITIONS", self.partitions.to_string())
            .env("LLMOPT_KAFKA_BOOTSTRAP", &self.bootstrap)
            .env("LLMOPT_TRANSPORT__KAFKA__SESSION_TIMEOUT_MS", "6000")
            .env("LLMOPT_STATE__KIND", "redis")
            .env("LLMOPT_REDIS_URL", &self.redis)
            .env("LLMOPT_STATE__KEY_PREFIX", format!("{prefix}:"))
            .env_remove("LLMOPT_CONFIG");
        cmd
    }

    fn service(&self, prefix: &str, name: &str, log: &Path) -> anyhow::Result<(Process, u16)> {
        let port = free_port()?;
        let process = self.service_on(prefix, name, log, port, &[], Duration::from_secs(120))?;
        Ok((process, port))
    }

    /// `llmopt run NAME` on admin port `port` (stderr appended to `log`), once `/ready`.
    pub(crate) fn service_on(
        &self,
        prefix: &str,
        name: &str,
        log: &Path,
        port: u16,
        env: &[(&str, &str)],
        ready_within: Duration,
    ) -> anyhow::Result<Process> {
        let mut cmd = self.command(
            prefix,
            &["run", name, "--admin-listen", &format!("127.0.0.1:{port}")],
        );
        cmd.envs(env.iter().copied());
        let process = spawn_logged(cmd, name, log)?;
        wait_ready(port, name, log, ready_within)?;
        Ok(process)
    }

    /// Runs `llmopt loadgen` at full speed for `duration_s` simulated seconds of the default
    /// scenario into the installation `prefix`; returns the calls it published. The default
    /// scenario lasts two hours: a longer run plays it for as long as asked (its incidents, then
    /// quiet traffic) instead of stopping at its end, so `restart --base 360` at 100x really
    /// holds 100 times the history.
    pub(crate) fn loadgen(&self, prefix: &str, duration_s: u64) -> anyhow::Result<u64> {
        let scenario = std::env::temp_dir().join(format!("{prefix}scenario.toml"));
        let longer = llmopt_sim::Scenario {
            duration_s: duration_s.max(llmopt_sim::Scenario::default().duration_s),
            ..llmopt_sim::Scenario::default()
        };
        std::fs::write(&scenario, toml::to_string(&longer)?)
            .with_context(|| format!("writing {}", scenario.display()))?;
        let loadgen = self
            .command(
                prefix,
                &[
                    "loadgen",
                    "--speed",
                    "0",
                    "--scenario",
                    crate::chaos::path(&scenario)?,
                    "--duration",
                    &duration_s.to_string(),
                ],
            )
            .stderr(Stdio::inherit())
            .output()
            .context("running llmopt loadgen")?;
        let out = String::from_utf8_lossy(&loadgen.stdout);
        anyhow::ensure!(loadgen.status.success(), "loadgen failed:\n{out}");
        published_calls(&out)
    }

    /// Runs it; prints the figures.
    pub fn run(&self) -> anyhow::Result<()> {
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();
        let prefix = format!("llmopt-pipeline-{suffix}.");
        let logs = std::env::temp_dir().join(format!("llmopt-pipeline-{suffix}"));
        std::fs::create_dir_all(&logs)?;
        let (_ingest, ingest_port) = self.service(&prefix, "ingest", &logs.join("ingest.log"))?;
        let (_aggregator, aggregator_port) =
            self.service(&prefix, "aggregator", &logs.join("aggregator.log"))?;

        let started = Instant::now();
        let calls = self.loadgen(&prefix, self.duration_s)?;
        let produced_in = started.elapsed();

        let raw = format!("{prefix}telemetry.raw");
        let telemetry = format!("{prefix}telemetry\"");
        let deadline = Instant::now() + Duration::from_secs(600);
        let done = loop {
            let ingested = http_get(ingest_port, "/metrics")
                .map(|(_, m)| counter(&m, "llmopt_events_in_total", &format!("topic=\"{raw}\"")))
                .unwrap_or(0);
            let aggregated = http_get(aggregator_port, "/metrics")
                .map(|(_, m)| {
                    counter(
                        &m,
                        "llmopt_events_in_total",
                        &format!("topic=\"{telemetry}"),
                    )
                })
                .unwrap_or(0);
            if ingested >= calls && aggregated >= calls {
                break started.elapsed();
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "pipeline stalled: {ingested} ingested, {aggregated} aggregated of {calls}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let end_to_end = calls as f64 / done.as_secs_f64();
        let bare = crate::bare_count(&self.bootstrap, &format!("{raw}-bare"), &raw, calls)?;
        println!(
            "pipeline: {calls} events ({} simulated s of the default scenario), {} partitions",
            self.duration_s, self.partitions
        );
        println!(
            "loadgen produce (simulate + encode + publish):        {:>10.0} events/s",
            calls as f64 / produced_in.as_secs_f64()
        );
        println!(
            "end to end loadgen → ingest → aggregator (processes): {end_to_end:>10.0} events/s"
        );
        println!("bare rdkafka consume of the raw topic (count only):   {bare:>10.0} events/s");
        println!(
            "ratio end-to-end/bare:                                {:>10.2}",
            end_to_end / bare
        );
        Ok(())
    }
}

/// Waits until every service reports its consumer idle and none consumed anything for 2 s.
pub(crate) fn wait_idle(ports: &[u16], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = u64::MAX;
    let mut quiet_since = Instant::now();
    loop {
        anyhow::ensure!(Instant::now() < deadline, "services never went idle");
        let mut consumed = 0;
        let mut idle = true;
        for port in ports {
            let metrics = http_get(*port, "/metrics")
                .map(|(_, m)| m)
                .unwrap_or_default();
            consumed += counter(&metrics, "llmopt_events_in_total", "");
            idle &= metrics
                .lines()
                .any(|l| l.starts_with("llmopt_consumer_idle") && l.ends_with(" 1"));
        }
        if consumed != last || !idle {
            last = consumed;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(2) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `llmopt run NAME` as built in `cmd`, its stderr appended to `log`.
pub(crate) fn spawn_logged(mut cmd: Command, name: &str, log: &Path) -> anyhow::Result<Process> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)?,
        )
        .spawn()
        .with_context(|| format!("starting llmopt run {name}"))?;
    Ok(Process(child))
}

/// Waits until the service on admin port `port` answers `/ready` with 200.
pub(crate) fn wait_ready(
    port: u16,
    name: &str,
    log: &Path,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while http_get(port, "/ready").is_none_or(|(s, _)| s != 200) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name} not ready within {within:?} (log: {})",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The calls `llmopt loadgen` says it published, from its summary line.
pub(crate) fn published_calls(out: &str) -> anyhow::Result<u64> {
    out.lines()
        .find_map(|l| {
            l.strip_prefix("loadgen summary: ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .context("loadgen printed no summary")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_calls_come_from_loadgens_summary_line() {
        let out = "processed 82443 telemetry events in 157.9 s\n\
                   loadgen summary: 82443 calls, 35 alert events, 18 decision events\n";
        assert_eq!(published_calls(out).expect("summary"), 82_443);
        assert!(published_calls("processed 3 telemetry events\n").is_err());
    }
}
