//! The fleet as Prometheus sees it: per app/route/provider/model gauges from the latest emitted
//! tumbling window, served on the aggregator's `/metrics`.
//!
//! Why here and not from the `windows` topic: operators already scrape every service, and a
//! Grafana dashboard over Prometheus is what they expect; the aggregator is the one place that
//! has each window the moment it closes. The values are those of the last closed window of each
//! key (not counters): a window is already an aggregate over event time, and re-counting it in
//! Prometheus would double what late revisions add. Hopping windows are skipped (they overlap).

use std::collections::HashMap;

use async_trait::async_trait;
use llmopt_events::{AnyEvent, WindowAggregate, WindowKind};
use llmopt_runtime::{Effects, Input, Output, RuntimeError};
use prometheus::{GaugeVec, Opts, Registry};

const LABELS: [&str; 4] = ["app", "route", "provider", "model"];

/// A key whose latest window ended this long (event time) before the newest window of any key
/// is dropped: a model that no longer gets traffic must leave the dashboard, not freeze on it.
const STALE_AFTER_MS: i64 = 15 * 60_000;

/// Gauges of the latest tumbling window per key; an [`Effects`] so they move only once the
/// window is acknowledged by the transport.
pub struct FleetMetrics {
    calls: GaugeVec,
    errors: GaugeVec,
    cost_usd: GaugeVec,
    latency_p95_seconds: GaugeVec,
    quality_mean: GaugeVec,
    window_end_seconds: GaugeVec,
    /// Window end shown per key: an older window's late revision must not move a gauge back.
    shown_end: HashMap<[String; 4], i64>,
    /// Newest window end shown, for dropping stale keys.
    newest_end: i64,
}

impl FleetMetrics {
    /// Registers the gauges in `registry` (the service's, so they share `/metrics`), labelled
    /// with `service`.
    pub fn new(registry: &Registry, service: &str) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<GaugeVec, prometheus::Error> {
            let g = GaugeVec::new(
                Opts::new(name, help).const_label("service", service),
                &LABELS,
            )?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(Self {
            calls: gauge("route_window_calls", "Calls in the latest closed window.")?,
            errors: gauge(
                "route_window_errors",
                "Failed calls in the latest closed window.",
            )?,
            cost_usd: gauge(
                "route_window_cost_usd",
                "Cost of the latest closed window (USD).",
            )?,
            latency_p95_seconds: gauge(
                "route_window_latency_p95_seconds",
                "Latency p95 of the latest closed window.",
            )?,
            quality_mean: gauge(
                "route_window_quality_mean",
                "Mean quality score of the latest closed window (keys with scores only).",
            )?,
            window_end_seconds: gauge(
                "route_window_end_timestamp_seconds",
                "Event-time end of the latest closed window.",
            )?,
            shown_end: HashMap::new(),
            newest_end: i64::MIN,
        })
    }

    fn show(&mut self, w: &WindowAggregate) {
        if w.window_kind != WindowKind::Tumbling {
            return;
        }
        let key = [
            w.app.clone(),
            w.route.clone(),
            w.provider.clone(),
            w.model.clone(),
        ];
        if self
            .shown_end
            .get(&key)
            .is_some_and(|end| *end > w.window_end)
        {
            return;
        }
        let labels: [&str; 4] = [&key[0], &key[1], &key[2], &key[3]];
        self.calls.with_label_values(&labels).set(w.count as f64);
        self.errors
            .with_label_values(&labels)
            .set(w.error_count as f64);
        self.cost_usd.with_label_values(&labels).set(w.cost_usd);
        self.latency_p95_seconds
            .with_label_values(&labels)
            .set(w.latency_p95_ms / 1000.0);
        if w.quality_count > 0 {
            self.quality_mean
                .with_label_values(&labels)
                .set(w.quality_sum / w.quality_count as f64);
        }
        self.window_end_seconds
            .with_label_values(&labels)
            .set(w.window_end as f64 / 1000.0);
        self.shown_end.insert(key, w.window_end);
        if w.window_end > self.newest_end {
            self.newest_end = w.window_end;
            self.drop_stale();
        }
    }

    fn drop_stale(&mut self) {
        let cutoff = self.newest_end.saturating_sub(STALE_AFTER_MS);
        let stale: Vec<[String; 4]> = self
            .shown_end
            .iter()
            .filter(|(_, end)| **end < cutoff)
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            let labels: [&str; 4] = [&key[0], &key[1], &key[2], &key[3]];
            for gauge in [
                &self.calls,
                &self.errors,
                &self.cost_usd,
                &self.latency_p95_seconds,
                &self.quality_mean,
                &self.window_end_seconds,
            ] {
                let _ = gauge.remove_label_values(&labels);
            }
            self.shown_end.remove(&key);
        }
    }
}

#[async_trait]
impl Effects for FleetMetrics {
    async fn after_publish(
        &mut self,
        _input: Option<&Input>,
        outputs: &[Output],
    ) -> Result<(), RuntimeError> {
        for output in outputs {
            if let AnyEvent::WindowAggregate(w) = &output.event {
                self.show(w);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use llmopt_events::samples;

    use super::*;

    fn window(model: &str, end: i64, count: i64) -> WindowAggregate {
        let mut w = samples::window_aggregate();
        w.window_kind = WindowKind::Tumbling;
        w.model = model.into();
        w.window_start = end - 60_000;
        w.window_end = end;
        w.count = count;
        w
    }

    fn calls(registry: &Registry, model: &str) -> Option<f64> {
        registry
            .gather()
            .into_iter()
            .filter(|f| f.name() == "llmopt_route_window_calls")
            .flat_map(|f| f.get_metric().to_vec())
            .find(|m| m.get_label().iter().any(|l| l.value() == model))
            .map(|m| m.get_gauge().get_value())
    }

    #[test]
    fn latest_window_wins_and_silent_keys_are_dropped() {
        let registry = Registry::new_custom(Some("llmopt".into()), None).expect("registry");
        let mut fleet = FleetMetrics::new(&registry, "aggregator").expect("metrics");
        fleet.show(&window("a", 120_000, 7));
        fleet.show(&window("a", 60_000, 99)); // a late revision of an older window
        assert_eq!(calls(&registry, "a"), Some(7.0));
        fleet.show(&window("b", 120_000 + STALE_AFTER_MS, 3));
        assert_eq!(calls(&registry, "b"), Some(3.0));
        assert_eq!(calls(&registry, "a"), Some(7.0), "not stale yet");
        fleet.show(&window("b", 180_000 + STALE_AFTER_MS, 4));
        assert_eq!(
            calls(&registry, "a"),
            None,
            "no window for 15 minutes: dropped"
        );
    }
}
