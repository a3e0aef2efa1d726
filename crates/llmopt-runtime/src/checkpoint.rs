//! Per-partition checkpoints in the state store, Flink-style: a core's state for one input
//! partition together with the offset it covers, taken only when every record read so far is
//! acknowledged, and committed to the consumer group right after. Each record carries an epoch:
//! a new owner bumps it with compare-and-set before restoring, so a previous owner that has not
//! noticed losing the partition (a zombie) fails its next write instead of overwriting.

use std::collections::BTreeMap;

use llmopt_state::{CasOutcome, StateError, StateStore};

use crate::RuntimeError;

const MAGIC: &[u8; 6] = b"LLCP1\n";
const HEADER: usize = MAGIC.len() + 8 + 1 + 8;

/// One stored checkpoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionCheckpoint {
    /// Owner generation: bumped by every claim.
    pub epoch: u64,
    /// Next offset to read: the state covers every record before it. `None`: claimed, no state
    /// written yet.
    pub next_offset: Option<i64>,
    /// The core's state for the partition.
    pub state: Vec<u8>,
}

impl PartitionCheckpoint {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.state.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.push(u8::from(self.next_offset.is_some()));
        out.extend_from_slice(&self.next_offset.unwrap_or_default().to_be_bytes());
        out.extend_from_slice(&self.state);
        out
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<Self, StateError> {
        let corrupt = |reason: &str| StateError::Corrupt {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not a partition checkpoint"));
        }
        let word = |at: usize| -> Result<[u8; 8], StateError> {
            bytes[at..at + 8]
                .try_into()
                .map_err(|_| corrupt("truncated header"))
        };
        let epoch = u64::from_be_bytes(word(MAGIC.len())?);
        let has_offset = bytes[MAGIC.len() + 8] == 1;
        let offset = i64::from_be_bytes(word(MAGIC.len() + 9)?);
        Ok(Self {
            epoch,
            next_offset: has_offset.then_some(offset),
            state: bytes[HEADER..].to_vec(),
        })
    }
}

/// The state-store key of a partition's checkpoint for consumer group `group`.
pub(crate) fn key(group: &str, topic: &str, partition: i32) -> String {
    format!("checkpoint:{group}:{topic}:{partition}")
}

/// The state-store key of a [`crate::StateScope::Whole`] core's checkpoint for `group`.
pub(crate) fn whole_key(group: &str) -> String {
    format!("checkpoint:{group}:whole")
}

const WHOLE_MAGIC: &[u8; 6] = b"LLWH1\n";

/// What a whole-core checkpoint holds: the core's state and, for every input partition, the
/// offset of the next record the state does not cover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WholeState {
    pub offsets: BTreeMap<(String, i32), i64>,
    pub state: Vec<u8>,
}

impl WholeState {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(WHOLE_MAGIC.len() + 4 + self.state.len());
        out.extend_from_slice(WHOLE_MAGIC);
        out.extend_from_slice(&(self.offsets.len() as u32).to_be_bytes());
        for ((topic, partition), offset) in &self.offsets {
            out.extend_from_slice(&(topic.len() as u32).to_be_bytes());
            out.extend_from_slice(topic.as_bytes());
            out.extend_from_slice(&partition.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
        out.extend_from_slice(&self.state);
        out
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, StateError> {
        let corrupt = |reason: &str| StateError::Corrupt {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        let mut rest = bytes
            .strip_prefix(WHOLE_MAGIC.as_slice())
            .ok_or_else(|| corrupt("not a whole-core checkpoint"))?;
        let mut take = |n: usize| -> Result<&[u8], StateError> {
            if rest.len() < n {
                return Err(corrupt("truncated offsets"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let word = |b: &[u8]| -> [u8; 8] { b.try_into().unwrap_or_default() };
        let half = |b: &[u8]| -> [u8; 4] { b.try_into().unwrap_or_default() };
        let count = u32::from_be_bytes(half(take(4)?));
        let mut offsets = BTreeMap::new();
        for _ in 0..count {
            let len = u32::from_be_bytes(half(take(4)?)) as usize;
            let topic = std::str::from_utf8(take(len)?)
                .map_err(|_| corrupt("topic name is not UTF-8"))?
                .to_string();
            let partition = i32::from_be_bytes(half(take(4)?));
            let offset = i64::from_be_bytes(word(take(8)?));
            offsets.insert((topic, partition), offset);
        }
        Ok(Self {
            offsets,
            state: rest.to_vec(),
        })
    }
}

/// This instance's hold on a partition's checkpoint record.
#[derive(Debug)]
pub(crate) struct Claim {
    pub key: String,
    pub epoch: u64,
    /// Version of the record as this instance last wrote it (the compare-and-set expectation).
    pub version: u64,
}

/// Claims a partition: reads its checkpoint and writes it back with the epoch bumped. Returns
/// the claim and the checkpoint to restore (if any state was ever written).
pub(crate) async fn claim(
    store: &dyn StateStore,
    key: String,
) -> Result<(Claim, Option<PartitionCheckpoint>), RuntimeError> {
    for _ in 0..10 {
        let current = store.get(&key).await?;
        let (expected, previous) = match current {
            Some(v) => (
                v.version,
                Some(PartitionCheckpoint::decode(&key, &v.value)?),
            ),
            None => (0, None),
        };
        let claimed = PartitionCheckpoint {
            epoch: previous.as_ref().map_or(1, |p| p.epoch + 1),
            next_offset: previous.as_ref().and_then(|p| p.next_offset),
            state: previous
                .as_ref()
                .map(|p| p.state.clone())
                .unwrap_or_default(),
        };
        if let CasOutcome::Applied { version } = store
            .compare_and_set(&key, expected, &claimed.encode())
            .await?
        {
            let restore = previous.filter(|p| p.next_offset.is_some());
            return Ok((
                Claim {
                    key,
                    epoch: claimed.epoch,
                    version,
                },
                restore,
            ));
        }
    }
    Err(RuntimeError::Fenced {
        key,
        reason: "ten claims in a row lost to other instances".into(),
    })
}

/// Writes the state of a claimed partition; fails with [`RuntimeError::Fenced`] once another
/// instance has claimed it since.
pub(crate) async fn save(
    store: &dyn StateStore,
    claim: &mut Claim,
    next_offset: i64,
    state: Vec<u8>,
) -> Result<(), RuntimeError> {
    let record = PartitionCheckpoint {
        epoch: claim.epoch,
        next_offset: Some(next_offset),
        state,
    };
    match store
        .compare_and_set(&claim.key, claim.version, &record.encode())
        .await?
    {
        CasOutcome::Applied { version } => {
            claim.version = version;
            Ok(())
        }
        CasOutcome::Conflict { current: None } => {
            // The record is gone: nobody claimed it since (a claim writes it), the state store
            // lost it (a restart without persistence, an eviction). This instance still holds
            // the partition and its state, so it writes the record again.
            tracing::warn!(key = %claim.key, epoch = claim.epoch,
                "checkpoint record vanished from the state store; writing it again");
            match store
                .compare_and_set(&claim.key, 0, &record.encode())
                .await?
            {
                CasOutcome::Applied { version } => {
                    claim.version = version;
                    Ok(())
                }
                CasOutcome::Conflict { .. } => Err(RuntimeError::Fenced {
                    key: claim.key.clone(),
                    reason: "another instance claimed the record while it was being rewritten"
                        .into(),
                }),
            }
        }
        CasOutcome::Conflict { current } => {
            let epoch = current
                .and_then(|v| PartitionCheckpoint::decode(&claim.key, &v.value).ok())
                .map(|c| c.epoch);
            Err(RuntimeError::Fenced {
                key: claim.key.clone(),
                reason: format!(
                    "this instance holds epoch {}, the record is at epoch {epoch:?}",
                    claim.epoch
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use llmopt_state::memory::MemoryStore;

    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_corrupt() {
        let c = PartitionCheckpoint {
            epoch: 7,
            next_offset: Some(1234),
            state: b"state".to_vec(),
        };
        assert_eq!(
            PartitionCheckpoint::decode("k", &c.encode()).expect("decode"),
            c
        );
        let empty = PartitionCheckpoint {
            epoch: 1,
            next_offset: None,
            state: Vec::new(),
        };
        assert_eq!(
            PartitionCheckpoint::decode("k", &empty.encode()).expect("decode"),
            empty
        );
        assert!(PartitionCheckpoint::decode("k", b"LLCP1\nshort").is_err());
        assert!(PartitionCheckpoint::decode("k", b"something else entirely....").is_err());
    }

    #[test]
    fn whole_states_round_trip_and_truncation_is_corrupt() {
        let whole = WholeState {
            offsets: [(("t".to_string(), 0), 12), (("u".to_string(), 3), 7)].into(),
            state: b"core".to_vec(),
        };
        let bytes = whole.encode();
        assert_eq!(WholeState::decode("k", &bytes).expect("decode"), whole);
        for cut in [3, 10, 20] {
            assert!(
                WholeState::decode("k", &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[tokio::test]
    async fn a_new_claim_fences_the_previous_owner() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let key = key("g", "t", 3);
        let (mut first, restore) = claim(store.as_ref(), key.clone()).await.expect("claim");
        assert!(restore.is_none());
        save(store.as_ref(), &mut first, 10, b"a".to_vec())
            .await
            .expect("save");
        // Another instance takes the partition over: it restores what the first saved.
        let (mut second, restore) = claim(store.as_ref(), key.clone()).await.expect("claim");
        assert_eq!(second.epoch, first.epoch + 1);
        let restore = restore.expect("state to restore");
        assert_eq!(
            (restore.next_offset, restore.state),
            (Some(10), b"a".to_vec())
        );
        // The zombie's next write fails; the new owner's succeeds.
        let zombie = save(store.as_ref(), &mut first, 20, b"zombie".to_vec()).await;
        assert!(
            matches!(zombie, Err(RuntimeError::Fenced { .. })),
            "{zombie:?}"
        );
        save(store.as_ref(), &mut second, 20, b"b".to_vec())
            .await
            .expect("save");
        let (_, restore) = claim(store.as_ref(), key).await.expect("claim");
        assert_eq!(restore.expect("state").state, b"b".to_vec());
    }

    #[tokio::test]
    async fn a_record_the_store_lost_is_written_again_by_its_holder() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let key = key("g", "t", 0);
        let (mut held, _) = claim(store.as_ref(), key.clone()).await.expect("claim");
        save(store.as_ref(), &mut held, 5, b"a".to_vec())
            .await
            .expect("save");
        assert!(store.delete(&key).await.expect("delete"), "record lost");
        save(store.as_ref(), &mut held, 9, b"b".to_vec())
            .await
            .expect("the holder writes it again");
        save(store.as_ref(), &mut held, 12, b"c".to_vec())
            .await
            .expect("and goes on");
        let (_, restore) = claim(store.as_ref(), key).await.expect("claim");
        let restore = restore.expect("state");
        assert_eq!(
            (restore.next_offset, restore.state),
            (Some(12), b"c".to_vec())
        );
    }
}
