//! State that outlives a process: versioned values with compare-and-set (the live routing
//! config), sets whose members expire (deduplication horizons) and checkpoints stored together
//! with the input offsets they cover (so a restarted core resumes exactly where its state was
//! taken).
//!
//! [`redis::RedisStore`] is the production store; [`memory::MemoryStore`] has the same
//! semantics in process, for `llmopt demo` and unit tests of the cores.

mod config;
mod error;
pub mod memory;
pub mod redis;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use config::{StateConfig, StateKind};
pub use error::StateError;

/// Most members one batched set operation sends in one round trip (a Lua script's arguments live
/// on its stack, so batches stay well below its limits).
pub const SET_BATCH: usize = 1000;

/// A value with the version it was written at. Versions start at 1 and grow by one per write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    pub value: Vec<u8>,
}

/// Result of a compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The write happened; the value now has this version.
    Applied { version: u64 },
    /// Someone else wrote first; here is what is there now, to retry against.
    Conflict { current: Option<Versioned> },
}

/// State of a service core together with the input offsets it reflects. Saved and loaded as one
/// unit, so state and offsets can never disagree after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The core's serialised state.
    pub state: Vec<u8>,
    /// Next offset to read, per `topic` and partition.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// The state store.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Current value of `key`.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StateError>;

    /// Writes `value` only if `key` is at `expected_version` (0: the key must not exist).
    async fn compare_and_set(
        &self,
        key: &str,
        expected_version: u64,
        value: &[u8],
    ) -> Result<CasOutcome, StateError>;

    /// Writes `value` whatever is there; returns the new version.
    async fn put(&self, key: &str, value: &[u8]) -> Result<u64, StateError>;

    /// Removes `key`; true if it existed.
    async fn delete(&self, key: &str) -> Result<bool, StateError>;

    /// Adds `member` to `set` for `ttl`. Returns true if it was not there (or had expired): the
    /// caller is the first to see it within the horizon.
    async fn set_add(&self, set: &str, member: &str, ttl: Duration) -> Result<bool, StateError>;

    /// Whether `member` is in `set` and not expired.
    async fn set_contains(&self, set: &str, member: &str) -> Result<bool, StateError>;

    /// Adds every one of `members` to `set` for `ttl`, as [`StateStore::set_add`] does one by
    /// one, in as few round trips as the store allows (one per [`SET_BATCH`] members on Redis,
    /// which also trims expired members once per batch instead of once per member).
    async fn set_add_many(
        &self,
        set: &str,
        members: &[String],
        ttl: Duration,
    ) -> Result<(), StateError> {
        for member in members {
            self.set_add(set, member, ttl).await?;
        }
        Ok(())
    }

    /// Whether each of `members` is in `set` and not expired, in order, as
    /// [`StateStore::set_contains`] tells one by one, in as few round trips as the store allows.
    async fn set_contains_many(
        &self,
        set: &str,
        members: &[String],
    ) -> Result<Vec<bool>, StateError> {
        let mut found = Vec::with_capacity(members.len());
        for member in members {
            found.push(self.set_contains(set, member).await?);
        }
        Ok(found)
    }

    /// Number of unexpired members of `set`.
    async fn set_len(&self, set: &str) -> Result<u64, StateError>;

    /// Stores a checkpoint under `name`, replacing the previous one atomically.
    async fn save_checkpoint(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), StateError>;

    /// The last checkpoint saved under `name`.
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StateError>;
}
