//! `llmopt bench console`: how fast the console answers its overview page on a large fleet.
//!
//! Builds a console view of `routes` routes with two models each and `hours` of one-minute
//! windows (plus a config change per route and an alert every tenth route), serves it on a local
//! port, and loads the overview's data the way the UI does: `/api/v1/summary`, then
//! `/api/v1/overview` (every route with its last three hours in 5-minute buckets). Reports the
//! median and worst of several loads; `--serve` keeps the console up afterwards so a browser
//! (tests/python/console_pageload.py) can time the whole page.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmopt_events::{
    Alert, AlertStatus, AnyEvent, ChangeKind, ConfigChange, RouteTarget, Severity, WindowAggregate,
    WindowKind,
};
use serde::Serialize;

use super::ConsoleState;

const MINUTE_MS: i64 = 60_000;

/// What one benchmark run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleBenchReport {
    /// Routes in the view.
    pub routes: usize,
    /// Hours of windows per series.
    pub hours: f64,
    /// Windows held.
    pub windows: usize,
    /// Seconds to fold the synthetic topics into the view.
    pub build_s: f64,
    /// Overview loads timed.
    pub loads: usize,
    /// Median time of one overview load's API requests (ms).
    pub median_ms: f64,
    /// Slowest load (ms).
    pub max_ms: f64,
    /// Bytes one load transfers.
    pub bytes: usize,
}

/// A console holding `routes` routes of two models with `hours` of one-minute windows ending at
/// `end_ms`.
pub fn synthetic_console(routes: usize, hours: f64, end_ms: i64) -> (Arc<ConsoleState>, usize) {
    let state = ConsoleState::new(24 * 3_600_000, &Default::default(), None);
    let minutes = (hours * 60.0).round() as i64;
    let start_ms = end_ms - minutes * MINUTE_MS;
    let mut windows = 0;
    for r in 0..routes {
        let (app, route) = (format!("app-{}", r / 5), format!("route-{}", r % 5));
        let change = ConfigChange {
            id: format!("{app}/{route}/v1"),
            event_time: start_ms,
            app: app.clone(),
            route: route.clone(),
            version: 1,
            previous_version: None,
            kind: ChangeKind::Initial,
            decision_id: None,
            targets: vec![
                RouteTarget {
                    provider: "openai".into(),
                    model: "gpt-4o".into(),
                    weight: 0.8,
                },
                RouteTarget {
                    provider: "openai".into(),
                    model: "gpt-4o-mini".into(),
                    weight: 0.2,
                },
            ],
            params: Default::default(),
        };
        state.apply(&AnyEvent::ConfigChange(change));
        for m in 0..minutes {
            let window_start = start_ms + m * MINUTE_MS;
            for (model, calls, cost) in [("gpt-4o", 80, 0.005), ("gpt-4o-mini", 20, 0.0004)] {
                let count = calls + m % 7;
                let window_id = format!("{app}/{route}/openai/{model}/T60000/{window_start}");
                state.apply(&AnyEvent::WindowAggregate(WindowAggregate {
                    id: format!("{window_id}/r0"),
                    window_id,
                    revision: 0,
                    window_kind: WindowKind::Tumbling,
                    window_start,
                    window_end: window_start + MINUTE_MS,
                    app: app.clone(),
                    route: route.clone(),
                    provider: "openai".into(),
                    model: model.into(),
                    count,
                    error_count: m % 3,
                    errors_by_type: Default::default(),
                    latency_p50_ms: 600.0,
                    latency_p90_ms: 1100.0,
                    latency_p95_ms: 1200.0 + (m % 11) as f64 * 10.0,
                    latency_p99_ms: 2000.0,
                    ttft_p95_ms: Some(300.0),
                    input_tokens: 500 * count,
                    output_tokens: 100 * count,
                    cost_usd: cost * count as f64,
                    quality_sum: 0.85 * count as f64,
                    quality_count: count,
                    latency_sketch: None,
                    watermark: window_start + MINUTE_MS + 5_000,
                    cost_by_tenant: [("acme".to_string(), cost * count as f64)].into(),
                }));
                windows += 1;
            }
        }
        if r % 10 == 0 {
            state.apply(&AnyEvent::Alert(Alert {
                id: format!("{app}/{route}/alert"),
                dedup_key: format!("{app}/{route}/openai/gpt-4o/HighErrorRate"),
                status: AlertStatus::Firing,
                severity: Severity::Critical,
                alertname: "HighErrorRate".into(),
                summary: "error rate above 5 %".into(),
                labels: [
                    ("app".to_string(), app.clone()),
                    ("route".to_string(), route.clone()),
                ]
                .into(),
                value: Some(0.08),
                threshold: Some(0.05),
                starts_at: end_ms - 10 * MINUTE_MS,
                ends_at: None,
                event_time: end_ms - 10 * MINUTE_MS,
            }));
        }
    }
    (state, windows)
}

/// One HTTP/1.0 GET: the body's length, or an error naming the path.
fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: console\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    anyhow::ensure!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "GET {path}: {}",
        response.lines().next().unwrap_or("no answer")
    );
    Ok(response)
}

/// Loads the overview's API requests once (as the UI does: the summary, then the overview):
/// (elapsed, bytes).
fn load_overview(addr: SocketAddr) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let bytes = get(addr, "/api/v1/summary")?.len()
        + get(addr, "/api/v1/overview?hours=3&step=300000")?.len();
    Ok((started.elapsed(), bytes))
}

/// Runs the benchmark on a console of the given size served on `listen` (a free local port if
/// `None`); returns the report, the address and the server (still serving).
pub async fn run(
    routes: usize,
    hours: f64,
    loads: usize,
    listen: Option<SocketAddr>,
) -> anyhow::Result<(ConsoleBenchReport, SocketAddr, tokio::task::JoinHandle<()>)> {
    let end_ms = 1_767_312_000_000; // 2026-01-02T00:00Z
    let built = Instant::now();
    let (state, windows) = synthetic_console(routes, hours, end_ms);
    let build_s = built.elapsed().as_secs_f64();
    let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let (addr, server) = super::serve(listen, state).await?;
    let (times, bytes) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        load_overview(addr)?; // warm-up
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..loads.max(1) {
            let (t, b) = load_overview(addr)?;
            times.push(t.as_secs_f64() * 1000.0);
            bytes = b;
        }
        Ok((times, bytes))
    })
    .await??;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let report = ConsoleBenchReport {
        routes,
        hours,
        windows,
        build_s,
        loads: times.len(),
        median_ms: sorted[sorted.len() / 2],
        max_ms: sorted.last().copied().unwrap_or_default(),
        bytes,
    };
    Ok((report, addr, server))
}
