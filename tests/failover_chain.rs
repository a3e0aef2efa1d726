//! A 30-minute provider outage through the whole loop in one process (simulator, ingest,
//! aggregator, detector, decision in auto mode, actuator), with the first fallback failing too
//! for ten minutes of it: traffic leaves the failing primary within 2 windows of the breach,
//! leaves the failing fallback within 2 windows, never goes to a model whose last windows
//! breach its SLO, and is back on the primary within 10 windows after recovery.
//!
//! Timings are read from the config changes the actuator applied (the routing the fleet
//! served), in one-minute windows from the incident's start or end.

use llmopt::config::AppConfig;
use llmopt::demo::{self, DemoOptions, DemoResult, SIM_START_MS};
use llmopt_events::{AlertStatus, ConfigChange, DecisionState, Strategy};
use llmopt_sim::Scenario;

const APP: &str = "search";
const ROUTE: &str = "query-rewrite";
const PRIMARY: &str = "gemini-1.5-flash";
const FALLBACK: &str = "gpt-4o-mini";
const NEXT: &str = "claude-3-5-haiku";
const OUTAGE_START_MIN: i64 = 20;
const OUTAGE_END_MIN: i64 = 50;
const FALLBACK_FAILS_MIN: i64 = 30;
const FALLBACK_RECOVERS_MIN: i64 = 40;

fn scenario() -> Scenario {
    toml::from_str(&format!(
        r#"
name = "outage-chain"
description = "a 30-minute outage of the primary; its first fallback fails for 10 minutes of it"
duration_s = 5400

[[incidents]]
name = "primary-outage"
kind = "provider_error_burst"
provider = "google"
model = "{PRIMARY}"
start_s = {}
duration_s = {}
error_rate = 0.4

[[incidents]]
name = "fallback-outage"
kind = "provider_error_burst"
provider = "openai"
model = "{FALLBACK}"
start_s = {}
duration_s = {}
error_rate = 0.4
"#,
        OUTAGE_START_MIN * 60,
        (OUTAGE_END_MIN - OUTAGE_START_MIN) * 60,
        FALLBACK_FAILS_MIN * 60,
        (FALLBACK_RECOVERS_MIN - FALLBACK_FAILS_MIN) * 60,
    ))
    .expect("scenario")
}

async fn run() -> DemoResult {
    let mut config = AppConfig::default();
    config.decision.mode = llmopt_decision::config::Mode::Auto;
    let options = DemoOptions {
        seed: 7,
        scenario: scenario(),
        step_s: 60,
        speed: 0.0,
        duration_s: None,
        max_rate: None,
    };
    demo::run_embedded(config, &options, &mut |_| {})
        .await
        .expect("embedded run")
}

/// Minutes since the simulation's start.
fn minute(t: i64) -> f64 {
    (t - SIM_START_MS) as f64 / 60_000.0
}

fn weight(c: &ConfigChange, model: &str) -> f64 {
    c.targets
        .iter()
        .filter(|t| t.model == model)
        .map(|t| t.weight)
        .sum()
}

/// The route's config changes in order.
fn changes(result: &DemoResult) -> Vec<&ConfigChange> {
    let mut cs: Vec<&ConfigChange> = result
        .record
        .config_changes
        .iter()
        .filter(|c| c.app == APP && c.route == ROUTE)
        .collect();
    cs.sort_by_key(|c| c.version);
    cs
}

/// First change at or after minute `from` after which `model` carries (`carries`) or does not
/// carry traffic, in minutes since the start.
fn first_when(
    cs: &[&ConfigChange],
    from: i64,
    pred: impl Fn(&ConfigChange) -> bool,
) -> Option<f64> {
    cs.iter()
        .filter(|c| minute(c.event_time) >= from as f64)
        .find(|c| pred(c))
        .map(|c| minute(c.event_time))
}

/// Whether `model`'s windows (all routes) in the `n` minutes before `t` show more failures
/// than its SLO allows: what the decision core could know when it moved traffic there.
fn breaching_before(result: &DemoResult, model: &str, t: i64, n: i64, slo: f64) -> bool {
    let (errors, calls) = result
        .record
        .windows
        .values()
        .filter(|w| w.window_kind == llmopt_events::WindowKind::Tumbling)
        .filter(|w| w.model == model && w.window_end <= t && w.window_end > t - n * 60_000)
        .fold((0, 0), |(e, c), w| (e + w.error_count, c + w.count));
    calls >= 20 && errors as f64 / calls as f64 > 2.0 * slo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_minute_outage_with_a_failing_fallback_fails_over_along_the_chain_and_back() {
    let result = run().await;
    let cs = changes(&result);
    for c in &cs {
        let ts: Vec<String> = c
            .targets
            .iter()
            .filter(|t| t.weight > 1e-9)
            .map(|t| format!("{} {:.2}", t.model, t.weight))
            .collect();
        eprintln!(
            "v{} at minute {:.2} ({:?}): {}",
            c.version,
            minute(c.event_time),
            c.kind,
            ts.join(", ")
        );
    }

    let mut ds: Vec<_> = result
        .record
        .decisions
        .iter()
        .filter(|d| d.app == APP && d.route == ROUTE)
        .collect();
    ds.sort_by_key(|d| d.event_time);
    for d in ds {
        eprintln!(
            "  decision {} at minute {:.2}: {:?} {:?} {} {:?} — {}",
            &d.id[..8.min(d.id.len())],
            minute(d.event_time),
            d.strategy,
            d.state,
            d.action,
            d.params,
            d.reason
        );
    }

    // The primary's traffic is gone within 2 windows of the first window of the outage.
    let left = first_when(&cs, OUTAGE_START_MIN, |c| weight(c, PRIMARY) < 1e-9)
        .expect("traffic left the primary");
    let breach_window_end = (OUTAGE_START_MIN + 1) as f64;
    eprintln!(
        "primary evacuated {:.2} windows after the end of the outage's first window",
        left - breach_window_end
    );
    assert!(
        left - breach_window_end <= 2.0,
        "primary evacuated at minute {left:.2}"
    );

    // The fallback failing in turn hands its traffic on within 2 windows.
    let left_fallback = first_when(&cs, FALLBACK_FAILS_MIN, |c| weight(c, FALLBACK) < 1e-9)
        .expect("traffic left the failing fallback");
    eprintln!(
        "failing fallback evacuated {:.2} windows after the end of its outage's first window",
        left_fallback - (FALLBACK_FAILS_MIN + 1) as f64
    );
    assert!(
        left_fallback - ((FALLBACK_FAILS_MIN + 1) as f64) <= 2.0,
        "fallback evacuated at minute {left_fallback:.2}"
    );
    let probe_share = AppConfig::default().decision.failback.probe_share;
    let on_next = cs
        .iter()
        .filter(|c| {
            let m = minute(c.event_time);
            m >= left_fallback && m < FALLBACK_RECOVERS_MIN as f64
        })
        .all(|c| weight(c, NEXT) >= 1.0 - probe_share - 1e-9);
    assert!(
        on_next,
        "the next entry of the chain carried the route (but for a probe) while both failed"
    );

    // Back on the primary within 10 windows after it recovered.
    let back = first_when(&cs, OUTAGE_END_MIN, |c| weight(c, PRIMARY) >= 1.0 - 1e-9)
        .expect("traffic returned to the primary");
    eprintln!(
        "back on the primary {:.2} windows after recovery",
        back - OUTAGE_END_MIN as f64
    );
    assert!(
        back - OUTAGE_END_MIN as f64 <= 10.0,
        "back on the primary at minute {back:.2}"
    );

    // No decision moved traffic onto a model whose recent windows showed it failing.
    let slo = AppConfig::default()
        .decision
        .error_slo
        .default_max_error_rate;
    for pair in cs.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        for t in &after.targets {
            if t.weight > weight(before, &t.model) + 1e-9 {
                assert!(
                    !breaching_before(&result, &t.model, after.event_time, 2, slo),
                    "v{} moved traffic onto {} while it was failing",
                    after.version,
                    t.model
                );
            }
        }
    }
    let decisions = result.record.latest_decisions();
    let probes = decisions
        .values()
        .filter(|d| d.app == APP && d.route == ROUTE && d.strategy == Strategy::Failover)
        .filter(|d| d.params.get("phase").map(String::as_str) == Some("failback_probe"))
        .collect::<Vec<_>>();
    eprintln!(
        "probes: {} ({} held, {} rolled back)",
        probes.len(),
        probes
            .iter()
            .filter(|d| d.state == DecisionState::Succeeded)
            .count(),
        probes
            .iter()
            .filter(|d| d.state == DecisionState::RolledBack)
            .count()
    );
    assert!(
        probes.iter().any(|d| d.state == DecisionState::Succeeded),
        "a probe held after recovery"
    );

    // The circuits are visible where operators watch alerts: open while the route runs on
    // its fallback chain, resolved once the traffic is back.
    let circuit = |model: &str, status: AlertStatus| {
        result
            .record
            .alerts
            .iter()
            .filter(|a| a.alertname == "LlmoptCircuitOpen" && a.status == status)
            .filter(|a| a.labels.get("route").map(String::as_str) == Some(ROUTE))
            .filter(|a| a.labels.get("model").map(String::as_str) == Some(model))
            .map(|a| minute(a.event_time))
            .collect::<Vec<f64>>()
    };
    let fired = circuit(PRIMARY, AlertStatus::Firing);
    let resolved = circuit(PRIMARY, AlertStatus::Resolved);
    eprintln!("circuit alerts for the primary: firing at {fired:?}, resolved at {resolved:?}");
    assert_eq!(fired.len(), 1, "one circuit alert for the whole outage");
    assert!(fired[0] <= left, "fired when the failover was applied");
    assert_eq!(resolved.len(), 1, "resolved once");
    assert!(
        resolved[0] >= back && resolved[0] - back <= 3.0,
        "resolved once the last fail-back step held"
    );
    assert_eq!(circuit(FALLBACK, AlertStatus::Firing).len(), 1);
}
