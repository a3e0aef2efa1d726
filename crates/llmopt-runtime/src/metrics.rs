//! Prometheus metrics of a service, named and labelled the way Kafka consumer dashboards expect.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The metrics every runner exports.
pub struct ServiceMetrics {
    registry: Registry,
    /// Records read, by topic.
    pub events_in: IntCounterVec,
    /// Records published, by topic.
    pub events_out: IntCounterVec,
    /// Inputs dead-lettered, by reason.
    pub dead_letters: IntCounterVec,
    /// Inputs dropped as duplicates.
    pub duplicates: IntCounterVec,
    /// Time from poll to ack of one input, outputs included.
    pub processing_seconds: HistogramVec,
    /// Records behind the end of each assigned partition.
    pub consumer_lag: IntGaugeVec,
    /// 1 while `/ready` answers 200 (alerting on a replica that never becomes ready).
    pub ready: IntGauge,
    /// 1 while the last poll found nothing: with `events_in_total`, tells a driver (or an
    /// operator) that the service has caught up with its input.
    pub idle: IntGauge,
    /// Times the consumer left its group and joined again because it owned partitions with
    /// records waiting and fetched nothing (see `RunnerConfig::stall_after`).
    pub rejoins: IntCounter,
    /// Partitions a rebalance gave back behind what was processed (see the runner).
    pub rewinds: IntCounter,
    /// Partitions let go of on a revocation after everything read from them was processed,
    /// acknowledged, checkpointed and committed (see the runner's hand-over).
    pub handovers: IntCounter,
    /// 1 while this instance leads its single-instance service; 0 while it waits as a standby
    /// (and always 0 for services that scale out, which need no leader).
    pub leading: IntGauge,
}

impl ServiceMetrics {
    /// Registers the metrics, with a constant `service` label.
    pub fn new(service: &str) -> Self {
        let registry = Registry::new_custom(Some("llmopt".into()), None).unwrap_or_default();
        let labels = |name: &str, help: &str| Opts::new(name, help).const_label("service", service);
        let counter = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(labels(name, help), &[label])
                .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let events_in = counter("events_in_total", "Records consumed.", "topic");
        let events_out = counter("events_out_total", "Records published.", "topic");
        let dead_letters = counter(
            "dead_letters_total",
            "Records sent to the dead-letter topic.",
            "reason",
        );
        let duplicates = counter(
            "duplicates_total",
            "Records dropped as duplicates.",
            "topic",
        );
        let processing_seconds = HistogramVec::new(
            HistogramOpts::new("processing_seconds", "Time from poll to ack of one record.")
                .const_label("service", service)
                .buckets(prometheus::exponential_buckets(0.000_05, 2.0, 16).unwrap_or_default()),
            &["topic"],
        )
        .unwrap_or_else(|e| panic!("metric processing_seconds is malformed: {e}"));
        let _ = registry.register(Box::new(processing_seconds.clone()));
        let consumer_lag = IntGaugeVec::new(
            labels(
                "consumer_lag",
                "Records between the committed position and the partition end.",
            ),
            &["topic", "partition"],
        )
        .unwrap_or_else(|e| panic!("metric consumer_lag is malformed: {e}"));
        let _ = registry.register(Box::new(consumer_lag.clone()));
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::with_opts(labels(name, help))
                .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let ready = gauge(
            "ready",
            "1 while the service is ready (caught up with its input).",
        );
        let idle = gauge(
            "consumer_idle",
            "1 while the last poll of the service's input found nothing.",
        );
        let rejoins = IntCounter::with_opts(labels(
            "consumer_rejoins_total",
            "Consumer group rejoins after owning partitions with records waiting and fetching nothing.",
        ))
        .unwrap_or_else(|e| panic!("metric consumer_rejoins_total is malformed: {e}"));
        let _ = registry.register(Box::new(rejoins.clone()));
        let rewinds = IntCounter::with_opts(labels(
            "consumer_rewinds_total",
            "Partitions handed back by a rebalance at their committed offset, behind what the service had processed (the records in between are acked, not processed again).",
        ))
        .unwrap_or_else(|e| panic!("metric consumer_rewinds_total is malformed: {e}"));
        let _ = registry.register(Box::new(rewinds.clone()));
        let handovers = IntCounter::with_opts(labels(
            "partitions_handed_over_total",
            "Partitions let go of on a revocation after everything read from them was acknowledged, checkpointed and committed.",
        ))
        .unwrap_or_else(|e| panic!("metric partitions_handed_over_total is malformed: {e}"));
        let _ = registry.register(Box::new(handovers.clone()));
        let leading = gauge(
            "leader",
            "1 while this instance leads its single-instance service (0: standby, or a service that scales out).",
        );
        Self {
            registry,
            events_in,
            events_out,
            dead_letters,
            duplicates,
            processing_seconds,
            consumer_lag,
            ready,
            idle,
            rejoins,
            rewinds,
            handovers,
            leading,
        }
    }

    /// The registry, so a service can register metrics of its own (the aggregator's fleet
    /// metrics) and have them served on the same `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
