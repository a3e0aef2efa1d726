//! The detector core: tumbling windows in, anomalies and alert state changes out.
//!
//! Per window the core (1) forgets series that have been idle too long, resolving their alerts;
//! (2) scores each watched metric against its series' baseline and publishes an `Anomaly` for
//! each anomalous one; (3) evaluates the SLO rules matching the series; (4) turns persisting
//! anomalies into alerts; (5) resolves firing alerts of the series whose rule or metric is no
//! longer configured (after a restore with a new configuration). Outputs come in exactly that
//! order, metrics and rules in configuration order, so the same input always yields the same
//! output sequence.
//!
//! Only TUMBLING windows are evaluated: hopping windows overlap, so feeding them too would count
//! every call several times and make consecutive windows correlated. Revisions are ignored: a
//! window whose `window_end` is not newer than the last one evaluated for its series (a revision
//! `r > 0` of a window already seen, or an older window arriving late) changes nothing. The
//! baseline must not advance twice for one interval, and re-scoring would mean retracting
//! published anomalies and alerts; late events within the aggregator's allowed lateness move a
//! window's metrics little. A revision whose revision 0 never arrived is newer than anything
//! seen and is evaluated like a first emission.

use std::collections::BTreeMap;

use llmopt_events::{Alert, Anomaly, AnyEvent, WindowAggregate, WindowKind};
use llmopt_runtime::{Input, Output, Processor, StateScope};
use llmopt_transport::LogicalTopic;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::alerts::{ActiveAlert, AlertBook, Condition};
use crate::baseline::{BaselineDetector, Observation, RobustEwma, Score};
use crate::budget::BudgetBook;
use crate::change::{scale_of, to_scale, ChangeDetector, ChangeKind, ChangeState, Scale};
use crate::config::{ConfigError, DetectorConfig, SloRule};
use crate::metrics::{Metric, SeriesKey};
use crate::rules::{self, RuleVerdict, Streak};
use crate::seasonal::{self, SeasonalState};
use crate::SERVICE_NAME;

/// Version of the snapshot layout written by [`Detector::snapshot`].
pub const SNAPSHOT_VERSION: u32 = 1;

/// Why a snapshot could not be written or restored.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The state could not be serialised.
    #[error("cannot encode detector state: {0}")]
    Encode(#[source] serde_json::Error),
    /// The bytes are not a detector snapshot.
    #[error("cannot decode detector state: {0}")]
    Decode(#[source] serde_json::Error),
    /// Written by a version of the detector with another layout.
    #[error("snapshot version {found} is not supported (expected {expected})")]
    Version {
        /// Version in the snapshot.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// Written for another baseline detector, whose per-series state means something else.
    #[error("snapshot was written by detector `{found}`, this one is `{expected}`")]
    DetectorMismatch {
        /// Detector named in the snapshot.
        found: String,
        /// This detector's name.
        expected: String,
    },
}

/// Counters for the runner's metrics endpoint; part of the snapshot so they survive restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectorStats {
    /// Tumbling windows evaluated (at least `min_count` calls).
    pub windows_evaluated: u64,
    /// Hopping windows ignored.
    pub hopping_ignored: u64,
    /// Revisions and late older windows ignored.
    pub stale_ignored: u64,
    /// Tumbling windows with fewer than `min_count` calls.
    pub below_min_count: u64,
    /// Inputs that were not window aggregates.
    pub other_events_ignored: u64,
    /// Anomalies published.
    pub anomalies: u64,
    /// FIRING alerts published.
    pub alerts_fired: u64,
    /// RESOLVED alerts published.
    pub alerts_resolved: u64,
    /// Series forgotten after being idle.
    pub series_evicted: u64,
}

/// Everything the detector learned, per series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: DeserializeOwned"))]
struct SeriesState<S> {
    /// `window_end` of the newest tumbling window taken in, evaluated or not.
    last_window_end: i64,
    /// Baseline state per watched metric.
    baselines: BTreeMap<Metric, S>,
    /// Consecutive alert-worthy anomalous windows per metric.
    anomaly_streaks: BTreeMap<Metric, Streak>,
    /// Consecutive breaching windows per rule name.
    rule_streaks: BTreeMap<String, Streak>,
    /// Change-detector state per watched metric.
    #[serde(default)]
    changes: BTreeMap<Metric, ChangeState>,
    /// Consecutive alert-worthy shift or drift windows per metric and kind.
    #[serde(default, with = "crate::seq_map")]
    change_streaks: BTreeMap<(Metric, ChangeKind), Streak>,
    /// Hour-of-day profile per seasonal metric.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    seasonal: BTreeMap<Metric, SeasonalState>,
}

/// Alert names of one watched metric, built once rather than per window.
#[derive(Debug)]
struct AlertNames {
    spike: String,
    shift: String,
    drift: String,
}

/// One detector's verdict on one metric of a window, on its way to anomalies and alerts.
struct Finding<'a> {
    alertname: &'a str,
    detector: &'a str,
    metric: Metric,
    score: Score,
    streak: Streak,
    /// The change kind, `None` for the spike detector.
    kind: Option<ChangeKind>,
}

/// Alert name of a change kind on a metric: `CostPerCallLevelShift`, `QualityMeanDrift`.
pub fn change_alertname(metric: Metric, kind: ChangeKind) -> String {
    format!("{}{}", metric.camel(), kind.alert_suffix())
}

/// The whole mutable state, as snapshotted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: DeserializeOwned"))]
struct State<S> {
    version: u32,
    detector: String,
    #[serde(with = "crate::seq_map")]
    series: BTreeMap<SeriesKey, SeriesState<S>>,
    alerts: AlertBook,
    /// Spend per budget in its current period.
    #[serde(default)]
    budgets: BudgetBook,
    newest_window_end: Option<i64>,
    stats: DetectorStats,
}

/// The detector service core. `B` is the baseline detector; [`RobustEwma`] unless another is
/// plugged in with [`Detector::with_baseline`].
#[derive(Debug)]
pub struct Detector<B: BaselineDetector = RobustEwma> {
    config: DetectorConfig,
    metrics: Vec<Metric>,
    baseline: B,
    change: ChangeDetector,
    /// Per watched metric, in `metrics` order.
    names: Vec<AlertNames>,
    /// `Anomaly.detector` of shifts and drifts.
    change_names: [String; 2],
    state: State<B::State>,
}

impl Detector<RobustEwma> {
    /// A detector using the built-in robust EWMA/MAD baseline configured by `config.baseline`.
    pub fn new(config: DetectorConfig) -> Result<Self, ConfigError> {
        let baseline = RobustEwma::new(config.baseline.clone());
        Self::with_baseline(config, baseline)
    }
}

impl<B: BaselineDetector> Detector<B> {
    /// A detector using `baseline` (`config.baseline` is then unused), after validating
    /// `config`.
    pub fn with_baseline(config: DetectorConfig, baseline: B) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut metrics = Vec::new();
        for metric in &config.metrics {
            if !metrics.contains(metric) {
                metrics.push(*metric);
            }
        }
        let state = State {
            version: SNAPSHOT_VERSION,
            detector: baseline.name().to_string(),
            series: BTreeMap::new(),
            alerts: AlertBook::default(),
            budgets: BudgetBook::default(),
            newest_window_end: None,
            stats: DetectorStats::default(),
        };
        let change = ChangeDetector::new(config.change.clone());
        let names = metrics
            .iter()
            .map(|m| AlertNames {
                spike: config.anomaly_alerts.alertname(*m),
                shift: change_alertname(*m, ChangeKind::Shift),
                drift: change_alertname(*m, ChangeKind::Drift),
            })
            .collect();
        let change_names = [
            config.change.detector_name(ChangeKind::Shift),
            config.change.detector_name(ChangeKind::Drift),
        ];
        Ok(Self {
            config,
            metrics,
            baseline,
            change,
            names,
            change_names,
            state,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Counters since the state began (restored snapshots included).
    pub fn stats(&self) -> DetectorStats {
        self.state.stats
    }

    /// The alerts currently firing, for status endpoints.
    pub fn firing_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.state.alerts.firing()
    }

    /// Number of series with state.
    pub fn series_count(&self) -> usize {
        self.state.series.len()
    }

    /// The whole state as JSON bytes, for the runner's checkpoints. Deterministic: maps are
    /// ordered.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        serde_json::to_vec(&self.state).map_err(SnapshotError::Encode)
    }

    /// Replaces the state with a snapshot from [`Detector::snapshot`]. On error the current
    /// state is kept.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        #[derive(Deserialize)]
        struct Header {
            version: u32,
            detector: String,
        }
        let header: Header = serde_json::from_slice(bytes).map_err(SnapshotError::Decode)?;
        if header.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version {
                found: header.version,
                expected: SNAPSHOT_VERSION,
            });
        }
        if header.detector != self.baseline.name() {
            return Err(SnapshotError::DetectorMismatch {
                found: header.detector,
                expected: self.baseline.name().to_string(),
            });
        }
        self.state = serde_json::from_slice(bytes).map_err(SnapshotError::Decode)?;
        Ok(())
    }

    /// Handles one window aggregate; see the module documentation for what is evaluated and in
    /// which order the outputs come.
    pub fn on_window(&mut self, window: &WindowAggregate) -> Vec<Output> {
        if window.window_kind != WindowKind::Tumbling {
            self.state.stats.hopping_ignored += 1;
            return Vec::new();
        }
        let mut out = Vec::new();
        self.advance_clock(window.window_end, &mut out);
        // Budgets count every tumbling window, revisions included (they replace what the
        // earlier revision added), before the series' staleness and volume checks.
        if !self.config.budgets.is_empty() {
            for alert in self.state.budgets.on_window(&self.config.budgets, window) {
                self.push_alert(alert, &mut out);
            }
        }

        let key = SeriesKey::of(window);
        let series = self
            .state
            .series
            .entry(key.clone())
            .or_insert_with(|| SeriesState {
                last_window_end: i64::MIN,
                baselines: BTreeMap::new(),
                anomaly_streaks: BTreeMap::new(),
                rule_streaks: BTreeMap::new(),
                changes: BTreeMap::new(),
                change_streaks: BTreeMap::new(),
                seasonal: BTreeMap::new(),
            });
        if window.window_end <= series.last_window_end {
            self.state.stats.stale_ignored += 1;
            return out;
        }
        series.last_window_end = window.window_end;
        if window.count < self.config.min_count {
            self.state.stats.below_min_count += 1;
            return out;
        }
        self.state.stats.windows_evaluated += 1;

        // 1. Baselines, change charts and anomalies.
        let policy = &self.config.anomaly_alerts;
        let mut findings: Vec<Finding> = Vec::new();
        for (&metric, names) in self.metrics.iter().zip(&self.names) {
            let Some(value) = metric.extract(window) else {
                continue;
            };
            // Judged less its hour's usual offset, reported with it (see `seasonal`).
            let scale = scale_of(metric);
            let seasonal = self.config.seasonal.enabled && scale != Scale::Binomial;
            let offset = if seasonal {
                series
                    .seasonal
                    .get(&metric)
                    .map_or(0.0, |s| s.offset(window.window_start))
            } else {
                0.0
            };
            let judged = seasonal::shift(scale, value, -offset);
            let first_finding = findings.len();
            let state = series.baselines.entry(metric).or_default();
            if let Observation::Scored(score) = self.baseline.observe(metric, state, judged) {
                findings.push(Finding {
                    alertname: &names.spike,
                    detector: self.baseline.name(),
                    metric,
                    score,
                    streak: Streak::default(),
                    kind: None,
                });
            }
            if self.change.config().enabled {
                let state = series.changes.entry(metric).or_default();
                let calls = metric.calls(window) as f64;
                for verdict in self.change.observe(metric, state, judged, calls) {
                    let (alertname, detector) = match verdict.kind {
                        ChangeKind::Shift => (&names.shift, &self.change_names[0]),
                        ChangeKind::Drift => (&names.drift, &self.change_names[1]),
                    };
                    findings.push(Finding {
                        alertname,
                        detector,
                        metric,
                        score: Score {
                            value: verdict.value,
                            baseline: verdict.baseline,
                            scale: 1.0,
                            score: verdict.score,
                            anomalous: verdict.anomalous,
                        },
                        streak: Streak::default(),
                        kind: Some(verdict.kind),
                    });
                }
            }
            if seasonal {
                for finding in &mut findings[first_finding..] {
                    let score = &mut finding.score;
                    score.value = value;
                    score.baseline = seasonal::shift(scale, score.baseline, offset);
                    // A ratio's scale stretches with its baseline; a difference's does not.
                    if finding.kind.is_none() && scale == Scale::Log {
                        score.scale *= offset.exp();
                    }
                }
                if let Some(x) = to_scale(scale, value) {
                    series.seasonal.entry(metric).or_default().learn(
                        &self.config.seasonal,
                        window.window_start,
                        x,
                    );
                }
            }
        }
        for finding in &mut findings {
            let score = &finding.score;
            if score.anomalous {
                out.push(anomaly_output(
                    finding.detector,
                    &key,
                    finding.metric,
                    window,
                    score,
                ));
                self.state.stats.anomalies += 1;
            }
            let alert_worthy = score.anomalous
                && (!policy.adverse_only
                    || score.direction() == finding.metric.adverse_direction());
            let streak = match finding.kind {
                None => series.anomaly_streaks.entry(finding.metric).or_default(),
                Some(kind) => series
                    .change_streaks
                    .entry((finding.metric, kind))
                    .or_default(),
            };
            if alert_worthy {
                streak.hit(window.window_start);
            } else {
                streak.reset();
            }
            finding.streak = *streak;
        }

        // 2. SLO rules.
        let now = window.window_end;
        let cooldown = self.config.cooldown_ms;
        let mut alerts = Vec::new();
        for rule in &self.config.rules {
            if !rule.matchers.matches(&key) {
                continue;
            }
            let streak = series.rule_streaks.entry(rule.name.clone()).or_default();
            let verdict = rules::evaluate(
                rule,
                rule.metric.extract(window),
                rule.metric.calls(window),
                window.window_start,
                streak,
            );
            if matches!(verdict, RuleVerdict::Normal { .. })
                && !self.state.alerts.is_firing(&key, &rule.name)
            {
                // Nothing to resolve: skip building the resolution note.
                continue;
            }
            let condition = rule_condition(rule, &key, verdict);
            alerts.extend(
                self.state
                    .alerts
                    .update(&key, &rule.name, condition, now, cooldown),
            );
        }

        // 3. Anomaly alerts: one per metric and kind, so concurrent incidents each raise their
        // own.
        if policy.enabled {
            for f in &findings {
                let condition = if f.streak.windows >= policy.persist_windows {
                    Condition::Active(anomaly_alert(f, policy.severity, &key))
                } else if f.streak.windows == 0 {
                    if !self.state.alerts.is_firing(&key, f.alertname) {
                        // Nothing to resolve: skip building the resolution note.
                        continue;
                    }
                    Condition::Inactive {
                        value: f.score.value,
                        note: format!(
                            "{} now {} (baseline {})",
                            f.metric.label(),
                            f.metric.format_value(f.score.value),
                            f.metric.format_value(f.score.baseline)
                        ),
                    }
                } else {
                    Condition::Unknown
                };
                alerts.extend(self.state.alerts.update(
                    &key,
                    f.alertname,
                    condition,
                    now,
                    cooldown,
                ));
            }
        }

        // 4. Alerts whose condition is no longer configured for this series.
        let known = |name: &str| {
            self.config
                .rules
                .iter()
                .any(|r| r.name == name && r.matchers.matches(&key))
                || (policy.enabled
                    && self.metrics.iter().any(|m| {
                        policy.alertname(*m) == name
                            || (self.change.config().enabled
                                && ChangeKind::ALL
                                    .iter()
                                    .any(|k| change_alertname(*m, *k) == name))
                    }))
        };
        alerts.extend(self.state.alerts.resolve_unknown(&key, known, now));
        self.state.alerts.prune(&key, now, cooldown);

        for alert in alerts {
            self.push_alert(alert, &mut out);
        }
        out
    }

    /// Moves the detector's notion of "now" (the newest window end seen) forward and forgets
    /// series idle for longer than `idle_series_ttl_ms`, resolving their alerts.
    fn advance_clock(&mut self, window_end: i64, out: &mut Vec<Output>) {
        if self
            .state
            .newest_window_end
            .is_some_and(|n| window_end <= n)
        {
            return;
        }
        self.state.newest_window_end = Some(window_end);
        let ttl = self.config.idle_series_ttl_ms;
        if ttl == 0 {
            return;
        }
        let cutoff = window_end.saturating_sub(ttl);
        let idle: Vec<SeriesKey> = self
            .state
            .series
            .iter()
            .filter(|(_, s)| s.last_window_end < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        let note = format!("no windows for over {} min", ttl / 60_000);
        for key in idle {
            self.state.series.remove(&key);
            self.state.stats.series_evicted += 1;
            for alert in self.state.alerts.forget_series(&key, window_end, &note) {
                self.push_alert(alert, out);
            }
        }
    }

    fn push_alert(&mut self, alert: Alert, out: &mut Vec<Output>) {
        match alert.status {
            llmopt_events::AlertStatus::Firing => self.state.stats.alerts_fired += 1,
            llmopt_events::AlertStatus::Resolved => self.state.stats.alerts_resolved += 1,
        }
        out.push(Output {
            topic: LogicalTopic::Alerts,
            id: alert.id.clone(),
            key: alert.dedup_key.clone(),
            time_ms: alert.event_time,
            event: AnyEvent::Alert(alert),
        });
    }
}

/// The alert condition of a rule verdict: active past `for`, inactive when back within the SLO,
/// unknown while pending or without data.
fn rule_condition(rule: &SloRule, key: &SeriesKey, verdict: RuleVerdict) -> Condition {
    match verdict {
        RuleVerdict::NoData => Condition::Unknown,
        RuleVerdict::Normal { value } => Condition::Inactive {
            value,
            note: format!(
                "{} now {}",
                rule.metric.label(),
                rule.metric.format_value(value)
            ),
        },
        RuleVerdict::Breaching { value, streak } if streak.windows >= rule.for_windows => {
            let severity = severity_name(rule.severity);
            Condition::Active(ActiveAlert {
                severity: rule.severity,
                summary: rules::rule_summary(rule, key, value, severity),
                labels: rules::alert_labels(&rule.name, key, rule.metric, severity),
                value: Some(value),
                threshold: Some(rule.threshold),
                since: streak.since,
            })
        }
        RuleVerdict::Breaching { .. } => Condition::Unknown,
    }
}

/// An alert about an anomaly that persisted for `streak.windows` windows.
fn anomaly_alert(
    finding: &Finding,
    severity: llmopt_events::Severity,
    key: &SeriesKey,
) -> ActiveAlert {
    let Finding {
        alertname,
        detector,
        metric,
        score,
        streak,
        kind,
    } = finding;
    let severity_text = severity_name(severity);
    let mut labels = rules::alert_labels(alertname, key, *metric, severity_text);
    labels.insert("detector".to_string(), detector.to_string());
    let direction = match score.direction() {
        llmopt_events::Direction::Up => "above",
        llmopt_events::Direction::Down => "below",
    };
    let (value, baseline) = (
        metric.format_value(score.value),
        metric.format_value(score.baseline),
    );
    let what = match kind {
        None => format!(
            "{value} anomalously {direction} baseline {baseline} (score {:.1})",
            score.score
        ),
        Some(ChangeKind::Shift) => format!(
            "{value} shifted {direction} reference {baseline} (CUSUM at {:.1}x its limit)",
            score.score.abs()
        ),
        Some(ChangeKind::Drift) => format!(
            "{value} drifting {direction} reference {baseline} (EWMA chart at {:.1}x its limit)",
            score.score.abs()
        ),
    };
    ActiveAlert {
        severity,
        summary: format!(
            "{}/{} {}/{} {} {what} for {} windows",
            key.app,
            key.route,
            key.provider,
            key.model,
            metric.label(),
            streak.windows
        ),
        labels,
        value: Some(score.value),
        threshold: None,
        since: streak.since,
    }
}

/// The `Anomaly` event for an anomalous score.
fn anomaly_output(
    detector: &str,
    key: &SeriesKey,
    metric: Metric,
    window: &WindowAggregate,
    score: &Score,
) -> Output {
    let id = format!("{detector}/{key}/{}/{}", metric.name(), window.window_end);
    Output {
        topic: LogicalTopic::Anomalies,
        id: id.clone(),
        key: key.route_key(),
        time_ms: window.window_end,
        event: AnyEvent::Anomaly(Anomaly {
            id,
            event_time: window.window_end,
            window_id: window.window_id.clone(),
            app: key.app.clone(),
            route: key.route.clone(),
            provider: key.provider.clone(),
            model: key.model.clone(),
            metric: metric.name().to_string(),
            value: score.value,
            baseline: score.baseline,
            score: score.score,
            direction: score.direction(),
            detector: detector.to_string(),
        }),
    }
}

/// Severity for labels and templates, lower case as in Prometheus rules and Alertmanager routes
/// (`severity="critical"`); the `Alert.severity` field keeps the wire form.
fn severity_name(severity: llmopt_events::Severity) -> &'static str {
    match severity {
        llmopt_events::Severity::Info => "info",
        llmopt_events::Severity::Warning => "warning",
        llmopt_events::Severity::Critical => "critical",
    }
}

impl<B: BaselineDetector> Processor for Detector<B> {
    fn name(&self) -> &'static str {
        SERVICE_NAME
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![LogicalTopic::Windows]
    }

    /// Series state is per series, but alert bookkeeping and idle-series eviction follow the
    /// newest window of the whole fleet: one state, one instance (it reads only window
    /// aggregates, a few per series and minute).
    fn state_scope(&self) -> StateScope {
        StateScope::Whole
    }

    fn checkpoint_whole(&self) -> Option<Vec<u8>> {
        self.snapshot()
            .inspect_err(|e| tracing::error!(error = %e, "detector state not checkpointed"))
            .ok()
    }

    fn restore_whole(&mut self, state: &[u8]) -> Result<(), String> {
        self.restore(state).map_err(|e| e.to_string())
    }

    fn process(&mut self, input: &Input) -> Vec<Output> {
        match &input.event {
            AnyEvent::WindowAggregate(window) => self.on_window(window),
            _ => {
                self.state.stats.other_events_ignored += 1;
                Vec::new()
            }
        }
    }
}
