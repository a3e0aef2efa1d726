//! Alert lifecycle: FIRING once, RESOLVED once, per dedup key, with a cooldown after a resolve.
//!
//! Conditions (rule verdicts, anomaly streaks) are evaluated on every window, but operators must
//! not be told on every window that an alert is still firing. The [`AlertBook`] remembers what it
//! last published per dedup key and emits only state changes, with ids derived from the dedup
//! key, the status and `starts_at`, so that a replay publishes the same ids and consumers can
//! deduplicate.

use std::collections::BTreeMap;

use llmopt_events::{Alert, AlertStatus, Severity};
use serde::{Deserialize, Serialize};

use crate::metrics::SeriesKey;

/// An alert condition as evaluated on one window of one series.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The condition holds (past its `for` or persistence requirement).
    Active(ActiveAlert),
    /// The condition does not hold.
    Inactive {
        /// The metric's current value, reported in the RESOLVED event.
        value: f64,
        /// Why it no longer holds, for the RESOLVED summary (`error rate now 1.0%`).
        note: String,
    },
    /// No data to decide (or still pending): nothing changes.
    Unknown,
}

/// What a firing alert says.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlert {
    /// Severity.
    pub severity: Severity,
    /// Human-readable summary.
    pub summary: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The metric value that made the condition hold.
    pub value: Option<f64>,
    /// The threshold crossed, if the condition has one.
    pub threshold: Option<f64>,
    /// Start (ms) of the first window in which the condition held: the alert's `starts_at`.
    pub since: i64,
}

/// What the book remembers about one dedup key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// The FIRING event last published, while the alert fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing: Option<Alert>,
    /// Event time of the last RESOLVED, for the cooldown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_resolved_at: Option<i64>,
}

/// The alerts published so far, per series and alert name (together: the dedup key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertBook {
    #[serde(with = "crate::seq_map")]
    by_series: BTreeMap<SeriesKey, BTreeMap<String, AlertRecord>>,
}

/// `{alertname}/{app}/{route}/{provider}/{model}`: one alert per condition per series.
pub fn dedup_key(alertname: &str, series: &SeriesKey) -> String {
    format!("{alertname}/{series}")
}

/// `{dedup_key}/{FIRING|RESOLVED}/{starts_at}`: unique per alert episode and status.
pub fn alert_id(dedup_key: &str, status: AlertStatus, starts_at: i64) -> String {
    let status = match status {
        AlertStatus::Firing => "FIRING",
        AlertStatus::Resolved => "RESOLVED",
    };
    format!("{dedup_key}/{status}/{starts_at}")
}

impl AlertBook {
    /// Whether `alertname` is firing for `series`.
    pub fn is_firing(&self, series: &SeriesKey, alertname: &str) -> bool {
        self.by_series
            .get(series)
            .and_then(|records| records.get(alertname))
            .is_some_and(|record| record.firing.is_some())
    }

    /// Applies `condition` of `alertname` on `series`, evaluated at event time `now`, and returns
    /// the state change to publish: FIRING when an alert that is not firing becomes active and no
    /// cooldown applies (a firing alert is not re-published), RESOLVED when a firing alert's
    /// condition stops holding.
    pub fn update(
        &mut self,
        series: &SeriesKey,
        alertname: &str,
        condition: Condition,
        now: i64,
        cooldown_ms: i64,
    ) -> Option<Alert> {
        match condition {
            Condition::Unknown => None,
            Condition::Inactive { value, note } => {
                let record = self.by_series.get_mut(series)?.get_mut(alertname)?;
                let firing = record.firing.take()?;
                record.last_resolved_at = Some(now);
                Some(resolved(firing, now, Some(value), &note))
            }
            Condition::Active(active) => {
                let records = self.by_series.entry(series.clone()).or_default();
                if let Some(record) = records.get(alertname) {
                    if record.firing.is_some() {
                        return None;
                    }
                    if let Some(resolved_at) = record.last_resolved_at {
                        if now.saturating_sub(resolved_at) < cooldown_ms {
                            return None;
                        }
                    }
                }
                let key = dedup_key(alertname, series);
                let alert = Alert {
                    id: alert_id(&key, AlertStatus::Firing, active.since),
                    dedup_key: key,
                    status: AlertStatus::Firing,
                    severity: active.severity,
                    alertname: alertname.to_string(),
                    summary: active.summary,
                    labels: active.labels,
                    value: active.value,
                    threshold: active.threshold,
                    starts_at: active.since,
                    ends_at: None,
                    event_time: now,
                };
                records.insert(
                    alertname.to_string(),
                    AlertRecord {
                        firing: Some(alert.clone()),
                        last_resolved_at: None,
                    },
                );
                Some(alert)
            }
        }
    }

    /// Resolves the firing alerts of `series` whose alert name `keep` rejects (a rule removed
    /// from configuration between a snapshot and a restore), in dedup-key order.
    pub fn resolve_unknown(
        &mut self,
        series: &SeriesKey,
        keep: impl Fn(&str) -> bool,
        now: i64,
    ) -> Vec<Alert> {
        let Some(records) = self.by_series.get_mut(series) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        records.retain(|name, record| {
            if keep(name) {
                return true;
            }
            if let Some(firing) = record.firing.take() {
                out.push(resolved(
                    firing,
                    now,
                    None,
                    "condition no longer configured",
                ));
            }
            false
        });
        out
    }

    /// Forgets `series`, resolving its firing alerts (in dedup-key order): the series has sent no
    /// window for too long for anyone to learn otherwise.
    pub fn forget_series(&mut self, series: &SeriesKey, now: i64, note: &str) -> Vec<Alert> {
        self.by_series
            .remove(series)
            .into_iter()
            .flat_map(|records| records.into_values())
            .filter_map(|record| record.firing)
            .map(|firing| resolved(firing, now, None, note))
            .collect()
    }

    /// Drops what no longer matters for `series`: records neither firing nor in cooldown.
    pub fn prune(&mut self, series: &SeriesKey, now: i64, cooldown_ms: i64) {
        if let Some(records) = self.by_series.get_mut(series) {
            records.retain(|_, r| {
                r.firing.is_some()
                    || r.last_resolved_at
                        .is_some_and(|t| now.saturating_sub(t) < cooldown_ms)
            });
            if records.is_empty() {
                self.by_series.remove(series);
            }
        }
    }

    /// The alerts currently firing, in dedup-key order within each series: for status pages and
    /// tests.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.by_series
            .values()
            .flat_map(|records| records.values())
            .filter_map(|record| record.firing.as_ref())
    }
}

/// The RESOLVED event closing `firing`.
/// The RESOLVED event of `firing` at `now`, its summary extended by `note`.
pub(crate) fn resolved(firing: Alert, now: i64, value: Option<f64>, note: &str) -> Alert {
    Alert {
        id: alert_id(&firing.dedup_key, AlertStatus::Resolved, firing.starts_at),
        status: AlertStatus::Resolved,
        summary: format!("{}; resolved: {note}", firing.summary),
        value,
        ends_at: Some(now),
        event_time: now,
        ..firing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> SeriesKey {
        SeriesKey {
            app: "a".into(),
            route: "r".into(),
            provider: "p".into(),
            model: "m".into(),
        }
    }

    fn active(since: i64) -> Condition {
        Condition::Active(ActiveAlert {
            severity: Severity::Warning,
            summary: "bad".into(),
            labels: BTreeMap::new(),
            value: Some(1.0),
            threshold: Some(0.5),
            since,
        })
    }

    fn inactive() -> Condition {
        Condition::Inactive {
            value: 0.1,
            note: "fine now".into(),
        }
    }

    #[test]
    fn fires_once_resolves_once_and_respects_cooldown() {
        let mut book = AlertBook::default();
        let s = series();
        let fired = book.update(&s, "X", active(0), 60, 100);
        let fired = fired.unwrap_or_else(|| panic!("did not fire"));
        assert_eq!(fired.id, "X/a/r/p/m/FIRING/0");
        assert_eq!(fired.dedup_key, "X/a/r/p/m");
        assert_eq!(book.update(&s, "X", active(0), 120, 100), None);
        assert_eq!(book.update(&s, "X", Condition::Unknown, 180, 100), None);
        let res = book.update(&s, "X", inactive(), 240, 100);
        let res = res.unwrap_or_else(|| panic!("did not resolve"));
        assert_eq!(res.id, "X/a/r/p/m/RESOLVED/0");
        assert_eq!(res.ends_at, Some(240));
        assert_eq!(res.summary, "bad; resolved: fine now");
        assert_eq!(book.update(&s, "X", inactive(), 300, 100), None);
        assert_eq!(book.update(&s, "X", active(300), 300, 100), None);
        assert!(book.update(&s, "X", active(300), 340, 100).is_some());
    }

    #[test]
    fn forget_and_prune() {
        let mut book = AlertBook::default();
        let s = series();
        assert!(book.update(&s, "X", active(0), 60, 100).is_some());
        assert!(book.update(&s, "Y", active(0), 60, 100).is_some());
        assert!(book.update(&s, "Y", inactive(), 120, 100).is_some());
        let gone = book.resolve_unknown(&s, |n| n == "Y", 130);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].alertname, "X");
        book.prune(&s, 1000, 100);
        assert_eq!(book, AlertBook::default());
        assert!(book.update(&s, "X", active(2000), 2000, 100).is_some());
        let gone = book.forget_series(&s, 3000, "idle");
        assert_eq!(gone.len(), 1);
        assert_eq!(book.firing().count(), 0);
    }
}
