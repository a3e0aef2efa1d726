//! Detector configuration: the baseline detector's parameters, the static SLO rules and the alert
//! policy.
//!
//! Every struct deserialises with defaults for missing fields, so a deployment only writes what it
//! changes; [`DetectorConfig::validate`] rejects values that would make the detector silently
//! useless (an EWMA weight of 0, a rule named with a `/` that would break dedup keys, ...).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use llmopt_events::Severity;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::budget::Budget;
use crate::change::ChangeConfig;
use crate::metrics::{Metric, SeriesKey};
use crate::seasonal::SeasonalConfig;

/// Everything the detector core is configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// Parameters of the built-in robust EWMA/MAD baseline detector.
    pub baseline: RobustEwmaConfig,
    /// Parameters of the change detector (level shifts and drifts), which runs beside the
    /// baseline detector on the same metrics.
    pub change: ChangeConfig,
    /// Hour-of-day profile the spike and change detectors judge values against.
    pub seasonal: SeasonalConfig,
    /// Metrics the baseline detector watches (SLO rules may use any metric regardless).
    pub metrics: Vec<Metric>,
    /// Windows with fewer calls than this are not evaluated at all (neither baselines nor rules):
    /// one failure among three calls is not a 33 % error rate worth waking anyone for.
    pub min_count: i64,
    /// Static SLO rules, evaluated in this order.
    pub rules: Vec<SloRule>,
    /// After an alert resolves, the same dedup key may not fire again for this long (event time,
    /// ms), so a flapping condition does not page on every oscillation.
    pub cooldown_ms: i64,
    /// When anomalies raise alerts.
    pub anomaly_alerts: AnomalyAlertPolicy,
    /// A series with no evaluated window for this long (event time, ms, measured against the
    /// newest window seen) is forgotten and its firing alerts resolve, so that a model removed from
    /// routing does not leave an alert firing forever. 0 keeps series forever.
    pub idle_series_ttl_ms: i64,
    /// Spending limits per day or month, with threshold and projection alerts.
    pub budgets: Vec<Budget>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            baseline: RobustEwmaConfig::default(),
            change: ChangeConfig::default(),
            seasonal: SeasonalConfig::default(),
            metrics: Metric::ALL.to_vec(),
            min_count: 10,
            rules: vec![
                SloRule {
                    name: "HighErrorRate".into(),
                    metric: Metric::ErrorRate,
                    comparison: Comparison::Gt,
                    threshold: 0.05,
                    for_windows: 3,
                    severity: Severity::Critical,
                    matchers: Matchers::default(),
                    summary: None,
                    min_calls: None,
                    confidence: None,
                },
                SloRule {
                    name: "HighLatencyP95".into(),
                    metric: Metric::LatencyP95Ms,
                    comparison: Comparison::Gt,
                    threshold: 10_000.0,
                    for_windows: 5,
                    severity: Severity::Warning,
                    matchers: Matchers::default(),
                    summary: None,
                    min_calls: None,
                    confidence: None,
                },
            ],
            cooldown_ms: 300_000,
            anomaly_alerts: AnomalyAlertPolicy::default(),
            idle_series_ttl_ms: 3_600_000,
            budgets: Vec::new(),
        }
    }
}

/// Parameters of [`crate::RobustEwma`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RobustEwmaConfig {
    /// Name written to `Anomaly.detector` and into anomaly ids, so consumers can tell detectors
    /// (and their versions) apart.
    pub name: String,
    /// EWMA weight of a new normal observation, in (0, 1]: 0.1 remembers about the last 10
    /// windows.
    pub alpha: f64,
    /// |robust z| above which a value is anomalous.
    pub threshold: f64,
    /// Observations collected before scoring starts; the baseline is initialised from their
    /// median and median absolute deviation.
    pub warmup_windows: u32,
    /// Fraction of `alpha` with which an anomalous value still moves the baseline, in [0, 1]: small
    /// enough that a sustained incident stays anomalous for a while, non-zero so that a permanent
    /// level shift eventually becomes the new normal.
    pub anomalous_weight: f64,
    /// Scale floor as a fraction of |baseline|: a perfectly flat series does not turn a 0.1 %
    /// wobble into an infinite score.
    pub relative_floor: f64,
    /// Absolute scale floor per metric, in the metric's unit, for baselines near zero (an error
    /// rate of exactly 0). Metrics not listed use [`RobustEwmaConfig::DEFAULT_ABSOLUTE_FLOOR`].
    pub absolute_floor: BTreeMap<Metric, f64>,
}

impl RobustEwmaConfig {
    /// Absolute floor for metrics missing from `absolute_floor`.
    pub const DEFAULT_ABSOLUTE_FLOOR: f64 = 1e-9;

    /// The absolute scale floor of `metric`.
    pub fn absolute_floor_of(&self, metric: Metric) -> f64 {
        self.absolute_floor
            .get(&metric)
            .copied()
            .unwrap_or(Self::DEFAULT_ABSOLUTE_FLOOR)
    }
}

impl Default for RobustEwmaConfig {
    fn default() -> Self {
        Self {
            name: "robust-ewma-mad".into(),
            alpha: 0.1,
            threshold: 6.0,
            warmup_windows: 10,
            anomalous_weight: 0.1,
            relative_floor: 0.02,
            absolute_floor: BTreeMap::from([
                (Metric::ErrorRate, 0.01),
                (Metric::LatencyP95Ms, 10.0),
                (Metric::CostPerCall, 1e-6),
                (Metric::QualityMean, 0.01),
                (Metric::TtftP95Ms, 10.0),
            ]),
        }
    }
}

/// How a rule compares the metric with its threshold; written `>`, `<`, `>=`, `<=` in
/// configuration, as in PromQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    /// Breach when value > threshold.
    #[serde(rename = ">")]
    Gt,
    /// Breach when value < threshold.
    #[serde(rename = "<")]
    Lt,
    /// Breach when value >= threshold.
    #[serde(rename = ">=")]
    Ge,
    /// Breach when value <= threshold.
    #[serde(rename = "<=")]
    Le,
}

impl Comparison {
    /// Whether `value` breaches `threshold`.
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Gt => value > threshold,
            Comparison::Lt => value < threshold,
            Comparison::Ge => value >= threshold,
            Comparison::Le => value <= threshold,
        }
    }

    /// The operator as written in configuration and summaries.
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Lt => "<",
            Comparison::Ge => ">=",
            Comparison::Le => "<=",
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// A static SLO rule, like a Prometheus alerting rule over one window metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloRule {
    /// The alert name (`alertname`); the first segment of the dedup key, so it must not contain
    /// `/`.
    pub name: String,
    /// Metric compared.
    pub metric: Metric,
    /// How it is compared.
    pub comparison: Comparison,
    /// Threshold, in the metric's unit (an error rate of 5 % is `0.05`).
    pub threshold: f64,
    /// Consecutive breaching windows before the alert fires (Prometheus `for`); at least 1.
    #[serde(default = "one", rename = "for")]
    pub for_windows: u32,
    /// Severity of the alert.
    #[serde(default = "warning", with = "severity_serde")]
    pub severity: Severity,
    /// Series the rule applies to; empty matches every series.
    #[serde(default)]
    pub matchers: Matchers,
    /// Summary template; `None` uses [`DEFAULT_RULE_SUMMARY`]. Placeholders: `{alertname}`,
    /// `{app}`, `{route}`, `{provider}`, `{model}`, `{metric}`, `{metric_label}`, `{value}`,
    /// `{op}`, `{threshold}`, `{for}`, `{windows}` (`window`/`windows`), `{severity}`.
    #[serde(default)]
    pub summary: Option<String>,
    /// A window whose value stands on fewer calls than this (scored calls for quality) leaves
    /// the rule as it was, like a window without data: a night-time window of a few calls is
    /// neither evidence of a breach nor of recovery. `None`: the detector's `min_count` only.
    #[serde(default)]
    pub min_calls: Option<i64>,
    /// For `error_rate`, a binomial proportion: judge the window by the Wilson score bound of its
    /// rate at this one-sided confidence (e.g. 0.95) instead of the rate itself. A rule breaching
    /// above its threshold then needs the lower bound above it (1 failure in 10 calls is not
    /// above 5 % at 0.95; 2 in 10 are, and so are 60 in 1,000), one breaching below it the upper
    /// bound below it. `None`: the observed rate, as Prometheus compares it.
    #[serde(default)]
    pub confidence: Option<f64>,
}

/// Summary of a rule alert when the rule sets none, e.g. `checkout/summarize openai/gpt-4o-mini
/// error rate 12.0% > 5.0% for 3 windows`.
pub const DEFAULT_RULE_SUMMARY: &str =
    "{app}/{route} {provider}/{model} {metric_label} {value} {op} {threshold} for {for} {windows}";

fn one() -> u32 {
    1
}

fn warning() -> Severity {
    Severity::Warning
}

/// Exact-match label selectors; `None` matches anything. They let a rule hold one provider or one
/// route to a stricter SLO than the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Matchers {
    /// Required app.
    pub app: Option<String>,
    /// Required route.
    pub route: Option<String>,
    /// Required provider.
    pub provider: Option<String>,
    /// Required model.
    pub model: Option<String>,
}

impl Matchers {
    /// Whether the series satisfies every set matcher.
    pub fn matches(&self, series: &SeriesKey) -> bool {
        let ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        ok(&self.app, &series.app)
            && ok(&self.route, &series.route)
            && ok(&self.provider, &series.provider)
            && ok(&self.model, &series.model)
    }
}

/// When a persisting anomaly becomes an operator alert.
///
/// The alert fires after `persist_windows` consecutive anomalous windows of one (series, metric)
/// and resolves at the first window that is not anomalous: either the metric recovered, or the
/// baseline has adapted to a permanent new level (SLO rules are the tool for absolute limits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyAlertPolicy {
    /// Whether anomalies raise alerts at all.
    pub enabled: bool,
    /// Consecutive anomalous windows of one (series, metric) before the alert fires: one odd
    /// window is an anomaly event, not yet something to look at.
    pub persist_windows: u32,
    /// Severity of anomaly alerts (a change, not an SLO breach: WARNING by default).
    #[serde(with = "severity_serde")]
    pub severity: Severity,
    /// Alert name prefix; the metric's CamelCase name follows (`AnomalousErrorRate`).
    pub alertname_prefix: String,
    /// Only changes in the metric's adverse direction (up, or down for quality) raise alerts;
    /// cheaper or faster than usual still emits an `Anomaly` but pages no one.
    pub adverse_only: bool,
}

impl Default for AnomalyAlertPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            persist_windows: 2,
            severity: Severity::Warning,
            alertname_prefix: "Anomalous".into(),
            adverse_only: true,
        }
    }
}

impl AnomalyAlertPolicy {
    /// Alert name of anomaly alerts on `metric`.
    pub fn alertname(&self, metric: Metric) -> String {
        format!("{}{}", self.alertname_prefix, metric.camel())
    }
}

/// A configuration value the detector cannot work with.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    /// A numeric parameter outside its range.
    #[error("`{field}` = {value} is out of range: {expected}")]
    OutOfRange {
        /// Dotted path of the field.
        field: String,
        /// The value found.
        value: f64,
        /// What is allowed.
        expected: &'static str,
    },
    /// An alert or detector name that would make ids or dedup keys ambiguous.
    #[error("invalid name `{name}` for `{field}`: {reason}")]
    InvalidName {
        /// Dotted path of the field.
        field: String,
        /// The name found.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// Two rules with one name would share dedup keys and overwrite each other's state.
    #[error("duplicate rule name `{0}`")]
    DuplicateRule(String),
    /// Two budgets with one name would share their spend and alerts.
    #[error("duplicate budget name `{0}`")]
    DuplicateBudget(String),
}

impl DetectorConfig {
    /// Checks ranges and names; [`crate::Detector`] constructors call it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_budgets()?;
        let s = &self.seasonal;
        check(
            "seasonal.min_days",
            f64::from(s.min_days),
            s.min_days >= 1 && s.min_days <= s.days,
            "1 <= min_days <= days",
        )?;
        let b = &self.baseline;
        check_name("baseline.name", &b.name)?;
        check(
            "baseline.alpha",
            b.alpha,
            b.alpha > 0.0 && b.alpha <= 1.0,
            "0 < alpha <= 1",
        )?;
        check(
            "baseline.threshold",
            b.threshold,
            b.threshold.is_finite() && b.threshold > 0.0,
            "finite and > 0",
        )?;
        check(
            "baseline.warmup_windows",
            f64::from(b.warmup_windows),
            b.warmup_windows >= 1,
            ">= 1",
        )?;
        check(
            "baseline.anomalous_weight",
            b.anomalous_weight,
            (0.0..=1.0).contains(&b.anomalous_weight),
            "0 <= weight <= 1",
        )?;
        check(
            "baseline.relative_floor",
            b.relative_floor,
            b.relative_floor.is_finite() && b.relative_floor >= 0.0,
            "finite and >= 0",
        )?;
        for (metric, floor) in &b.absolute_floor {
            check(
                &format!("baseline.absolute_floor.{metric}"),
                *floor,
                floor.is_finite() && *floor > 0.0,
                "finite and > 0",
            )?;
        }
        let c = &self.change;
        check_name("change.name", &c.name)?;
        for (field, value) in [
            ("change.alpha", c.alpha),
            ("change.variance_alpha", c.variance_alpha),
            ("change.drift_lambda", c.drift_lambda),
        ] {
            check(field, value, value > 0.0 && value <= 1.0, "0 < value <= 1")?;
        }
        for (field, value) in [
            ("change.clip", c.clip),
            ("change.cusum_h", c.cusum_h),
            ("change.binomial_h", c.binomial_h),
            ("change.drift_limit", c.drift_limit),
        ] {
            check(
                field,
                value,
                value.is_finite() && value > 0.0,
                "finite and > 0",
            )?;
        }
        check(
            "change.binomial_ratio",
            c.binomial_ratio,
            c.binomial_ratio.is_finite() && c.binomial_ratio > 1.0,
            "finite and > 1",
        )?;
        check(
            "change.cusum_k",
            c.cusum_k,
            c.cusum_k.is_finite() && c.cusum_k >= 0.0,
            "finite and >= 0",
        )?;
        check(
            "change.warmup_windows",
            f64::from(c.warmup_windows),
            c.warmup_windows >= 2,
            ">= 2",
        )?;
        check(
            "change.adopt_after_windows",
            f64::from(c.adopt_after_windows),
            c.adopt_after_windows >= 1,
            ">= 1",
        )?;
        for (metric, floor) in &c.floor {
            check(
                &format!("change.floor.{metric}"),
                *floor,
                floor.is_finite() && *floor > 0.0,
                "finite and > 0",
            )?;
        }
        check(
            "min_count",
            self.min_count as f64,
            self.min_count >= 0,
            ">= 0",
        )?;
        check(
            "cooldown_ms",
            self.cooldown_ms as f64,
            self.cooldown_ms >= 0,
            ">= 0",
        )?;
        check(
            "idle_series_ttl_ms",
            self.idle_series_ttl_ms as f64,
            self.idle_series_ttl_ms >= 0,
            ">= 0",
        )?;
        let policy = &self.anomaly_alerts;
        check(
            "anomaly_alerts.persist_windows",
            f64::from(policy.persist_windows),
            policy.persist_windows >= 1,
            ">= 1",
        )?;
        check_name("anomaly_alerts.alertname_prefix", &policy.alertname_prefix)?;
        let mut names = BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            check_name(&format!("rules[{i}].name"), &rule.name)?;
            check(
                &format!("rules[{i}].threshold"),
                rule.threshold,
                rule.threshold.is_finite(),
                "finite",
            )?;
            check(
                &format!("rules[{i}].for"),
                f64::from(rule.for_windows),
                rule.for_windows >= 1,
                ">= 1",
            )?;
            if let Some(min_calls) = rule.min_calls {
                check(
                    &format!("rules[{i}].min_calls"),
                    min_calls as f64,
                    min_calls >= 1,
                    ">= 1",
                )?;
            }
            if let Some(confidence) = rule.confidence {
                check(
                    &format!("rules[{i}].confidence"),
                    confidence,
                    confidence > 0.5 && confidence < 1.0,
                    "0.5 < confidence < 1",
                )?;
                if rule.metric != Metric::ErrorRate {
                    return Err(ConfigError::OutOfRange {
                        field: format!("rules[{i}].confidence"),
                        value: confidence,
                        expected: "only error_rate rules take a confidence (a binomial proportion)",
                    });
                }
            }
            if !names.insert(rule.name.as_str()) {
                return Err(ConfigError::DuplicateRule(rule.name.clone()));
            }
        }
        Ok(())
    }
}

impl DetectorConfig {
    fn validate_budgets(&self) -> Result<(), ConfigError> {
        let mut names = BTreeSet::new();
        for (i, budget) in self.budgets.iter().enumerate() {
            check_name(&format!("budgets[{i}].name"), &budget.name)?;
            if !names.insert(budget.name.as_str()) {
                return Err(ConfigError::DuplicateBudget(budget.name.clone()));
            }
            check(
                &format!("budgets[{i}].limit_usd"),
                budget.limit_usd,
                budget.limit_usd.is_finite() && budget.limit_usd > 0.0,
                "> 0",
            )?;
            check(
                &format!("budgets[{i}].project_after"),
                budget.project_after,
                budget.project_after > 0.0 && budget.project_after <= 1.0,
                "0 < project_after <= 1",
            )?;
            for share in &budget.thresholds {
                check(
                    &format!("budgets[{i}].thresholds"),
                    *share,
                    *share > 0.0 && *share < 1.0,
                    "each in (0, 1); reaching the limit is BudgetExceeded",
                )?;
            }
        }
        Ok(())
    }
}

fn check(field: &str, value: f64, ok: bool, expected: &'static str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field: field.to_string(),
            value,
            expected,
        })
    }
}

fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.contains('/') {
        Some("must not contain `/` (it separates id segments)")
    } else if name.chars().any(char::is_whitespace) {
        Some("must not contain whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ConfigError::InvalidName {
            field: field.to_string(),
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Severity in configuration, case-insensitive (`critical` as in Prometheus rule labels, or
/// `CRITICAL` as on the wire); written back in the wire form.
mod severity_serde {
    use super::*;

    pub fn serialize<S: Serializer>(severity: &Severity, s: S) -> Result<S::Ok, S::Error> {
        severity.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Severity, D::Error> {
        let text = String::deserialize(d)?;
        match text.to_ascii_lowercase().as_str() {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            _ => Err(serde::de::Error::unknown_variant(
                &text,
                &["info", "warning", "critical"],
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(DetectorConfig::default().validate(), Ok(()));
    }

    #[test]
    fn parses_toml_with_defaults_and_prometheus_style_fields() {
        let text = r#"
            cooldown_ms = 120000
            [baseline]
            threshold = 5.0
            [[rules]]
            name = "OpenAiErrors"
            metric = "error_rate"
            comparison = ">="
            threshold = 0.02
            for = 2
            severity = "critical"
            matchers = { provider = "openai" }
        "#;
        let config: DetectorConfig = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => panic!("config does not parse: {e}"),
        };
        assert_eq!(config.cooldown_ms, 120_000);
        assert_eq!(config.baseline.threshold, 5.0);
        assert_eq!(config.baseline.alpha, 0.1);
        assert_eq!(config.rules.len(), 1);
        let rule = &config.rules[0];
        assert_eq!(rule.comparison, Comparison::Ge);
        assert_eq!(rule.for_windows, 2);
        assert_eq!(rule.severity, Severity::Critical);
        assert_eq!(rule.matchers.provider.as_deref(), Some("openai"));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_values() {
        let mut config = DetectorConfig::default();
        config.baseline.alpha = 0.0;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::OutOfRange { .. })
        ));
        let mut config = DetectorConfig::default();
        config.rules[0].name = "a/b".into();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::InvalidName { .. })
        ));
        let mut config = DetectorConfig::default();
        config.rules[1].name = config.rules[0].name.clone();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::DuplicateRule(_))
        ));
        let mut config = DetectorConfig::default();
        config.rules[0].for_windows = 0;
        assert!(config.validate().is_err());
    }
}
