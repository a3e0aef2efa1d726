/// A record to publish. Headers keep their order and may repeat, as in Kafka.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundMessage {
    /// Partitioning key; records with one key land on one partition, in order.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub value: Option<Vec<u8>>,
    /// Record headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Record timestamp (ms since epoch); the broker's clock when `None`.
    pub timestamp_ms: Option<i64>,
}

/// A consumed record with its position, which is what gets acked and committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp_ms: Option<i64>,
}

/// Where a published record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// How far a consumer has read an owned partition, and where that partition ends, as last
/// known to the consumer. Either may be unknown just after assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProgress {
    pub partition: TopicPartition,
    /// Offset of the next record the application will get.
    pub position: Option<i64>,
    /// The partition's end (high watermark): one past its last record.
    pub end: Option<i64>,
    /// Whether the consumer found nothing more to fetch after the last record it delivered
    /// (`None`: the transport does not say; its `end` is exact). Brokers may report an end
    /// that lags their log (tansu: the last batch's base offset + 1), so on Kafka a partition
    /// counts as read to its end only once a fetch came back empty.
    pub at_end: Option<bool>,
}

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// Every record llmopt publishes is a CloudEvent in Kafka binary mode; this turns the binding's
/// record into one to publish (broker timestamp).
impl From<llmopt_cloudevents::KafkaMessage> for OutboundMessage {
    fn from(m: llmopt_cloudevents::KafkaMessage) -> Self {
        Self {
            key: m.key,
            value: m.value,
            headers: m.headers,
            timestamp_ms: None,
        }
    }
}
