//! Helpers shared by the runner's integration tests.

use std::ops::Range;

use llmopt_events::samples;
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_transport::{LogicalTopic, OutboundMessage, TopicNames, Transport};

/// Publishes the sample window aggregate as windows `w{i}` for every `i` in `ids`, each keyed
/// by its own route so that they spread over the partitions.
pub async fn publish_windows(transport: &dyn Transport, names: &TopicNames, ids: Range<usize>) {
    let window = samples::window_aggregate();
    for i in ids {
        let meta = EventMeta {
            id: format!("w{i}"),
            source: "llmopt/aggregator".into(),
            time_ms: Some(window.window_end),
            partition_key: Some(format!("app/route-{i}")),
            traceparent: None,
            subject: None,
        };
        let m = wire::to_kafka(&window, &meta, DataFormat::Avro).expect("encode");
        transport
            .publish(&names.name(LogicalTopic::Windows), OutboundMessage::from(m))
            .await
            .expect("publish");
    }
}
