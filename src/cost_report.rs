//! The cost report (`llmopt report cost`): the spend of a calendar period so far, by app, route,
//! model and tenant, summed from the window aggregates, and what each routing decision saved.
//!
//! A decision's savings are the spend under the old routing for the same traffic minus the
//! actual spend: for each config change a decision applied, the calls its route served until the
//! next change are priced at the cost per call the previous targets would have had, and the
//! actual cost of those calls is subtracted. A model the route still served after the change is
//! priced at what it cost then; one it no longer served, at what it cost on that route over every
//! window read (or over the fleet when the route never used it). Quality and latency p95 are put
//! side by side the same way. It is an estimate: it assumes a model costs on the moved traffic
//! what it cost on the route's other traffic.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use llmopt_detector::BudgetPeriod;
use llmopt_events::{ConfigChange, Decision, RouteTarget, WindowAggregate, WindowKind};
use serde::Serialize;

/// Which calendar period the report covers: the one holding the newest window (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportPeriod {
    /// The UTC day.
    Day,
    /// The ISO week (from Monday 00:00 UTC).
    Week,
    /// The calendar month.
    Month,
}

impl ReportPeriod {
    /// Start and end (ms) of the period containing `t`: the budgets' calendar.
    pub fn bounds(self, t: i64) -> Option<(i64, i64)> {
        match self {
            ReportPeriod::Day => BudgetPeriod::Day,
            ReportPeriod::Week => BudgetPeriod::Week,
            ReportPeriod::Month => BudgetPeriod::Month,
        }
        .bounds(t)
    }
}

/// Spend of one app, route, model or tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendLine {
    /// `app`, `app/route`, `provider/model` or the tenant (`(none)`: calls naming none).
    pub key: String,
    /// Calls (unknown per tenant: windows carry only the tenants' cost).
    pub calls: Option<i64>,
    /// Spend in USD.
    pub spend_usd: f64,
    /// Share of the period's spend.
    pub share: f64,
}

/// What one decision's config changes did to its route's spend, quality and latency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionSavings {
    /// The decision.
    pub decision_id: String,
    /// Its strategy, when the decision was read.
    pub strategy: Option<String>,
    /// Application.
    pub app: String,
    /// Route.
    pub route: String,
    /// Event time of its first config change.
    pub applied_at_ms: i64,
    /// Calls the route served under its changes within the period.
    pub calls: i64,
    /// Their actual spend.
    pub spend_usd: f64,
    /// Their spend under the routing each change replaced (unknown when a replaced target's cost
    /// per call was never seen).
    pub counterfactual_usd: Option<f64>,
    /// `counterfactual_usd - spend_usd`.
    pub savings_usd: Option<f64>,
    /// Mean quality the replaced routing would have had on this route.
    pub quality_before: Option<f64>,
    /// Mean quality the calls actually had.
    pub quality_after: Option<f64>,
    /// Latency p95 (call-weighted mean over windows) the replaced routing would have had.
    pub latency_p95_before_ms: Option<f64>,
    /// Latency p95 (call-weighted mean over windows) actually served.
    pub latency_p95_after_ms: Option<f64>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostReport {
    /// The period kind.
    pub period: ReportPeriod,
    /// Period start (ms).
    pub start_ms: i64,
    /// Period end (ms).
    pub end_ms: i64,
    /// End of the newest window read: the report covers `[start_ms, through_ms)`.
    pub through_ms: i64,
    /// Calls in the period so far.
    pub calls: i64,
    /// Spend in the period so far.
    pub spend_usd: f64,
    /// Spend at the period's end at the pace so far.
    pub projected_usd: f64,
    /// By app.
    pub by_app: Vec<SpendLine>,
    /// By app/route.
    pub by_route: Vec<SpendLine>,
    /// By provider/model.
    pub by_model: Vec<SpendLine>,
    /// By tenant.
    pub by_tenant: Vec<SpendLine>,
    /// Per decision that changed routing within the period.
    pub decisions: Vec<DecisionSavings>,
    /// Sum of the known savings.
    pub savings_usd: f64,
}

/// Sums of a set of windows.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    calls: i64,
    cost: f64,
    quality_sum: f64,
    quality_count: i64,
    latency_weighted: f64,
}

impl Totals {
    fn add(&mut self, w: &WindowAggregate) {
        self.calls += w.count;
        self.cost += finite(w.cost_usd);
        self.quality_sum += finite(w.quality_sum);
        self.quality_count += w.quality_count;
        self.latency_weighted += finite(w.latency_p95_ms) * w.count as f64;
    }

    fn cost_per_call(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.cost / self.calls as f64)
    }

    fn quality(&self) -> Option<f64> {
        (self.quality_count > 0).then(|| self.quality_sum / self.quality_count as f64)
    }

    fn latency_p95(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.latency_weighted / self.calls as f64)
    }
}

fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// The latest revision of every tumbling window, in (start, id) order.
fn latest_tumbling(windows: &[WindowAggregate]) -> Vec<&WindowAggregate> {
    let mut latest: BTreeMap<&str, &WindowAggregate> = BTreeMap::new();
    for w in windows
        .iter()
        .filter(|w| w.window_kind == WindowKind::Tumbling)
    {
        match latest.get(w.window_id.as_str()) {
            Some(old) if old.revision >= w.revision => {}
            _ => {
                latest.insert(&w.window_id, w);
            }
        }
    }
    let mut out: Vec<&WindowAggregate> = latest.into_values().collect();
    out.sort_by(|a, b| (a.window_start, &a.window_id).cmp(&(b.window_start, &b.window_id)));
    out
}

fn lines(sums: BTreeMap<String, (Option<i64>, f64)>, total: f64) -> Vec<SpendLine> {
    let mut out: Vec<SpendLine> = sums
        .into_iter()
        .map(|(key, (calls, spend_usd))| SpendLine {
            key,
            calls,
            spend_usd,
            share: if total > 0.0 { spend_usd / total } else { 0.0 },
        })
        .collect();
    out.sort_by(|a, b| b.spend_usd.total_cmp(&a.spend_usd).then(a.key.cmp(&b.key)));
    out
}

/// Expected value of a per-model figure under `targets`: the weighted mean over the targets with
/// weight, `None` when one of them has no figure.
fn under(targets: &[RouteTarget], figure: impl Fn(&str, &str) -> Option<f64>) -> Option<f64> {
    let mut sum = 0.0;
    let mut weights = 0.0;
    for t in targets.iter().filter(|t| t.weight > 0.0) {
        sum += t.weight * figure(&t.provider, &t.model)?;
        weights += t.weight;
    }
    (weights > 0.0).then(|| sum / weights)
}

/// Builds the report of `period` (the one holding the newest window) from the windows, config
/// changes and decisions read from their topics. `None` without any tumbling window.
pub fn build(
    windows: &[WindowAggregate],
    changes: &[ConfigChange],
    decisions: &[Decision],
    period: ReportPeriod,
) -> Option<CostReport> {
    let windows = latest_tumbling(windows);
    let newest = windows.iter().max_by_key(|w| w.window_end)?;
    let through_ms = newest.window_end;
    let (start_ms, end_ms) = period.bounds(newest.window_start)?;
    let in_period = |w: &WindowAggregate| w.window_start >= start_ms && w.window_start < end_ms;

    let mut totals = Totals::default();
    let mut by_app: BTreeMap<String, (Option<i64>, f64)> = BTreeMap::new();
    let mut by_route = BTreeMap::new();
    let mut by_model = BTreeMap::new();
    let mut by_tenant: BTreeMap<String, (Option<i64>, f64)> = BTreeMap::new();
    for w in windows.iter().filter(|w| in_period(w)) {
        totals.add(w);
        let cost = finite(w.cost_usd);
        for (map, key) in [
            (&mut by_app, w.app.clone()),
            (&mut by_route, format!("{}/{}", w.app, w.route)),
            (&mut by_model, format!("{}/{}", w.provider, w.model)),
        ] {
            let entry = map.entry(key).or_insert((Some(0), 0.0));
            entry.0 = entry.0.map(|c| c + w.count);
            entry.1 += cost;
        }
        let mut tenanted = 0.0;
        for (tenant, spend) in &w.cost_by_tenant {
            by_tenant.entry(tenant.clone()).or_insert((None, 0.0)).1 += finite(*spend);
            tenanted += finite(*spend);
        }
        if cost - tenanted > 1e-12 {
            by_tenant
                .entry("(none)".to_string())
                .or_insert((None, 0.0))
                .1 += cost - tenanted;
        }
    }
    let elapsed = (through_ms.min(end_ms) - start_ms).max(1) as f64 / (end_ms - start_ms) as f64;

    // Per-model figures: on each route, and over the fleet, from every window read.
    let mut per_route_model: BTreeMap<(&str, &str, &str, &str), Totals> = BTreeMap::new();
    let mut per_model: BTreeMap<(&str, &str), Totals> = BTreeMap::new();
    for w in &windows {
        per_route_model
            .entry((&w.app, &w.route, &w.provider, &w.model))
            .or_default()
            .add(w);
        per_model.entry((&w.provider, &w.model)).or_default().add(w);
    }
    let figure =
        |app: &str, route: &str, provider: &str, model: &str, f: fn(&Totals) -> Option<f64>| {
            per_route_model
                .get(&(app, route, provider, model))
                .and_then(f)
                .or_else(|| per_model.get(&(provider, model)).and_then(f))
        };

    let strategies: BTreeMap<&str, String> = decisions
        .iter()
        .map(|d| (d.id.as_str(), format!("{:?}", d.strategy)))
        .collect();
    let mut by_route_changes: BTreeMap<(&str, &str), Vec<&ConfigChange>> = BTreeMap::new();
    for c in changes {
        by_route_changes
            .entry((&c.app, &c.route))
            .or_default()
            .push(c);
    }
    // Per decision: its figures, the totals of its calls, and the replaced routing's quality and
    // latency times calls (None once a replaced target has no figure).
    type Accumulated = (DecisionSavings, Totals, Option<f64>, Option<f64>);
    let mut savings: BTreeMap<String, Accumulated> = BTreeMap::new();
    for ((app, route), list) in &mut by_route_changes {
        list.sort_by_key(|c| (c.event_time, c.version));
        let route_windows: Vec<&&WindowAggregate> = windows
            .iter()
            .filter(|w| w.app == *app && w.route == *route && in_period(w))
            .collect();
        for (i, change) in list.iter().enumerate() {
            let Some(decision_id) = &change.decision_id else {
                continue;
            };
            let Some(previous) = change.previous_version.and_then(|v| {
                list.iter()
                    .find(|c| c.version == v)
                    .map(|c| c.targets.as_slice())
            }) else {
                continue;
            };
            let until = list.get(i + 1).map_or(i64::MAX, |next| next.event_time);
            let mut segment = Totals::default();
            let mut segment_models: BTreeMap<(&str, &str), Totals> = BTreeMap::new();
            for w in route_windows
                .iter()
                .filter(|w| w.window_start >= change.event_time && w.window_start < until)
            {
                segment.add(w);
                segment_models
                    .entry((&w.provider, &w.model))
                    .or_default()
                    .add(w);
            }
            if segment.calls == 0 {
                continue;
            }
            // A model still served after the change is priced as it was then (a price change
            // at the same time is not the decision's doing); one no longer served, as it was
            // on this route (or the fleet) over every window read.
            let at = |p: &str, m: &str, f: fn(&Totals) -> Option<f64>| {
                segment_models
                    .get(&(p, m))
                    .and_then(f)
                    .or_else(|| figure(app, route, p, m, f))
            };
            let old_cpc = under(previous, |p, m| at(p, m, Totals::cost_per_call));
            let old_quality = under(previous, |p, m| at(p, m, Totals::quality));
            let old_latency = under(previous, |p, m| at(p, m, Totals::latency_p95));
            let entry = savings.entry(decision_id.clone()).or_insert_with(|| {
                (
                    DecisionSavings {
                        decision_id: decision_id.clone(),
                        strategy: strategies.get(decision_id.as_str()).cloned(),
                        app: app.to_string(),
                        route: route.to_string(),
                        applied_at_ms: change.event_time,
                        calls: 0,
                        spend_usd: 0.0,
                        counterfactual_usd: Some(0.0),
                        savings_usd: None,
                        quality_before: None,
                        quality_after: None,
                        latency_p95_before_ms: None,
                        latency_p95_after_ms: None,
                    },
                    Totals::default(),
                    Some(0.0),
                    Some(0.0),
                )
            });
            let (s, after, quality_w, latency_w) = entry;
            s.calls += segment.calls;
            s.spend_usd += segment.cost;
            s.counterfactual_usd = s
                .counterfactual_usd
                .zip(old_cpc)
                .map(|(sum, cpc)| sum + cpc * segment.calls as f64);
            *quality_w = quality_w
                .zip(old_quality)
                .map(|(sum, q)| sum + q * segment.calls as f64);
            *latency_w = latency_w
                .zip(old_latency)
                .map(|(sum, l)| sum + l * segment.calls as f64);
            after.calls += segment.calls;
            after.cost += segment.cost;
            after.quality_sum += segment.quality_sum;
            after.quality_count += segment.quality_count;
            after.latency_weighted += segment.latency_weighted;
        }
    }
    let mut decisions: Vec<DecisionSavings> = savings
        .into_values()
        .map(|(mut s, after, quality_w, latency_w)| {
            let calls = s.calls.max(1) as f64;
            s.savings_usd = s.counterfactual_usd.map(|c| c - s.spend_usd);
            s.quality_before = quality_w.map(|q| q / calls);
            s.quality_after = after.quality();
            s.latency_p95_before_ms = latency_w.map(|l| l / calls);
            s.latency_p95_after_ms = after.latency_p95();
            s
        })
        .collect();
    decisions
        .sort_by(|a, b| (a.applied_at_ms, &a.decision_id).cmp(&(b.applied_at_ms, &b.decision_id)));
    let savings_usd = decisions.iter().filter_map(|d| d.savings_usd).sum();
    Some(CostReport {
        period,
        start_ms,
        end_ms,
        through_ms,
        calls: totals.calls,
        spend_usd: totals.cost,
        projected_usd: totals.cost / elapsed.min(1.0),
        by_app: lines(by_app, totals.cost),
        by_route: lines(by_route, totals.cost),
        by_model: lines(by_model, totals.cost),
        by_tenant: lines(by_tenant, totals.cost),
        decisions,
        savings_usd,
    })
}

/// `2026-12-01 14:00` (UTC) for a report line.
pub fn utc(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    )
}

/// The report as text for a terminal.
pub fn render(report: &CostReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "COST REPORT {:?} {} .. {} (through {}): {} calls, ${:.4} spent, ${:.4} projected for the period",
        report.period,
        utc(report.start_ms),
        utc(report.end_ms),
        utc(report.through_ms),
        report.calls,
        report.spend_usd,
        report.projected_usd,
    );
    for (title, lines) in [
        ("by app", &report.by_app),
        ("by route", &report.by_route),
        ("by model", &report.by_model),
        ("by tenant", &report.by_tenant),
    ] {
        let _ = writeln!(out, "\n  {title}");
        for l in lines {
            let calls = l
                .calls
                .map_or_else(String::new, |c| format!("{c:>9} calls"));
            let _ = writeln!(
                out,
                "    {:<44} ${:>12.4} {:>6.1}% {calls}",
                l.key,
                l.spend_usd,
                l.share * 100.0
            );
        }
    }
    let _ = writeln!(
        out,
        "\n  savings by decision (spend under the replaced routing for the same calls - actual): ${:.4} in all",
        report.savings_usd
    );
    let opt = |x: Option<f64>, digits: usize| {
        x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
    };
    for d in &report.decisions {
        let _ = writeln!(
            out,
            "    {} {} {}/{} at {}: {} calls, ${:.4} spent, ${} saved; quality {} -> {}, p95 {} -> {} ms",
            d.decision_id,
            d.strategy.as_deref().unwrap_or("?"),
            d.app,
            d.route,
            utc(d.applied_at_ms),
            d.calls,
            d.spend_usd,
            opt(d.savings_usd, 4),
            opt(d.quality_before, 3),
            opt(d.quality_after, 3),
            opt(d.latency_p95_before_ms, 0),
            opt(d.latency_p95_after_ms, 0),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmopt_events::ChangeKind;

    const MINUTE: i64 = 60_000;
    /// 2026-12-01T00:00:00Z, a Tuesday.
    const DEC_1: i64 = 1_796_083_200_000;

    fn window(
        model: &str,
        minute: i64,
        revision: i32,
        calls: i64,
        cost_per_call: f64,
    ) -> WindowAggregate {
        let mut w = llmopt_events::samples::window_aggregate();
        w.window_kind = WindowKind::Tumbling;
        w.app = "shop".into();
        w.route = "chat".into();
        w.provider = "openai".into();
        w.model = model.into();
        w.window_start = DEC_1 + minute * MINUTE;
        w.window_end = w.window_start + MINUTE;
        w.window_id = format!("shop/chat/openai/{model}/{}", w.window_start);
        w.id = format!("{}/r{revision}", w.window_id);
        w.revision = revision;
        w.count = calls;
        w.cost_usd = cost_per_call * calls as f64;
        w.cost_by_tenant = BTreeMap::from([("acme".to_string(), w.cost_usd / 4.0)]);
        w.quality_sum = if model == "big" { 0.9 } else { 0.8 } * calls as f64;
        w.quality_count = calls;
        w.latency_p95_ms = if model == "big" { 2000.0 } else { 800.0 };
        w
    }

    fn change(
        version: i64,
        minute: i64,
        decision: Option<&str>,
        targets: &[(&str, f64)],
    ) -> ConfigChange {
        ConfigChange {
            id: format!("shop/chat/v{version}"),
            event_time: DEC_1 + minute * MINUTE,
            app: "shop".into(),
            route: "chat".into(),
            version,
            previous_version: (version > 1).then_some(version - 1),
            kind: if decision.is_some() {
                ChangeKind::Apply
            } else {
                ChangeKind::Initial
            },
            decision_id: decision.map(str::to_string),
            targets: targets
                .iter()
                .map(|(m, w)| RouteTarget {
                    provider: "openai".into(),
                    model: (*m).into(),
                    weight: *w,
                })
                .collect(),
            params: BTreeMap::new(),
        }
    }

    #[test]
    fn periods_are_utc_calendar_days_iso_weeks_and_months() {
        let t = DEC_1 + 10 * 3_600_000;
        assert_eq!(
            ReportPeriod::Day.bounds(t),
            Some((DEC_1, DEC_1 + 86_400_000))
        );
        // Monday 2026-11-30 .. Monday 2026-12-07.
        assert_eq!(
            ReportPeriod::Week.bounds(t),
            Some((DEC_1 - 86_400_000, DEC_1 + 6 * 86_400_000))
        );
        assert_eq!(
            ReportPeriod::Month.bounds(t),
            Some((DEC_1, DEC_1 + 31 * 86_400_000))
        );
    }

    /// A route on `big` ($0.01 a call) moved half its traffic to `small` ($0.002) at minute 10
    /// and the rest at minute 20: each change saved what the replaced routing would have cost
    /// on the calls served under it, and the totals are the windows' sums.
    #[test]
    fn totals_are_the_windows_sums_and_savings_price_the_replaced_routing() {
        let mut windows = Vec::new();
        for minute in 0..30 {
            let (big, small) = match minute {
                0..=9 => (100, 0),
                10..=19 => (50, 50),
                _ => (0, 100),
            };
            if big > 0 {
                windows.push(window("big", minute, 0, big, 0.01));
            }
            if small > 0 {
                windows.push(window("small", minute, 0, small, 0.002));
            }
        }
        // A revision replaces its window: minute 5 first reported 10 calls.
        windows.insert(0, window("big", 5, 0, 10, 0.01));
        windows.retain(|w| {
            !(w.window_start == DEC_1 + 5 * MINUTE && w.revision == 0 && w.count == 100)
        });
        windows.push(window("big", 5, 1, 100, 0.01));
        // A hopping window never counts.
        let mut hopping = window("big", 3, 0, 1000, 1.0);
        hopping.window_kind = WindowKind::Hopping;
        windows.push(hopping);
        let changes = [
            change(1, 0, None, &[("big", 1.0)]),
            change(
                2,
                10,
                Some("canary/shop/chat/1"),
                &[("big", 0.5), ("small", 0.5)],
            ),
            change(3, 20, Some("canary/shop/chat/1"), &[("small", 1.0)]),
        ];
        let report = build(&windows, &changes, &[], ReportPeriod::Day).expect("report");
        assert_eq!(report.calls, 3000);
        let expected_spend = 10.0 * 1.0 + 10.0 * (0.5 + 0.1) + 10.0 * 0.2;
        assert!(
            (report.spend_usd - expected_spend).abs() < 1e-9,
            "{}",
            report.spend_usd
        );
        assert_eq!(report.through_ms, DEC_1 + 30 * MINUTE);
        let by_model: BTreeMap<&str, f64> = report
            .by_model
            .iter()
            .map(|l| (l.key.as_str(), l.spend_usd))
            .collect();
        assert!((by_model["openai/big"] - 15.0).abs() < 1e-9);
        assert!((by_model["openai/small"] - 3.0).abs() < 1e-9);
        let tenants: BTreeMap<&str, f64> = report
            .by_tenant
            .iter()
            .map(|l| (l.key.as_str(), l.spend_usd))
            .collect();
        assert!((tenants["acme"] - expected_spend / 4.0).abs() < 1e-9);
        assert!((tenants["(none)"] - expected_spend * 0.75).abs() < 1e-9);
        assert_eq!(report.decisions.len(), 1);
        let d = &report.decisions[0];
        assert_eq!(d.calls, 2000);
        // Minutes 10-19 under v2 replaced v1 (all big, $0.01): 1000 calls, $10 then, $6 spent.
        // Minutes 20-29 under v3 replaced v2 (half big, half small: $0.006): $6 then, $2 spent.
        assert!((d.counterfactual_usd.unwrap() - 16.0).abs() < 1e-9);
        assert!((d.savings_usd.unwrap() - 8.0).abs() < 1e-9);
        assert!((report.savings_usd - 8.0).abs() < 1e-9);
        // Quality: big 0.9, small 0.8; before: 0.9 then 0.85 -> 0.875; after: 0.85 then 0.8.
        assert!((d.quality_before.unwrap() - 0.875).abs() < 1e-9);
        assert!((d.quality_after.unwrap() - 0.825).abs() < 1e-9);
        assert!(render(&report).contains("canary/shop/chat/1"));
    }

    #[test]
    fn a_replaced_model_never_seen_leaves_the_savings_unknown() {
        let windows = vec![window("small", 0, 0, 100, 0.002)];
        let changes = [
            change(1, 0, None, &[("unseen", 1.0)]),
            change(2, 0, Some("failover/shop/chat/0"), &[("small", 1.0)]),
        ];
        let report = build(&windows, &changes, &[], ReportPeriod::Month).expect("report");
        assert_eq!(report.decisions[0].savings_usd, None);
        assert_eq!(report.savings_usd, 0.0);
        assert!(build(&[], &changes, &[], ReportPeriod::Day).is_none());
    }
}
