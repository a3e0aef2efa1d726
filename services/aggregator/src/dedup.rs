//! The telemetry ids each input partition has delivered, kept while a copy could still be
//! counted: what makes an at-least-once `telemetry` topic count every call once.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// Ids seen per input partition, bucketed by event time.
///
/// Ingest publishes a call again, with the same id and bytes, when it crashes after publishing
/// and before committing; without this set the aggregator would count the call twice. A copy
/// carries the original's event time, so it lands in the same bucket, and the buckets go once
/// the watermark has left every window they could be counted in behind (a copy arriving later
/// than that is late anyway: it goes to `telemetry.late`, changing no window).
///
/// Ids are kept as 64-bit xxh3 hashes (stable across builds and platforms, as checkpoints must
/// be): with 10⁶ ids in one bucket the chance that two distinct ids collide is about 3·10⁻⁸.
#[derive(Debug, Default)]
pub(crate) struct SeenIds {
    bucket_ms: i64,
    /// Partition → bucket start → id hashes. A copy is keyed like the original, so it comes
    /// from the same partition; a whole-core restore does not know the partitions and files
    /// every id under `-1`, which every lookup consults too.
    partitions: BTreeMap<i32, BTreeMap<i64, IdSet>>,
}

/// A set of id hashes, hashed by themselves: they are xxh3 hashes already, and a second hash
/// (std's SipHash) would be most of the cost of a lookup.
type IdSet = HashSet<u64, BuildHasherDefault<PreHashed>>;

/// The [`Hasher`] of [`IdSet`]: a `u64` key is its own hash.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// One bucket of a partition's seen ids in a checkpoint: its start and the ids' hashes,
/// little-endian, base64 (11 characters an id where JSON numbers would take up to 20).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SeenBucket {
    start_ms: i64,
    ids: String,
}

impl SeenIds {
    /// A set whose buckets span `bucket_ms` of event time (the tumbling window size: small
    /// enough to free memory steadily, large enough to keep the bucket count low).
    pub(crate) fn new(bucket_ms: i64) -> Self {
        Self {
            bucket_ms: bucket_ms.max(1),
            partitions: BTreeMap::new(),
        }
    }

    /// Records `id` (a call at `event_time_ms` read from `partition`); `false` if it was
    /// already recorded.
    pub(crate) fn insert(&mut self, partition: i32, id: &str, event_time_ms: i64) -> bool {
        let start = self.bucket_of(event_time_ms);
        let hash = xxh3_64(id.as_bytes());
        let unplaced = self
            .partitions
            .get(&-1)
            .and_then(|buckets| buckets.get(&start))
            .is_some_and(|ids| ids.contains(&hash));
        !unplaced
            && self
                .partitions
                .entry(partition)
                .or_default()
                .entry(start)
                .or_default()
                .insert(hash)
    }

    /// The partitions with ids recorded.
    pub(crate) fn partitions(&self) -> Vec<i32> {
        self.partitions.keys().copied().collect()
    }

    fn bucket_of(&self, event_time_ms: i64) -> i64 {
        event_time_ms
            .div_euclid(self.bucket_ms)
            .saturating_mul(self.bucket_ms)
    }

    /// Forgets the ids of `partition`'s calls before `horizon_ms`, a bucket at a time: a
    /// bucket goes once all of it is before the horizon.
    pub(crate) fn forget_before(&mut self, partition: i32, horizon_ms: i64) {
        let Some(buckets) = self.partitions.get_mut(&partition) else {
            return;
        };
        while buckets
            .first_key_value()
            .is_some_and(|(start, _)| start.saturating_add(self.bucket_ms) <= horizon_ms)
        {
            buckets.pop_first();
        }
        if buckets.is_empty() {
            self.partitions.remove(&partition);
        }
    }

    /// Forgets everything `partition` delivered (it moved to another instance).
    pub(crate) fn drop_partition(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Ids recorded, over every partition: for state-size figures.
    pub(crate) fn len(&self) -> usize {
        self.partitions
            .values()
            .flat_map(BTreeMap::values)
            .map(IdSet::len)
            .sum()
    }

    /// `partition`'s ids for a checkpoint (`None`: every partition's), in a fixed order so
    /// equal sets give equal bytes.
    pub(crate) fn snapshot(&self, partition: Option<i32>) -> Vec<SeenBucket> {
        let mut merged: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
        for (_, buckets) in self
            .partitions
            .iter()
            .filter(|(p, _)| partition.is_none_or(|want| **p == want))
        {
            for (start, ids) in buckets {
                merged.entry(*start).or_default().extend(ids);
            }
        }
        merged
            .into_iter()
            .filter_map(|(start_ms, mut ids)| {
                if ids.is_empty() {
                    return None;
                }
                ids.sort_unstable();
                ids.dedup();
                let bytes: Vec<u8> = ids.iter().flat_map(|h| h.to_le_bytes()).collect();
                Some(SeenBucket {
                    start_ms,
                    ids: STANDARD_NO_PAD.encode(bytes),
                })
            })
            .collect()
    }

    /// Adds checkpointed buckets to `partition`'s ids; an error names what does not decode.
    pub(crate) fn restore(&mut self, partition: i32, buckets: &[SeenBucket]) -> Result<(), String> {
        for bucket in buckets {
            let bytes = STANDARD_NO_PAD
                .decode(&bucket.ids)
                .map_err(|e| format!("seen ids of bucket {}: {e}", bucket.start_ms))?;
            if bytes.len() % 8 != 0 {
                return Err(format!(
                    "seen ids of bucket {}: {} bytes is not a whole number of ids",
                    bucket.start_ms,
                    bytes.len()
                ));
            }
            let ids = self
                .partitions
                .entry(partition)
                .or_default()
                .entry(bucket.start_ms)
                .or_default();
            for chunk in bytes.chunks_exact(8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                ids.insert(u64::from_le_bytes(word));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_seen_once_per_partition() {
        let mut seen = SeenIds::new(60_000);
        assert!(seen.insert(0, "a", 1_000));
        assert!(!seen.insert(0, "a", 1_000));
        assert!(seen.insert(1, "a", 1_000), "partitions are separate");
        assert!(seen.insert(0, "b", 1_000));
        assert!(
            seen.insert(0, "a", 61_000),
            "another call time: another bucket"
        );
        assert_eq!(seen.len(), 4);
        seen.drop_partition(0);
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn old_buckets_are_forgotten_whole() {
        let mut seen = SeenIds::new(60_000);
        seen.insert(0, "old", 10_000);
        seen.insert(0, "recent", 70_000);
        seen.forget_before(0, 110_000);
        assert!(
            !seen.insert(0, "recent", 70_000),
            "kept: its bucket reaches the horizon"
        );
        seen.forget_before(1, 120_000);
        assert!(
            !seen.insert(0, "recent", 70_000),
            "another partition's horizon"
        );
        seen.forget_before(0, 120_000);
        assert!(seen.insert(0, "old", 10_000), "forgotten");
        assert!(seen.insert(0, "recent", 70_000), "forgotten");
    }

    #[test]
    fn snapshots_round_trip_per_partition() {
        let mut seen = SeenIds::new(60_000);
        for i in 0..100 {
            seen.insert(i % 3, &format!("id-{i}"), i64::from(i) * 1_000);
        }
        let snap = seen.snapshot(Some(1));
        let json = serde_json::to_string(&snap).expect("encode");
        let back: Vec<SeenBucket> = serde_json::from_str(&json).expect("decode");
        let mut restored = SeenIds::new(60_000);
        restored.restore(1, &back).expect("restore");
        assert_eq!(restored.len(), 33);
        assert!(!restored.insert(1, "id-1", 1_000));
        assert!(
            restored.insert(0, "id-0", 0),
            "other partitions not restored"
        );
        assert_eq!(restored.snapshot(Some(1)), snap, "same bytes again");
        let all = seen.snapshot(None);
        assert_eq!(all.len(), 2, "two buckets");
        let mut whole = SeenIds::new(60_000);
        whole.restore(-1, &all).expect("restore");
        assert!(
            !whole.insert(2, "id-2", 2_000),
            "a whole restore knows every partition's"
        );
    }

    #[test]
    fn corrupt_buckets_are_an_error() {
        let mut seen = SeenIds::new(60_000);
        let bad = SeenBucket {
            start_ms: 0,
            ids: STANDARD_NO_PAD.encode([1u8, 2, 3]),
        };
        assert!(seen.restore(0, &[bad]).is_err());
    }
}
