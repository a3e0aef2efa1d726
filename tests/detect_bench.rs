//! Floors for `llmopt bench detect`: a fixed draw of random incident scenarios through the
//! in-process cores must keep finding steps and drifts, and keep false alerts rare. The full
//! benchmark (200 scenarios, two seeds) and its figures are in docs/detection.md; this is a small
//! deterministic sample of it, so a change that breaks detection fails here.

use llmopt::config::AppConfig;
use llmopt::detect_bench::{self, DetectBenchOptions};

#[test]
fn random_incidents_are_found_and_false_alerts_stay_rare() {
    let options = DetectBenchOptions {
        scenarios: 16,
        seed: 7,
        hours: 4.0,
        traffic: llmopt_sim::TrafficShape::realistic(),
        noisy_tenants: detect_bench::noisy_tenants(detect_bench::NoisyTenants::Bursty),
    };
    let report = match detect_bench::run(&AppConfig::default(), &options, &mut |_| {}) {
        Ok(report) => report,
        Err(e) => panic!("bench detect failed: {e:#}"),
    };
    print!("{}", detect_bench::render(&report));
    let steps: Vec<_> = report
        .incidents
        .iter()
        .filter(|i| matches!(i.kind, "latency_step" | "cost_step") && i.magnitude >= 1.5)
        .collect();
    assert!(steps.len() >= 5, "too few steps drawn: {}", steps.len());
    let found = steps.iter().filter(|i| i.first_alert_min.is_some()).count();
    assert!(
        found as f64 >= 0.9 * steps.len() as f64,
        "steps >= 1.5x found: {found} of {}",
        steps.len()
    );
    let mut times: Vec<f64> = steps.iter().filter_map(|i| i.first_alert_min).collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    assert!(median <= 3.0, "median time to first alert {median} windows");
    assert!(
        report.false_alerts_per_fleet_day <= 1.0,
        "{} false alerts per fleet-day",
        report.false_alerts_per_fleet_day
    );
    assert!(report.precision >= 0.95, "precision {}", report.precision);
}

/// The configuration `llmopt loadgen --print-config` writes (deploy/config/fleet.toml: the
/// defaults plus the fleet's policy) given back to the benchmark, which adds the fleet's policy
/// itself: what the file already holds wins, so the run is the default run, not an error about
/// a rule defined twice.
#[test]
fn the_printed_fleet_config_given_back_runs_the_same_benchmark() {
    let options = DetectBenchOptions {
        scenarios: 2,
        seed: 3,
        hours: 2.0,
        traffic: llmopt_sim::TrafficShape::realistic(),
        noisy_tenants: detect_bench::noisy_tenants(detect_bench::NoisyTenants::Bursty),
    };
    let fleet = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config/fleet.toml");
    let from_file = AppConfig::load(Some(&fleet)).expect("deploy/config/fleet.toml");
    let outcome = |config: &AppConfig| {
        let report = detect_bench::run(config, &options, &mut |_| {})
            .unwrap_or_else(|e| panic!("bench detect failed: {e:#}"));
        serde_json::json!({
            "incidents": report.incidents,
            "true": report.true_alerts,
            "false": report.false_alert_names,
        })
    };
    let default = outcome(&AppConfig::default());
    assert!(
        default["true"].as_u64().is_some_and(|n| n > 0),
        "the sample raised alerts: {default}"
    );
    assert_eq!(outcome(&from_file), default);
}
