//! Delivery: every alert state change to Alertmanager (v2 API) and the webhook before it is
//! acknowledged, and the alerts still firing re-sent periodically.
//!
//! * **Nothing lost.** A delivery that fails for a reason that may pass (no connection,
//!   timeout, 5xx, 429) fails the effect as transient: the runner retries it with backoff and
//!   reports itself not ready meanwhile, and the alert is not acknowledged, so a crash during
//!   an Alertmanager outage redelivers it on restart. Both receivers are idempotent for a
//!   repeated alert (Alertmanager merges by labels). A receiver refusing the payload (4xx) would
//!   refuse it again: that alert is logged and counted (`outcome="rejected"`) and skipped.
//! * **Firing stays firing.** Alertmanager keeps alerts in memory only and resolves one whose
//!   `endsAt` passed, so, like Prometheus, the notifier sends a firing alert with `endsAt` a
//!   TTL ahead and sends every firing alert again each `resend_interval_ms`. The firing set is
//!   kept in the state store, so a restarted notifier (or another instance) keeps re-sending
//!   what was firing before.
//! * **Order.** Deliveries and re-sends take one lock, so a re-send of an alert's firing copy
//!   can never overtake its resolution.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use llmopt_events::{Alert, AlertStatus, AnyEvent};
use llmopt_runtime::{Effects, Input, Output, RuntimeError};
use llmopt_state::StateStore;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::config::NotifierConfig;
use crate::http::{DeliveryError, JsonPoster};
use crate::payload::postable;

/// State-store key of the firing alerts (JSON map by dedup key).
pub const FIRING_KEY: &str = "llmopt:notifier:firing";

const ALERTMANAGER: &str = "alertmanager";
const WEBHOOK: &str = "webhook";

/// The notifier's counters, registered in the service's registry.
#[derive(Clone)]
pub struct NotifierMetrics {
    /// `llmopt_notifications_total{sink, outcome}`: sent, failed (retried), rejected (4xx).
    pub notifications: IntCounterVec,
    /// `llmopt_notifier_firing_alerts`: alerts the notifier keeps firing.
    pub firing: IntGauge,
}

impl NotifierMetrics {
    /// Registers the counters in `registry` (counters already there are reused).
    pub fn register(registry: &Registry) -> Self {
        let notifications = IntCounterVec::new(
            Opts::new(
                "notifications_total",
                "Alert deliveries by sink and outcome (sent, failed and retried, rejected).",
            ),
            &["sink", "outcome"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let firing = IntGauge::new(
            "notifier_firing_alerts",
            "Alerts the notifier keeps firing in Alertmanager.",
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        // A second registration (a restarted stage in one process) keeps the first counters.
        let _ = registry.register(Box::new(notifications.clone()));
        let _ = registry.register(Box::new(firing.clone()));
        Self {
            notifications,
            firing,
        }
    }

    fn count(&self, sink: &str, outcome: &str) {
        self.notifications.with_label_values(&[sink, outcome]).inc();
    }
}

struct Inner {
    config: NotifierConfig,
    poster: JsonPoster,
    store: Arc<dyn StateStore>,
    /// Firing alerts by dedup key; `None` until read from the store.
    firing: Option<BTreeMap<String, Alert>>,
    metrics: NotifierMetrics,
}

impl Inner {
    async fn firing(&mut self) -> Result<&mut BTreeMap<String, Alert>, RuntimeError> {
        if self.firing.is_none() {
            let stored = match self.store.get(FIRING_KEY).await? {
                Some(v) => serde_json::from_slice(&v.value).unwrap_or_else(|e| {
                    tracing::error!(error = %e, key = FIRING_KEY,
                        "stored firing alerts unreadable; starting from none");
                    BTreeMap::new()
                }),
                None => BTreeMap::new(),
            };
            self.firing = Some(stored);
        }
        Ok(self.firing.get_or_insert_with(BTreeMap::new))
    }

    /// Records `alert` in the firing set (and the store) before it is delivered.
    async fn track(&mut self, alert: &Alert) -> Result<(), RuntimeError> {
        let firing = self.firing().await?;
        let changed = match alert.status {
            AlertStatus::Firing => {
                firing
                    .insert(alert.dedup_key.clone(), alert.clone())
                    .as_ref()
                    != Some(alert)
            }
            AlertStatus::Resolved => firing.remove(&alert.dedup_key).is_some(),
        };
        let count = firing.len() as i64;
        if changed {
            let bytes = serde_json::to_vec(&*firing).unwrap_or_default();
            self.store.put(FIRING_KEY, &bytes).await?;
        }
        self.metrics.firing.set(count);
        Ok(())
    }

    async fn post(&self, sink: &str, url: &str, body: Vec<u8>) -> Result<(), RuntimeError> {
        match self.poster.post(url, body).await {
            Ok(()) => {
                self.metrics.count(sink, "sent");
                Ok(())
            }
            Err(e) if e.is_transient() => {
                self.metrics.count(sink, "failed");
                Err(sink_error(sink, &e))
            }
            Err(e) => {
                self.metrics.count(sink, "rejected");
                tracing::error!(sink, error = %e, "alert refused by its receiver; skipped");
                Ok(())
            }
        }
    }

    /// Sends `alerts` to Alertmanager (one request).
    async fn to_alertmanager(&self, alerts: &[&Alert]) -> Result<(), RuntimeError> {
        let Some(base) = &self.config.alertmanager_url else {
            return Ok(());
        };
        let now = chrono::Utc::now().timestamp_millis();
        let body: Vec<_> = alerts
            .iter()
            .map(|a| postable(a, &self.config, now))
            .collect();
        let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
        self.post(
            ALERTMANAGER,
            &url,
            serde_json::to_vec(&body).unwrap_or_default(),
        )
        .await
    }

    async fn deliver(&self, alert: &Alert) -> Result<(), RuntimeError> {
        self.to_alertmanager(&[alert]).await?;
        if let Some(url) = &self.config.webhook_url {
            self.post(WEBHOOK, url, serde_json::to_vec(alert).unwrap_or_default())
                .await?;
        }
        Ok(())
    }

    async fn resend(&mut self) -> Result<(), RuntimeError> {
        let firing: Vec<Alert> = self.firing().await?.values().cloned().collect();
        if firing.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Alert> = firing.iter().collect();
        self.to_alertmanager(&refs).await
    }
}

fn sink_error(sink: &str, e: &DeliveryError) -> RuntimeError {
    RuntimeError::Sink {
        sink: sink.to_string(),
        reason: e.to_string(),
    }
}

/// The notifier's effects: deliver each alert before its ack, re-send the firing ones.
pub struct NotifyEffects {
    inner: Arc<Mutex<Inner>>,
    resender: Option<JoinHandle<()>>,
}

impl NotifyEffects {
    /// Effects delivering to the sinks of `config`, keeping the firing set in `store`. With an
    /// Alertmanager configured, starts the re-send task (so it must be called within a tokio
    /// runtime); the task stops when the effects are dropped.
    pub fn new(config: NotifierConfig, store: Arc<dyn StateStore>, registry: &Registry) -> Self {
        let resend_every = Duration::from_millis(config.resend_interval_ms.max(100));
        let has_alertmanager = config.alertmanager_url.is_some();
        let inner = Arc::new(Mutex::new(Inner {
            poster: JsonPoster::new(Duration::from_millis(config.request_timeout_ms.max(1))),
            config,
            store,
            firing: None,
            metrics: NotifierMetrics::register(registry),
        }));
        let resender = has_alertmanager.then(|| {
            let inner = inner.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(resend_every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = inner.lock().await.resend().await {
                        tracing::warn!(error = %e, "re-sending firing alerts failed; next try in one interval");
                    }
                }
            })
        });
        Self { inner, resender }
    }
}

impl Drop for NotifyEffects {
    fn drop(&mut self) {
        if let Some(task) = self.resender.take() {
            task.abort();
        }
    }
}

#[async_trait]
impl Effects for NotifyEffects {
    async fn after_publish(
        &mut self,
        input: Option<&Input>,
        _outputs: &[Output],
    ) -> Result<(), RuntimeError> {
        let Some(Input {
            event: AnyEvent::Alert(alert),
            ..
        }) = input
        else {
            return Ok(());
        };
        let mut inner = self.inner.lock().await;
        inner.track(alert).await?;
        inner.deliver(alert).await
    }
}
