//! The in-memory state store: same semantics as Redis, nothing persisted.

use std::collections::HashMap;
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
    sets: HashMap<String, HashMap<String, Instant>>,
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

fn live_members<'a>(
    sets: &'a mut HashMap<String, HashMap<String, Instant>>,
    set: &str,
) -> &'a mut HashMap<String, Instant> {
    let members = sets.entry(set.to_string()).or_default();
    let now = Instant::now();
    members.retain(|_, expires| *expires > now);
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
        if members.contains_key(member) {
            return Ok(false);
        }
        members.insert(member.to_string(), Instant::now() + ttl);
        Ok(true)
    }

    async fn set_contains(&self, set: &str, member: &str) -> Result<bool, StateError> {
        let mut inner = self.lock();
        Ok(live_members(&mut inner.sets, set).contains_key(member))
    }

    async fn set_len(&self, set: &str) -> Result<u64, StateError> {
        let mut inner = self.lock();
        Ok(live_members(&mut inner.sets, set).len() as u64)
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
