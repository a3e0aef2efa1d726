//! Recent tumbling-window metrics per route and per (route, provider, model).
//!
//! Strategies compare periods of windows (before/after a change, a candidate against the
//! incumbents, the last k windows against an SLO), so the core keeps a bounded history of the
//! windows it saw. Hopping windows overlap and would count calls twice, so only tumbling windows
//! are kept; a revision of a window replaces the stored one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use llmopt_events::{RouteTarget, WindowAggregate, WindowKind};

/// The metrics of one tumbling window of one (route, provider, model) that strategies use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowPoint {
    /// Output id of the window event (for `caused_by`).
    pub event_id: String,
    /// Window id (stable across revisions).
    pub window_id: String,
    /// Revision of the stored window.
    pub revision: i32,
    /// Window start (ms).
    pub start: i64,
    /// Window end (ms).
    pub end: i64,
    /// Calls.
    pub count: i64,
    /// Failed calls.
    pub error_count: i64,
    /// Latency p95 (ms).
    pub latency_p95_ms: f64,
    /// Sum of quality scores.
    pub quality_sum: f64,
    /// Calls with a quality score.
    pub quality_count: i64,
    /// Total cost (USD).
    pub cost_usd: f64,
}

impl WindowPoint {
    /// The point of a window event.
    pub fn from_window(w: &WindowAggregate) -> Self {
        Self {
            event_id: w.id.clone(),
            window_id: w.window_id.clone(),
            revision: w.revision,
            start: w.window_start,
            end: w.window_end,
            count: w.count,
            error_count: w.error_count,
            latency_p95_ms: w.latency_p95_ms,
            quality_sum: w.quality_sum,
            quality_count: w.quality_count,
            cost_usd: w.cost_usd,
        }
    }

    /// Mean quality score, if any call was scored.
    pub fn quality_mean(&self) -> Option<f64> {
        (self.quality_count > 0).then(|| self.quality_sum / self.quality_count as f64)
    }

    /// Cost per call, if there were calls.
    pub fn cost_per_call(&self) -> Option<f64> {
        (self.count > 0).then(|| self.cost_usd / self.count as f64)
    }
}

/// One window of a whole route: the sum over its provider/models.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteWindow {
    /// Window start (ms).
    pub start: i64,
    /// Window end (ms).
    pub end: i64,
    /// Calls.
    pub count: i64,
    /// Failed calls.
    pub error_count: i64,
    /// Call-weighted mean of the provider/models' latency p95 (percentiles do not add up; this
    /// is the usual approximation when only per-key quantiles are at hand).
    pub latency_p95_ms: f64,
    /// Sum of quality scores.
    pub quality_sum: f64,
    /// Calls with a quality score.
    pub quality_count: i64,
    /// Ids of the window events it sums.
    pub event_ids: Vec<String>,
}

impl RouteWindow {
    /// Mean quality score, if any call was scored.
    pub fn quality_mean(&self) -> Option<f64> {
        (self.quality_count > 0).then(|| self.quality_sum / self.quality_count as f64)
    }

    fn sum<'a>(start: i64, end: i64, points: impl IntoIterator<Item = &'a WindowPoint>) -> Self {
        let mut w = RouteWindow {
            start,
            end,
            count: 0,
            error_count: 0,
            latency_p95_ms: 0.0,
            quality_sum: 0.0,
            quality_count: 0,
            event_ids: Vec::new(),
        };
        let mut weighted_latency = 0.0;
        for p in points {
            w.count += p.count;
            w.error_count += p.error_count;
            weighted_latency += p.latency_p95_ms * p.count as f64;
            w.quality_sum += p.quality_sum;
            w.quality_count += p.quality_count;
            w.event_ids.push(p.event_id.clone());
        }
        if w.count > 0 {
            w.latency_p95_ms = weighted_latency / w.count as f64;
        }
        w
    }
}

/// (provider, model).
pub type ModelKey = (String, String);

/// Window slots of one route: (start, end) → provider/model → point.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouteHistory {
    slots: BTreeMap<(i64, i64), BTreeMap<ModelKey, WindowPoint>>,
}

impl RouteHistory {
    fn insert(&mut self, provider: &str, model: &str, point: WindowPoint, limit: usize) -> bool {
        let slot = self.slots.entry((point.start, point.end)).or_default();
        let key = (provider.to_string(), model.to_string());
        if slot
            .get(&key)
            .is_some_and(|old| old.revision > point.revision)
        {
            return false;
        }
        slot.insert(key, point);
        while self.slots.len() > limit {
            self.slots.pop_first();
        }
        true
    }

    /// End of the newest window seen on this route.
    pub fn latest_end(&self) -> Option<i64> {
        self.slots.keys().map(|(_, end)| *end).max()
    }

    /// The last `n` windows of one provider/model, oldest first.
    pub fn last_points(&self, provider: &str, model: &str, n: usize) -> Vec<&WindowPoint> {
        let key = (provider.to_string(), model.to_string());
        let mut out: Vec<&WindowPoint> = self
            .slots
            .values()
            .rev()
            .filter_map(|s| s.get(&key))
            .take(n)
            .collect();
        out.reverse();
        out
    }

    /// Route windows considered complete: every slot but the newest, which may still be
    /// receiving the windows of other provider/models. Oldest first.
    pub fn closed_windows(&self) -> Vec<RouteWindow> {
        let latest = self.latest_end();
        self.slots
            .iter()
            .filter(|((_, end), _)| Some(*end) < latest)
            .map(|((start, end), models)| RouteWindow::sum(*start, *end, models.values()))
            .collect()
    }

    /// How many closed route windows start at or after `t`.
    pub fn closed_windows_since(&self, t: i64) -> usize {
        let latest = self.latest_end();
        self.slots
            .keys()
            .filter(|(start, end)| *start >= t && Some(*end) < latest)
            .count()
    }

    /// The route windows that started after `t`: the closed ones, and the newest too once
    /// every model in `reported` has its window in it (the aggregator emits a slot's windows
    /// together, so the models carrying the route having reported is as good as closed).
    pub fn reported_windows_after(&self, t: i64, reported: &[ModelKey]) -> Vec<RouteWindow> {
        let latest = self.latest_end();
        self.slots
            .iter()
            .filter(|((start, _), _)| *start > t)
            .filter(|((_, end), models)| {
                Some(*end) < latest || reported.iter().all(|k| models.contains_key(k))
            })
            .map(|((start, end), models)| RouteWindow::sum(*start, *end, models.values()))
            .collect()
    }

    /// The last `n` closed route windows that ended at or before `t` (the baseline of a change
    /// at `t`), oldest first.
    pub fn windows_before(&self, t: i64, n: usize) -> Vec<RouteWindow> {
        let mut out: Vec<RouteWindow> = self
            .closed_windows()
            .into_iter()
            .rev()
            .filter(|w| w.end <= t)
            .take(n)
            .collect();
        out.reverse();
        out
    }

    /// The first `n` closed route windows that started at or after `t`, or `None` while fewer
    /// than `n` are closed (the evaluation period of a change at `t`).
    pub fn windows_after(&self, t: i64, n: usize) -> Option<Vec<RouteWindow>> {
        let out: Vec<RouteWindow> = self
            .closed_windows()
            .into_iter()
            .filter(|w| w.start >= t)
            .take(n)
            .collect();
        (out.len() == n).then_some(out)
    }

    /// The last `n` windows of one provider/model that ended at or before `t`, as route-shaped
    /// windows (for comparisons of the traffic a decision moved). Oldest first.
    pub fn model_windows_before(
        &self,
        provider: &str,
        model: &str,
        t: i64,
        n: usize,
    ) -> Vec<RouteWindow> {
        let key = (provider.to_string(), model.to_string());
        let mut out: Vec<RouteWindow> = self
            .slots
            .iter()
            .rev()
            .filter(|((_, end), _)| *end <= t)
            .filter_map(|((start, end), models)| {
                models
                    .get(&key)
                    .map(|p| RouteWindow::sum(*start, *end, [p]))
            })
            .take(n)
            .collect();
        out.reverse();
        out
    }

    /// The first `n` windows of one provider/model that started at or after `t`, as
    /// route-shaped windows. Oldest first.
    pub fn model_windows_after(
        &self,
        provider: &str,
        model: &str,
        t: i64,
        n: usize,
    ) -> Vec<RouteWindow> {
        let key = (provider.to_string(), model.to_string());
        self.slots
            .iter()
            .filter(|((start, _), _)| *start >= t)
            .filter_map(|((start, end), models)| {
                models
                    .get(&key)
                    .map(|p| RouteWindow::sum(*start, *end, [p]))
            })
            .take(n)
            .collect()
    }

    /// Per closed slot, the summed window of every provider/model except `excluded`, over the
    /// last `n` slots where those had quality data. Oldest first.
    pub fn quality_windows_excluding(&self, excluded: (&str, &str), n: usize) -> Vec<RouteWindow> {
        let latest = self.latest_end();
        let mut out: Vec<RouteWindow> = self
            .slots
            .iter()
            .rev()
            .filter(|((_, end), _)| Some(*end) < latest)
            .map(|((start, end), models)| {
                RouteWindow::sum(
                    *start,
                    *end,
                    models
                        .iter()
                        .filter(|((p, m), _)| !(p == excluded.0 && m == excluded.1))
                        .map(|(_, point)| point),
                )
            })
            .filter(|w| w.quality_count > 0)
            .take(n)
            .collect();
        out.reverse();
        out
    }

    /// Traffic shares of the newest slot: the de-facto targets of a route whose routing config
    /// was never published.
    pub fn latest_shares(&self) -> Vec<RouteTarget> {
        let Some((_, models)) = self.slots.last_key_value() else {
            return Vec::new();
        };
        let total: i64 = models.values().map(|p| p.count).sum();
        if total <= 0 {
            return Vec::new();
        }
        models
            .iter()
            .filter(|(_, p)| p.count > 0)
            .map(|((provider, model), p)| RouteTarget {
                provider: provider.clone(),
                model: model.clone(),
                weight: p.count as f64 / total as f64,
            })
            .collect()
    }
}

/// Histories of every route seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    routes: BTreeMap<(String, String), RouteHistory>,
    limit: usize,
}

impl History {
    /// An empty history keeping at most `limit` window slots per route.
    pub fn new(limit: usize) -> Self {
        Self {
            routes: BTreeMap::new(),
            limit: limit.max(1),
        }
    }

    /// Changes how many window slots per route are kept from now on.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
    }

    /// Records a window. Returns false (and stores nothing) for hopping windows and for
    /// revisions older than the one stored.
    pub fn insert(&mut self, w: &WindowAggregate) -> bool {
        if w.window_kind != WindowKind::Tumbling {
            return false;
        }
        self.routes
            .entry((w.app.clone(), w.route.clone()))
            .or_default()
            .insert(
                &w.provider,
                &w.model,
                WindowPoint::from_window(w),
                self.limit,
            )
    }

    /// The history of one route.
    pub fn route(&self, app: &str, route: &str) -> Option<&RouteHistory> {
        self.routes.get(&(app.to_string(), route.to_string()))
    }

    /// The last `n` windows of one provider/model ending after `since`, on every route that
    /// sends it traffic: how a model behaves for the rest of the fleet while one route has moved
    /// away from it (a route that stopped sending it traffic holds only stale windows).
    pub fn model_points(
        &self,
        provider: &str,
        model: &str,
        n: usize,
        since: i64,
    ) -> Vec<&WindowPoint> {
        self.routes
            .values()
            .flat_map(|r| r.last_points(provider, model, n))
            .filter(|p| p.end > since)
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tumbling window of 60 s starting at minute `minute`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn window(
        route: &str,
        provider: &str,
        model: &str,
        minute: i64,
        count: i64,
        errors: i64,
        p95: f64,
        quality: Option<f64>,
    ) -> WindowAggregate {
        let start = minute * 60_000;
        let window_id = format!("app/{route}/{provider}/{model}/T60000/{start}");
        WindowAggregate {
            id: format!("{window_id}/r0"),
            window_id,
            revision: 0,
            window_kind: WindowKind::Tumbling,
            window_start: start,
            window_end: start + 60_000,
            app: "app".into(),
            route: route.into(),
            provider: provider.into(),
            model: model.into(),
            count,
            error_count: errors,
            errors_by_type: BTreeMap::new(),
            latency_p50_ms: p95 / 2.0,
            latency_p90_ms: p95 * 0.9,
            latency_p95_ms: p95,
            latency_p99_ms: p95 * 1.2,
            ttft_p95_ms: None,
            input_tokens: count * 100,
            output_tokens: count * 50,
            cost_usd: count as f64 * 0.001,
            quality_sum: quality.map_or(0.0, |q| q * count as f64),
            quality_count: if quality.is_some() { count } else { 0 },
            latency_sketch: None,
            watermark: start + 60_000,
            cost_by_tenant: BTreeMap::new(),
        }
    }

    #[test]
    fn hopping_ignored_and_revisions_replace() {
        let mut h = History::new(10);
        let mut w = window("chat", "p", "m", 0, 100, 1, 500.0, None);
        assert!(h.insert(&w));
        w.revision = 1;
        w.count = 200;
        assert!(h.insert(&w));
        let mut old = w.clone();
        old.revision = 0;
        assert!(!h.insert(&old));
        let mut hop = w.clone();
        hop.window_kind = WindowKind::Hopping;
        hop.count = 999;
        assert!(!h.insert(&hop));
        let r = h.route("app", "chat").unwrap();
        let pts = r.last_points("p", "m", 5);
        assert_eq!(pts.len(), 1);
        assert_eq!(pts[0].count, 200);
    }

    #[test]
    fn closed_windows_exclude_newest_and_sum_models() {
        let mut h = History::new(3);
        for minute in 0..4 {
            h.insert(&window("chat", "p", "a", minute, 100, 10, 400.0, Some(0.8)));
            h.insert(&window("chat", "p", "b", minute, 300, 0, 800.0, Some(0.4)));
        }
        let r = h.route("app", "chat").unwrap();
        let closed = r.closed_windows();
        assert_eq!(closed.len(), 2, "limit 3 slots, newest open");
        assert_eq!(closed[0].count, 400);
        assert_eq!(closed[0].error_count, 10);
        assert!((closed[0].latency_p95_ms - 700.0).abs() < 1e-9);
        assert!((closed[0].quality_mean().unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(r.windows_before(180_000, 5).len(), 2);
        assert!(r.windows_after(120_000, 2).is_none());
        assert_eq!(r.windows_after(120_000, 1).unwrap().len(), 1);
        let q = r.quality_windows_excluding(("p", "b"), 5);
        assert!((q[0].quality_mean().unwrap() - 0.8).abs() < 1e-9);
        let shares = r.latest_shares();
        assert!((shares[0].weight - 0.25).abs() < 1e-9);
        let before = r.model_windows_before("p", "a", 180_000, 5);
        assert_eq!(before.len(), 2);
        assert_eq!(before[1].end, 180_000);
        let after = r.model_windows_after("p", "b", 120_000, 5);
        assert_eq!(after.len(), 2, "the open slot counts for a single model");
        assert_eq!(after[0].count, 300);
    }
}
