use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use llmopt_runtime::{Effects, Input, Output, RuntimeError};
use llmopt_state::{StateStore, SET_BATCH};
use llmopt_transport::InboundMessage;

/// The state-store set of seen events (under the installation's key prefix).
pub const DEDUP_SET: &str = "ingest-dedup";

/// Drops redeliveries: a CloudEvent `source`+`id` seen within the horizon is a duplicate. The set
/// lives in the state store so every ingest replica shares it.
///
/// An event is recorded as seen only once its outputs are acknowledged by the broker, and
/// before its offset is committed, so a record redelivered after a crash is processed again
/// rather than mistaken for a duplicate: at-least-once with the same output ids, never
/// at-most-once. Until it is recorded it is held in `in_flight`, so a copy arriving meanwhile in
/// the same instance is dropped.
///
/// Round trips are per batch, not per event: the runtime's read-ahead hands over the batch
/// about to be handled, whose members are looked up in one call ([`Effects::prefetch`]), and
/// acknowledged events are recorded together when the runtime commits ([`Effects::flush`]) or
/// every [`SET_BATCH`] events.
pub struct DedupEffects {
    store: Arc<dyn StateStore>,
    horizon: Duration,
    /// Admitted, not recorded in the store yet.
    in_flight: HashSet<String>,
    /// What the store said about the members of the last prefetched batch, taken by `admit`.
    known: HashMap<String, bool>,
    /// Acknowledged, to record at the next flush.
    unrecorded: Vec<String>,
}

impl DedupEffects {
    /// Deduplication against `store` over `horizon`.
    pub fn new(store: Arc<dyn StateStore>, horizon: Duration) -> Self {
        Self {
            store,
            horizon,
            in_flight: HashSet::new(),
            known: HashMap::new(),
            unrecorded: Vec::new(),
        }
    }
}

fn member(input: &Input) -> String {
    member_of(&input.source, &input.id)
}

fn member_of(source: &str, id: &str) -> String {
    format!("{source}\u{1f}{id}")
}

#[async_trait]
impl Effects for DedupEffects {
    async fn prefetch(&mut self, batch: &[InboundMessage]) -> Result<(), RuntimeError> {
        self.known.clear();
        let members: Vec<String> = batch
            .iter()
            .filter_map(|m| llmopt_cloudevents::binary_identity(&m.headers))
            .map(|(source, id)| member_of(source, id))
            .filter(|m| !self.in_flight.contains(m))
            .collect();
        if members.is_empty() {
            return Ok(());
        }
        let found = self.store.set_contains_many(DEDUP_SET, &members).await?;
        self.known = members.into_iter().zip(found).collect();
        Ok(())
    }

    async fn admit(&mut self, input: &Input) -> Result<bool, RuntimeError> {
        let member = member(input);
        if self.in_flight.contains(&member) {
            tracing::debug!(id = %input.id, partition = input.partition, offset = input.offset,
                "duplicate of an event in flight in this instance");
            return Ok(false);
        }
        let seen = match self.known.remove(&member) {
            Some(seen) => seen,
            None => self.store.set_contains(DEDUP_SET, &member).await?,
        };
        if seen {
            tracing::debug!(id = %input.id, partition = input.partition, offset = input.offset,
                "duplicate of an event already published");
            return Ok(false);
        }
        self.in_flight.insert(member);
        Ok(true)
    }

    async fn after_publish(
        &mut self,
        input: Option<&Input>,
        _outputs: &[Output],
    ) -> Result<(), RuntimeError> {
        if let Some(input) = input {
            self.unrecorded.push(member(input));
        }
        if self.unrecorded.len() >= SET_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), RuntimeError> {
        if self.unrecorded.is_empty() {
            return Ok(());
        }
        self.store
            .set_add_many(DEDUP_SET, &self.unrecorded, self.horizon)
            .await?;
        for member in self.unrecorded.drain(..) {
            self.in_flight.remove(&member);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use llmopt_events::{samples, AnyEvent};
    use llmopt_state::memory::MemoryStore;
    use llmopt_transport::LogicalTopic;

    use super::*;

    fn input(id: &str) -> Input {
        Input {
            topic: LogicalTopic::TelemetryRaw,
            partition: 0,
            offset: 0,
            id: id.to_string(),
            source: "gateway".to_string(),
            time_ms: None,
            event: AnyEvent::LlmCall(samples::llm_call(1)),
        }
    }

    #[tokio::test]
    async fn an_event_is_seen_only_after_its_outputs_are_acknowledged() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let mut dedup = DedupEffects::new(store.clone(), Duration::from_secs(60));
        let a = input("a");
        assert!(dedup.admit(&a).await.expect("admit"));
        // A copy while the first is in flight: dropped.
        assert!(!dedup.admit(&a).await.expect("admit"));
        // The process dies before the outputs are acknowledged: nothing was recorded, so the
        // redelivered record is processed by the next instance.
        assert!(!store
            .set_contains(DEDUP_SET, &member(&a))
            .await
            .expect("read"));
        let mut restarted = DedupEffects::new(store.clone(), Duration::from_secs(60));
        assert!(restarted.admit(&a).await.expect("admit"));
        restarted
            .after_publish(Some(&a), &[])
            .await
            .expect("record");
        // Acknowledged but only buffered: a copy in this instance is still dropped, the store
        // learns of it at the flush that comes before the offset commit.
        assert!(!restarted.admit(&a).await.expect("admit"));
        assert!(!store
            .set_contains(DEDUP_SET, &member(&a))
            .await
            .expect("read"));
        restarted.flush().await.expect("flush");
        // Now it is a duplicate, for every replica.
        assert!(!restarted.admit(&a).await.expect("admit"));
        let mut other = DedupEffects::new(store, Duration::from_secs(60));
        assert!(!other.admit(&a).await.expect("admit"));
        assert!(other.admit(&input("b")).await.expect("admit"));
    }

    /// Counts the store's round trips, to show that a batch costs one lookup.
    struct Counting {
        inner: MemoryStore,
        lookups: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl StateStore for Counting {
        async fn get(
            &self,
            key: &str,
        ) -> Result<Option<llmopt_state::Versioned>, llmopt_state::StateError> {
            self.inner.get(key).await
        }
        async fn compare_and_set(
            &self,
            key: &str,
            expected: u64,
            value: &[u8],
        ) -> Result<llmopt_state::CasOutcome, llmopt_state::StateError> {
            self.inner.compare_and_set(key, expected, value).await
        }
        async fn put(&self, key: &str, value: &[u8]) -> Result<u64, llmopt_state::StateError> {
            self.inner.put(key, value).await
        }
        async fn delete(&self, key: &str) -> Result<bool, llmopt_state::StateError> {
            self.inner.delete(key).await
        }
        async fn set_add(
            &self,
            set: &str,
            member: &str,
            ttl: Duration,
        ) -> Result<bool, llmopt_state::StateError> {
            self.inner.set_add(set, member, ttl).await
        }
        async fn set_contains(
            &self,
            set: &str,
            member: &str,
        ) -> Result<bool, llmopt_state::StateError> {
            self.lookups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.set_contains(set, member).await
        }
        async fn set_contains_many(
            &self,
            set: &str,
            members: &[String],
        ) -> Result<Vec<bool>, llmopt_state::StateError> {
            self.lookups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut found = Vec::new();
            for m in members {
                found.push(self.inner.set_contains(set, m).await?);
            }
            Ok(found)
        }
        async fn set_len(&self, set: &str) -> Result<u64, llmopt_state::StateError> {
            self.inner.set_len(set).await
        }
        async fn save_checkpoint(
            &self,
            name: &str,
            checkpoint: &llmopt_state::Checkpoint,
        ) -> Result<(), llmopt_state::StateError> {
            self.inner.save_checkpoint(name, checkpoint).await
        }
        async fn load_checkpoint(
            &self,
            name: &str,
        ) -> Result<Option<llmopt_state::Checkpoint>, llmopt_state::StateError> {
            self.inner.load_checkpoint(name).await
        }
    }

    fn record(id: &str) -> InboundMessage {
        let meta = llmopt_events::wire::EventMeta {
            id: id.to_string(),
            source: "gateway".to_string(),
            time_ms: Some(0),
            partition_key: Some("app/route".to_string()),
            traceparent: None,
            subject: None,
        };
        let kafka = llmopt_events::wire::to_kafka(
            &samples::llm_call(1),
            &meta,
            llmopt_events::wire::DataFormat::Avro,
        )
        .expect("encode");
        InboundMessage {
            topic: "raw".into(),
            partition: 0,
            offset: 0,
            key: kafka.key,
            value: kafka.value,
            headers: kafka.headers,
            timestamp_ms: None,
        }
    }

    #[tokio::test]
    async fn a_read_ahead_batch_costs_one_lookup_and_answers_like_single_lookups() {
        let store = Arc::new(Counting {
            inner: MemoryStore::new(),
            lookups: 0.into(),
        });
        let lookups = || store.lookups.load(std::sync::atomic::Ordering::Relaxed);
        let mut dedup = DedupEffects::new(store.clone(), Duration::from_secs(60));
        // "e3" was published before (by another replica, say).
        store
            .set_add(DEDUP_SET, &member(&input("e3")), Duration::from_secs(60))
            .await
            .expect("seed");
        let ids: Vec<String> = (0..100).map(|i| format!("e{i}")).collect();
        let batch: Vec<InboundMessage> = ids.iter().map(|id| record(id)).collect();
        dedup.prefetch(&batch).await.expect("prefetch");
        assert_eq!(lookups(), 1);
        let mut admitted = Vec::new();
        for id in &ids {
            if dedup.admit(&input(id)).await.expect("admit") {
                admitted.push(id.clone());
            }
        }
        assert_eq!(lookups(), 1, "every admission answered by the prefetch");
        assert_eq!(admitted.len(), 99);
        assert!(!admitted.contains(&"e3".to_string()));
        // An input the batch did not cover is looked up alone.
        assert!(dedup.admit(&input("other")).await.expect("admit"));
        assert_eq!(lookups(), 2);
        for id in &admitted {
            dedup
                .after_publish(Some(&input(id)), &[])
                .await
                .expect("record");
        }
        dedup.flush().await.expect("flush");
        assert_eq!(store.set_len(DEDUP_SET).await.expect("len"), 100);
        // The same batch redelivered: all duplicates now, still one lookup.
        dedup.prefetch(&batch).await.expect("prefetch");
        for id in &ids {
            assert!(!dedup.admit(&input(id)).await.expect("admit"));
        }
        assert_eq!(lookups(), 3);
    }
}
