//! Static SLO rules with Prometheus `for` semantics, evaluated once per tumbling window.
//!
//! A rule breaching in one window is *pending*; it becomes active (the alert fires) once it has
//! breached `for` consecutive windows, and stops being active at the first window that does not
//! breach. Windows without data for the rule's metric leave the count as it is: missing data is
//! neither evidence of a problem nor of recovery.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use statrs::distribution::{ContinuousCDF, Normal};

use crate::config::{Comparison, SloRule, DEFAULT_RULE_SUMMARY};
use crate::metrics::{Metric, SeriesKey};

/// A run of consecutive windows in which a condition held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    /// Consecutive windows so far; 0 when the condition does not hold.
    pub windows: u32,
    /// Start (ms) of the first window of the run: the alert's `starts_at`.
    pub since: i64,
}

impl Streak {
    /// Extends the run with a window starting at `window_start`.
    pub fn hit(&mut self, window_start: i64) {
        if self.windows == 0 {
            self.since = window_start;
        }
        self.windows = self.windows.saturating_add(1);
    }

    /// Ends the run.
    pub fn reset(&mut self) {
        *self = Streak::default();
    }
}

/// The outcome of one rule on one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RuleVerdict {
    /// The series has no value for the rule's metric in this window.
    NoData,
    /// The value is within the SLO.
    Normal {
        /// The metric's value.
        value: f64,
    },
    /// The value breaches the SLO; `streak.windows >= for_windows` means the alert should fire.
    Breaching {
        /// The metric's value.
        value: f64,
        /// The run of breaching windows, this one included.
        streak: Streak,
    },
}

impl RuleVerdict {
    /// Whether the rule is active (past its `for` duration).
    pub fn is_active(&self, rule: &SloRule) -> bool {
        matches!(self, RuleVerdict::Breaching { streak, .. } if streak.windows >= rule.for_windows)
    }
}

/// Evaluates `rule` on `value` (the window's value of `rule.metric`, `None` without data),
/// which stands on `calls` calls (scored calls for quality), and advances its `streak` for the
/// series.
pub fn evaluate(
    rule: &SloRule,
    value: Option<f64>,
    calls: i64,
    window_start: i64,
    streak: &mut Streak,
) -> RuleVerdict {
    let Some(value) = value else {
        return RuleVerdict::NoData;
    };
    if rule.min_calls.is_some_and(|min| calls < min) {
        return RuleVerdict::NoData;
    }
    let judged = match rule.confidence {
        Some(confidence) => {
            let (lower, upper) = wilson_bounds(value, calls, confidence);
            match rule.comparison {
                Comparison::Gt | Comparison::Ge => lower,
                Comparison::Lt | Comparison::Le => upper,
            }
        }
        None => value,
    };
    if rule.comparison.breaches(judged, rule.threshold) {
        streak.hit(window_start);
        RuleVerdict::Breaching {
            value,
            streak: *streak,
        }
    } else {
        streak.reset();
        RuleVerdict::Normal { value }
    }
}

/// The Wilson score interval of a proportion `rate` observed over `n` trials, each side at
/// one-sided `confidence`: unlike `rate ± z·σ` it stays within [0, 1] and is honest for the
/// small counts and rates near 0 that error rates are made of.
pub fn wilson_bounds(rate: f64, n: i64, confidence: f64) -> (f64, f64) {
    if n <= 0 {
        return (0.0, 1.0);
    }
    let z = Normal::standard().inverse_cdf(confidence);
    let n = n as f64;
    let p = rate.clamp(0.0, 1.0);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let scale = 1.0 + z2 / n;
    (
        ((centre - spread) / scale).max(0.0),
        ((centre + spread) / scale).min(1.0),
    )
}

/// Labels every alert about `series` and `metric` carries; Alertmanager-style routing and
/// inhibition match on them.
pub fn alert_labels(
    alertname: &str,
    series: &SeriesKey,
    metric: Metric,
    severity: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("alertname".to_string(), alertname.to_string()),
        ("app".to_string(), series.app.clone()),
        ("route".to_string(), series.route.clone()),
        ("provider".to_string(), series.provider.clone()),
        ("model".to_string(), series.model.clone()),
        ("metric".to_string(), metric.name().to_string()),
        ("severity".to_string(), severity.to_string()),
    ])
}

/// The firing summary of `rule` for `series` at `value`, from its template.
pub fn rule_summary(rule: &SloRule, series: &SeriesKey, value: f64, severity: &str) -> String {
    let template = rule.summary.as_deref().unwrap_or(DEFAULT_RULE_SUMMARY);
    let windows = if rule.for_windows == 1 {
        "window"
    } else {
        "windows"
    };
    let vars: [(&str, String); 13] = [
        ("alertname", rule.name.clone()),
        ("app", series.app.clone()),
        ("route", series.route.clone()),
        ("provider", series.provider.clone()),
        ("model", series.model.clone()),
        ("metric", rule.metric.name().to_string()),
        ("metric_label", rule.metric.label().to_string()),
        ("value", rule.metric.format_value(value)),
        ("op", rule.comparison.symbol().to_string()),
        ("threshold", rule.metric.format_value(rule.threshold)),
        ("for", rule.for_windows.to_string()),
        ("windows", windows.to_string()),
        ("severity", severity.to_string()),
    ];
    render(template, &vars)
}

/// Replaces `{name}` placeholders in one pass; unknown placeholders stay as written, so a typo
/// shows up in the alert instead of vanishing.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let replaced = after.find('}').and_then(|close| {
            let name = &after[..close];
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (v, close))
        });
        match replaced {
            Some((value, close)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Comparison, Matchers};
    use llmopt_events::Severity;

    fn rule(for_windows: u32) -> SloRule {
        SloRule {
            name: "HighErrorRate".into(),
            metric: Metric::ErrorRate,
            comparison: Comparison::Gt,
            threshold: 0.05,
            for_windows,
            severity: Severity::Critical,
            matchers: Matchers::default(),
            summary: None,
            min_calls: None,
            confidence: None,
        }
    }

    fn series() -> SeriesKey {
        SeriesKey {
            app: "checkout".into(),
            route: "summarize".into(),
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
        }
    }

    #[test]
    fn for_counts_consecutive_breaches_and_ignores_missing_data() {
        let r = rule(3);
        let mut streak = Streak::default();
        assert!(!evaluate(&r, Some(0.1), 100, 0, &mut streak).is_active(&r));
        assert!(!evaluate(&r, Some(0.1), 100, 60, &mut streak).is_active(&r));
        assert_eq!(evaluate(&r, None, 0, 120, &mut streak), RuleVerdict::NoData);
        let v = evaluate(&r, Some(0.1), 100, 180, &mut streak);
        assert!(v.is_active(&r));
        assert_eq!(
            v,
            RuleVerdict::Breaching {
                value: 0.1,
                streak: Streak {
                    windows: 3,
                    since: 0
                }
            }
        );
        assert_eq!(
            evaluate(&r, Some(0.01), 100, 240, &mut streak),
            RuleVerdict::Normal { value: 0.01 }
        );
        assert_eq!(streak, Streak::default());
    }

    #[test]
    fn an_error_rate_rule_with_a_confidence_needs_the_counts_behind_the_rate() {
        let r = SloRule {
            confidence: Some(0.95),
            ..rule(1)
        };
        let breaches = |rate: f64, calls: i64| {
            let mut streak = Streak::default();
            evaluate(&r, Some(rate), calls, 0, &mut streak).is_active(&r)
        };
        // 1 failure in 10 calls is 10 %, but could well be a 1 % model's bad luck.
        assert!(!breaches(0.1, 10));
        assert!(breaches(0.2, 10));
        assert!(breaches(0.06, 10_000));
        assert!(!breaches(0.051, 1_000));
        // Without a confidence the observed rate is compared, as Prometheus does.
        let mut streak = Streak::default();
        assert!(evaluate(&rule(1), Some(0.1), 10, 0, &mut streak).is_active(&rule(1)));
    }

    #[test]
    fn wilson_bounds_match_the_textbook_and_stay_in_the_unit_interval() {
        // 2 successes in 10 at 97.5 % per side (a 95 % two-sided interval): 0.057 to 0.510.
        let (lower, upper) = wilson_bounds(0.2, 10, 0.975);
        assert!((lower - 0.0567).abs() < 1e-3, "{lower}");
        assert!((upper - 0.5098).abs() < 1e-3, "{upper}");
        let (lower, upper) = wilson_bounds(0.0, 5, 0.95);
        assert_eq!(lower, 0.0);
        assert!(upper > 0.0 && upper < 1.0);
        assert_eq!(wilson_bounds(0.3, 0, 0.95), (0.0, 1.0));
    }

    #[test]
    fn a_window_below_min_calls_leaves_the_rule_as_it_was() {
        let r = SloRule {
            min_calls: Some(20),
            ..rule(2)
        };
        let mut streak = Streak::default();
        assert!(matches!(
            evaluate(&r, Some(0.5), 100, 0, &mut streak),
            RuleVerdict::Breaching { .. }
        ));
        assert_eq!(
            evaluate(&r, Some(0.0), 5, 60, &mut streak),
            RuleVerdict::NoData
        );
        assert!(evaluate(&r, Some(0.5), 100, 120, &mut streak).is_active(&r));
    }

    #[test]
    fn default_summary_reads_like_the_design() {
        let s = rule_summary(&rule(3), &series(), 0.12, "critical");
        assert_eq!(
            s,
            "checkout/summarize openai/gpt-4o-mini error rate 12.0% > 5.0% for 3 windows"
        );
        assert!(rule_summary(&rule(1), &series(), 0.12, "critical").ends_with("for 1 window"));
    }

    #[test]
    fn render_keeps_unknown_placeholders() {
        let vars = [("a", "x".to_string())];
        assert_eq!(render("{a}-{b}-{a", &vars), "x-{b}-{a");
        assert_eq!(render("no braces", &vars), "no braces");
    }
}
