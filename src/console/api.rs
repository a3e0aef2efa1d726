//! The console's HTTP surface on one port: the JSON API under `/api/v1` (described by
//! `/api/v1/openapi.json`), server-sent events at `/api/v1/stream`, and the web UI at `/`.
//!
//! Reads need nothing; approving or rejecting a decision needs `Authorization: Bearer <token>`
//! with a token from `console.tokens` (token name = who decided) and becomes a decision event on
//! the decisions topic carrying `decided_by`, exactly what `llmopt decisions approve` publishes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{Alert, Decision, DecisionState, RouteTarget, WindowAggregate};
use llmopt_transport::{LogicalTopic, OutboundMessage, TopicNames, Transport};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::view::{ConsoleView, RouteView};
use crate::cost_report::{self, ReportPeriod};

/// Shared by every request.
pub struct ConsoleState {
    /// The view, folded from the topics.
    pub view: RwLock<ConsoleView>,
    /// Bearer token -> who it belongs to.
    tokens: BTreeMap<String, String>,
    /// Where approvals go; `None` for a console that cannot publish (tests of reads).
    publisher: Option<(Arc<dyn Transport>, TopicNames)>,
    updates: broadcast::Sender<Update>,
}

/// What the stream tells clients: something changed, and how much has happened.
#[derive(Debug, Clone, Serialize)]
pub struct Update {
    /// `window`, `alert`, `decision`, `config_change` or `quantization`.
    pub kind: &'static str,
    /// Events folded into the view so far.
    pub events: u64,
}

impl ConsoleState {
    /// A console keeping `retention_ms` of windows, accepting the `tokens` (name -> token) for
    /// mutations and publishing them through `publisher`.
    pub fn new(
        retention_ms: i64,
        tokens: &BTreeMap<String, String>,
        publisher: Option<(Arc<dyn Transport>, TopicNames)>,
    ) -> Arc<Self> {
        let (updates, _) = broadcast::channel(1024);
        Arc::new(Self {
            view: RwLock::new(ConsoleView::new(retention_ms)),
            tokens: tokens
                .iter()
                .filter(|(_, token)| !token.is_empty())
                .map(|(name, token)| (token.clone(), name.clone()))
                .collect(),
            publisher,
            updates,
        })
    }

    /// Folds an event into the view and tells the stream's clients.
    pub fn apply(&self, event: &llmopt_events::AnyEvent) {
        use llmopt_events::AnyEvent as E;
        let kind = match event {
            E::WindowAggregate(_) => "window",
            E::Alert(_) => "alert",
            E::Decision(_) => "decision",
            E::ConfigChange(_) => "config_change",
            E::ArtifactPublished(_) | E::QuantizationJob(_) | E::QuantizationFailed(_) => {
                "quantization"
            }
            _ => return,
        };
        let (changed, events) = match self.view.write() {
            Ok(mut view) => (view.apply(event), view.events()),
            Err(poisoned) => {
                let mut view = poisoned.into_inner();
                (view.apply(event), view.events())
            }
        };
        if changed {
            // No receivers is fine: nobody is watching.
            let _ = self.updates.send(Update { kind, events });
        }
    }

    fn read<T>(&self, f: impl FnOnce(&ConsoleView) -> T) -> T {
        match self.view.read() {
            Ok(view) => f(&view),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }
}

/// The console's routes.
pub fn router(state: Arc<ConsoleState>) -> Router {
    Router::new()
        .route("/", get(super::assets::index))
        .route("/console.js", get(super::assets::script))
        .route("/console.css", get(super::assets::style))
        .route("/api/v1/openapi.json", get(super::assets::openapi))
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/routes", get(routes))
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/routes/{app}/{route}", get(route_detail))
        .route("/api/v1/routes/{app}/{route}/windows", get(route_windows))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/decisions", get(decisions))
        .route("/api/v1/decisions/{id}", get(decision_detail))
        .route("/api/v1/decisions/{id}/approve", post(approve))
        .route("/api/v1/decisions/{id}/reject", post(reject))
        .route("/api/v1/cost", get(cost))
        .route("/api/v1/artifacts", get(artifacts))
        .route("/api/v1/quantization/jobs", get(jobs))
        .route("/api/v1/stream", get(stream))
        .with_state(state)
}

/// One window's (or a route's) figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Window end (ms since epoch).
    pub window_end_ms: i64,
    /// Calls.
    pub calls: i64,
    /// Failed calls.
    pub errors: i64,
    /// `errors / calls`.
    pub error_rate: f64,
    /// p95 latency (ms); over several models the call-weighted mean of theirs.
    pub latency_p95_ms: f64,
    /// Spend (USD).
    pub cost_usd: f64,
    /// `cost_usd / calls`.
    pub cost_per_call: f64,
    /// Mean quality of the scored calls.
    pub quality_mean: Option<f64>,
}

fn figures<'a>(windows: impl IntoIterator<Item = &'a WindowAggregate>) -> Option<Figures> {
    let mut f = Figures {
        window_end_ms: i64::MIN,
        calls: 0,
        errors: 0,
        error_rate: 0.0,
        latency_p95_ms: 0.0,
        cost_usd: 0.0,
        cost_per_call: 0.0,
        quality_mean: None,
    };
    let (mut quality_sum, mut quality_count, mut latency) = (0.0, 0_i64, 0.0);
    for w in windows {
        f.window_end_ms = f.window_end_ms.max(w.window_end);
        f.calls += w.count;
        f.errors += w.error_count;
        f.cost_usd += w.cost_usd;
        latency += w.latency_p95_ms * w.count as f64;
        quality_sum += w.quality_sum;
        quality_count += w.quality_count;
    }
    if f.calls == 0 {
        return None;
    }
    let calls = f.calls as f64;
    f.error_rate = f.errors as f64 / calls;
    f.latency_p95_ms = latency / calls;
    f.cost_per_call = f.cost_usd / calls;
    f.quality_mean = (quality_count > 0).then(|| quality_sum / quality_count as f64);
    Some(f)
}

/// A route as the overview lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RouteSummary {
    /// App.
    pub app: String,
    /// Route.
    pub route: String,
    /// Live routing version (`None` before the first config change was seen).
    pub version: Option<i64>,
    /// Live targets and weights.
    pub targets: Vec<RouteTarget>,
    /// Live params.
    pub params: BTreeMap<String, String>,
    /// Its newest window, all models together.
    pub now: Option<Figures>,
    /// The last hour of windows, all models together.
    pub last_hour: Option<Figures>,
    /// Alerts firing on it.
    pub firing_alerts: usize,
    /// Decisions on it waiting for an operator.
    pub pending_decisions: usize,
}

fn summarise(view: &ConsoleView, r: &RouteView) -> RouteSummary {
    let live = r.changes.back();
    let newest = r
        .windows
        .values()
        .filter_map(|p| p.values().next_back().map(|w| w.window_end))
        .max();
    let at = |end: i64| {
        r.windows
            .values()
            .filter_map(move |p| p.values().rev().find(|w| w.window_end == end))
    };
    let hour = |end: i64| {
        r.windows.values().flat_map(move |p| {
            p.values()
                .filter(move |w| w.window_end > end - 3_600_000 && w.window_end <= end)
        })
    };
    RouteSummary {
        app: r.app.clone(),
        route: r.route.clone(),
        version: live.map(|c| c.version),
        targets: live.map(|c| c.targets.clone()).unwrap_or_default(),
        params: live.map(|c| c.params.clone()).unwrap_or_default(),
        now: newest.and_then(|end| figures(at(end))),
        last_hour: newest.and_then(|end| figures(hour(end))),
        firing_alerts: view
            .firing()
            .filter(|a| on_route(a, &r.app, &r.route))
            .count(),
        pending_decisions: view
            .decisions()
            .filter(|d| d.app == r.app && d.route == r.route && d.state == DecisionState::Proposed)
            .count(),
    }
}

fn on_route(a: &Alert, app: &str, route: &str) -> bool {
    a.labels.get("app").map(String::as_str) == Some(app)
        && a.labels.get("route").map(String::as_str) == Some(route)
}

#[derive(Serialize)]
struct Summary {
    /// Event time of the newest window: the console's "now".
    now_ms: i64,
    events: u64,
    routes: usize,
    firing_alerts: usize,
    pending_decisions: usize,
    /// Whether mutations are possible (tokens configured and a topic to publish to).
    mutations_enabled: bool,
}

async fn summary(State(state): State<Arc<ConsoleState>>) -> Json<Summary> {
    let mutations_enabled = !state.tokens.is_empty() && state.publisher.is_some();
    Json(state.read(|v| {
        Summary {
            now_ms: v.now_ms(),
            events: v.events(),
            routes: v.routes().count(),
            firing_alerts: v.firing().count(),
            pending_decisions: v
                .decisions()
                .filter(|d| d.state == DecisionState::Proposed)
                .count(),
            mutations_enabled,
        }
    }))
}

async fn routes(State(state): State<Arc<ConsoleState>>) -> Json<Vec<RouteSummary>> {
    Json(state.read(|v| v.routes().map(|r| summarise(v, r)).collect()))
}

#[derive(Serialize)]
struct RouteDetail {
    summary: RouteSummary,
    /// Config changes, oldest first: the routing's version history.
    changes: Vec<llmopt_events::ConfigChange>,
    /// Latest state of every decision on the route, oldest first.
    decisions: Vec<Decision>,
    /// Alert state changes on the route, oldest first.
    alerts: Vec<Alert>,
}

async fn route_detail(
    State(state): State<Arc<ConsoleState>>,
    Path((app, route)): Path<(String, String)>,
) -> Response {
    state.read(|v| match v.route(&app, &route) {
        None => not_found(&format!("no route {app}/{route}")),
        Some(r) => {
            let mut decisions: Vec<Decision> = v
                .decisions()
                .filter(|d| d.app == app && d.route == route)
                .cloned()
                .collect();
            decisions.sort_by_key(|d| d.event_time);
            Json(RouteDetail {
                summary: summarise(v, r),
                changes: r.changes.iter().cloned().collect(),
                decisions,
                alerts: v
                    .alerts()
                    .filter(|a| on_route(a, &app, &route))
                    .cloned()
                    .collect(),
            })
            .into_response()
        }
    })
}

#[derive(Deserialize)]
struct Range {
    /// Window ends from (ms, inclusive).
    from: Option<i64>,
    /// Window ends up to (ms, inclusive).
    to: Option<i64>,
    /// Whether to include the per-model series (default true); the overview needs only totals.
    series: Option<bool>,
    /// Buckets of this many ms (a multiple of the window size) instead of single windows: the
    /// overview's charts of hours need no per-minute detail.
    step: Option<i64>,
}

#[derive(Serialize)]
struct RouteWindows {
    app: String,
    route: String,
    /// Per window end, all models together.
    total: Vec<Figures>,
    /// Per `provider/model`, per window.
    series: BTreeMap<String, Vec<Figures>>,
}

/// A route's windows in `[from, to]` (by window end), in buckets of `step` ms: totals over its
/// models, and per model when `with_series`.
fn bucketed(
    r: &RouteView,
    from: i64,
    to: i64,
    step: i64,
    with_series: bool,
) -> (Vec<Figures>, BTreeMap<String, Vec<Figures>>) {
    let step = step.max(1);
    // The end of the bucket a window falls in (its own end without a step).
    let bucket = |w: &WindowAggregate| (w.window_end - 1).div_euclid(step) * step + step;
    let mut by_end: BTreeMap<i64, Vec<&WindowAggregate>> = BTreeMap::new();
    let mut series = BTreeMap::new();
    for (name, points) in &r.windows {
        let mut buckets: BTreeMap<i64, Vec<&WindowAggregate>> = BTreeMap::new();
        for w in points
            .values()
            .filter(|w| w.window_end >= from && w.window_end <= to)
        {
            by_end.entry(bucket(w)).or_default().push(w);
            if with_series {
                buckets.entry(bucket(w)).or_default().push(w);
            }
        }
        if with_series {
            series.insert(
                name.clone(),
                buckets
                    .values()
                    .filter_map(|ws| figures(ws.iter().copied()))
                    .collect::<Vec<_>>(),
            );
        }
    }
    let total = by_end
        .values()
        .filter_map(|ws| figures(ws.iter().copied()))
        .collect();
    (total, series)
}

async fn route_windows(
    State(state): State<Arc<ConsoleState>>,
    Path((app, route)): Path<(String, String)>,
    Query(range): Query<Range>,
) -> Response {
    let from = range.from.unwrap_or(i64::MIN);
    let to = range.to.unwrap_or(i64::MAX);
    state.read(|v| match v.route(&app, &route) {
        None => not_found(&format!("no route {app}/{route}")),
        Some(r) => {
            let (total, series) = bucketed(
                r,
                from,
                to,
                range.step.unwrap_or(1),
                range.series.unwrap_or(true),
            );
            Json(RouteWindows {
                app,
                route,
                total,
                series,
            })
            .into_response()
        }
    })
}

#[derive(Serialize)]
struct OverviewRoute {
    #[serde(flatten)]
    summary: RouteSummary,
    /// Its windows over the requested hours, all models together, in buckets.
    total: Vec<Figures>,
}

#[derive(Deserialize)]
struct OverviewQuery {
    /// Hours of charts behind the newest window (default 3).
    hours: Option<f64>,
    /// Bucket size in ms (default 5 minutes).
    step: Option<i64>,
}

/// The overview page in one request: every route's summary and its recent windows.
async fn overview(
    State(state): State<Arc<ConsoleState>>,
    Query(q): Query<OverviewQuery>,
) -> Json<Vec<OverviewRoute>> {
    let hours = q.hours.filter(|h| h.is_finite() && *h > 0.0).unwrap_or(3.0);
    let step = q.step.unwrap_or(300_000);
    Json(state.read(|v| {
        let from = v.now_ms() - (hours * 3_600_000.0) as i64;
        v.routes()
            .map(|r| OverviewRoute {
                summary: summarise(v, r),
                total: bucketed(r, from, i64::MAX, step, false).0,
            })
            .collect()
    }))
}

#[derive(Deserialize)]
struct AlertQuery {
    /// `firing` (now) or `all` (every state change, the default).
    status: Option<String>,
}

async fn alerts(State(state): State<Arc<ConsoleState>>, Query(q): Query<AlertQuery>) -> Response {
    match q.status.as_deref() {
        Some("firing") => {
            Json(state.read(|v| v.firing().cloned().collect::<Vec<_>>())).into_response()
        }
        None | Some("all") => {
            Json(state.read(|v| v.alerts().cloned().collect::<Vec<_>>())).into_response()
        }
        Some(other) => bad_request(&format!("status must be firing or all, not `{other}`")),
    }
}

#[derive(Deserialize)]
struct DecisionQuery {
    /// Only decisions whose latest state is this (`PROPOSED`, `APPLIED`, ...).
    state: Option<String>,
}

async fn decisions(
    State(state): State<Arc<ConsoleState>>,
    Query(q): Query<DecisionQuery>,
) -> Json<Vec<Decision>> {
    let wanted = q.state.map(|s| s.to_uppercase());
    Json(state.read(|v| {
        let mut list: Vec<Decision> = v
            .decisions()
            .filter(|d| wanted.as_deref().is_none_or(|w| state_name(d.state) == w))
            .cloned()
            .collect();
        list.sort_by_key(|d| d.event_time);
        list
    }))
}

fn state_name(state: DecisionState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[derive(Serialize)]
struct DecisionDetail {
    decision: Decision,
    /// Every state change, oldest first: the lifecycle.
    history: Vec<Decision>,
}

async fn decision_detail(
    State(state): State<Arc<ConsoleState>>,
    Path(id): Path<String>,
) -> Response {
    state.read(|v| match v.decision(&id) {
        None => not_found(&format!("no decision `{id}`")),
        Some(d) => Json(DecisionDetail {
            decision: d.clone(),
            history: v.decision_history(&id).cloned().collect(),
        })
        .into_response(),
    })
}

async fn approve(
    State(state): State<Arc<ConsoleState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    decide(&state, &id, &headers, DecisionState::Approved).await
}

async fn reject(
    State(state): State<Arc<ConsoleState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    decide(&state, &id, &headers, DecisionState::Rejected).await
}

/// Who the request's bearer token belongs to.
fn caller(state: &ConsoleState, headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    state.tokens.get(token).cloned()
}

async fn decide(
    state: &ConsoleState,
    id: &str,
    headers: &HeaderMap,
    to: DecisionState,
) -> Response {
    let Some(by) = caller(state, headers) else {
        let message = if state.tokens.is_empty() {
            "the console is read-only: no console.tokens are configured"
        } else {
            "approving or rejecting needs `Authorization: Bearer <token>` with a console token"
        };
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"llmopt\"")],
            Json(ApiError {
                error: message.into(),
            }),
        )
            .into_response();
    };
    let Some((transport, names)) = &state.publisher else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ApiError {
                error: "this console cannot publish decisions".into(),
            }),
        )
            .into_response();
    };
    let (current, now_ms) = state.read(|v| (v.decision(id).cloned(), v.now_ms()));
    let Some(current) = current else {
        return not_found(&format!("no decision `{id}`"));
    };
    if current.state != DecisionState::Proposed {
        return (
            StatusCode::CONFLICT,
            Json(ApiError {
                error: format!(
                    "decision `{id}` is {}: only PROPOSED decisions can be approved or rejected",
                    state_name(current.state)
                ),
            }),
        )
            .into_response();
    }
    match publish_decided(transport.as_ref(), names, &current, to, &by, now_ms).await {
        Ok(decided) => (StatusCode::ACCEPTED, Json(decided)).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ApiError {
                error: format!("could not publish the decision: {e:#}"),
            }),
        )
            .into_response(),
    }
}

/// Publishes `current` in state `to` on the decisions topic, as decided by `by` (the
/// `decided_by` param) at event time `at_ms` (the console's newest window end: the change the
/// approval causes then counts from when it was approved, not from when it was proposed).
pub async fn publish_decided(
    transport: &dyn Transport,
    names: &TopicNames,
    current: &Decision,
    to: DecisionState,
    by: &str,
    at_ms: i64,
) -> anyhow::Result<Decision> {
    publish_decided_from(
        transport,
        names,
        current,
        to,
        by,
        Some(at_ms),
        "llmopt/console",
    )
    .await
}

/// [`publish_decided`] with the CloudEvents `source` of the publisher (`llmopt/cli`, ...); without
/// an event time the decision keeps its proposal's.
pub async fn publish_decided_from(
    transport: &dyn Transport,
    names: &TopicNames,
    current: &Decision,
    to: DecisionState,
    by: &str,
    at_ms: Option<i64>,
    source: &str,
) -> anyhow::Result<Decision> {
    let mut decided = current.clone();
    decided.state = to;
    decided.event_time = decided.event_time.max(at_ms.unwrap_or(i64::MIN));
    decided
        .params
        .insert("decided_by".to_string(), by.to_string());
    let step = decided
        .params
        .get("step")
        .cloned()
        .unwrap_or_else(|| "0".into());
    let meta = EventMeta {
        id: format!("{}/{:?}/{step}/human", decided.id, to).to_lowercase(),
        source: source.into(),
        time_ms: Some(decided.event_time),
        partition_key: Some(format!("{}/{}", decided.app, decided.route)),
        traceparent: None,
        subject: None,
    };
    let record = wire::to_kafka(&decided, &meta, DataFormat::Avro)?;
    transport
        .publish(
            &names.name(LogicalTopic::Decisions),
            OutboundMessage {
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp_ms: Some(decided.event_time),
            },
        )
        .await?;
    Ok(decided)
}

#[derive(Deserialize)]
struct CostQuery {
    /// `day` (default), `week` or `month`: the period holding the newest window.
    period: Option<String>,
}

async fn cost(State(state): State<Arc<ConsoleState>>, Query(q): Query<CostQuery>) -> Response {
    let period = match q.period.as_deref().unwrap_or("day") {
        "day" => ReportPeriod::Day,
        "week" => ReportPeriod::Week,
        "month" => ReportPeriod::Month,
        other => return bad_request(&format!("period must be day, week or month, not `{other}`")),
    };
    let (windows, changes, decisions) = state.read(|v| {
        (
            v.all_windows(),
            v.all_changes(),
            v.decisions().cloned().collect::<Vec<_>>(),
        )
    });
    match cost_report::build(&windows, &changes, &decisions, period) {
        Some(report) => Json(report).into_response(),
        None => not_found("no windows yet"),
    }
}

async fn artifacts(
    State(state): State<Arc<ConsoleState>>,
) -> Json<Vec<llmopt_events::ArtifactPublished>> {
    Json(state.read(|v| v.artifacts().cloned().collect()))
}

async fn jobs(State(state): State<Arc<ConsoleState>>) -> Json<Vec<super::view::JobView>> {
    Json(state.read(|v| v.jobs().cloned().collect()))
}

async fn stream(
    State(state): State<Arc<ConsoleState>>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let mut updates = state.updates.subscribe();
    let stream = async_stream(move |tx| async move {
        loop {
            match updates.recv().await {
                Ok(update) => {
                    let event = Event::default()
                        .event("update")
                        .json_data(&update)
                        .unwrap_or_default();
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                // A slow client skips updates: the next one tells it to refresh anyway.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A stream fed by a task (no extra crate for `async-stream`).
fn async_stream<F, Fut>(producer: F) -> impl Stream<Item = Result<Event, std::convert::Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, std::convert::Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(producer(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[derive(Serialize)]
struct ApiError {
    error: String,
}

fn not_found(message: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response()
}
