//! What the detector measures: the metrics it derives from a [`WindowAggregate`] and the series
//! they belong to.
//!
//! Window aggregates carry sums and percentiles; detectors and SLO rules need per-call rates and
//! means. Deriving them in one place keeps the anomaly detector, the rules and the alert texts in
//! agreement about what "error rate" means.

use std::fmt;

use llmopt_events::{Direction, WindowAggregate};
use serde::{Deserialize, Serialize};

/// A metric derived from one window, by the name used in configuration, in `Anomaly.metric` and
/// in alert labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `error_count / count`: the share of calls that failed.
    ErrorRate,
    /// The window's 95th latency percentile, in milliseconds.
    LatencyP95Ms,
    /// `cost_usd / count`: mean cost of one call in US dollars.
    CostPerCall,
    /// `quality_sum / quality_count`: mean quality score of the scored calls.
    QualityMean,
    /// The window's 95th time-to-first-token percentile, in milliseconds.
    TtftP95Ms,
}

impl Metric {
    /// Every metric, in the order the detector evaluates and reports them.
    pub const ALL: [Metric; 5] = [
        Metric::ErrorRate,
        Metric::LatencyP95Ms,
        Metric::CostPerCall,
        Metric::QualityMean,
        Metric::TtftP95Ms,
    ];

    /// Machine name (`error_rate`, ...), as in configuration, ids and labels.
    pub fn name(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::LatencyP95Ms => "latency_p95_ms",
            Metric::CostPerCall => "cost_per_call",
            Metric::QualityMean => "quality_mean",
            Metric::TtftP95Ms => "ttft_p95_ms",
        }
    }

    /// Words for alert summaries, which operators read.
    pub fn label(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error rate",
            Metric::LatencyP95Ms => "latency p95",
            Metric::CostPerCall => "cost per call",
            Metric::QualityMean => "quality mean",
            Metric::TtftP95Ms => "TTFT p95",
        }
    }

    /// CamelCase form, used to build alert names such as `AnomalousErrorRate`.
    pub fn camel(self) -> &'static str {
        match self {
            Metric::ErrorRate => "ErrorRate",
            Metric::LatencyP95Ms => "LatencyP95",
            Metric::CostPerCall => "CostPerCall",
            Metric::QualityMean => "QualityMean",
            Metric::TtftP95Ms => "TtftP95",
        }
    }

    /// The direction in which a change hurts users or budgets: up for errors, latency and cost,
    /// down for quality. Anomaly-driven alerts fire only on adverse changes by default.
    pub fn adverse_direction(self) -> Direction {
        match self {
            Metric::QualityMean => Direction::Down,
            _ => Direction::Up,
        }
    }

    /// The metric's value in `window`, or `None` when the window holds no data for it (no calls,
    /// no scored calls, no TTFT measurements) or the value is not finite.
    pub fn extract(self, window: &WindowAggregate) -> Option<f64> {
        let per_call = |numerator: f64| {
            if window.count > 0 {
                Some(numerator / window.count as f64)
            } else {
                None
            }
        };
        let value = match self {
            Metric::ErrorRate => per_call(window.error_count as f64),
            Metric::CostPerCall => per_call(window.cost_usd),
            Metric::LatencyP95Ms => (window.count > 0).then_some(window.latency_p95_ms),
            Metric::TtftP95Ms => window.ttft_p95_ms.filter(|_| window.count > 0),
            Metric::QualityMean => {
                if window.quality_count > 0 {
                    Some(window.quality_sum / window.quality_count as f64)
                } else {
                    None
                }
            }
        }?;
        value.is_finite().then_some(value)
    }

    /// How many calls the metric's value in `window` stands on: scored calls for quality, all
    /// calls otherwise. The change detector judges a window's noise by it.
    pub fn calls(self, window: &WindowAggregate) -> i64 {
        match self {
            Metric::QualityMean => window.quality_count,
            _ => window.count,
        }
    }

    /// Formats a value of this metric for people: `12.0%`, `1200 ms`, `$0.001200`, `0.820`.
    pub fn format_value(self, value: f64) -> String {
        match self {
            Metric::ErrorRate => format!("{:.1}%", value * 100.0),
            Metric::LatencyP95Ms | Metric::TtftP95Ms => format!("{value:.0} ms"),
            Metric::CostPerCall => format!("${value:.6}"),
            Metric::QualityMean => format!("{value:.3}"),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The identity of a window series, (app, route, provider, model): baselines, rule state and
/// alerts are all kept per series so one model's incident does not hide behind another's traffic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    /// Application name.
    pub app: String,
    /// Route within the application.
    pub route: String,
    /// Provider serving the calls.
    pub provider: String,
    /// Model serving the calls.
    pub model: String,
}

impl SeriesKey {
    /// The series a window belongs to.
    pub fn of(window: &WindowAggregate) -> Self {
        Self {
            app: window.app.clone(),
            route: window.route.clone(),
            provider: window.provider.clone(),
            model: window.model.clone(),
        }
    }

    /// `{app}/{route}`: the Kafka key of anomalies, so that they share a partition with the
    /// route's windows and decisions.
    pub fn route_key(&self) -> String {
        format!("{}/{}", self.app, self.route)
    }
}

impl fmt::Display for SeriesKey {
    /// `{app}/{route}/{provider}/{model}`, the form used inside ids and dedup keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.app, self.route, self.provider, self.model
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmopt_events::samples;

    #[test]
    fn extracts_rates_and_means() {
        let w = samples::window_aggregate();
        assert_eq!(Metric::ErrorRate.extract(&w), Some(12.0 / 1200.0));
        assert_eq!(Metric::CostPerCall.extract(&w), Some(1.234 / 1200.0));
        assert_eq!(Metric::QualityMean.extract(&w), Some(0.84));
        assert_eq!(Metric::LatencyP95Ms.extract(&w), Some(1200.25));
        assert_eq!(Metric::TtftP95Ms.extract(&w), Some(180.0));
    }

    #[test]
    fn missing_data_gives_none() {
        let mut w = samples::window_aggregate();
        w.quality_count = 0;
        w.ttft_p95_ms = None;
        assert_eq!(Metric::QualityMean.extract(&w), None);
        assert_eq!(Metric::TtftP95Ms.extract(&w), None);
        w.count = 0;
        assert_eq!(Metric::ErrorRate.extract(&w), None);
        assert_eq!(Metric::CostPerCall.extract(&w), None);
        assert_eq!(Metric::LatencyP95Ms.extract(&w), None);
        let mut w = samples::window_aggregate();
        w.latency_p95_ms = f64::NAN;
        assert_eq!(Metric::LatencyP95Ms.extract(&w), None);
    }

    #[test]
    fn names_round_trip_through_serde() {
        for metric in Metric::ALL {
            let json = serde_json::to_string(&metric).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", metric.name()));
        }
        assert_eq!(Metric::ErrorRate.format_value(0.12), "12.0%");
        assert_eq!(Metric::LatencyP95Ms.format_value(1200.4), "1200 ms");
    }
}
