//! Window assignment, window identity and the metrics accumulated per window.

use std::collections::BTreeMap;

use llmopt_events::{CallStatus, LlmCall, WindowAggregate, WindowKind};
use serde::{Deserialize, Serialize};

use crate::config::{AggregatorConfig, HoppingConfig};
use crate::sketch::LatencySketch;

/// Error type recorded for failed calls that do not say how they failed.
pub const UNKNOWN_ERROR_TYPE: &str = "unknown";

/// One window an event falls into: `[start_ms, end_ms)` of a tumbling or hopping family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowBounds {
    /// Tumbling or hopping.
    pub kind: WindowKind,
    /// Inclusive start (ms since epoch).
    pub start_ms: i64,
    /// Exclusive end (ms since epoch).
    pub end_ms: i64,
}

impl WindowBounds {
    /// Window size, which (with the kind and start) names the window in its id.
    pub fn size_ms(&self) -> i64 {
        self.end_ms.saturating_sub(self.start_ms)
    }
}

/// Maps an event time to every window containing it. Windows are aligned to the epoch, so all
/// keys and all replicas cut time at the same instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowAssigner {
    tumbling_ms: i64,
    hopping: Option<HoppingConfig>,
}

impl WindowAssigner {
    /// Assigner for the configured geometry (the configuration must be valid: sizes and hop > 0).
    pub fn new(config: &AggregatorConfig) -> Self {
        Self {
            tumbling_ms: config.tumbling_size_ms.max(1),
            hopping: config.hopping.map(|h| HoppingConfig {
                size_ms: h.size_ms.max(1),
                hop_ms: h.hop_ms.max(1),
            }),
        }
    }

    /// Appends to `out` the tumbling window of `t`, then every hopping window containing `t`
    /// (ascending start): `ceil(size / hop)` or `floor(size / hop)` of them.
    pub fn assign(&self, t: i64, out: &mut Vec<WindowBounds>) {
        let start = aligned_start(t, self.tumbling_ms);
        out.push(WindowBounds {
            kind: WindowKind::Tumbling,
            start_ms: start,
            end_ms: start.saturating_add(self.tumbling_ms),
        });
        if let Some(h) = self.hopping {
            let last = aligned_start(t, h.hop_ms);
            // Earliest start s = k·hop with s + size > t.
            let span = (h.size_ms - 1) / h.hop_ms;
            let first = last.saturating_sub(span.saturating_mul(h.hop_ms));
            let mut s = first;
            while s <= last {
                let end = s.saturating_add(h.size_ms);
                if end > t {
                    out.push(WindowBounds {
                        kind: WindowKind::Hopping,
                        start_ms: s,
                        end_ms: end,
                    });
                }
                match s.checked_add(h.hop_ms) {
                    Some(next) => s = next,
                    None => break,
                }
            }
        }
    }

    /// Size of the windows of one kind (0 for hopping when hopping is disabled).
    pub fn size_ms(&self, kind: WindowKind) -> i64 {
        match kind {
            WindowKind::Tumbling => self.tumbling_ms,
            WindowKind::Hopping => self.hopping.map_or(0, |h| h.size_ms),
        }
    }
}

/// Start of the window of `size` containing `t`: floor division, also right for negative `t`.
fn aligned_start(t: i64, size: i64) -> i64 {
    t - t.rem_euclid(size)
}

/// The series a window belongs to: (app, route, provider, model).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// Application.
    pub app: String,
    /// Route within the application.
    pub route: String,
    /// `gen_ai.provider.name`.
    pub provider: String,
    /// `gen_ai.response.model`, or the request model when the response does not name one.
    pub model: String,
}

impl SeriesKey {
    /// The key of a call: the model that actually answered, when known.
    pub fn of(call: &LlmCall) -> Self {
        Self {
            app: call.app.clone(),
            route: call.route.clone(),
            provider: call.gen_ai_provider_name.clone(),
            model: model_of(call).to_string(),
        }
    }

    /// The fields in key order (app, route, provider, model).
    pub(crate) fn fields(&self) -> [&str; 4] {
        [&self.app, &self.route, &self.provider, &self.model]
    }

    /// Prefix of every window id of this series: `{app}/{route}/{provider}/{model}`.
    pub fn id_prefix(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.app, self.route, self.provider, self.model
        )
    }

    /// Kafka key of its outputs: `{app}/{route}`, so a route's windows stay in order.
    pub fn partition_key(&self) -> String {
        format!("{}/{}", self.app, self.route)
    }
}

/// The key fields of a call, in key order, without copying them.
pub(crate) fn call_fields(call: &LlmCall) -> [&str; 4] {
    [
        &call.app,
        &call.route,
        &call.gen_ai_provider_name,
        model_of(call),
    ]
}

/// `gen_ai_response_model`, else `gen_ai_request_model`.
pub(crate) fn model_of(call: &LlmCall) -> &str {
    call.gen_ai_response_model
        .as_deref()
        .filter(|m| !m.is_empty())
        .unwrap_or(&call.gen_ai_request_model)
}

/// Window id `{app}/{route}/{provider}/{model}/{T|H}{size_ms}/{start_ms}`: shared by all
/// revisions of the window and stable across replays.
pub fn window_id(id_prefix: &str, bounds: &WindowBounds) -> String {
    let letter = match bounds.kind {
        WindowKind::Tumbling => 'T',
        WindowKind::Hopping => 'H',
    };
    format!(
        "{id_prefix}/{letter}{}/{}",
        bounds.size_ms(),
        bounds.start_ms
    )
}

/// Output id `{window_id}/r{revision}`: a revision is a new event, not an overwrite.
pub fn output_id(window_id: &str, revision: i32) -> String {
    format!("{window_id}/r{revision}")
}

/// Running metrics of one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WindowMetrics {
    count: i64,
    error_count: i64,
    errors_by_type: BTreeMap<String, i64>,
    latency: LatencySketch,
    ttft: Option<LatencySketch>,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: f64,
    quality_sum: f64,
    quality_count: i64,
    /// Cost per tenant, for the calls that name one.
    #[serde(default)]
    cost_by_tenant: BTreeMap<String, f64>,
}

impl WindowMetrics {
    /// Adds one call. A call with status ERROR counts under its `error_type`, or
    /// [`UNKNOWN_ERROR_TYPE`] when that is missing or empty. Non-finite cost and quality values
    /// are skipped rather than turning the window's sums into NaN; a missing cost counts as 0.
    pub(crate) fn add(&mut self, call: &LlmCall) {
        self.count = self.count.saturating_add(1);
        if call.status == CallStatus::Error {
            self.error_count = self.error_count.saturating_add(1);
            let ty = call
                .error_type
                .as_deref()
                .filter(|t| !t.is_empty())
                .unwrap_or(UNKNOWN_ERROR_TYPE);
            match self.errors_by_type.get_mut(ty) {
                Some(n) => *n = n.saturating_add(1),
                None => {
                    self.errors_by_type.insert(ty.to_string(), 1);
                }
            }
        }
        self.latency.add(call.latency_ms);
        if let Some(ttft) = call.time_to_first_token_ms {
            self.ttft.get_or_insert_with(LatencySketch::new).add(ttft);
        }
        self.input_tokens = self
            .input_tokens
            .saturating_add(call.gen_ai_usage_input_tokens);
        self.output_tokens = self
            .output_tokens
            .saturating_add(call.gen_ai_usage_output_tokens);
        if let Some(cost) = call.cost_usd.filter(|c| c.is_finite()) {
            self.cost_usd += cost;
            if let Some(tenant) = call.tenant.as_deref().filter(|t| !t.is_empty()) {
                match self.cost_by_tenant.get_mut(tenant) {
                    Some(sum) => *sum += cost,
                    None => {
                        self.cost_by_tenant.insert(tenant.to_string(), cost);
                    }
                }
            }
        }
        if let Some(q) = call.quality_score.filter(|q| q.is_finite()) {
            self.quality_sum += q;
            self.quality_count += 1;
        }
    }

    /// The window's event. Latency percentiles are 0 when no call had a usable latency (then
    /// `latency_sketch` is `None` too); `ttft_p95_ms` is `None` when no call was streamed.
    pub(crate) fn to_aggregate(&self, window: WindowEmission<'_>) -> WindowAggregate {
        let p = |q: f64| self.latency.quantile(q).unwrap_or(0.0);
        WindowAggregate {
            id: output_id(window.window_id, window.revision),
            window_id: window.window_id.to_string(),
            revision: window.revision,
            window_kind: window.bounds.kind,
            window_start: window.bounds.start_ms,
            window_end: window.bounds.end_ms,
            app: window.series.app.clone(),
            route: window.series.route.clone(),
            provider: window.series.provider.clone(),
            model: window.series.model.clone(),
            count: self.count,
            error_count: self.error_count,
            errors_by_type: self.errors_by_type.clone(),
            latency_p50_ms: p(0.50),
            latency_p90_ms: p(0.90),
            latency_p95_ms: p(0.95),
            latency_p99_ms: p(0.99),
            ttft_p95_ms: self.ttft.as_ref().and_then(|s| s.quantile(0.95)),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_usd: self.cost_usd,
            quality_sum: self.quality_sum,
            quality_count: self.quality_count,
            latency_sketch: (!self.latency.is_empty()).then(|| self.latency.to_bytes()),
            watermark: window.watermark,
            cost_by_tenant: self.cost_by_tenant.clone(),
        }
    }
}

/// What identifies one emission of a window.
pub(crate) struct WindowEmission<'a> {
    pub(crate) series: &'a SeriesKey,
    pub(crate) window_id: &'a str,
    pub(crate) bounds: WindowBounds,
    pub(crate) revision: i32,
    pub(crate) watermark: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigner(hopping: Option<HoppingConfig>) -> WindowAssigner {
        WindowAssigner::new(&AggregatorConfig {
            hopping,
            ..AggregatorConfig::default()
        })
    }

    fn assign(a: &WindowAssigner, t: i64) -> Vec<WindowBounds> {
        let mut out = Vec::new();
        a.assign(t, &mut out);
        out
    }

    #[test]
    fn tumbling_start_inclusive_end_exclusive() {
        let a = assigner(None);
        assert_eq!(
            assign(&a, 120_000),
            vec![WindowBounds {
                kind: WindowKind::Tumbling,
                start_ms: 120_000,
                end_ms: 180_000
            }]
        );
        assert_eq!(assign(&a, 179_999)[0].start_ms, 120_000);
        assert_eq!(assign(&a, 180_000)[0].start_ms, 180_000);
        assert_eq!(assign(&a, -1)[0].start_ms, -60_000);
    }

    #[test]
    fn hopping_membership_is_size_over_hop_windows() {
        let a = assigner(Some(HoppingConfig::default()));
        let t = 1_000_000;
        let hopping: Vec<_> = assign(&a, t)
            .into_iter()
            .filter(|b| b.kind == WindowKind::Hopping)
            .collect();
        assert_eq!(hopping.len(), 5);
        for b in &hopping {
            assert!(b.start_ms <= t && t < b.end_ms);
            assert_eq!(b.start_ms % 60_000, 0);
            assert_eq!(b.size_ms(), 300_000);
        }
        assert_eq!(hopping[0].start_ms, 720_000);
        assert_eq!(hopping[4].start_ms, 960_000);
        // On a boundary: the window ending there is excluded, the one starting there included.
        let at = assign(&a, 960_000);
        assert!(at.iter().all(|b| b.end_ms != 960_000));
        assert!(at
            .iter()
            .any(|b| b.kind == WindowKind::Hopping && b.start_ms == 960_000));
    }

    #[test]
    fn hopping_with_size_not_a_multiple_of_hop() {
        let a = assigner(Some(HoppingConfig {
            size_ms: 250,
            hop_ms: 100,
        }));
        for t in [0_i64, 49, 50, 99, 149, 150, 199, -1, -151] {
            let starts: Vec<_> = assign(&a, t)
                .into_iter()
                .filter(|b| b.kind == WindowKind::Hopping)
                .map(|b| b.start_ms)
                .collect();
            let expected: Vec<_> = (-10..10)
                .map(|k| k * 100)
                .filter(|s| *s <= t && t < s + 250)
                .collect();
            assert_eq!(starts, expected, "t={t}");
        }
    }

    #[test]
    fn ids_follow_the_design() {
        let key = SeriesKey {
            app: "shop".into(),
            route: "search".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
        };
        let b = WindowBounds {
            kind: WindowKind::Hopping,
            start_ms: 60_000,
            end_ms: 360_000,
        };
        let id = window_id(&key.id_prefix(), &b);
        assert_eq!(id, "shop/search/openai/gpt-4o/H300000/60000");
        assert_eq!(
            output_id(&id, 2),
            "shop/search/openai/gpt-4o/H300000/60000/r2"
        );
        assert_eq!(key.partition_key(), "shop/search");
    }
}
