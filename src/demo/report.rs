//! The demo's closing report: each injected incident with the time to its first alert and the
//! decision taken, alerts that match no incident, and cost and quality before and after.

use std::fmt::Write;

use llmopt_events::{Alert, Decision, DecisionState, WindowAggregate};
use llmopt_sim::GroundTruth;

use super::record::Record;

/// How long after an incident ends its alerts still count as its own (resolution lag).
const ATTRIBUTION_GRACE_MS: i64 = 15 * 60_000;
/// Length of the "before" and "after" periods compared at the end.
const COMPARISON_MS: i64 = 30 * 60_000;

/// One incident's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentOutcome {
    /// The ground truth.
    pub truth: GroundTruth,
    /// First firing alert on the incident's route after it started.
    pub first_alert: Option<Alert>,
    /// First decision of the expected strategy on the route after it started, and its final state.
    pub decision: Option<(Decision, DecisionState)>,
}

/// Everything the summary states, for printing and for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Per incident.
    pub incidents: Vec<IncidentOutcome>,
    /// Firing alerts that match no incident.
    pub false_alerts: Vec<Alert>,
    /// (cost per call, quality mean) over the first and the last period.
    pub before: (f64, f64),
    /// See `before`.
    pub after: (f64, f64),
}

fn matches(truth: &GroundTruth, app: &str, route: &str) -> bool {
    truth.app.as_deref().is_none_or(|a| a == app)
        && truth.route.as_deref().is_none_or(|r| r == route)
}

/// Whether `alert` can be caused by the incident: it is on the incident's route, or the incident
/// is about a model and the alert is about that model on any route. A failover moves a failing
/// model's traffic onto routes it did not serve when the incident began, and its alerts there are
/// the incident's, not false alarms.
fn attributable(truth: &GroundTruth, alert: &Alert) -> bool {
    let on_model = truth
        .model
        .as_deref()
        .is_some_and(|m| m == label(alert, "model"))
        && truth
            .provider
            .as_deref()
            .is_none_or(|p| p == label(alert, "provider"));
    on_model || matches(truth, label(alert, "app"), label(alert, "route"))
}

fn label<'a>(alert: &'a Alert, name: &str) -> &'a str {
    alert
        .labels
        .get(name)
        .map(String::as_str)
        .unwrap_or_default()
}

/// Attributes alerts and decisions to the ground truth.
pub fn evaluate(record: &Record, truth: &[GroundTruth], start_ms: i64, end_ms: i64) -> Outcome {
    let latest = record.latest_decisions();
    let incidents = truth
        .iter()
        .map(|t| {
            let first_alert = record
                .firing()
                .filter(|a| a.event_time >= t.start_ms)
                .filter(|a| {
                    t.end_ms
                        .is_none_or(|end| a.starts_at <= end + ATTRIBUTION_GRACE_MS)
                })
                .find(|a| matches(t, label(a, "app"), label(a, "route")))
                .cloned();
            let decision = t.expected_strategy.and_then(|strategy| {
                record
                    .decisions
                    .iter()
                    .filter(|d| d.strategy == strategy && d.event_time >= t.start_ms)
                    .find(|d| matches(t, &d.app, &d.route))
                    .map(|d| {
                        let state = latest.get(d.id.as_str()).map_or(d.state, |l| l.state);
                        (d.clone(), state)
                    })
            });
            IncidentOutcome {
                truth: t.clone(),
                first_alert,
                decision,
            }
        })
        .collect();
    let false_alerts = record
        .firing()
        .filter(|a| {
            !truth.iter().any(|t| {
                attributable(t, a)
                    && a.starts_at + 60_000 >= t.start_ms
                    && t.end_ms
                        .is_none_or(|end| a.starts_at <= end + ATTRIBUTION_GRACE_MS)
            })
        })
        .cloned()
        .collect();
    let period = |from: i64, to: i64| {
        let ws: Vec<&WindowAggregate> = record
            .windows
            .values()
            .filter(|w| w.window_start >= from && w.window_end <= to)
            .collect();
        let calls: i64 = ws.iter().map(|w| w.count).sum();
        let cost: f64 = ws.iter().map(|w| w.cost_usd).sum();
        let q_sum: f64 = ws.iter().map(|w| w.quality_sum).sum();
        let q_n: i64 = ws.iter().map(|w| w.quality_count).sum();
        (cost / calls.max(1) as f64, q_sum / q_n.max(1) as f64)
    };
    Outcome {
        incidents,
        false_alerts,
        before: period(start_ms, start_ms + COMPARISON_MS),
        after: period(end_ms - COMPARISON_MS, end_ms),
    }
}

/// Minutes:seconds of simulated time since the start.
pub fn clock(start_ms: i64, t: i64) -> String {
    let s = (t - start_ms).max(0) / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// The report as text.
pub fn render(outcome: &Outcome, start_ms: i64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nINCIDENTS");
    for i in &outcome.incidents {
        let t = &i.truth;
        let scope = format!(
            "{}/{} {}",
            t.app.as_deref().unwrap_or("*"),
            t.route.as_deref().unwrap_or("*"),
            t.model.as_deref().unwrap_or("")
        );
        let alert = match &i.first_alert {
            Some(a) => format!(
                "alert {} after {} min",
                a.alertname,
                (a.event_time - t.start_ms) as f64 / 60_000.0
            ),
            None => "no alert".into(),
        };
        let expected = t
            .expected_strategy
            .map_or("none expected".to_string(), |s| format!("{s:?}"));
        let decision = match &i.decision {
            Some((d, state)) => format!(
                "decision {:?} {} ({:?}) at {}",
                d.strategy,
                d.action,
                state,
                clock(start_ms, d.event_time)
            ),
            None if t.expected_strategy.is_some() => "NO DECISION".into(),
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "  {:<22} {:<40} at {}: {:<36} | expected {:<20} | {}",
            t.name,
            scope,
            clock(start_ms, t.start_ms),
            alert,
            expected,
            decision
        );
    }
    let _ = writeln!(out, "\nFALSE ALERTS: {}", outcome.false_alerts.len());
    for a in &outcome.false_alerts {
        let _ = writeln!(
            out,
            "  {} {} {}",
            clock(start_ms, a.starts_at),
            a.alertname,
            a.summary
        );
    }
    let _ = writeln!(
        out,
        "\nCOST AND QUALITY (first 30 min → last 30 min): ${:.6} → ${:.6} per call, quality {:.4} → {:.4}",
        outcome.before.0, outcome.after.0, outcome.before.1, outcome.after.1
    );
    out
}

#[cfg(test)]
mod tests {
    use llmopt_sim::GroundTruthKind;

    use super::*;

    fn truth(route: &str, model: Option<&str>) -> GroundTruth {
        GroundTruth {
            name: "burst".into(),
            kind: GroundTruthKind::ProviderErrorBurst,
            start_ms: 0,
            end_ms: Some(600_000),
            app: Some("checkout".into()),
            route: Some(route.into()),
            provider: model.map(|_| "openai".into()),
            model: model.map(Into::into),
            expected_strategy: None,
        }
    }

    fn alert_on(route: &str, model: &str) -> Alert {
        let mut alert = llmopt_events::samples::alert();
        alert.labels.insert("route".into(), route.into());
        alert.labels.insert("provider".into(), "openai".into());
        alert.labels.insert("model".into(), model.into());
        alert
    }

    #[test]
    fn a_model_incident_follows_its_model_to_other_routes() {
        let model_incident = truth("summarize", Some("gpt-4o-mini"));
        // The failing model took over another route through a failover.
        assert!(attributable(
            &model_incident,
            &alert_on("classify", "gpt-4o-mini")
        ));
        assert!(attributable(
            &model_incident,
            &alert_on("summarize", "gpt-4o")
        ));
        assert!(!attributable(
            &model_incident,
            &alert_on("classify", "gpt-4o")
        ));
        // A route incident stays on its route.
        let route_incident = truth("summarize", None);
        assert!(attributable(
            &route_incident,
            &alert_on("summarize", "gpt-4o")
        ));
        assert!(!attributable(
            &route_incident,
            &alert_on("classify", "gpt-4o-mini")
        ));
    }
}
