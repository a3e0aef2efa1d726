//! The live routing config in the state store, written with compare-and-set on the version.
//!
//! Routers read `routing/{app}/{route}`; the actuator runner writes it after each
//! `ConfigChange`. Several runner instances, restarts and replays may write the same or older
//! versions: the compare-and-set makes each version land only on top of its predecessor, so the
//! store can never go backwards or skip a version silently.

use llmopt_state::{CasOutcome, StateError, StateStore};
use thiserror::Error;

use llmopt_routing::{RoutingConfig, RoutingError};

/// Prefix of the live routing config keys.
pub const LIVE_KEY_PREFIX: &str = "routing";

/// How many times a write re-reads and retries after losing a compare-and-set race before
/// reporting contention.
const CAS_ATTEMPTS: usize = 8;

/// Why the live config could not be read or written.
#[derive(Debug, Error)]
pub enum LiveConfigError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The stored value (or the one to store) is not a routing config.
    #[error("routing config at `{key}`: {source}")]
    Codec {
        /// The state-store key.
        key: String,
        /// What is wrong with it.
        #[source]
        source: RoutingError,
    },
    /// The store is more than one version behind: writing would skip versions, so the runner
    /// must write the missing ones first (or replay `config.changes`).
    #[error("`{key}` holds version {stored}; refusing to write version {attempted} over it")]
    VersionGap {
        /// The state-store key.
        key: String,
        /// Routing config version in the store.
        stored: i64,
        /// Version that was to be written.
        attempted: i64,
    },
    /// Other writers kept winning the compare-and-set.
    #[error("`{key}`: compare-and-set lost {attempts} times in a row")]
    Contention {
        /// The state-store key.
        key: String,
        /// Attempts made.
        attempts: usize,
    },
}

/// The state-store key of an app/route's live config: `routing/{app}/{route}`.
pub fn live_key(app: &str, route: &str) -> String {
    format!("{LIVE_KEY_PREFIX}/{app}/{route}")
}

/// Reads the live config of an app/route (`None` when none was written yet).
pub async fn read_live_config(
    store: &dyn StateStore,
    app: &str,
    route: &str,
) -> Result<Option<RoutingConfig>, LiveConfigError> {
    let key = live_key(app, route);
    match store.get(&key).await? {
        None => Ok(None),
        Some(v) => RoutingConfig::from_json(&v.value)
            .map(Some)
            .map_err(|source| LiveConfigError::Codec { key, source }),
    }
}

/// Writes `cfg` as the live config of its route, only over version `cfg.version − 1` or over
/// nothing. Returns `Ok(false)` when the store already holds `cfg.version` or newer (a replay:
/// nothing to do), `Ok(true)` when written; a store further behind is a
/// [`LiveConfigError::VersionGap`].
pub async fn write_live_config(
    store: &dyn StateStore,
    cfg: &RoutingConfig,
) -> Result<bool, LiveConfigError> {
    let key = live_key(&cfg.app, &cfg.route);
    let bytes = cfg.to_json().map_err(|source| LiveConfigError::Codec {
        key: key.clone(),
        source,
    })?;
    for _ in 0..CAS_ATTEMPTS {
        let expected = match store.get(&key).await? {
            None => 0,
            Some(current) => {
                let stored = RoutingConfig::from_json(&current.value).map_err(|source| {
                    LiveConfigError::Codec {
                        key: key.clone(),
                        source,
                    }
                })?;
                if stored.version >= cfg.version {
                    return Ok(false);
                }
                if stored.version != cfg.version - 1 {
                    return Err(LiveConfigError::VersionGap {
                        key,
                        stored: stored.version,
                        attempted: cfg.version,
                    });
                }
                current.version
            }
        };
        match store.compare_and_set(&key, expected, &bytes).await? {
            CasOutcome::Applied { .. } => return Ok(true),
            CasOutcome::Conflict { .. } => continue,
        }
    }
    Err(LiveConfigError::Contention {
        key,
        attempts: CAS_ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmopt_events::RouteTarget;
    use llmopt_state::memory::MemoryStore;
    use std::collections::BTreeMap;

    fn cfg(version: i64, model: &str) -> RoutingConfig {
        RoutingConfig {
            app: "app".into(),
            route: "chat".into(),
            version,
            targets: vec![RouteTarget {
                provider: "p".into(),
                model: model.into(),
                weight: 1.0,
            }],
            params: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn cas_accepts_successor_and_refuses_stale() {
        let store = MemoryStore::new();
        assert_eq!(read_live_config(&store, "app", "chat").await.unwrap(), None);
        assert!(write_live_config(&store, &cfg(1, "a")).await.unwrap());
        assert!(write_live_config(&store, &cfg(2, "b")).await.unwrap());
        // Replays of the same or older versions are no-ops.
        assert!(!write_live_config(&store, &cfg(2, "b")).await.unwrap());
        assert!(!write_live_config(&store, &cfg(1, "a")).await.unwrap());
        let live = read_live_config(&store, "app", "chat")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(live, cfg(2, "b"));
        // Version + 1 is accepted.
        assert!(write_live_config(&store, &cfg(3, "c")).await.unwrap());
    }

    #[tokio::test]
    async fn cas_refuses_a_gap() {
        let store = MemoryStore::new();
        assert!(write_live_config(&store, &cfg(4, "a")).await.unwrap());
        let err = write_live_config(&store, &cfg(6, "b")).await.unwrap_err();
        assert!(matches!(
            err,
            LiveConfigError::VersionGap {
                stored: 4,
                attempted: 6,
                ..
            }
        ));
        let live = read_live_config(&store, "app", "chat")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(live.version, 4);
    }

    #[tokio::test]
    async fn corrupt_value_is_reported() {
        let store = MemoryStore::new();
        store
            .put(&live_key("app", "chat"), b"not json")
            .await
            .unwrap();
        assert!(matches!(
            read_live_config(&store, "app", "chat").await,
            Err(LiveConfigError::Codec { .. })
        ));
        assert!(matches!(
            write_live_config(&store, &cfg(1, "a")).await,
            Err(LiveConfigError::Codec { .. })
        ));
    }
}
