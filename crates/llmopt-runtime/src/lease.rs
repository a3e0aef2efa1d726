//! Leadership among the replicas of a single-instance service.
//!
//! A [`StateScope::Whole`](crate::StateScope::Whole) core (detector, decision, actuator) keeps
//! one state across all its input partitions, so only one instance may consume at a time. Its
//! other replicas are hot standbys: they stay out of the consumer group (a standby in the group
//! would be handed half the partitions and fence the leader's checkpoint), watch a lease record
//! in the state store, and take over when the leader stops renewing it. This is Kubernetes'
//! leader election (`coordination.k8s.io` Leases) on the store the services already use.
//!
//! Expiry is judged on the standby's own clock, from when it last saw the record change, never
//! by comparing the holder's timestamps with its own: clock skew between machines cannot make
//! a live leader look expired. The leader renews every third of the lease; a leader that finds
//! its lease taken (compare-and-set conflict) stops with [`RuntimeError::Fenced`]. The whole
//! checkpoint's epoch fences a leader that could not even reach the store, at its next write.

use std::time::{Duration, Instant};

use llmopt_state::{CasOutcome, StateStore};

use crate::health::Health;
use crate::shutdown::Shutdown;
use crate::RuntimeError;

const MAGIC: &str = "llmopt-lease/1";

/// The state-store key of a consumer group's lease.
pub(crate) fn key(group: &str) -> String {
    format!("lease:{group}")
}

/// This instance's name among the replicas: `LLMOPT_INSTANCE_ID`, else the host name (the
/// pod's name on Kubernetes, which a restarted container keeps). A restarted instance finding
/// its own name on the lease takes it back at once instead of waiting for it to expire; replicas
/// sharing one host (processes side by side) need distinct `LLMOPT_INSTANCE_ID`s.
pub(crate) fn instance_id() -> String {
    std::env::var("LLMOPT_INSTANCE_ID")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// What a lease record says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    held: bool,
    ttl_ms: u64,
    holder: String,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let state = if self.held { "held" } else { "released" };
        format!("{MAGIC} {state} {} {}", self.ttl_ms, self.holder).into_bytes()
    }

    /// `None` for a record this version cannot read (taken over like a released one).
    fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(4, ' ');
        if parts.next()? != MAGIC {
            return None;
        }
        let held = match parts.next()? {
            "held" => true,
            "released" => false,
            _ => return None,
        };
        let ttl_ms = parts.next()?.parse().ok()?;
        let holder = parts.next()?.to_string();
        Some(Self {
            held,
            ttl_ms,
            holder,
        })
    }
}

/// This instance's leadership.
#[derive(Debug)]
pub(crate) struct Lease {
    key: String,
    holder: String,
    ttl: Duration,
    /// The record's version as this instance last wrote it.
    version: u64,
    renewed: Instant,
    attempted: Instant,
}

/// How often a standby looks at the lease, and a leader retries a failed renewal.
fn retry_interval(ttl: Duration) -> Duration {
    (ttl / 3).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// Waits until this instance holds `key`'s lease: at once when nobody holds it (or its holder
/// released it, or the holder is this instance before a restart), otherwise once the holder's record has not changed for the holder's lease
/// duration. `None` if `shutdown` came first. `/ready` stays false meanwhile; the wait is
/// logged once.
pub(crate) async fn acquire(
    store: &dyn StateStore,
    key: String,
    holder: String,
    ttl: Duration,
    health: &Health,
    shutdown: &mut Shutdown,
) -> Result<Option<Lease>, RuntimeError> {
    let ours = Record {
        held: true,
        ttl_ms: ttl.as_millis() as u64,
        holder: holder.clone(),
    }
    .encode();
    // The version last seen of a record held by another instance, and since when.
    let mut observed: Option<(u64, Instant)> = None;
    let mut announced = false;
    health.set_ready(false);
    loop {
        let attempt = async {
            let current = store.get(&key).await?;
            let (expected, free) = match &current {
                None => (0, true),
                Some(v) => match Record::decode(&v.value) {
                    Some(record) if record.held && record.holder != holder => {
                        let since = match observed {
                            Some((version, at)) if version == v.version => at,
                            _ => {
                                let now = Instant::now();
                                observed = Some((v.version, now));
                                now
                            }
                        };
                        if !announced {
                            announced = true;
                            tracing::info!(key, leader = record.holder, ttl_ms = record.ttl_ms,
                                "standby: another instance leads; taking over if it stops renewing its lease");
                        }
                        let expired = since.elapsed() >= Duration::from_millis(record.ttl_ms);
                        health.set_standby(!expired);
                        if expired {
                            tracing::warn!(
                                key,
                                leader = record.holder,
                                "the leader's lease expired: taking over"
                            );
                        }
                        (v.version, expired)
                    }
                    _ => (v.version, true),
                },
            };
            if !free {
                return Ok::<_, llmopt_state::StateError>(None);
            }
            match store.compare_and_set(&key, expected, &ours).await? {
                CasOutcome::Applied { version } => Ok(Some(version)),
                CasOutcome::Conflict { .. } => Ok(None),
            }
        };
        match attempt.await {
            Ok(Some(version)) => {
                health.set_standby(false);
                tracing::info!(key, holder, "leading: this instance holds the lease");
                let now = Instant::now();
                return Ok(Some(Lease {
                    key,
                    holder,
                    ttl,
                    version,
                    renewed: now,
                    attempted: now,
                }));
            }
            Ok(None) => {}
            Err(e) if e.is_transient() => {
                tracing::warn!(key, error = %e, "state store unavailable; lease not checked")
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            biased;
            _ = shutdown.wait() => {
                health.set_standby(false);
                return Ok(None);
            }
            _ = tokio::time::sleep(retry_interval(ttl)) => {}
        }
    }
}

impl Lease {
    /// Renews the lease when a third of it has passed. A conflict means another instance took
    /// it over (this one was presumed dead): stop rather than act beside the new leader. A
    /// store outage is only logged; the renewal is retried.
    pub(crate) async fn renew(&mut self, store: &dyn StateStore) -> Result<(), RuntimeError> {
        if self.renewed.elapsed() < self.ttl / 3
            || self.attempted.elapsed() < retry_interval(self.ttl)
        {
            return Ok(());
        }
        self.attempted = Instant::now();
        let record = Record {
            held: true,
            ttl_ms: self.ttl.as_millis() as u64,
            holder: self.holder.clone(),
        };
        match store
            .compare_and_set(&self.key, self.version, &record.encode())
            .await
        {
            Ok(CasOutcome::Applied { version }) => {
                self.version = version;
                self.renewed = Instant::now();
                Ok(())
            }
            Ok(CasOutcome::Conflict { current }) => {
                let leader = current
                    .and_then(|v| Record::decode(&v.value))
                    .map(|r| r.holder)
                    .unwrap_or_default();
                Err(RuntimeError::Fenced {
                    key: self.key.clone(),
                    reason: format!("leadership lost: the lease is now held by `{leader}`"),
                })
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(key = self.key, error = %e,
                    unrenewed_ms = self.renewed.elapsed().as_millis() as u64,
                    "lease not renewed: state store unavailable");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the lease up, so a standby takes over at its next look instead of after the lease
    /// expires. Best effort: a failure only delays the takeover.
    pub(crate) async fn release(self, store: &dyn StateStore) {
        let record = Record {
            held: false,
            ttl_ms: self.ttl.as_millis() as u64,
            holder: self.holder.clone(),
        };
        match store
            .compare_and_set(&self.key, self.version, &record.encode())
            .await
        {
            Ok(CasOutcome::Applied { .. }) => {
                tracing::info!(key = self.key, "lease released")
            }
            Ok(CasOutcome::Conflict { .. }) => {}
            Err(e) => tracing::warn!(key = self.key, error = %e,
                "lease not released: a standby takes over once it expires"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use llmopt_state::memory::MemoryStore;

    use super::*;
    use crate::shutdown::{self, Shutdown};

    /// `holder` asks for group `g`'s lease until it leads (`Some`) or `shutdown` comes.
    async fn lease_for(
        store: &dyn StateStore,
        holder: &str,
        ttl: Duration,
        shutdown: &mut Shutdown,
    ) -> Option<Lease> {
        acquire(
            store,
            key("g"),
            holder.into(),
            ttl,
            &Health::new(),
            shutdown,
        )
        .await
        .expect("acquire")
    }

    #[test]
    fn records_round_trip_and_foreign_bytes_are_unreadable() {
        let record = Record {
            held: true,
            ttl_ms: 1500,
            holder: "pod-0/12/345".into(),
        };
        assert_eq!(Record::decode(&record.encode()), Some(record));
        assert_eq!(Record::decode(b"something else"), None);
        assert_eq!(Record::decode(b"llmopt-lease/1 maybe 10 x"), None);
    }

    #[tokio::test]
    async fn a_standby_takes_over_only_once_the_leader_stops_renewing() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let (_keep, mut signal) = shutdown::channel();
        let ttl = Duration::from_millis(300);
        let mut leader = lease_for(store.as_ref(), "a", ttl, &mut signal)
            .await
            .expect("leading");

        // While the leader renews, the standby keeps waiting.
        let standby = {
            let store = store.clone();
            tokio::spawn(async move {
                let (_keep, mut signal) = shutdown::channel();
                let started = Instant::now();
                let lease = lease_for(store.as_ref(), "b", ttl, &mut signal)
                    .await
                    .expect("leading");
                (lease, started.elapsed())
            })
        };
        let renewing_until = Instant::now() + Duration::from_millis(900);
        while Instant::now() < renewing_until {
            leader.renew(store.as_ref()).await.expect("renew");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !standby.is_finished(),
            "the standby took a lease being renewed"
        );

        // The leader stops renewing (a crash): the standby takes over after about one lease,
        // and the old leader's next renewal is refused.
        let (_, waited) = standby.await.expect("standby");
        assert!(
            waited >= Duration::from_millis(900),
            "took over after {waited:?}"
        );
        tokio::time::sleep(ttl).await;
        assert!(matches!(
            leader.renew(store.as_ref()).await,
            Err(RuntimeError::Fenced { .. })
        ));
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_at_once_and_shutdown_ends_the_wait() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let (_keep, mut signal) = shutdown::channel();
        let ttl = Duration::from_secs(60);
        let leader = lease_for(store.as_ref(), "a", ttl, &mut signal)
            .await
            .expect("leading");

        let (stop, mut stopping) = shutdown::channel();
        stop.trigger();
        let waiting = lease_for(store.as_ref(), "b", ttl, &mut stopping).await;
        assert!(waiting.is_none(), "a live leader's lease was taken");

        leader.release(store.as_ref()).await;
        let started = Instant::now();
        let next = lease_for(store.as_ref(), "b", ttl, &mut signal).await;
        assert!(next.is_some());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_restarted_leader_takes_its_own_lease_back_at_once() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let (_keep, mut signal) = shutdown::channel();
        let ttl = Duration::from_secs(60);
        // Killed without releasing: the record still says "held by a".
        let _crashed = lease_for(store.as_ref(), "a", ttl, &mut signal)
            .await
            .expect("leading");
        let started = Instant::now();
        let restarted = lease_for(store.as_ref(), "a", ttl, &mut signal).await;
        assert!(restarted.is_some());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
