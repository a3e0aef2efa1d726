//! `llmopt loadgen`'s parts that are not CLI: the services' configuration for the simulated
//! fleet, and lock-step settling against services running as separate processes, read from
//! their admin endpoints.
//!
//! Lock-step makes a run against real processes reproducible: after each simulated step the
//! generator waits until every service is idle and has handled nothing new for a quiet period,
//! exactly what [`WatchIdle`](crate::demo::driver::WatchIdle) does in process, but through
//! `/metrics` (`llmopt_consumer_idle`, `llmopt_events_in_total`), so it works across processes
//! and containers. Without lock-step the fleet runs at its pace and the loop closes whenever the
//! services catch up, as in production.

use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::AppConfig;
use crate::demo::driver::Settle;

/// The tables of the configuration that the simulated fleet needs in every service: prices,
/// window settings, SLO rules and route policies. `llmopt loadgen --print-config` prints them
/// as TOML for the services' config file (compose mounts `deploy/config/fleet.toml`).
#[derive(Serialize)]
struct FleetPolicy<'a> {
    ingest: &'a llmopt_ingest::IngestConfig,
    aggregator: &'a llmopt_aggregator::AggregatorConfig,
    detector: &'a llmopt_detector::DetectorConfig,
    decision: &'a llmopt_decision::DecisionConfig,
}

/// The services' configuration for the fleet that `config` drives, as TOML.
pub fn fleet_policy_toml(config: &AppConfig) -> anyhow::Result<String> {
    let policy = FleetPolicy {
        ingest: &config.ingest,
        aggregator: &config.aggregator,
        detector: &config.detector,
        decision: &config.decision,
    };
    Ok(toml::to_string_pretty(&policy)?)
}

/// What one scrape of a service's `/metrics` says about its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// `llmopt_consumer_idle` is 1.
    pub idle: bool,
    /// Sum of `llmopt_events_in_total` over topics.
    pub consumed: u64,
}

/// Reads [`Progress`] out of a Prometheus text exposition.
pub fn parse_progress(text: &str) -> Progress {
    let mut progress = Progress::default();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = name.split('{').next().unwrap_or_default();
        let value: f64 = value.parse().unwrap_or(0.0);
        match metric {
            "llmopt_consumer_idle" => progress.idle = value >= 1.0,
            "llmopt_events_in_total" => progress.consumed += value as u64,
            _ => {}
        }
    }
    progress
}

/// A plain HTTP/1.0 GET of `url` (`http://host:port/path`): status and body. The admin
/// endpoints are plain HTTP on a private port; this avoids an HTTP client stack for two paths.
pub async fn http_get(url: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("`{url}` is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("GET {url} timed out"))?
        .with_context(|| format!("GET {url}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("GET {url}: no HTTP status in the answer"))?;
    Ok((status, body.to_string()))
}

/// Settling through the admin endpoints of services in other processes.
pub struct AdminIdle {
    /// Admin base URLs (`http://host:9464`).
    pub endpoints: Vec<String>,
    /// How long everything must stay quiet.
    pub quiet: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

impl AdminIdle {
    /// Whether every service is idle, and the inputs they consumed in total. A service that
    /// does not answer (restarting after a crash, say) counts as busy: the step waits for it,
    /// up to the settle timeout.
    async fn progress(&self) -> (bool, u64) {
        let mut all_idle = true;
        let mut consumed = 0;
        for base in &self.endpoints {
            let body = match http_get(&format!("{base}/metrics"), Duration::from_secs(5)).await {
                Ok((200, body)) => body,
                Ok((status, _)) => {
                    tracing::debug!(endpoint = %base, status, "metrics refused: busy");
                    all_idle = false;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(endpoint = %base, error = %e, "no answer: busy");
                    all_idle = false;
                    continue;
                }
            };
            let p = parse_progress(&body);
            all_idle &= p.idle;
            consumed += p.consumed;
        }
        (all_idle, consumed)
    }

    /// Waits until every endpoint's `/ready` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for base in &self.endpoints {
            loop {
                let ready = http_get(&format!("{base}/ready"), Duration::from_secs(2))
                    .await
                    .is_ok_and(|(status, _)| status == 200);
                if ready {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{base}/ready did not answer 200 within {timeout:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Settle for AdminIdle {
    async fn settle(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.timeout;
        let (_, mut last) = self.progress().await;
        let mut quiet_since = Instant::now();
        loop {
            anyhow::ensure!(
                Instant::now() < deadline,
                "services did not settle within {:?}",
                self.timeout
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (all_idle, consumed) = self.progress().await;
            if consumed != last || !all_idle {
                last = consumed;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= self.quiet {
                return Ok(());
            }
        }
    }
}

/// No settling: the fleet runs at its own pace (production-like load).
pub struct FreeRunning;

#[async_trait]
impl Settle for FreeRunning {
    async fn settle(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_sums_inputs_and_reads_idle() {
        let text = "# HELP llmopt_events_in_total Records consumed.\n\
            llmopt_events_in_total{service=\"ingest\",topic=\"a\"} 10\n\
            llmopt_events_in_total{service=\"ingest\",topic=\"b\"} 5\n\
            llmopt_consumer_idle{service=\"ingest\"} 1\n\
            llmopt_events_out_total{service=\"ingest\",topic=\"a\"} 99\n";
        assert_eq!(
            parse_progress(text),
            Progress {
                idle: true,
                consumed: 15
            }
        );
        let busy = text.replace(
            "llmopt_consumer_idle{service=\"ingest\"} 1",
            "llmopt_consumer_idle{service=\"ingest\"} 0",
        );
        assert!(!parse_progress(&busy).idle);
    }
}
