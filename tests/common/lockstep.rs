//! The default scenario as the services' tests run it: the embedded demo as the reference, and
//! `llmopt loadgen` driving service processes in lock-step through their admin endpoints.

use std::path::Path;
use std::process::Command;

use llmopt::config::AppConfig;
use llmopt::demo::{self, DemoOptions, Fingerprint};
use llmopt_sim::Scenario;

use super::process::{Installation, ServiceProcess};

/// The services of the loop, in pipeline order.
pub const SERVICES: [&str; 5] = ["ingest", "aggregator", "detector", "decision", "actuator"];

/// The default scenario, seed 42, one-minute steps, as fast as possible.
pub fn options() -> DemoOptions {
    DemoOptions {
        seed: 42,
        scenario: Scenario::default(),
        step_s: 60,
        speed: 0.0,
        duration_s: None,
        max_rate: None,
    }
}

/// The default config with decisions applied automatically (no operator in the loop).
pub fn auto_config() -> AppConfig {
    let mut config = AppConfig::default();
    config.decision.mode = llmopt_decision::config::Mode::Auto;
    config
}

/// What the embedded demo of [`options`] and [`auto_config`] produces: the reference.
pub async fn embedded_fingerprint() -> Fingerprint {
    let mut ignore = |_: String| {};
    demo::run_embedded(auto_config(), &options(), &mut ignore)
        .await
        .expect("embedded run")
        .fingerprint()
}

/// `llmopt loadgen` of `install` at full speed in lock-step with `services`, writing its report
/// (with the fingerprint) to `report`.
pub fn loadgen(install: &Installation, services: &[ServiceProcess], report: &Path) -> Command {
    let lockstep = services
        .iter()
        .map(|s| s.url())
        .collect::<Vec<_>>()
        .join(",");
    install.command(&[
        "loadgen",
        "--speed",
        "0",
        "--lockstep",
        &lockstep,
        "--quiet-ms",
        "400",
        "--report-json",
        report.to_str().expect("path"),
    ])
}

/// Reads loadgen's JSON report at `report` and asserts its fingerprint is `embedded`'s: the
/// same final routing config, decisions and alerts (and some of each).
pub fn assert_report_matches(report: &Path, embedded: &Fingerprint) {
    let report: serde_json::Value =
        serde_json::from_str(&super::process::read(report)).expect("report is JSON");
    let fingerprint: Fingerprint =
        serde_json::from_value(report["fingerprint"].clone()).expect("fingerprint");
    assert!(!fingerprint.alerts.is_empty() && !fingerprint.decisions.is_empty());
    assert_eq!(
        fingerprint.routing, embedded.routing,
        "same final routing config"
    );
    assert_eq!(fingerprint.decisions, embedded.decisions, "same decisions");
    assert_eq!(fingerprint.alerts, embedded.alerts, "same alerts");
}
