//! GenAI spans from the topics an OpenTelemetry collector's Kafka exporter writes: each record an
//! OTLP `ExportTraceServiceRequest` (protobuf) or its JSON form (the envelope or the bare array
//! of resource spans), as configured per topic in `[[ingest.otlp.kafka_topics]]`.
//!
//! A record's calls go to `telemetry.raw` exactly as the HTTP receiver writes them (same event
//! ids, so the two ways in deduplicate against each other), its unmappable GenAI spans and any
//! record that is not OTLP (or whose calls cannot be encoded) to the dead-letter topic; the record is acked once the broker acknowledged
//! all of that, and only acked records are committed: at least once, duplicates dropped by
//! ingest's deduplication.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmopt_runtime::shutdown::Shutdown;
use llmopt_transport::{InboundMessage, Transport, TransportError};
use prometheus::IntCounterVec;
use serde::{Deserialize, Serialize};

use crate::otlp::{decode_export, map_export, OtlpEncoding, OtlpMapping};
use crate::otlp_receiver::{
    count_spans, dead_letter, encode_dead_letter, write_export, WriteError,
};

/// How often acked records are committed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Wait before retrying a record the broker did not take.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// The encoding of a collector topic's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectorFormat {
    /// OTLP protobuf (`otlp_proto` in the OpenTelemetry collector's Kafka exporter).
    #[default]
    Protobuf,
    /// OTLP JSON (`otlp_json`).
    Json,
}

/// A topic a collector's Kafka exporter writes traces to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorTopic {
    /// The topic, as the exporter names it (no llmopt prefix is added).
    pub topic: String,
    /// Its records' encoding.
    #[serde(default)]
    pub format: CollectorFormat,
}

/// Where the bridge reads and writes.
pub struct CollectorBridge {
    /// The transport.
    pub transport: Arc<dyn Transport>,
    /// Consumer group of the bridge.
    pub group: String,
    /// The collector topics.
    pub topics: Vec<CollectorTopic>,
    /// Span mapping.
    pub mapping: OtlpMapping,
    /// `telemetry.raw`.
    pub raw_topic: String,
    /// The dead-letter topic.
    pub dead_letter_topic: String,
    /// `llmopt_otlp_spans_total{outcome}`.
    pub spans: IntCounterVec,
}

impl CollectorBridge {
    /// Consumes the collector topics until `shutdown`, then commits and leaves the group.
    pub async fn run(self, mut shutdown: Shutdown) -> Result<(), TransportError> {
        let formats: BTreeMap<&str, OtlpEncoding> = self
            .topics
            .iter()
            .map(|t| {
                let encoding = match t.format {
                    CollectorFormat::Protobuf => OtlpEncoding::Protobuf,
                    CollectorFormat::Json => OtlpEncoding::Json,
                };
                (t.topic.as_str(), encoding)
            })
            .collect();
        let names: Vec<String> = self.topics.iter().map(|t| t.topic.clone()).collect();
        let mut consumer = self.transport.subscribe(&self.group, &names).await?;
        tracing::info!(topics = ?names, group = %self.group, "reading OTLP traces from collector topics");
        let mut committed = Instant::now();
        let mut dirty = false;
        while !shutdown.is_triggered() {
            let message = tokio::select! {
                polled = consumer.poll(Duration::from_millis(500)) => polled?,
                () = shutdown.wait() => break,
            };
            if let Some(message) = message {
                let encoding = formats
                    .get(message.topic.as_str())
                    .copied()
                    .unwrap_or(OtlpEncoding::Protobuf);
                // Retried until the broker takes it: acking first would lose the record.
                loop {
                    match self.forward(&message, encoding).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = ?e, topic = %message.topic,
                                offset = message.offset, "OTLP record not forwarded; retrying");
                            if shutdown.is_triggered() {
                                break;
                            }
                            tokio::time::sleep(RETRY_AFTER).await;
                        }
                    }
                }
                if shutdown.is_triggered() {
                    break;
                }
                consumer.ack(&message)?;
                dirty = true;
            }
            if dirty && committed.elapsed() >= COMMIT_INTERVAL {
                consumer.commit().await?;
                committed = Instant::now();
                dirty = false;
            }
        }
        if dirty {
            consumer.commit().await?;
        }
        consumer.close().await
    }

    /// Writes one collector record's calls and dead letters; a record that is not OTLP, or
    /// whose calls cannot be encoded, is dead-lettered whole. Only the broker's refusal is an
    /// error (the record is retried).
    async fn forward(
        &self,
        message: &InboundMessage,
        encoding: OtlpEncoding,
    ) -> Result<(), TransportError> {
        let body = message.value.as_deref().unwrap_or_default();
        let (kind, reason) = match decode_export(body, encoding) {
            Ok(request) => {
                let mapped = map_export(&request, &self.mapping);
                match write_export(
                    self.transport.as_ref(),
                    &self.raw_topic,
                    &self.dead_letter_topic,
                    &mapped,
                )
                .await
                {
                    Ok(()) => {
                        count_spans(&self.spans, &mapped);
                        return Ok(());
                    }
                    Err(WriteError::Transport(e)) => return Err(e),
                    Err(WriteError::Encode(e)) => ("otlp_unencodable", e),
                }
            }
            Err(e) => ("otlp_undecodable", e.to_string()),
        };
        tracing::warn!(topic = %message.topic, offset = message.offset, kind, %reason,
            "OTLP record dead-lettered");
        let mut record = dead_letter(
            format!(
                "dlq/{}/{}/{}",
                message.topic, message.partition, message.offset
            ),
            kind,
            reason,
            &message.topic,
            body.to_vec(),
        );
        record.source_partition = message.partition;
        record.source_offset = message.offset;
        record.source_timestamp = message.timestamp_ms;
        record.original_key = message.key.clone();
        match encode_dead_letter(&record) {
            Ok(out) => {
                self.transport.publish(&self.dead_letter_topic, out).await?;
            }
            Err(e) => tracing::error!(error = %e, "dead letter not encodable; record dropped"),
        }
        self.spans.with_label_values(&["undecodable"]).inc();
        Ok(())
    }
}
