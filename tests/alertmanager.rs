//! The notifier against a real Alertmanager (Debian's `prometheus-alertmanager`, installed by
//! scripts/system-packages.sh) and a real HTTP webhook receiver: the alerts of the demo's
//! provider outage arrive with their labels and evidence, resolve when the incident ends, arrive
//! after an Alertmanager outage, and come back after Alertmanager restarts (re-sent while
//! firing).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llmopt::config::AppConfig;
use llmopt::demo::{self, DemoOptions};
use llmopt::pipeline::{self, Service, ServiceHandle};
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{Alert, AlertStatus};
use llmopt_runtime::runner::RunnerConfig;
use llmopt_sim::Scenario;
use llmopt_state::memory::MemoryStore;
use llmopt_state::StateStore;
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::{LogicalTopic, OutboundMessage, TopicNames, Transport};
use serde_json::Value;

/// A real Alertmanager on `port`, storing under `dir`; killed on drop.
struct Alertmanager {
    child: Child,
}

fn alertmanager_binary() -> PathBuf {
    if let Ok(path) = std::env::var("LLMOPT_ALERTMANAGER") {
        return PathBuf::from(path);
    }
    for name in ["prometheus-alertmanager", "alertmanager"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "alertmanager not found: install Debian's prometheus-alertmanager (scripts/test.sh does) \
         or set LLMOPT_ALERTMANAGER"
    );
}

impl Alertmanager {
    fn start(port: u16, dir: &Path) -> Self {
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: 'null'\n  group_wait: 1s\nreceivers:\n  - name: 'null'\n",
        )
        .expect("write alertmanager config");
        let child = Command::new(alertmanager_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start alertmanager");
        let am = Self { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(port, "/-/ready").map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "alertmanager did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        am
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A plain HTTP/1.0 GET: (status, body), `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Alertmanager's active alerts named `alertname`.
fn active(port: u16, alertname: &str) -> Vec<Value> {
    let (status, body) =
        http_get(port, "/api/v2/alerts?active=true").expect("alertmanager answers");
    assert_eq!(status, 200, "{body}");
    let alerts: Vec<Value> = serde_json::from_str(&body).expect("alert list");
    alerts
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == alertname)
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A webhook receiver: records each POST body.
fn webhook_receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
    let port = listener.local_addr().expect("addr").port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            // Headers, then Content-Length bytes of body.
            let (head_end, length) = loop {
                let Ok(n) = stream.read(&mut chunk) else {
                    break (0, 0);
                };
                if n == 0 {
                    break (0, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (end + 4, length);
                }
            };
            while buf.len() < head_end + length {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            if let Ok(body) = serde_json::from_slice(&buf[head_end..]) {
                seen.lock().expect("lock").push(body);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (port, bodies)
}

/// Publishes `alerts` on the alert topic as the detector would (JSON, keyed by dedup key).
async fn publish(transport: &Arc<dyn Transport>, names: &TopicNames, alerts: &[Alert]) {
    for alert in alerts {
        let meta = EventMeta {
            id: alert.id.clone(),
            source: "llmopt/detector".into(),
            time_ms: Some(alert.event_time),
            partition_key: Some(alert.dedup_key.clone()),
            traceparent: None,
            subject: None,
        };
        let record = wire::to_kafka(alert, &meta, DataFormat::Json).expect("encode alert");
        transport
            .publish(
                &names.name(LogicalTopic::Alerts),
                OutboundMessage::from(record),
            )
            .await
            .expect("publish alert");
    }
}

/// Drains the notifier on another task (it may block retrying while Alertmanager is down).
async fn drain(notifier: ServiceHandle) -> (ServiceHandle, u64) {
    let mut notifier = notifier;
    let task = tokio::spawn(async move {
        let moved = notifier
            .stage
            .drain(Duration::from_millis(50))
            .await
            .expect("drain notifier");
        (notifier, moved)
    });
    tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("notifier drained in time")
        .expect("drain task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_outage_reaches_alertmanager_and_a_webhook_and_survives_their_outages() {
    // The demo's first 50 simulated minutes: the provider error burst on
    // search/query-rewrite's gemini-1.5-flash (minutes 20 to 30) fires and resolves.
    let options = DemoOptions {
        seed: 42,
        scenario: Scenario::default(),
        step_s: 60,
        speed: 0.0,
        duration_s: Some(50 * 60),
        max_rate: None,
    };
    let result = demo::run_embedded(AppConfig::default(), &options, &mut |_| {})
        .await
        .expect("demo run");
    let alerts = result.record.alerts;
    let fired = alerts
        .iter()
        .position(|a| {
            a.alertname == "HighErrorRate"
                && a.status == AlertStatus::Firing
                && a.labels.get("model").map(String::as_str) == Some("gemini-1.5-flash")
        })
        .expect("the outage fires HighErrorRate");
    let key = alerts[fired].dedup_key.clone();
    let resolved = alerts
        .iter()
        .position(|a| a.dedup_key == key && a.status == AlertStatus::Resolved)
        .expect("and resolves it");

    let dir = std::env::temp_dir().join(format!("llmopt-alertmanager-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    let am = Alertmanager::start(port, &dir);
    let (hook_port, hook_bodies) = webhook_receiver();

    let mut config = AppConfig::default();
    config.notifier.alertmanager_url = Some(format!("http://127.0.0.1:{port}"));
    config.notifier.webhook_url = Some(format!("http://127.0.0.1:{hook_port}/hook"));
    config.notifier.resend_interval_ms = 500;
    config.notifier.external_labels =
        std::collections::BTreeMap::from([("cluster".to_string(), "test".to_string())]);
    let transport: Arc<dyn Transport> =
        Arc::new(EmbeddedTransport::new(config.transport.partitions));
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let names = TopicNames::new(&config.transport);
    let notifier = pipeline::start(
        Service::Notifier,
        &config,
        transport.clone(),
        store.clone(),
        RunnerConfig {
            commit_every: 1,
            ..RunnerConfig::default()
        },
    )
    .await
    .expect("start notifier");

    // 1. Firing: listed by Alertmanager with the alert's labels and evidence.
    publish(&transport, &names, &alerts[..=fired]).await;
    let (notifier, moved) = drain(notifier).await;
    assert_eq!(moved as usize, fired + 1);
    let listed = active(port, "HighErrorRate");
    let ours: Vec<&Value> = listed
        .iter()
        .filter(|a| a["annotations"]["dedup_key"] == key.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{listed:?}");
    let labels = &ours[0]["labels"];
    assert_eq!(labels["app"], "search");
    assert_eq!(labels["route"], "query-rewrite");
    assert_eq!(labels["provider"], "google");
    assert_eq!(labels["model"], "gemini-1.5-flash");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["cluster"], "test");
    assert_eq!(ours[0]["status"]["state"], "active");
    assert_eq!(
        ours[0]["annotations"]["summary"],
        alerts[fired].summary.as_str()
    );
    let hooks = hook_bodies.lock().expect("lock").clone();
    assert_eq!(
        hooks.len(),
        fired + 1,
        "every alert state change reached the webhook"
    );
    // Alerts of different dedup keys travel on different partitions: in order per key only.
    assert!(
        hooks
            .iter()
            .any(|h| h["dedup_key"] == key.as_str() && h["status"] == "FIRING"),
        "{hooks:?}"
    );

    // 2. Alertmanager restarts (it keeps alerts in memory only): the notifier sends what is
    // still firing again within its resend interval.
    drop(am);
    let am = Alertmanager::start(port, &dir);
    wait_for("the firing alert re-sent", Duration::from_secs(20), || {
        active(port, "HighErrorRate")
            .iter()
            .any(|a| a["annotations"]["dedup_key"] == key.as_str())
    });

    // 3. Recovery: the resolution ends the alert in Alertmanager.
    publish(&transport, &names, &alerts[fired + 1..=resolved]).await;
    let (notifier, _) = drain(notifier).await;
    assert!(
        !active(port, "HighErrorRate")
            .iter()
            .any(|a| a["annotations"]["dedup_key"] == key.as_str()),
        "resolved alert still active"
    );

    // 4. Alertmanager down while an alert fires: the notifier retries (not ready meanwhile)
    // and the alert arrives once Alertmanager is back; nothing is acknowledged before.
    drop(am);
    let mut again = alerts[fired].clone();
    again.id = format!("{}-again", again.id);
    again.starts_at = alerts[resolved].event_time + 600_000;
    again.event_time = again.starts_at;
    publish(&transport, &names, std::slice::from_ref(&again)).await;
    let health = notifier.health.clone();
    let draining = tokio::spawn(drain(notifier));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !health.is_ready(),
        "a notifier that cannot deliver reports not ready"
    );
    assert!(
        !draining.is_finished(),
        "nothing acknowledged while Alertmanager is down"
    );
    let _am = Alertmanager::start(port, &dir);
    let (notifier, moved) = draining.await.expect("drain task");
    assert_eq!(moved, 1);
    let listed = active(port, "HighErrorRate");
    assert!(
        listed
            .iter()
            .any(|a| a["annotations"]["dedup_key"] == key.as_str()),
        "the alert fired during the outage arrived: {listed:?}"
    );
    let text = notifier.metrics.render();
    let failed: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("llmopt_notifications_total")
                && l.contains("sink=\"alertmanager\"")
                && l.contains("outcome=\"failed\"")
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    assert!(failed >= 1.0, "failed deliveries counted: {text}");
    notifier.stage.stop_stage().await.expect("stop notifier");
    let _ = std::fs::remove_dir_all(&dir);
}
