//! The admin endpoint answers like Kubernetes probes and Prometheus scrapes expect.

use std::sync::Arc;

use llmopt_runtime::admin;
use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, response)
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let health = Arc::new(Health::new());
    let metrics = Arc::new(ServiceMetrics::new("test-service"));
    let addr = admin::serve(
        "127.0.0.1:0".parse().expect("addr"),
        health.clone(),
        metrics.clone(),
    )
    .await
    .expect("serve");

    assert_eq!(get(addr, "/health").await.0, 200);
    assert_eq!(
        get(addr, "/ready").await.0,
        503,
        "not ready before catching up"
    );
    health.set_ready(true);
    assert_eq!(get(addr, "/ready").await.0, 200);

    metrics
        .events_in
        .with_label_values(&["llmopt.telemetry"])
        .inc_by(3);
    metrics.dead_letters.with_label_values(&["not_json"]).inc();
    metrics
        .consumer_lag
        .with_label_values(&["llmopt.telemetry", "0"])
        .set(42);
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("text/plain; version=0.0.4"));
    assert!(
        body.contains(
            "llmopt_events_in_total{service=\"test-service\",topic=\"llmopt.telemetry\"} 3"
        ),
        "{body}"
    );
    assert!(
        body.contains("llmopt_dead_letters_total{reason=\"not_json\",service=\"test-service\"} 1")
    );
    assert!(body.contains("llmopt_consumer_lag{partition=\"0\",service=\"test-service\",topic=\"llmopt.telemetry\"} 42"));

    health.set_stopping();
    assert_eq!(get(addr, "/health").await.0, 503);
    assert_eq!(get(addr, "/ready").await.0, 503);
}
