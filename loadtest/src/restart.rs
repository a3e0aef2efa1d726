//! Restart cost: how long each stateful service takes to answer `/ready` again after a
//! restart (SIGTERM, as in a rolling update, then a new process), as a function of how much
//! history its input topics hold. With checkpoints a restart restores the state and reads only
//! what follows it, so the time should not grow with the history; the same run with
//! `runtime.checkpoints = false` (state rebuilt by replaying the inputs) is the baseline that
//! does grow.
//!
//! Each history size is its own installation (topic and key prefix): the five services as
//! processes, `llmopt loadgen` at full speed for `base × factor` simulated seconds, wait until
//! every service is idle, then restart the aggregator, detector, decision and actuator one after
//! another and time each until `/ready`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::pipeline::{free_port, wait_idle, PipelineRun};

const SERVICES: [&str; 5] = ["ingest", "aggregator", "detector", "decision", "actuator"];
const RESTARTED: [&str; 4] = ["aggregator", "detector", "decision", "actuator"];

/// Settings of a restart-cost run.
pub struct RestartRun {
    /// Where the services and loadgen come from (binary, broker, Redis, partitions).
    pub pipeline: PipelineRun,
    /// Simulated seconds of history of the smallest run.
    pub base_s: u64,
    /// History multiples to measure (1 10 100: the 10× and 100×).
    pub factors: Vec<u64>,
}

/// One measured history size.
struct Row {
    factor: u64,
    calls: u64,
    ready_s: Vec<(String, f64)>,
}

impl RestartRun {
    /// Runs every history size with checkpoints, and the largest also without; prints the
    /// figures.
    pub fn run(&self) -> anyhow::Result<()> {
        let mut rows = Vec::new();
        for &factor in &self.factors {
            rows.push(self.one(factor, true)?);
        }
        let largest = self.factors.iter().copied().max().unwrap_or(1);
        let rebuild = self.one(largest, false)?;
        println!(
            "restart cost: seconds from a restart (SIGTERM, new process) to /ready, {} partitions",
            self.pipeline.partitions
        );
        println!(
            "{:<28} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "history", "events", RESTARTED[0], RESTARTED[1], RESTARTED[2], RESTARTED[3]
        );
        let print = |label: String, row: &Row| {
            let cells: Vec<String> = row
                .ready_s
                .iter()
                .map(|(_, s)| format!("{s:>10.2}"))
                .collect();
            println!("{label:<28} {:>10} {}", row.calls, cells.join(" "));
        };
        for row in &rows {
            print(
                format!(
                    "{}x ({} s), checkpoints",
                    row.factor,
                    row.factor * self.base_s
                ),
                row,
            );
        }
        print(
            format!(
                "{}x ({} s), rebuild",
                rebuild.factor,
                rebuild.factor * self.base_s
            ),
            &rebuild,
        );
        if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
            for (i, (name, base)) in first.ready_s.iter().enumerate() {
                let big = last.ready_s[i].1;
                let replay = rebuild.ready_s[i].1;
                println!(
                    "{name:<10} {}x/{}x history: {:.2}× the time to ready (goal < 2×); \
                     rebuild/checkpoints at {}x: {:.1}×",
                    last.factor,
                    first.factor,
                    big / base,
                    last.factor,
                    replay / big
                );
            }
        }
        Ok(())
    }

    fn one(&self, factor: u64, checkpoints: bool) -> anyhow::Result<Row> {
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();
        let prefix = format!("llmopt-restart-{suffix}-{factor}.");
        let logs: PathBuf = std::env::temp_dir().join(format!("llmopt-restart-{suffix}-{factor}"));
        std::fs::create_dir_all(&logs)?;
        let flag = if checkpoints { "true" } else { "false" };
        let env = [("LLMOPT_RUNTIME__CHECKPOINTS", flag)];
        let mut running = Vec::new();
        for name in SERVICES {
            let port = free_port()?;
            let log = logs.join(format!("{name}.log"));
            let process = self.pipeline.service_on(
                &prefix,
                name,
                &log,
                port,
                &env,
                Duration::from_secs(120),
            )?;
            running.push((name, port, log, Some(process)));
        }
        let calls = self.pipeline.loadgen(&prefix, self.base_s * factor)?;
        let ports: Vec<u16> = running.iter().map(|(_, port, _, _)| *port).collect();
        wait_idle(&ports, Duration::from_secs(1800))?;
        eprintln!("{factor}x: {calls} events through the pipeline, restarting");
        let mut ready_s = Vec::new();
        for (name, port, log, process) in running.iter_mut() {
            if !RESTARTED.contains(name) {
                continue;
            }
            drop(process.take());
            let started = Instant::now();
            *process = Some(self.pipeline.service_on(
                &prefix,
                name,
                log,
                *port,
                &env,
                Duration::from_secs(1800),
            )?);
            ready_s.push((name.to_string(), started.elapsed().as_secs_f64()));
        }
        Ok(Row {
            factor,
            calls,
            ready_s,
        })
    }
}
