//! Budgets: spend per calendar period (a UTC day, ISO week or month of event time) for the calls a budget
//! covers (an app, a route, a tenant, or all of them), with the alerts cloud-billing and LiteLLM
//! users know:
//!
//! - `BudgetThreshold` (warning) once spend crosses each configured share of the limit (85 % and
//!   95 % by default), one alert per threshold;
//! - `BudgetProjectedOverspend` (warning) while the spend rate of the period so far projects past
//!   the limit by the period's end, once `project_after` of the period has passed (a morning's
//!   spend extrapolated over a day is noise); it resolves when the projection falls back below
//!   95 % of the limit;
//! - `BudgetExceeded` (critical) once spend reaches the limit.
//!
//! Every budget alert resolves when the next period starts. Spend is summed from tumbling
//! windows; a window's revision replaces what its earlier revision contributed, so late calls
//! count once. Windows of a period that already ended are not counted (the period's alerts are
//! settled).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use llmopt_events::{Alert, AlertStatus, Severity, WindowAggregate};
use serde::{Deserialize, Serialize};

use crate::alerts::{alert_id, resolved};

/// Alert name of a crossed threshold.
pub const BUDGET_THRESHOLD: &str = "BudgetThreshold";
/// Alert name of a projected overspend.
pub const BUDGET_PROJECTED_OVERSPEND: &str = "BudgetProjectedOverspend";
/// Alert name of a spent budget.
pub const BUDGET_EXCEEDED: &str = "BudgetExceeded";

/// A projection alert resolves below this share of the limit, so that a projection hovering at
/// the limit does not flap.
const PROJECTION_RESOLVE_SHARE: f64 = 0.95;

/// Revisions are remembered for windows ending this long before the newest window (event time,
/// ms): longer than any allowed lateness, shorter than a period.
const REVISION_HORIZON_MS: i64 = 6 * 3_600_000;

/// The calendar period a budget resets on (and a cost report covers), in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// A UTC day.
    Day,
    /// An ISO week, from Monday 00:00 UTC.
    Week,
    /// A UTC calendar month.
    Month,
}

impl BudgetPeriod {
    /// Start and end (ms) of the period containing `t` (ms since the epoch).
    pub fn bounds(self, t: i64) -> Option<(i64, i64)> {
        let at: DateTime<Utc> = Utc.timestamp_millis_opt(t).single()?;
        let (start, end) = match self {
            BudgetPeriod::Day => {
                let day = at.date_naive();
                (day, day.succ_opt()?)
            }
            BudgetPeriod::Week => {
                let day = at.date_naive();
                let back = u64::from(day.weekday().num_days_from_monday());
                let monday = day.checked_sub_days(chrono::Days::new(back))?;
                (monday, monday.checked_add_days(chrono::Days::new(7))?)
            }
            BudgetPeriod::Month => {
                let first = at.date_naive().with_day(1)?;
                let next = if first.month() == 12 {
                    first.with_year(first.year() + 1)?.with_month(1)?
                } else {
                    first.with_month(first.month() + 1)?
                };
                (first, next)
            }
        };
        let ms = |d: chrono::NaiveDate| Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
        Some((ms(start)?, ms(end)?))
    }

    fn name(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Week => "week",
            BudgetPeriod::Month => "month",
        }
    }
}

/// A spending limit per period for the calls matching its scope (unset fields match all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Name, unique among budgets: part of the alerts' dedup keys.
    pub name: String,
    /// Only this app's calls.
    #[serde(default)]
    pub app: Option<String>,
    /// Only this route's calls (of any app unless `app` is set).
    #[serde(default)]
    pub route: Option<String>,
    /// Only this tenant's calls (from the windows' `cost_by_tenant`).
    #[serde(default)]
    pub tenant: Option<String>,
    /// When the budget resets.
    pub period: BudgetPeriod,
    /// The limit per period in USD.
    pub limit_usd: f64,
    /// Shares of the limit that alert once crossed.
    #[serde(default = "default_thresholds")]
    pub thresholds: Vec<f64>,
    /// Share of the period that must have passed before a projection may alert.
    #[serde(default = "default_project_after")]
    pub project_after: f64,
}

fn default_thresholds() -> Vec<f64> {
    vec![0.85, 0.95]
}

fn default_project_after() -> f64 {
    0.1
}

impl Budget {
    /// What `w` spent within this budget's scope.
    fn spend_of(&self, w: &WindowAggregate) -> f64 {
        let matches = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|v| v == got);
        if !matches(&self.app, &w.app) || !matches(&self.route, &w.route) {
            return 0.0;
        }
        let spend = match &self.tenant {
            Some(tenant) => w.cost_by_tenant.get(tenant).copied().unwrap_or(0.0),
            None => w.cost_usd,
        };
        if spend.is_finite() {
            spend
        } else {
            0.0
        }
    }

    fn labels(&self, period_start: i64) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("budget".to_string(), self.name.clone()),
            ("period".to_string(), self.period.name().to_string()),
            ("period_start".to_string(), period_start.to_string()),
        ]);
        for (k, v) in [
            ("app", &self.app),
            ("route", &self.route),
            ("tenant", &self.tenant),
        ] {
            if let Some(v) = v {
                labels.insert(k.to_string(), v.clone());
            }
        }
        labels
    }
}

/// A window's contribution, kept so that a revision replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counted {
    window_end: i64,
    revision: i32,
    spend: f64,
}

/// One budget's current period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct PeriodState {
    start: i64,
    end: i64,
    spend: f64,
    counted: BTreeMap<String, Counted>,
    /// Firing alerts by dedup key.
    firing: BTreeMap<String, Alert>,
}

/// Spend and firing alerts per budget name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetBook {
    periods: BTreeMap<String, PeriodState>,
}

impl BudgetBook {
    /// Spend of `budget`'s current period so far.
    pub fn spend(&self, budget: &str) -> Option<f64> {
        self.periods.get(budget).map(|p| p.spend)
    }

    /// Counts tumbling window `w` into every budget it falls under and returns the alert state
    /// changes, at event time `w.window_end`.
    pub fn on_window(&mut self, budgets: &[Budget], w: &WindowAggregate) -> Vec<Alert> {
        let mut out = Vec::new();
        let now = w.window_end;
        for budget in budgets {
            let Some((start, end)) = budget.period.bounds(w.window_start) else {
                continue;
            };
            let state = self.periods.entry(budget.name.clone()).or_default();
            if start > state.start {
                let note = format!("new {} started", budget.period.name());
                for (_, firing) in std::mem::take(&mut state.firing) {
                    out.push(resolved(firing, now, Some(0.0), &note));
                }
                *state = PeriodState {
                    start,
                    end,
                    ..PeriodState::default()
                };
            } else if start < state.start {
                continue;
            }
            let spend = budget.spend_of(w);
            let previous = state.counted.get(&w.window_id);
            if previous.is_some_and(|c| c.revision >= w.revision) {
                continue;
            }
            let delta = spend - previous.map_or(0.0, |c| c.spend);
            if spend > 0.0 || previous.is_some() {
                state.counted.insert(
                    w.window_id.clone(),
                    Counted {
                        window_end: w.window_end,
                        revision: w.revision,
                        spend,
                    },
                );
            }
            let horizon = now.saturating_sub(REVISION_HORIZON_MS);
            state.counted.retain(|_, c| c.window_end >= horizon);
            state.spend += delta;
            evaluate(budget, state, now, &mut out);
        }
        out
    }
}

fn usd(x: f64) -> String {
    format!("${x:.2}")
}

/// Fires and resolves `budget`'s alerts for its current spend at `now`.
fn evaluate(budget: &Budget, state: &mut PeriodState, now: i64, out: &mut Vec<Alert>) {
    let limit = budget.limit_usd;
    let spend = state.spend;
    let scope = budget.labels(state.start);
    let mut fire = |alertname: &str, key_suffix: String, severity, summary: String, threshold| {
        let dedup_key = format!("{alertname}/budget/{}{key_suffix}", budget.name);
        if state.firing.contains_key(&dedup_key) {
            return;
        }
        let alert = Alert {
            id: alert_id(&dedup_key, AlertStatus::Firing, now),
            dedup_key: dedup_key.clone(),
            status: AlertStatus::Firing,
            severity,
            alertname: alertname.to_string(),
            summary,
            labels: scope.clone(),
            value: Some(spend),
            threshold: Some(threshold),
            starts_at: now,
            ends_at: None,
            event_time: now,
        };
        state.firing.insert(dedup_key, alert.clone());
        out.push(alert);
    };
    let period = budget.period.name();
    for share in &budget.thresholds {
        if spend >= share * limit {
            let pct = (share * 100.0).round();
            fire(
                BUDGET_THRESHOLD,
                format!("/{pct}"),
                Severity::Warning,
                format!(
                    "budget {} spent {} of {} this {period} ({:.0}%, past the {pct}% threshold)",
                    budget.name,
                    usd(spend),
                    usd(limit),
                    spend / limit * 100.0
                ),
                share * limit,
            );
        }
    }
    if spend >= limit {
        fire(
            BUDGET_EXCEEDED,
            String::new(),
            Severity::Critical,
            format!(
                "budget {} exceeded: {} spent this {period}, limit {}",
                budget.name,
                usd(spend),
                usd(limit)
            ),
            limit,
        );
    }
    let elapsed = (now - state.start) as f64 / (state.end - state.start).max(1) as f64;
    if elapsed < budget.project_after || elapsed <= 0.0 {
        return;
    }
    let projected = spend / elapsed.min(1.0);
    let key = format!("{BUDGET_PROJECTED_OVERSPEND}/budget/{}", budget.name);
    if projected > limit {
        fire(
            BUDGET_PROJECTED_OVERSPEND,
            String::new(),
            Severity::Warning,
            format!(
                "budget {} projected to spend {} this {period}, over its limit {} \
                 ({} spent in {:.0}% of the {period})",
                budget.name,
                usd(projected),
                usd(limit),
                usd(spend),
                elapsed * 100.0
            ),
            limit,
        );
    } else if projected < PROJECTION_RESOLVE_SHARE * limit {
        if let Some(firing) = state.firing.remove(&key) {
            out.push(resolved(
                firing,
                now,
                Some(projected),
                &format!("projected {} now", usd(projected)),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmopt_events::WindowKind;

    const MINUTE: i64 = 60_000;
    /// 2026-12-01T00:00:00Z.
    const DEC_1: i64 = 1_796_083_200_000;

    /// The tumbling window of `route` starting at `start`, costing `cost`, split by tenant.
    fn window(
        route: &str,
        start: i64,
        revision: i32,
        cost: f64,
        tenants: &[(&str, f64)],
    ) -> WindowAggregate {
        let mut w = llmopt_events::samples::window_aggregate();
        w.window_kind = WindowKind::Tumbling;
        w.app = "shop".into();
        w.route = route.into();
        w.window_id = format!("{route}/{start}");
        w.id = format!("{}/r{revision}", w.window_id);
        w.revision = revision;
        w.window_start = start;
        w.window_end = start + MINUTE;
        w.cost_usd = cost;
        w.cost_by_tenant = tenants.iter().map(|(t, c)| (t.to_string(), *c)).collect();
        w
    }

    fn daily(limit: f64) -> Budget {
        Budget {
            name: "shop-daily".into(),
            app: Some("shop".into()),
            route: None,
            tenant: None,
            period: BudgetPeriod::Day,
            limit_usd: limit,
            thresholds: default_thresholds(),
            project_after: 1.0,
        }
    }

    fn names(alerts: &[Alert]) -> Vec<(String, AlertStatus)> {
        alerts
            .iter()
            .map(|a| (a.dedup_key.clone(), a.status))
            .collect()
    }

    #[test]
    fn each_threshold_fires_once_and_the_limit_is_critical() {
        let budgets = [daily(10.0)];
        let mut book = BudgetBook::default();
        let mut fired = Vec::new();
        for i in 0..20 {
            let alerts = book.on_window(&budgets, &window("chat", DEC_1 + i * MINUTE, 0, 1.0, &[]));
            fired.extend(alerts.into_iter().map(|a| (i, a)));
        }
        let at = |key: &str| {
            fired
                .iter()
                .filter(|(_, a)| a.dedup_key == key)
                .map(|(i, a)| (*i, a.severity))
                .collect::<Vec<_>>()
        };
        // $9 after the 9th window (index 8) is past 85 %; $10 after the 10th is 95 % and 100 %.
        assert_eq!(
            at("BudgetThreshold/budget/shop-daily/85"),
            vec![(8, Severity::Warning)]
        );
        assert_eq!(
            at("BudgetThreshold/budget/shop-daily/95"),
            vec![(9, Severity::Warning)]
        );
        assert_eq!(
            at("BudgetExceeded/budget/shop-daily"),
            vec![(9, Severity::Critical)]
        );
        assert_eq!(fired.len(), 3, "nothing fires twice");
        assert!((book.spend("shop-daily").unwrap() - 20.0).abs() < 1e-9);
        let (_, exceeded) = fired.last().unwrap();
        assert_eq!(exceeded.labels["budget"], "shop-daily");
        assert_eq!(exceeded.labels["app"], "shop");
        assert!(exceeded.summary.contains("$10.00"), "{}", exceeded.summary);
        // Another app's windows do not count.
        let mut other = window("chat", DEC_1 + 30 * MINUTE, 0, 100.0, &[]);
        other.app = "search".into();
        assert!(book.on_window(&budgets, &other).is_empty());
        assert!((book.spend("shop-daily").unwrap() - 20.0).abs() < 1e-9);
        // The next day starts from zero and resolves the day's alerts.
        let next_day = book.on_window(&budgets, &window("chat", DEC_1 + 86_400_000, 0, 1.0, &[]));
        assert_eq!(next_day.len(), 3);
        assert!(next_day.iter().all(|a| a.status == AlertStatus::Resolved));
        assert!((book.spend("shop-daily").unwrap() - 1.0).abs() < 1e-9);
        // A late window of the day that ended is not counted into the new one.
        assert!(book
            .on_window(&budgets, &window("chat", DEC_1 + 50 * MINUTE, 0, 5.0, &[]))
            .is_empty());
        assert!((book.spend("shop-daily").unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_revision_replaces_what_its_window_added() {
        let budgets = [daily(100.0)];
        let mut book = BudgetBook::default();
        book.on_window(&budgets, &window("chat", DEC_1, 0, 1.0, &[]));
        book.on_window(&budgets, &window("chat", DEC_1, 1, 3.0, &[]));
        assert!((book.spend("shop-daily").unwrap() - 3.0).abs() < 1e-9);
        // An older revision arriving late changes nothing.
        book.on_window(&budgets, &window("chat", DEC_1, 0, 1.0, &[]));
        assert!((book.spend("shop-daily").unwrap() - 3.0).abs() < 1e-9);
        book.on_window(&budgets, &window("search", DEC_1, 0, 2.0, &[]));
        assert!((book.spend("shop-daily").unwrap() - 5.0).abs() < 1e-9);
    }

    /// A tenant spending at a pace that ends the month 30 % over its budget is told after a
    /// tenth of the month, three weeks before it crosses the limit; a tenant within budget is
    /// told nothing.
    #[test]
    fn a_projected_overspend_alerts_long_before_the_limit_is_crossed() {
        let monthly = |tenant: &str| Budget {
            name: format!("{tenant}-monthly"),
            app: None,
            route: None,
            tenant: Some(tenant.into()),
            period: BudgetPeriod::Month,
            limit_usd: 100.0,
            thresholds: default_thresholds(),
            project_after: default_project_after(),
        };
        let budgets = [monthly("acme"), monthly("globex")];
        let minutes = 31 * 24 * 60;
        let acme = 130.0 / minutes as f64;
        let globex = 80.0 / minutes as f64;
        let mut book = BudgetBook::default();
        let mut alerts = Vec::new();
        for i in 0..minutes {
            let w = window(
                "chat",
                DEC_1 + i * MINUTE,
                0,
                acme + globex + 0.01,
                &[("acme", acme), ("globex", globex)],
            );
            for a in book.on_window(&budgets, &w) {
                alerts.push((i, book.spend("acme-monthly").unwrap_or(0.0), a));
            }
        }
        assert!(
            alerts.iter().all(|(_, _, a)| a.labels["tenant"] == "acme"),
            "{:?}",
            names(&alerts.iter().map(|(_, _, a)| a.clone()).collect::<Vec<_>>())
        );
        let first = |name: &str| {
            alerts
                .iter()
                .find(|(_, _, a)| a.alertname == name)
                .map(|(i, spend, _)| (*i, *spend))
        };
        let (projected_at, spend_then) =
            first(BUDGET_PROJECTED_OVERSPEND).expect("projection alert");
        let (exceeded_at, _) = first(BUDGET_EXCEEDED).expect("exceeded");
        let (threshold_at, _) = first(BUDGET_THRESHOLD).expect("85 %");
        assert_eq!(
            projected_at,
            minutes / 10 - 1,
            "with the window ending as a tenth of the month has passed"
        );
        assert!(spend_then < 15.0, "spent {spend_then} of 100 when told");
        assert!(projected_at < threshold_at && threshold_at < exceeded_at);
        assert!(exceeded_at as f64 > 0.7 * minutes as f64);
        let total = book.spend("globex-monthly").unwrap();
        assert!((total - 80.0).abs() < 1e-6, "globex spent {total}");
    }

    #[test]
    fn periods_are_utc_days_and_calendar_months() {
        // 2026-12-31T23:59:00Z.
        let t = 1_798_761_540_000;
        let (start, end) = BudgetPeriod::Day.bounds(t).unwrap();
        assert_eq!(end - start, 86_400_000);
        assert!(start <= t && t < end);
        let (start, end) = BudgetPeriod::Month.bounds(t).unwrap();
        assert_eq!(end - start, 31 * 86_400_000);
        assert!(start <= t && t < end);
        // February 2027 has 28 days; the month after December rolls the year.
        let (s, e) = BudgetPeriod::Month.bounds(end + 31 * 86_400_000).unwrap();
        assert_eq!(e - s, 28 * 86_400_000);
        assert_eq!(s, end + 31 * 86_400_000);
        // Thursday 2026-12-31 is in the week of Monday 2026-12-28.
        let (s, e) = BudgetPeriod::Week.bounds(t).unwrap();
        assert_eq!(e - s, 7 * 86_400_000);
        assert_eq!(s, BudgetPeriod::Day.bounds(t).unwrap().0 - 3 * 86_400_000);
    }
}
