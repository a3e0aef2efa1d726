//! Logging and OpenTelemetry for every llmopt process.
//!
//! `tracing` is the one instrumentation API: log lines go to stderr through the fmt layer, and
//! when an OTLP endpoint is configured (`[telemetry] otlp_endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) the runtime's per-record spans (target `llmopt::trace`) are
//! exported through `tracing-opentelemetry` and `opentelemetry-otlp` (gRPC), and the service's
//! Prometheus metrics are mirrored as OTLP metrics. Without an endpoint nothing OpenTelemetry is
//! installed and the per-record spans are disabled.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use opentelemetry::metrics::Meter;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use prometheus::proto::MetricType;
use prometheus::Registry;
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// `[telemetry]`: where traces and metrics are exported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint (`http://otel-collector:4317`). Unset: `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// if that is set, otherwise no export.
    pub otlp_endpoint: Option<String>,
    /// How often metrics are exported (seconds); default 30.
    pub metrics_interval_s: Option<u64>,
}

impl TelemetryConfig {
    fn endpoint(&self) -> Option<String> {
        self.otlp_endpoint.clone().or_else(|| {
            std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|e| !e.is_empty())
        })
    }
}

/// Flushes and stops the exporters when dropped (at the end of `main`).
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// The meter to mirror metrics into, when metrics are exported.
    pub fn meter(&self) -> Option<Meter> {
        use opentelemetry::metrics::MeterProvider as _;
        self.meter.as_ref().map(|m| m.meter("llmopt"))
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(tracer) = self.tracer.take() {
            if let Err(e) = tracer.shutdown() {
                eprintln!("llmopt: flushing traces failed: {e}");
            }
        }
        if let Some(meter) = self.meter.take() {
            if let Err(e) = meter.shutdown() {
                eprintln!("llmopt: flushing metrics failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber: fmt to stderr at `default_level` (or `LLMOPT_LOG`), plus
/// OpenTelemetry export when configured. Must run inside the tokio runtime (the gRPC channel
/// needs its reactor). `service` is the OpenTelemetry `service.name` unless
/// `OTEL_SERVICE_NAME` says otherwise.
pub fn init(
    config: &TelemetryConfig,
    service: &str,
    default_level: &str,
) -> anyhow::Result<TelemetryGuard> {
    let filter =
        || EnvFilter::try_from_env("LLMOPT_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    // Per-record spans are for trace export only: never formatted into log lines.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter().add_directive("llmopt::trace=off".parse()?));
    let Some(endpoint) = config.endpoint() else {
        tracing_subscriber::registry().with(fmt).try_init()?;
        return Ok(TelemetryGuard {
            tracer: None,
            meter: None,
        });
    };
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_string());
    let resource = Resource::builder()
        .with_service_name(name)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .with_context(|| format!("OTLP span exporter for {endpoint}"))?;
    let tracer = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_batch_exporter(spans)
        .build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .with_context(|| format!("OTLP metric exporter for {endpoint}"))?;
    let reader = PeriodicReader::builder(metrics)
        .with_interval(Duration::from_secs(
            config.metrics_interval_s.unwrap_or(30).max(1),
        ))
        .build();
    let meter = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(reader)
        .build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer.tracer("llmopt"))
        .with_filter(filter().add_directive("llmopt::trace=info".parse()?));
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()?;
    tracing::info!(%endpoint, "exporting traces and metrics over OTLP");
    Ok(TelemetryGuard {
        tracer: Some(tracer),
        meter: Some(meter),
    })
}

/// Mirrors every metric of `registry` into `meter` as observable instruments (counters as
/// counters, gauges as gauges, histograms as their `_count` and `_sum`: the OpenTelemetry API
/// has no observable histogram). Metric families appear in a Prometheus registry only once they
/// have a series, so new families are picked up every few seconds by a background task.
pub fn mirror_prometheus(registry: Registry, meter: Meter) {
    let registry = Arc::new(registry);
    let known = Arc::new(Mutex::new(HashSet::<String>::new()));
    tokio::spawn(async move {
        loop {
            for family in registry.gather() {
                let name = family.name().to_string();
                let new = known
                    .lock()
                    .map(|mut k| k.insert(name.clone()))
                    .unwrap_or(false);
                if new {
                    register_family(&meter, registry.clone(), &name, family.get_field_type());
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
}

/// `(value, attributes)` of every series of the family `name`, with `pick` choosing the value.
fn observe(
    registry: &Registry,
    name: &str,
    pick: impl Fn(&prometheus::proto::Metric) -> f64,
) -> Vec<(f64, Vec<KeyValue>)> {
    registry
        .gather()
        .into_iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().to_vec())
        .map(|m| {
            let attributes = m
                .get_label()
                .iter()
                .map(|l| KeyValue::new(l.name().to_string(), l.value().to_string()))
                .collect();
            (pick(&m), attributes)
        })
        .collect()
}

fn register_family(meter: &Meter, registry: Arc<Registry>, name: &str, kind: MetricType) {
    let family = name.to_string();
    match kind {
        MetricType::COUNTER => {
            let otel_name = name.strip_suffix("_total").unwrap_or(name).to_string();
            meter
                .f64_observable_counter(otel_name)
                .with_callback(move |o| {
                    for (v, a) in observe(&registry, &family, |m| m.get_counter().get_value()) {
                        o.observe(v, &a);
                    }
                })
                .build();
        }
        MetricType::GAUGE => {
            meter
                .f64_observable_gauge(name.to_string())
                .with_callback(move |o| {
                    for (v, a) in observe(&registry, &family, |m| m.get_gauge().get_value()) {
                        o.observe(v, &a);
                    }
                })
                .build();
        }
        MetricType::HISTOGRAM => {
            let (count_registry, count_family) = (registry.clone(), family.clone());
            meter
                .f64_observable_counter(format!("{name}_count"))
                .with_callback(move |o| {
                    for (v, a) in observe(&count_registry, &count_family, |m| {
                        m.get_histogram().get_sample_count() as f64
                    }) {
                        o.observe(v, &a);
                    }
                })
                .build();
            meter
                .f64_observable_counter(format!("{name}_sum"))
                .with_callback(move |o| {
                    for (v, a) in
                        observe(&registry, &family, |m| m.get_histogram().get_sample_sum())
                    {
                        o.observe(v, &a);
                    }
                })
                .build();
        }
        _ => {}
    }
}
