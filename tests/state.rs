//! Acceptance tests of the state store: the same bodies on a real Redis server and in memory.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use llmopt_state::memory::MemoryStore;
use llmopt_state::redis::RedisStore;
use llmopt_state::{CasOutcome, Checkpoint, StateConfig, StateKind, StateStore};

async fn redis_client() -> Arc<dyn StateStore> {
    let config = StateConfig {
        kind: StateKind::Redis,
        redis_url: common::redis_url(),
        key_prefix: format!("{}:", common::unique("llmopt-test")),
        ..StateConfig::default()
    };
    Arc::new(
        RedisStore::connect(&config)
            .await
            .expect("connect to redis"),
    )
}

/// Two independent clients of the same Redis keyspace (same prefix, separate connections).
async fn two_redis_clients() -> (Arc<dyn StateStore>, Arc<dyn StateStore>) {
    let config = StateConfig {
        kind: StateKind::Redis,
        redis_url: common::redis_url(),
        key_prefix: format!("{}:", common::unique("llmopt-test")),
        ..StateConfig::default()
    };
    let a = RedisStore::connect(&config).await.expect("client a");
    let b = RedisStore::connect(&config).await.expect("client b");
    (Arc::new(a), Arc::new(b))
}

async fn cas_semantics(store: Arc<dyn StateStore>) {
    assert_eq!(store.get("route").await.expect("get"), None);
    assert_eq!(
        store
            .compare_and_set("route", 0, b"v1")
            .await
            .expect("create"),
        CasOutcome::Applied { version: 1 }
    );
    // Creating again conflicts and shows what is there.
    match store
        .compare_and_set("route", 0, b"other")
        .await
        .expect("cas")
    {
        CasOutcome::Conflict {
            current: Some(current),
        } => {
            assert_eq!((current.version, current.value.as_slice()), (1, &b"v1"[..]));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store
            .compare_and_set("route", 1, b"v2")
            .await
            .expect("update"),
        CasOutcome::Applied { version: 2 }
    );
    // A stale version is refused and nothing changes.
    assert!(matches!(
        store
            .compare_and_set("route", 1, b"stale")
            .await
            .expect("cas"),
        CasOutcome::Conflict { .. }
    ));
    let current = store.get("route").await.expect("get").expect("present");
    assert_eq!((current.version, current.value.as_slice()), (2, &b"v2"[..]));
    // Binary values survive untouched.
    let binary: Vec<u8> = (0..=255).collect();
    assert_eq!(store.put("route", &binary).await.expect("put"), 3);
    assert_eq!(
        store
            .get("route")
            .await
            .expect("get")
            .expect("present")
            .value,
        binary
    );
    // Expecting a version on a missing key conflicts with "nothing there".
    assert_eq!(
        store
            .compare_and_set("missing", 5, b"x")
            .await
            .expect("cas"),
        CasOutcome::Conflict { current: None }
    );
    assert!(store.delete("route").await.expect("delete"));
    assert!(!store.delete("route").await.expect("delete again"));
}

/// Two clients increment one counter with read-CAS-retry loops; every increment must land once.
async fn cas_contention(a: Arc<dyn StateStore>, b: Arc<dyn StateStore>) {
    const PER_CLIENT: u64 = 300;
    async fn increment_loop(store: Arc<dyn StateStore>) -> u64 {
        let mut conflicts = 0;
        for _ in 0..PER_CLIENT {
            loop {
                let current = store.get("counter").await.expect("get");
                let (version, value) = current
                    .map(|v| {
                        (
                            v.version,
                            u64::from_le_bytes(v.value.try_into().expect("8 bytes")),
                        )
                    })
                    .unwrap_or((0, 0));
                let next = (value + 1).to_le_bytes();
                match store
                    .compare_and_set("counter", version, &next)
                    .await
                    .expect("cas")
                {
                    CasOutcome::Applied { .. } => break,
                    CasOutcome::Conflict { .. } => conflicts += 1,
                }
                tokio::task::yield_now().await;
            }
        }
        conflicts
    }
    let (ca, cb) = tokio::join!(
        tokio::spawn(increment_loop(a.clone())),
        tokio::spawn(increment_loop(b.clone()))
    );
    let conflicts = ca.expect("task a") + cb.expect("task b");
    let last = a
        .get("counter")
        .await
        .expect("get")
        .expect("counter exists");
    let value = u64::from_le_bytes(last.value.try_into().expect("8 bytes"));
    assert_eq!(
        value,
        2 * PER_CLIENT,
        "no lost update ({conflicts} conflicts retried)"
    );
    assert_eq!(
        last.version,
        2 * PER_CLIENT,
        "one version per successful write"
    );
}

async fn ttl_sets_expire(store: Arc<dyn StateStore>) {
    let ttl = Duration::from_millis(400);
    assert!(store.set_add("seen", "src/1", ttl).await.expect("add"));
    assert!(
        !store.set_add("seen", "src/1", ttl).await.expect("re-add"),
        "duplicate within horizon"
    );
    assert!(store
        .set_add("seen", "src/2", Duration::from_secs(60))
        .await
        .expect("add"));
    assert!(store.set_contains("seen", "src/1").await.expect("contains"));
    assert_eq!(store.set_len("seen").await.expect("len"), 2);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        !store.set_contains("seen", "src/1").await.expect("contains"),
        "expired"
    );
    assert!(
        store.set_contains("seen", "src/2").await.expect("contains"),
        "longer TTL still there"
    );
    assert_eq!(store.set_len("seen").await.expect("len"), 1);
    assert!(
        store.set_add("seen", "src/1", ttl).await.expect("add"),
        "new again after expiry"
    );
}

/// The batched set operations agree with the one-by-one ones, across more members than one
/// round trip carries, and keep the first sighting's expiry like `set_add`.
async fn batched_sets(store: Arc<dyn StateStore>) {
    let members: Vec<String> = (0..2_500).map(|i| format!("src\u{1f}{i}")).collect();
    let (early, late) = members.split_at(1_200);
    store
        .set_add_many("batch", early, Duration::from_millis(400))
        .await
        .expect("add many");
    assert!(!store
        .set_add("batch", &early[7], Duration::from_secs(60))
        .await
        .expect("add one"));
    let found = store
        .set_contains_many("batch", &members)
        .await
        .expect("contains many");
    assert_eq!(found.len(), members.len());
    assert!(
        found[..early.len()].iter().all(|f| *f),
        "added members found"
    );
    assert!(!found[early.len()..].iter().any(|f| *f), "others not found");
    store
        .set_add_many("batch", late, Duration::from_secs(60))
        .await
        .expect("add many");
    assert_eq!(store.set_len("batch").await.expect("len"), 2_500);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let found = store
        .set_contains_many("batch", &members)
        .await
        .expect("contains many");
    assert!(
        !found[..early.len()].iter().any(|f| *f),
        "the first batch expired, the member re-added kept its first expiry"
    );
    assert!(found[early.len()..].iter().all(|f| *f));
    assert_eq!(store.set_len("batch").await.expect("len"), 1_300);
    assert!(store
        .set_contains_many("batch", &[])
        .await
        .expect("empty")
        .is_empty());
}

#[tokio::test]
async fn redis_batched_sets() {
    batched_sets(redis_client().await).await;
}

#[tokio::test]
async fn memory_batched_sets() {
    batched_sets(Arc::new(MemoryStore::new())).await;
}

async fn checkpoints(store: Arc<dyn StateStore>) {
    assert_eq!(
        store.load_checkpoint("aggregator").await.expect("load"),
        None
    );
    let mut offsets = BTreeMap::new();
    offsets.insert(
        "llmopt.telemetry".to_string(),
        BTreeMap::from([(0, 10), (1, 7)]),
    );
    let first = Checkpoint {
        state: vec![0, 1, 2, 255],
        offsets,
    };
    store
        .save_checkpoint("aggregator", &first)
        .await
        .expect("save");
    assert_eq!(
        store.load_checkpoint("aggregator").await.expect("load"),
        Some(first.clone())
    );
    let mut second = first.clone();
    second.state = b"later".to_vec();
    second
        .offsets
        .get_mut("llmopt.telemetry")
        .expect("topic")
        .insert(0, 42);
    store
        .save_checkpoint("aggregator", &second)
        .await
        .expect("save");
    assert_eq!(
        store.load_checkpoint("aggregator").await.expect("load"),
        Some(second)
    );
}

#[tokio::test]
async fn redis_compare_and_set() {
    cas_semantics(redis_client().await).await;
}

#[tokio::test]
async fn memory_compare_and_set() {
    cas_semantics(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cas_contention_between_two_clients() {
    let (a, b) = two_redis_clients().await;
    cas_contention(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cas_contention_between_two_clients() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    cas_contention(store.clone(), store).await;
}

#[tokio::test]
async fn redis_ttl_sets_expire() {
    ttl_sets_expire(redis_client().await).await;
}

#[tokio::test]
async fn memory_ttl_sets_expire() {
    ttl_sets_expire(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn redis_checkpoint_with_offsets() {
    checkpoints(redis_client().await).await;
}

#[tokio::test]
async fn memory_checkpoint_with_offsets() {
    checkpoints(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn redis_password_in_url_is_used() {
    // The server the tests use has no password: a URL with one must be rejected by the server,
    // which proves the password is sent rather than ignored.
    let url = common::redis_url().replacen("redis://", "redis://:wrong-password@", 1);
    let config = StateConfig {
        kind: StateKind::Redis,
        redis_url: url,
        key_prefix: "x:".into(),
        ..StateConfig::default()
    };
    assert!(
        RedisStore::connect(&config).await.is_err(),
        "AUTH with a password the server does not have fails"
    );
}

#[tokio::test]
async fn redis_password_setting_overrides_the_url() {
    // A chart keeps the URL in its ConfigMap and the password in a Secret
    // (LLMOPT_STATE__REDIS_PASSWORD): the setting must reach the server's AUTH.
    let config = StateConfig {
        kind: StateKind::Redis,
        redis_url: common::redis_url(),
        key_prefix: "x:".into(),
        redis_password: Some("from-a-secret".into()),
    };
    assert!(
        RedisStore::connect(&config).await.is_err(),
        "AUTH with the configured password is sent (this server has none, so it refuses)"
    );
    let config = StateConfig {
        redis_password: None,
        ..config
    };
    assert!(RedisStore::connect(&config).await.is_ok());
}
