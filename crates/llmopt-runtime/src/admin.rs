//! The admin HTTP endpoint every service serves: `/health` (liveness), `/ready` (readiness) and
//! `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::health::Health;
use crate::metrics::ServiceMetrics;
use crate::RuntimeError;

#[derive(Clone)]
struct AdminState {
    health: Arc<Health>,
    metrics: Arc<ServiceMetrics>,
}

/// Binds the admin endpoint and serves it in the background; returns the bound address (useful
/// with port 0).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<ServiceMetrics>,
) -> Result<SocketAddr, RuntimeError> {
    let app = Router::new()
        .route("/health", get(health_handler))
        .route("/ready", get(ready_handler))
        .route("/metrics", get(metrics_handler))
        .with_state(AdminState { health, metrics });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| RuntimeError::Admin(format!("bind {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| RuntimeError::Admin(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    tracing::info!(%bound, "admin endpoint listening");
    Ok(bound)
}

fn status(ok: bool, what: &'static str) -> impl IntoResponse {
    if ok {
        (StatusCode::OK, what)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not yet")
    }
}

async fn health_handler(State(s): State<AdminState>) -> impl IntoResponse {
    status(s.health.is_live(), "ok")
}

async fn ready_handler(State(s): State<AdminState>) -> impl IntoResponse {
    let what = if s.health.is_standby() {
        "standby"
    } else {
        "ready"
    };
    status(s.health.is_ready(), what)
}

async fn metrics_handler(State(s): State<AdminState>) -> impl IntoResponse {
    // Health flags are read at scrape time so the gauges never disagree with the endpoints.
    s.metrics.ready.set(i64::from(s.health.is_ready()));
    s.metrics.idle.set(i64::from(s.health.is_idle()));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
