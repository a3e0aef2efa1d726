//! The in-memory state store: same semantics as Redis, nothing persisted.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{CasOutcome, Checkpoint, StateError, StateStore, Versioned};

/// In-process state store for `llmopt demo` and core tests.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    values: HashMap<String, Versioned>,
    sets: HashMap<String, TtlSet>,
    checkpoints: HashMap<String, Checkpoint>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Members with their expiry, plus an expiry-ordered index so purging costs O(log n) per
/// expired member instead of a scan of the whole set.
#[derive(Default)]
struct TtlSet {
    members: HashMap<String, Instant>,
    by_expiry: BTreeSet<(Instant, String)>,
}

impl TtlSet {
    fn purge(&mut self, now: Instant) {
        while let Some(first) = self.by_expiry.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, member)) = self.by_expiry.pop_first() {
                self.members.remove(&member);
            }
        }
    }
}

fn live_members<'a>(sets: &'a mut HashMap<String, TtlSet>, set: &str) -> &'a mut TtlSet {
    let members = sets.entry(set.to_string()).or_default();
    members.purge(Instant::now());
    members
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StateError> {
        Ok(self.lock().values.get(key).cloned())
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected_version: u64,
        value: &[u8],
    ) -> Result<CasOutcome, StateError> {
        let mut inner = self.lock();
        let current = inner.values.get(key);
        let current_version = current.map_or(0, |v| v.version);
        if current_version != expected_version {
            return Ok(CasOutcome::Conflict {
                current: current.cloned(),
            });
        }
        let version = expected_version + 1;
        inner.values.insert(
            key.to_string(),
            Versioned {
                version,
                value: value.to_vec(),
            },
        );
        Ok(CasOutcome::Applied { version })
    }

    async fn put(&self, key: &str, value: &[u8]) -> Result<u64, StateError> {
        let mut inner = self.lock();
        let version = inner.values.get(key).map_or(0, |v| v.version) + 1;
        inner.values.insert(
            key.to_string(),
            Versioned {
                version,
                value: value.to_vec(),
            },
        );
        Ok(version)
    }

    async fn delete(&self, key: &str) -> Result<bool, StateError> {
        Ok(self.lock().values.remove(key).is_some())
    }

    async fn set_add(&self, set: &str, member: &str, ttl: Duration) -> Result<bool, StateError> {
        let mut inner = self.lock();
        let members = live_members(&mut inner.sets, set);
        if members.members.contains_key(member) {
            return Ok(false);
        }
        let expires = Instant::now() + ttl;
        members.members.insert(member.to_string(), expires);
        members.by_expiry.insert((expires, member.to_string()));
        Ok(true)
    }

    async fn set_contains(&self, set: &str, member: &str) -> Result<bool, StateError> {
        let mut inner = self.lock();
        Ok(live_members(&mut inner.sets, set)
            .members
            .contains_key(member))
    }

    async fn set_len(&self, set: &str) -> Result<u64, StateError> {
        let mut inner = self.lock();
        Ok(live_members(&mut inner.sets, set).members.len() as u64)
    }

    async fn save_checkpoint(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), StateError> {
        self.lock()
            .checkpoints
            .insert(name.to_string(), checkpoint.clone());
        Ok(())
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StateError> {
        Ok(self.lock().checkpoints.get(name).cloned())
    }
}
