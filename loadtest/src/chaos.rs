//! Chaos at load: the five services as processes on the real broker and a Redis of their own,
//! driven in lock-step by `llmopt loadgen`, run twice over the same simulated fleet: once
//! uninterrupted (the reference), once while every service is killed with SIGKILL at random
//! points in overlapping rounds (each restarted at once) and Redis is killed and restarted
//! mid-run. Lock-step makes the closed loop reproducible, so the two runs must publish the same
//! records: every topic of the loop (telemetry, windows, alerts, decisions, config changes) is
//! read back and compared id by id, content by content, next to loadgen's fingerprint (final
//! routing, decisions, alerts). A crash may publish a record again, but only under the same id
//! with the same content.
//!
//! The table it prints, per topic: distinct ids in each run, `copies` (records of the chaos run
//! that repeat an id: what the crashes published again), and the ids `missing` from the chaos
//! run, `extra` in it, published with other content (`differ`) or with more than one content
//! (`repeated`); all but `copies` must be 0.
//!
//! This is the long form of `tests/chaos_services.rs`: more events, more rounds, and every
//! record compared rather than the fingerprint alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use llmopt_sim::Scenario;
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{KafkaConfig, LogicalTopic, TopicNames, TransportConfig};

use crate::pipeline::{
    free_port, published_calls, spawn_logged, wait_idle, wait_ready, PipelineRun, Process,
};

const SERVICES: [&str; 5] = ["ingest", "aggregator", "detector", "decision", "actuator"];

/// The topics whose records are compared between the two runs.
const COMPARED: [LogicalTopic; 5] = [
    LogicalTopic::Telemetry,
    LogicalTopic::Windows,
    LogicalTopic::Alerts,
    LogicalTopic::Decisions,
    LogicalTopic::ConfigChanges,
];

/// Settings of a chaos run.
pub struct ChaosRun {
    /// Binary, broker, partitions and simulated seconds (`duration_s`).
    pub pipeline: PipelineRun,
    /// Kill rounds (each kills all five services once).
    pub rounds: usize,
    /// Seed of the kill schedule.
    pub seed: u64,
}

/// A record topic as read back: CloudEvent id → the distinct values published under it.
pub(crate) type Records = BTreeMap<String, BTreeSet<Vec<u8>>>;

/// A topic as read back, with how many records it held (a crash publishes some again).
pub(crate) struct Topic {
    pub(crate) logical: LogicalTopic,
    pub(crate) records: Records,
    pub(crate) messages: usize,
}

/// What one run published.
struct Outcome {
    calls: u64,
    wall: Duration,
    kills: [usize; SERVICES.len()],
    fingerprint: serde_json::Value,
    topics: Vec<Topic>,
}

impl ChaosRun {
    /// Runs the reference, then the chaos run; prints the comparison and fails on any
    /// difference.
    pub fn run(&self) -> anyhow::Result<()> {
        let reference = self.one("reference", 0)?;
        let chaos = self.one("chaos", self.rounds)?;
        println!(
            "chaos: {} events ({} simulated s of the default scenario, lock-step), {} partitions",
            chaos.calls, self.pipeline.duration_s, self.pipeline.partitions
        );
        println!(
            "uninterrupted run: {:.0} s; chaos run: {:.0} s with {} kill rounds \
             (kills: {}) and one Redis restart",
            reference.wall.as_secs_f64(),
            chaos.wall.as_secs_f64(),
            self.rounds,
            SERVICES
                .iter()
                .zip(chaos.kills)
                .map(|(s, k)| format!("{s} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut failures = Vec::new();
        if chaos.calls != reference.calls {
            failures.push(format!(
                "loadgen published {} events in the chaos run, {} in the reference",
                chaos.calls, reference.calls
            ));
        }
        if let Some(&short) = chaos.kills.iter().min() {
            if short < self.rounds {
                failures.push(format!(
                    "the run ended after {short} of {} rounds: give it a longer --duration",
                    self.rounds
                ));
            }
        }
        let same_fingerprint = chaos.fingerprint == reference.fingerprint;
        if !same_fingerprint {
            failures.push("loadgen's fingerprints differ (routing, decisions or alerts)".into());
        }
        for (want_topic, diff) in
            compare_topics(("reference", &reference.topics), ("chaos", &chaos.topics))
        {
            let topic = want_topic.logical;
            let want = &want_topic.records;
            if want.is_empty() {
                failures.push(format!(
                    "{}: the reference published nothing to compare (a longer --duration reaches the incidents)",
                    topic.logical_name()
                ));
            }
            if !diff.is_empty() {
                failures.push(format!("{}: {diff}", topic.logical_name()));
            }
        }
        println!(
            "fingerprint (final routing, decisions, alerts): {}",
            if same_fingerprint {
                "equal"
            } else {
                "DIFFERENT"
            }
        );
        anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
        println!("every record of the chaos run equals the uninterrupted run's");
        Ok(())
    }

    /// One run of the loop with `rounds` kill rounds (0: the reference).
    fn one(&self, label: &str, rounds: usize) -> anyhow::Result<Outcome> {
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();
        let prefix = format!("llmopt-chaos-{suffix}-{label}.");
        let dir = std::env::temp_dir().join(format!("llmopt-chaos-{suffix}-{label}"));
        std::fs::create_dir_all(dir.join("redis"))?;
        let config = dir.join("llmopt.toml");
        std::fs::write(&config, fleet_config(&self.pipeline.llmopt, "")?)?;
        // The default scenario, run for as long as asked: its incidents, then quiet traffic.
        let scenario = dir.join("scenario.toml");
        let longer = Scenario {
            duration_s: self.pipeline.duration_s,
            ..Scenario::default()
        };
        std::fs::write(&scenario, toml::to_string(&longer)?)?;
        let mut redis = Redis::start(free_port()?, &dir.join("redis"))?;
        let env = Env {
            prefix: prefix.clone(),
            config,
            redis: redis.url(),
        };
        let mut services = Vec::new();
        for name in SERVICES {
            let port = free_port()?;
            let log = dir.join(format!("{name}.log"));
            let process = env.spawn(&self.pipeline, name, &log, port)?;
            services.push(Service {
                name,
                port,
                log,
                process: Some(process),
            });
        }
        for service in &services {
            service.wait_ready(Duration::from_secs(120))?;
        }
        let report = dir.join("report.json");
        let loadgen_out = dir.join("loadgen.out");
        let lockstep = services
            .iter()
            .map(|s| format!("http://127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",");
        let mut loadgen = env
            .command(
                &self.pipeline,
                &[
                    "loadgen",
                    "--speed",
                    "0",
                    "--scenario",
                    path(&scenario)?,
                    "--lockstep",
                    &lockstep,
                    "--quiet-ms",
                    "400",
                    "--report-json",
                    path(&report)?,
                ],
            )
            .stdout(std::fs::File::create(&loadgen_out)?)
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting llmopt loadgen")?;
        let started = Instant::now();

        let mut kills = [0usize; SERVICES.len()];
        let mut rng = Lcg(self.seed);
        if rounds > 0 {
            std::thread::sleep(Duration::from_secs(3));
        }
        'chaos: for round in 0..rounds {
            if round == rounds / 2 {
                // Redis down for two seconds: the services wait it out; it keeps every write
                // on disk (fsync always), as a production Redis does.
                eprintln!("{label}: Redis killed and restarted");
                redis = redis.restart()?;
            }
            std::thread::sleep(Duration::from_millis(500 + rng.below(2_500)));
            for victim in rng.shuffled() {
                if loadgen.try_wait()?.is_some() {
                    break 'chaos;
                }
                let service = &mut services[victim];
                eprintln!("{label}: kill -9 {} (round {})", service.name, round + 1);
                service.kill_9();
                service.process =
                    Some(env.spawn(&self.pipeline, service.name, &service.log, service.port)?);
                kills[victim] += 1;
                std::thread::sleep(Duration::from_millis(100 + rng.below(1_400)));
            }
            for service in &services {
                service.wait_ready(Duration::from_secs(300))?;
            }
        }
        let status = loadgen.wait()?;
        let out = std::fs::read_to_string(&loadgen_out).unwrap_or_default();
        anyhow::ensure!(
            status.success(),
            "{label}: loadgen failed ({status}):\n{out}"
        );
        let calls = published_calls(&out)?;
        let ports: Vec<u16> = services.iter().map(|s| s.port).collect();
        wait_idle(&ports, Duration::from_secs(600))?;
        let wall = started.elapsed();
        let fingerprint = serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(&report).context("loadgen's report")?,
        )?["fingerprint"]
            .clone();
        let topics = read_topics(&self.pipeline.bootstrap, &prefix, &COMPARED)?;
        drop(services);
        drop(redis);
        eprintln!(
            "{label}: {calls} events in {:.0} s (logs: {})",
            wall.as_secs_f64(),
            dir.display()
        );
        Ok(Outcome {
            calls,
            wall,
            kills,
            fingerprint,
            topics,
        })
    }
}

/// What `llmopt loadgen --print-config` prints (the fleet's prices, rules and policies),
/// with a short fetch wait so idle consumers answer quickly, and `extra` TOML after it.
pub(crate) fn fleet_config(llmopt: &Path, extra: &str) -> anyhow::Result<String> {
    let out = Command::new(llmopt)
        .args(["loadgen", "--print-config"])
        .env_remove("LLMOPT_CONFIG")
        .output()
        .context("llmopt loadgen --print-config")?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(format!(
        "[transport.kafka.properties]\n\"fetch.wait.max.ms\" = \"10\"\n\n{}{extra}",
        String::from_utf8(out.stdout)?
    ))
}

/// `topics` of the installation `prefix` on `bootstrap`, each read to its end.
pub(crate) fn read_topics(
    bootstrap: &str,
    prefix: &str,
    topics: &[LogicalTopic],
) -> anyhow::Result<Vec<Topic>> {
    let kafka = KafkaConfig {
        bootstrap_servers: bootstrap.to_string(),
        ..KafkaConfig::default()
    };
    let names = TopicNames::new(&TransportConfig {
        topic_prefix: prefix.to_string(),
        ..TransportConfig::default()
    });
    let transport = KafkaTransport::new(&kafka, "llmopt-loadtest-chaos")?;
    let runtime = tokio::runtime::Handle::current();
    topics
        .iter()
        .map(|&topic| {
            let name = names.name(topic);
            // The load test drives processes synchronously from the runtime's thread.
            let read = llmopt_transport::read_topic(&transport, &name, "chaos");
            let messages = tokio::task::block_in_place(|| runtime.block_on(read))
                .with_context(|| format!("reading {name}"))?;
            let mut records = Records::new();
            let count = messages.len();
            for m in messages {
                let id = m
                    .headers
                    .iter()
                    .find(|(k, _)| k == "ce_id")
                    .and_then(|(_, v)| v.clone())
                    .with_context(|| format!("a record of {name} without ce_id"))?;
                records
                    .entry(String::from_utf8_lossy(&id).into_owned())
                    .or_default()
                    .insert(m.value.unwrap_or_default());
            }
            Ok(Topic {
                logical: topic,
                records,
                messages: count,
            })
        })
        .collect()
}

/// Prints the comparison table of `want`'s topics against `got`'s (one row per topic: distinct
/// ids in each run, copies, missing, extra, different and repeated ids) and returns each
/// reference topic with its diff.
pub(crate) fn compare_topics<'a>(
    (want_label, want): (&str, &'a [Topic]),
    (got_label, got): (&str, &[Topic]),
) -> Vec<(&'a Topic, Diff)> {
    println!(
        "{:<16} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "topic", want_label, got_label, "copies", "missing", "extra", "differ", "repeated"
    );
    want.iter()
        .zip(got)
        .map(|(want_topic, got_topic)| {
            let (w, g) = (&want_topic.records, &got_topic.records);
            let diff = Diff::of(w, g);
            println!(
                "{:<16} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9}",
                want_topic.logical.logical_name(),
                w.len(),
                g.len(),
                got_topic.messages - g.len(),
                diff.missing.len(),
                diff.extra.len(),
                diff.differ.len(),
                diff.repeated
            );
            (want_topic, diff)
        })
        .collect()
}

/// How a run's records differ from the reference's.
pub(crate) struct Diff {
    pub(crate) missing: Vec<String>,
    pub(crate) extra: Vec<String>,
    pub(crate) differ: Vec<String>,
    /// Ids published with more than one content in the run.
    pub(crate) repeated: usize,
}

impl Diff {
    pub(crate) fn of(want: &Records, got: &Records) -> Self {
        let missing = want
            .keys()
            .filter(|id| !got.contains_key(*id))
            .cloned()
            .collect();
        let extra = got
            .keys()
            .filter(|id| !want.contains_key(*id))
            .cloned()
            .collect();
        let differ = want
            .iter()
            .filter(|(id, values)| got.get(*id).is_some_and(|g| g != *values))
            .map(|(id, _)| id.clone())
            .collect();
        let repeated = got.values().filter(|v| v.len() > 1).count();
        Self {
            missing,
            extra,
            differ,
            repeated,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.differ.is_empty()
    }
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first = |ids: &[String]| ids.iter().take(5).cloned().collect::<Vec<_>>().join(" ");
        write!(
            f,
            "{} missing [{}], {} extra [{}], {} with other content [{}]",
            self.missing.len(),
            first(&self.missing),
            self.extra.len(),
            first(&self.extra),
            self.differ.len(),
            first(&self.differ)
        )
    }
}

/// The environment every process of one installation shares.
pub(crate) struct Env {
    pub(crate) prefix: String,
    pub(crate) config: PathBuf,
    pub(crate) redis: String,
}

impl Env {
    pub(crate) fn command(&self, pipeline: &PipelineRun, args: &[&str]) -> Command {
        let mut cmd = pipeline.command(&self.prefix, args);
        cmd.env("LLMOPT_CONFIG", &self.config)
            .env("LLMOPT_REDIS_URL", &self.redis)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        cmd
    }

    /// `llmopt run NAME` on admin port `port`, stderr appended to `log`; not waited for.
    pub(crate) fn spawn(
        &self,
        pipeline: &PipelineRun,
        name: &str,
        log: &Path,
        port: u16,
    ) -> anyhow::Result<Process> {
        let cmd = self.command(
            pipeline,
            &["run", name, "--admin-listen", &format!("127.0.0.1:{port}")],
        );
        spawn_logged(cmd, name, log)
    }
}

/// A service process of a run.
struct Service {
    name: &'static str,
    port: u16,
    log: PathBuf,
    process: Option<Process>,
}

impl Service {
    fn kill_9(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.0.kill();
            let _ = process.0.wait();
        }
    }

    fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        wait_ready(self.port, self.name, &self.log, within)
    }
}

/// A Redis of the run's own that keeps every write on disk (AOF, fsync always), so it can be
/// killed and restarted without losing what the services stored.
pub(crate) struct Redis {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl Redis {
    pub(crate) fn start(port: u16, dir: &Path) -> anyhow::Result<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server (loadtest/run.sh installs it)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            port,
            dir: dir.to_path_buf(),
            child,
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, two seconds down, then the same port and data again.
    fn restart(self) -> anyhow::Result<Self> {
        let (port, dir) = (self.port, self.dir.clone());
        drop(self);
        std::thread::sleep(Duration::from_secs(2));
        Self::start(port, &dir)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("a non-UTF-8 path")
}

/// A small seeded generator: the kill schedule is random but the same for a seed.
struct Lcg(u64);

impl Lcg {
    /// The service indices in a random order (Fisher-Yates).
    fn shuffled(&mut self) -> [usize; SERVICES.len()] {
        let mut order = [0, 1, 2, 3, 4];
        for i in (1..order.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        order
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(entries: &[(&str, &[&[u8]])]) -> Records {
        entries
            .iter()
            .map(|(id, values)| (id.to_string(), values.iter().map(|v| v.to_vec()).collect()))
            .collect()
    }

    #[test]
    fn a_diff_names_missing_extra_and_changed_ids() {
        let want = records(&[("a", &[b"1"]), ("b", &[b"2"]), ("c", &[b"3"])]);
        let got = records(&[("a", &[b"1"]), ("c", &[b"3", b"4"]), ("d", &[b"5"])]);
        let diff = Diff::of(&want, &got);
        assert_eq!(diff.missing, ["b"]);
        assert_eq!(diff.extra, ["d"]);
        assert_eq!(diff.differ, ["c"]);
        assert_eq!(diff.repeated, 1);
        assert!(!diff.is_empty());
        assert!(Diff::of(&want, &want).is_empty());
    }
}
