//! The console's JSON API against the demo's known scenario: every endpoint answers what the
//! topics said (the demo's own record of them), approvals need a token and become decision events
//! carrying who approved, refused ones leave no event, and the stream pushes updates.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use llmopt::config::AppConfig;
use llmopt::console::{self, ConsoleState};
use llmopt::cost_report::{self, ReportPeriod};
use llmopt::demo::{self, DemoOptions, DemoResult};
use llmopt_cloudevents::KafkaMessage;
use llmopt_events::wire;
use llmopt_events::{Decision, DecisionState, SchemaRegistry};
use llmopt_sim::Scenario;
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::{read_topic, LogicalTopic, TopicNames, Transport};
use serde_json::Value;

const TOKEN: &str = "s3cret-console-token";

/// One HTTP/1.0 exchange: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect console");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: console\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path, &[]);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Decisions on the topic, in order.
async fn decisions_on_topic(transport: &dyn Transport, names: &TopicNames) -> Vec<Decision> {
    let registry = SchemaRegistry::current();
    read_topic(transport, &names.name(LogicalTopic::Decisions), "test")
        .await
        .expect("read decisions")
        .into_iter()
        .filter_map(|m| {
            let record = KafkaMessage {
                key: m.key,
                headers: m.headers,
                value: m.value,
            };
            wire::decode_kafka::<Decision>(&record, &Default::default(), &registry)
                .ok()
                .map(|(_, _, d)| d)
        })
        .collect()
}

/// The demo's first 50 simulated minutes in propose mode, with a console following it.
async fn demo_with_console() -> (
    DemoResult,
    Arc<ConsoleState>,
    Arc<dyn Transport>,
    TopicNames,
) {
    let mut config = AppConfig::default();
    config.decision.mode = llmopt_decision::config::Mode::Propose;
    config.console.tokens = BTreeMap::from([("alice".to_string(), TOKEN.to_string())]);
    let options = DemoOptions {
        seed: 42,
        scenario: Scenario::default(),
        step_s: 60,
        speed: 0.0,
        duration_s: Some(50 * 60),
        max_rate: None,
    };
    let transport: Arc<dyn Transport> =
        Arc::new(EmbeddedTransport::new(config.transport.partitions));
    let names = TopicNames::new(&config.transport);
    let state = ConsoleState::new(
        config.console.retention_ms,
        &config.console.tokens,
        Some((transport.clone(), names.clone())),
    );
    let (config, sim) = demo::prepare(config, &options).expect("prepare demo");
    let observed = state.clone();
    let result = demo::run_embedded_on(
        config,
        sim,
        &options,
        &mut |_| {},
        transport.clone(),
        Some(Box::new(move |e| observed.apply(e))),
    )
    .await
    .expect("demo run");
    (result, state, transport, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_what_the_topics_said_and_approvals_need_a_token() {
    let (result, state, transport, names) = demo_with_console().await;
    let (addr, _server) = console::serve("127.0.0.1:0".parse().expect("addr"), state.clone())
        .await
        .expect("serve console");
    let record = &result.record;

    // Routes: every route of the fleet, with the live routing the actuator wrote.
    let routes = get_json(addr, "/api/v1/routes");
    let routes = routes.as_array().expect("routes");
    assert_eq!(routes.len(), result.routing.len());
    for r in routes {
        let key = (
            r["app"].as_str().expect("app").to_string(),
            r["route"].as_str().expect("route").to_string(),
        );
        let live = &result.routing[&key];
        assert_eq!(r["version"], live.version, "{key:?}");
        assert_eq!(
            r["targets"].as_array().map(Vec::len),
            Some(live.targets.len())
        );
        assert!(r["now"]["calls"].as_i64().unwrap_or(0) > 0, "{r}");
    }

    // Windows of one route: the calls of every tumbling window the topic carried.
    let (app, route) = ("search", "query-rewrite");
    let windows = get_json(addr, &format!("/api/v1/routes/{app}/{route}/windows"));
    let served: i64 = windows["total"]
        .as_array()
        .expect("total")
        .iter()
        .map(|f| f["calls"].as_i64().unwrap_or(0))
        .sum();
    let on_topic: i64 = record
        .windows
        .values()
        .filter(|w| w.app == app && w.route == route)
        .map(|w| w.count)
        .sum();
    assert_eq!(served, on_topic);
    // In 5-minute buckets, the same calls in a fifth of the points.
    let bucketed = get_json(
        addr,
        &format!("/api/v1/routes/{app}/{route}/windows?series=false&step=300000"),
    );
    let total = bucketed["total"].as_array().expect("total");
    let calls: i64 = total.iter().map(|f| f["calls"].as_i64().unwrap_or(0)).sum();
    assert_eq!(calls, on_topic);
    assert!(total.len() * 4 < windows["total"].as_array().map_or(0, Vec::len));
    assert_eq!(bucketed["series"], serde_json::json!({}));
    // The overview: every route with its last hours, in one request.
    let overview = get_json(addr, "/api/v1/overview?hours=1&step=300000");
    let overview = overview.as_array().expect("overview");
    assert_eq!(overview.len(), result.routing.len());
    let now = get_json(addr, "/api/v1/summary")["now_ms"]
        .as_i64()
        .expect("now");
    for r in overview {
        let total = r["total"].as_array().expect("total");
        assert!(
            (1..=13).contains(&total.len()),
            "{} buckets in an hour",
            total.len()
        );
        let calls: i64 = total.iter().map(|f| f["calls"].as_i64().unwrap_or(0)).sum();
        let expected: i64 = record
            .windows
            .values()
            .filter(|w| w.app == r["app"] && w.route == r["route"])
            .filter(|w| w.window_end >= now - 3_600_000)
            .map(|w| w.count)
            .sum();
        assert_eq!(calls, expected, "{}/{}", r["app"], r["route"]);
        assert!(r["version"].is_i64() && r["targets"].is_array());
    }
    assert!(windows["series"]["google/gemini-1.5-flash"].is_array());
    let detail = get_json(addr, &format!("/api/v1/routes/{app}/{route}"));
    let versions: Vec<i64> = detail["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["version"].as_i64())
        .collect();
    let expected: Vec<i64> = record
        .config_changes
        .iter()
        .filter(|c| c.app == app && c.route == route)
        .map(|c| c.version)
        .collect();
    assert_eq!(versions, expected);

    // Alerts: the same state changes, and the same firing set.
    let alerts = get_json(addr, "/api/v1/alerts");
    let ids: Vec<&str> = alerts
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    let expected: Vec<&str> = record.alerts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, expected);
    assert!(ids.len() >= 2, "the outage alerted");
    let firing: BTreeSet<String> = get_json(addr, "/api/v1/alerts?status=firing")
        .as_array()
        .expect("firing")
        .iter()
        .filter_map(|a| a["dedup_key"].as_str().map(str::to_string))
        .collect();
    // Firing now: the keys whose last state change is FIRING.
    let mut last: BTreeMap<&str, bool> = BTreeMap::new();
    for a in &record.alerts {
        last.insert(&a.dedup_key, a.status == llmopt_events::AlertStatus::Firing);
    }
    let expected: BTreeSet<String> = last
        .into_iter()
        .filter(|(_, firing)| *firing)
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(firing, expected);

    // Decisions: the latest state of each, with evidence; some wait for an operator.
    let decisions = get_json(addr, "/api/v1/decisions");
    let latest = record.latest_decisions();
    assert_eq!(decisions.as_array().map(Vec::len), Some(latest.len()));
    for d in decisions.as_array().expect("decisions") {
        let id = d["id"].as_str().expect("id");
        assert_eq!(
            d["state"],
            serde_json::to_value(latest[id].state).expect("state")
        );
        assert!(d["evidence"]["test"].is_string());
    }
    let proposed = get_json(addr, "/api/v1/decisions?state=PROPOSED");
    let proposed = proposed.as_array().expect("proposed").clone();
    assert!(
        !proposed.is_empty(),
        "propose mode leaves decisions waiting"
    );
    let id = proposed[0]["id"].as_str().expect("id").to_string();
    // Decision ids hold `/`: clients percent-encode them in paths.
    let encoded = id.replace('/', "%2F");
    let one = get_json(addr, &format!("/api/v1/decisions/{encoded}"));
    assert_eq!(one["decision"]["id"], id.as_str());
    assert!(!one["history"].as_array().expect("history").is_empty());

    // Cost: the report the topics give.
    let cost = get_json(addr, "/api/v1/cost?period=day");
    let windows: Vec<_> = record.windows.values().cloned().collect();
    let decided: Vec<_> = record.decisions.clone();
    let expected = cost_report::build(
        &windows,
        &record.config_changes,
        &decided,
        ReportPeriod::Day,
    )
    .expect("report");
    let spend = cost["spend_usd"].as_f64().expect("spend");
    assert!(
        (spend - expected.spend_usd).abs() < 1e-9,
        "{spend} vs {}",
        expected.spend_usd
    );
    assert_eq!(cost["calls"], expected.calls);
    assert_eq!(get_json(addr, "/api/v1/artifacts"), serde_json::json!([]));
    assert_eq!(http(addr, "GET", "/api/v1/routes/nope/none", &[]).0, 404);
    assert_eq!(http(addr, "GET", "/api/v1/alerts?status=maybe", &[]).0, 400);
    let summary = get_json(addr, "/api/v1/summary");
    assert_eq!(summary["mutations_enabled"], true);

    // Mutations: refused without a token (or with a wrong one), and nothing is published.
    let before = decisions_on_topic(transport.as_ref(), &names).await.len();
    let approve = format!("/api/v1/decisions/{encoded}/approve");
    let (status, body) = http(addr, "POST", &approve, &[]);
    assert_eq!(status, 401, "{body}");
    let (status, _) = http(addr, "POST", &approve, &[("Authorization", "Bearer wrong")]);
    assert_eq!(status, 401);
    assert_eq!(
        decisions_on_topic(transport.as_ref(), &names).await.len(),
        before
    );

    // With the token: one APPROVED event on the decisions topic, saying who approved.
    let bearer = format!("Bearer {TOKEN}");
    let (status, body) = http(addr, "POST", &approve, &[("Authorization", &bearer)]);
    assert_eq!(status, 202, "{body}");
    let after = decisions_on_topic(transport.as_ref(), &names).await;
    assert_eq!(after.len(), before + 1);
    let approved = after.last().expect("approval");
    assert_eq!(approved.id, id);
    assert_eq!(approved.state, DecisionState::Approved);
    assert_eq!(
        approved.params.get("decided_by").map(String::as_str),
        Some("alice")
    );
    // Approved now (the console's newest window), not back when it was proposed: the change
    // it causes counts from here.
    let now_ms = get_json(addr, "/api/v1/summary")["now_ms"]
        .as_i64()
        .expect("now");
    assert_eq!(approved.event_time, now_ms);
    assert!(approved.event_time > proposed[0]["event_time"].as_i64().expect("proposed at"));
    // The view learns it from the topic, like everything else; until then it is still
    // PROPOSED, so a second approval is refused only once the event is read back.
    state.apply(&llmopt_events::AnyEvent::Decision(approved.clone()));
    let (status, _) = http(addr, "POST", &approve, &[("Authorization", &bearer)]);
    assert_eq!(status, 409, "only PROPOSED decisions can be approved");
    // Rejecting another proposal: a REJECTED event, by alice.
    if let Some(other) = proposed
        .iter()
        .filter_map(|d| d["id"].as_str())
        .find(|o| *o != id)
    {
        let reject = format!("/api/v1/decisions/{}/reject", other.replace('/', "%2F"));
        let (status, body) = http(addr, "POST", &reject, &[("Authorization", &bearer)]);
        assert_eq!(status, 202, "{body}");
        let last = decisions_on_topic(transport.as_ref(), &names).await;
        let rejected = last.last().expect("rejection");
        assert_eq!(
            (rejected.id.as_str(), rejected.state),
            (other, DecisionState::Rejected)
        );
        assert_eq!(
            rejected.params.get("decided_by").map(String::as_str),
            Some("alice")
        );
    }
    assert_eq!(
        http(
            addr,
            "POST",
            "/api/v1/decisions/nope/approve",
            &[("Authorization", &bearer)]
        )
        .0,
        404
    );

    // The UI and the API description are served from the binary.
    let (status, page) = http(addr, "GET", "/", &[]);
    assert_eq!(status, 200);
    assert!(page.contains("console.js"));
    let openapi = get_json(addr, "/api/v1/openapi.json");
    assert_eq!(openapi["openapi"], "3.0.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_pushes_an_update_when_an_alert_arrives_and_a_console_without_tokens_is_read_only(
) {
    let state = ConsoleState::new(3_600_000, &BTreeMap::new(), None);
    let (addr, _server) = console::serve("127.0.0.1:0".parse().expect("addr"), state.clone())
        .await
        .expect("serve console");
    let reader = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
            .write_all(b"GET /api/v1/stream HTTP/1.1\r\nHost: console\r\nAccept: text/event-stream\r\n\r\n")
            .expect("send");
        let mut lines = BufReader::new(stream).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.expect("line");
            if line.starts_with("data:") {
                seen.push(line);
                break;
            }
            seen.push(line);
        }
        seen
    });
    // Give the client time to subscribe, then an alert arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alert = llmopt_events::Alert {
        status: llmopt_events::AlertStatus::Firing,
        ..llmopt_events::samples::alert()
    };
    state.apply(&llmopt_events::AnyEvent::Alert(alert));
    let seen = tokio::task::spawn_blocking(move || reader.join().expect("reader"))
        .await
        .expect("join");
    assert!(seen.iter().any(|l| l == "event: update"), "{seen:?}");
    let data = seen.last().expect("data");
    assert!(data.contains("\"kind\":\"alert\""), "{data}");
    let firing = get_json(addr, "/api/v1/alerts?status=firing");
    assert_eq!(firing.as_array().map(Vec::len), Some(1));
    // Quantization: a job, then its artifact.
    let job = llmopt_events::samples::quantization_job();
    let mut artifact = llmopt_events::samples::artifact_published();
    artifact.job_id = job.job_id.clone();
    state.apply(&llmopt_events::AnyEvent::QuantizationJob(job.clone()));
    let jobs = get_json(addr, "/api/v1/quantization/jobs");
    assert_eq!(jobs[0]["status"], "queued");
    state.apply(&llmopt_events::AnyEvent::ArtifactPublished(
        artifact.clone(),
    ));
    let jobs = get_json(addr, "/api/v1/quantization/jobs");
    assert_eq!(jobs[0]["status"], "published");
    assert_eq!(jobs[0]["artifact_id"], artifact.id.as_str());
    let artifacts = get_json(addr, "/api/v1/artifacts");
    assert_eq!(artifacts[0]["mean_cosine"], artifact.mean_cosine);
    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/decisions/x/approve",
        &[("Authorization", "Bearer anything")],
    );
    assert_eq!(status, 401);
    assert!(body.contains("read-only"), "{body}");
}
