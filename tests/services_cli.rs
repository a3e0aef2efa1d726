//! Services and operator commands as separate `llmopt` processes against the real broker and
//! Redis: `llmopt run` with its admin endpoint and graceful SIGTERM, `llmopt actuator rebuild`,
//! `llmopt decisions approve`.

mod common;

use common::process::{free_port, http_get};

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmopt_actuator::{live_key, read_live_config};
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{samples, ChangeKind, ConfigChange, DecisionState, RouteTarget};
use llmopt_state::redis::RedisStore;
use llmopt_state::{StateConfig, StateKind, StateStore};
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{LogicalTopic, OutboundMessage, TopicNames, Transport, TransportConfig};

struct Env {
    prefix: String,
    key_prefix: String,
}

impl Env {
    fn new() -> Self {
        Self {
            prefix: format!("{}.", common::unique("svc")),
            key_prefix: format!("{}:", common::unique("svc")),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmopt"));
        cmd.args(args)
            .env("LLMOPT_TRANSPORT__KIND", "kafka")
            .env("LLMOPT_TRANSPORT__TOPIC_PREFIX", &self.prefix)
            .env("LLMOPT_TRANSPORT__PARTITIONS", "3")
            .env("LLMOPT_KAFKA_BOOTSTRAP", common::kafka_bootstrap())
            .env("LLMOPT_STATE__KIND", "redis")
            .env("LLMOPT_REDIS_URL", common::redis_url())
            .env("LLMOPT_STATE__KEY_PREFIX", &self.key_prefix)
            .env_remove("LLMOPT_CONFIG");
        cmd
    }

    fn names(&self) -> TopicNames {
        TopicNames::new(&TransportConfig {
            topic_prefix: self.prefix.clone(),
            partitions: 3,
            ..TransportConfig::default()
        })
    }

    async fn store(&self) -> Arc<dyn StateStore> {
        let config = StateConfig {
            kind: StateKind::Redis,
            redis_url: common::redis_url(),
            key_prefix: self.key_prefix.clone(),
            ..StateConfig::default()
        };
        Arc::new(RedisStore::connect(&config).await.expect("redis"))
    }

    async fn transport(&self) -> Arc<dyn Transport> {
        let t: Arc<dyn Transport> =
            Arc::new(KafkaTransport::new(&common::kafka_config(), "svc-test").expect("kafka"));
        t.ensure_topics(&self.names().all_specs())
            .await
            .expect("topics");
        t
    }
}

fn wait_for(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    common::process::wait_for(what, timeout, check).unwrap_or_else(|e| panic!("{e}"));
}

fn sigterm_and_wait(mut child: Child) -> String {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            assert!(
                status.success(),
                "clean exit on SIGTERM: {status}\n{stderr}"
            );
            return stderr;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn raw_call(n: u64) -> OutboundMessage {
    let call = samples::llm_call(n);
    let meta = EventMeta {
        id: format!("svc-{n}"),
        source: "/apps/svc".into(),
        time_ms: Some(call.event_time),
        partition_key: Some(format!("{}/{}", call.app, call.route)),
        ..EventMeta::default()
    };
    let m = wire::to_kafka(&call, &meta, DataFormat::Avro).expect("encode");
    OutboundMessage::from(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ingest_serves_admin_endpoints_and_stops_gracefully_on_sigterm() {
    let env = Env::new();
    let transport = env.transport().await;
    let raw = env.names().name(LogicalTopic::TelemetryRaw);
    let batch = (0..50).map(raw_call).collect();
    transport.publish_batch(&raw, batch).await.expect("publish");

    let port = free_port();
    let child = env
        .command(&[
            "run",
            "ingest",
            "--admin-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn llmopt run ingest");
    wait_for("/health", Duration::from_secs(30), || {
        http_get(port, "/health").is_some_and(|(s, _)| s == 200)
    });
    wait_for("/ready", Duration::from_secs(60), || {
        http_get(port, "/ready").is_some_and(|(s, _)| s == 200)
    });
    let telemetry = env.names().name(LogicalTopic::Telemetry);
    let expected =
        format!("llmopt_events_out_total{{service=\"ingest\",topic=\"{telemetry}\"}} 50");
    // Outputs are counted when handed to the producer, processing times when their delivery
    // is acknowledged: wait for both.
    wait_for(
        "50 events out and their processing times in /metrics",
        Duration::from_secs(60),
        || {
            http_get(port, "/metrics").is_some_and(|(_, body)| {
                body.contains(&expected) && body.contains("llmopt_processing_seconds_bucket")
            })
        },
    );
    let stderr = sigterm_and_wait(child);
    assert!(stderr.contains("stopped after"), "{stderr}");

    // Offsets were committed on the way out: a restarted ingest has nothing left to do.
    let port = free_port();
    let child = env
        .command(&[
            "run",
            "ingest",
            "--admin-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn second ingest");
    wait_for("second /ready", Duration::from_secs(60), || {
        http_get(port, "/ready").is_some_and(|(s, _)| s == 200)
    });
    let stderr = sigterm_and_wait(child);
    assert!(
        stderr.contains("consumed: 0"),
        "nothing re-read after a graceful stop: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actuator_rebuild_recomputes_live_config_from_the_topic_alone() {
    let env = Env::new();
    let transport = env.transport().await;
    let target = |provider: &str, model: &str, weight: f64| RouteTarget {
        provider: provider.into(),
        model: model.into(),
        weight,
    };
    let change =
        |app: &str, version: i64, kind: ChangeKind, targets: Vec<RouteTarget>| ConfigChange {
            id: format!("{app}/r/v{version}"),
            event_time: 1_767_225_600_000 + version * 1000,
            app: app.into(),
            route: "r".into(),
            version,
            previous_version: (version > 1).then_some(version - 1),
            kind,
            decision_id: None,
            targets,
            params: Default::default(),
        };
    let changes = [
        change(
            "a",
            1,
            ChangeKind::Initial,
            vec![target("openai", "gpt-4o", 1.0)],
        ),
        change(
            "b",
            1,
            ChangeKind::Initial,
            vec![target("anthropic", "claude-3-5-haiku", 1.0)],
        ),
        change(
            "a",
            2,
            ChangeKind::Apply,
            vec![
                target("openai", "gpt-4o", 0.5),
                target("openai", "gpt-4o-mini", 0.5),
            ],
        ),
    ];
    let topic = env.names().name(LogicalTopic::ConfigChanges);
    for c in &changes {
        let meta = EventMeta {
            id: c.id.clone(),
            source: "/test".into(),
            time_ms: Some(c.event_time),
            partition_key: Some(format!("{}/{}", c.app, c.route)),
            ..EventMeta::default()
        };
        let m = wire::to_kafka(c, &meta, DataFormat::Avro).expect("encode");
        transport
            .publish(&topic, OutboundMessage::from(m))
            .await
            .expect("publish");
    }
    // The store holds garbage for one route and nothing for the other.
    let store = env.store().await;
    store
        .put(&live_key("a", "r"), b"not a config")
        .await
        .expect("put");

    let out = env
        .command(&["actuator", "rebuild"])
        .output()
        .expect("rebuild");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = read_live_config(store.as_ref(), "a", "r")
        .await
        .expect("read")
        .expect("a");
    assert_eq!(a.version, 2);
    assert_eq!(a.targets.len(), 2);
    let b = read_live_config(store.as_ref(), "b", "r")
        .await
        .expect("read")
        .expect("b");
    assert_eq!(
        (b.version, b.targets[0].model.as_str()),
        (1, "claude-3-5-haiku")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_approve_publishes_the_approval() {
    let env = Env::new();
    let transport = env.transport().await;
    let mut proposed = samples::decision();
    proposed.state = DecisionState::Proposed;
    let meta = EventMeta {
        id: format!("{}/proposed/0", proposed.id),
        source: "llmopt/decision".into(),
        time_ms: Some(proposed.event_time),
        partition_key: Some(format!("{}/{}", proposed.app, proposed.route)),
        ..EventMeta::default()
    };
    let m = wire::to_kafka(&proposed, &meta, DataFormat::Avro).expect("encode");
    let topic = env.names().name(LogicalTopic::Decisions);
    transport
        .publish(&topic, OutboundMessage::from(m))
        .await
        .expect("publish");

    let list = env
        .command(&["decisions", "list", "--state", "PROPOSED"])
        .output()
        .expect("list");
    assert!(String::from_utf8_lossy(&list.stdout).contains(&proposed.id));
    let approve = env
        .command(&["decisions", "approve", &proposed.id])
        .output()
        .expect("approve");
    assert!(
        approve.status.success(),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    let list = env
        .command(&["decisions", "list", "--state", "APPROVED"])
        .output()
        .expect("list");
    assert!(
        String::from_utf8_lossy(&list.stdout).contains(&proposed.id),
        "approved"
    );
    // Only proposed decisions can be approved.
    let again = env
        .command(&["decisions", "approve", &proposed.id])
        .output()
        .expect("approve again");
    assert!(!again.status.success());
}

/// `llmopt report cost` reads the windows, config changes and decisions from Kafka: its totals
/// are the windows' sums (latest revision of each) and a decision's savings price the calls it
/// served at the routing it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_cost_sums_the_window_topic_and_prices_each_decision() {
    let env = Env::new();
    let transport = env.transport().await;
    let names = env.names();
    let start = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let minute = 60_000;
    let window = |model: &str, i: i64, revision: i32, calls: i64, cost_per_call: f64| {
        let mut w = samples::window_aggregate();
        w.app = "shop".into();
        w.route = "chat".into();
        w.provider = "openai".into();
        w.model = model.into();
        w.window_kind = llmopt_events::WindowKind::Tumbling;
        w.window_start = start + i * minute;
        w.window_end = w.window_start + minute;
        w.window_id = format!("shop/chat/openai/{model}/{}", w.window_start);
        w.id = format!("{}/r{revision}", w.window_id);
        w.revision = revision;
        w.count = calls;
        w.cost_usd = calls as f64 * cost_per_call;
        w.cost_by_tenant = [("acme".to_string(), w.cost_usd / 2.0)].into();
        w
    };
    let mut windows = Vec::new();
    for i in 0..20 {
        if i < 10 {
            windows.push(window("gpt-4o", i, 0, 100, 0.01));
        } else {
            windows.push(window("gpt-4o-mini", i, 0, 100, 0.001));
        }
    }
    // A first revision of the last window, superseded by the one above: not counted.
    windows.insert(0, window("gpt-4o-mini", 19, 0, 1, 0.001));
    windows.last_mut().expect("window").revision = 1;
    let change = |version: i64, i: i64, decision: Option<&str>, model: &str| ConfigChange {
        id: format!("shop/chat/v{version}"),
        event_time: start + i * minute,
        app: "shop".into(),
        route: "chat".into(),
        version,
        previous_version: (version > 1).then_some(version - 1),
        kind: if decision.is_some() {
            ChangeKind::Apply
        } else {
            ChangeKind::Initial
        },
        decision_id: decision.map(str::to_string),
        targets: vec![RouteTarget {
            provider: "openai".into(),
            model: model.into(),
            weight: 1.0,
        }],
        params: Default::default(),
    };
    let changes = [
        change(1, 0, None, "gpt-4o"),
        change(
            2,
            10,
            Some("cheaper_model_canary/shop/chat/1"),
            "gpt-4o-mini",
        ),
    ];
    let meta = |id: &str, time: i64| EventMeta {
        id: id.to_string(),
        source: "/test".into(),
        time_ms: Some(time),
        partition_key: Some("shop/chat".into()),
        ..EventMeta::default()
    };
    let mut records = Vec::new();
    for w in &windows {
        let m = wire::to_kafka(w, &meta(&w.id, w.window_end), DataFormat::Avro).expect("encode");
        records.push((names.name(LogicalTopic::Windows), OutboundMessage::from(m)));
    }
    for c in &changes {
        let m = wire::to_kafka(c, &meta(&c.id, c.event_time), DataFormat::Avro).expect("encode");
        records.push((
            names.name(LogicalTopic::ConfigChanges),
            OutboundMessage::from(m),
        ));
    }
    for (topic, message) in records {
        transport.publish(&topic, message).await.expect("publish");
    }

    let out = env
        .command(&["report", "cost", "--period", "day", "--json"])
        .output()
        .expect("report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["calls"], 2000);
    let spend = report["spend_usd"].as_f64().expect("spend");
    assert!((spend - (10.0 + 1.0)).abs() < 1e-9, "{spend}");
    let tenants = report["by_tenant"].as_array().expect("tenants");
    assert!(
        tenants
            .iter()
            .any(|t| t["key"] == "acme"
                && (t["spend_usd"].as_f64().unwrap_or(0.0) - 5.5).abs() < 1e-9)
    );
    let decisions = report["decisions"].as_array().expect("decisions");
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    // 1000 calls on gpt-4o-mini ($1) would have cost $10 on gpt-4o.
    let saved = decisions[0]["savings_usd"].as_f64().expect("savings");
    assert!((saved - 9.0).abs() < 1e-9, "{saved}");

    let text = env
        .command(&["report", "cost", "--period", "month"])
        .output()
        .expect("report");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("COST REPORT Month"), "{text}");
    assert!(text.contains("cheaper_model_canary/shop/chat/1"), "{text}");
}

/// One HTTP/1.1 POST; returns the status and the body bytes.
fn http_post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    // A server refusing an oversized body may answer and close before reading all of it.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, response[split + 4..].to_vec())
}

/// An application's OTLP exporter pointed at `llmopt run ingest`: GenAI spans become calls on
/// `telemetry` (a re-sent export is deduplicated), other spans are ignored, a GenAI span that
/// is not a call is dead-lettered and reported in OTLP's partial success; gzip, JSON, the bearer
/// token and the body checks answer as OTLP exporters expect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ingest_receives_genai_spans_over_otlp_http() {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    let env = Env::new();
    let transport = env.transport().await;
    let kv = |k: &str, v: Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let span = |n: u8, genai: bool, model: bool| {
        let mut attributes = Vec::new();
        if genai {
            attributes.push(kv(
                "gen_ai.operation.name",
                Value::StringValue("chat".into()),
            ));
            attributes.push(kv("gen_ai.system", Value::StringValue("openai".into())));
            attributes.push(kv("gen_ai.usage.input_tokens", Value::IntValue(100)));
            attributes.push(kv("gen_ai.usage.output_tokens", Value::IntValue(20)));
            attributes.push(kv(
                "llmopt.route",
                Value::StringValue("order-summary".into()),
            ));
            if model {
                attributes.push(kv(
                    "gen_ai.request.model",
                    Value::StringValue("gpt-4o-mini".into()),
                ));
            }
        } else {
            attributes.push(kv("http.request.method", Value::StringValue("POST".into())));
        }
        let start = 1_767_225_600_000_000_000 + u64::from(n) * 1_000_000_000;
        Span {
            trace_id: vec![7; 16],
            span_id: vec![1, 2, 3, 4, 5, 6, 7, n],
            name: "chat gpt-4o-mini".into(),
            start_time_unix_nano: start,
            end_time_unix_nano: start + 400_000_000,
            attributes,
            ..Default::default()
        }
    };
    let export = |spans: Vec<Span>| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue("checkout".into()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let first = export(vec![
        span(1, true, true),
        span(2, true, true),
        span(3, false, false),
        span(4, true, false),
    ])
    .encode_to_vec();

    let (admin, otlp) = (free_port(), free_port());
    let child = env
        .command(&[
            "run",
            "ingest",
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .env("LLMOPT_INGEST__OTLP__LISTEN", format!("127.0.0.1:{otlp}"))
        .env("LLMOPT_INGEST__OTLP__BEARER_TOKEN", "s3cret")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn llmopt run ingest");
    wait_for("/ready", Duration::from_secs(60), || {
        http_get(admin, "/ready").is_some_and(|(s, _)| s == 200)
    });
    let auth = ("Authorization", "Bearer s3cret");
    let protobuf = ("Content-Type", "application/x-protobuf");
    assert_eq!(http_post(otlp, "/v1/traces", &[protobuf], &first).0, 401);
    assert_eq!(
        http_post(
            otlp,
            "/v1/traces",
            &[("Authorization", "Bearer nope"), protobuf],
            &first
        )
        .0,
        401
    );
    assert_eq!(
        http_post(
            otlp,
            "/v1/traces",
            &[auth, ("Content-Type", "text/plain")],
            &first
        )
        .0,
        415
    );
    assert_eq!(
        http_post(otlp, "/v1/traces", &[auth, protobuf], &[0xff, 0xff, 0xff]).0,
        400
    );

    // Over the 4 MiB limit: as sent, and once decompressed (a small gzip of zeros).
    let huge = vec![0u8; 4 * 1024 * 1024 + 1];
    assert_eq!(
        http_post(otlp, "/v1/traces", &[auth, protobuf], &huge).0,
        413
    );
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut bomb, &huge).expect("gzip");
    let bomb = bomb.finish().expect("gzip");
    assert!(bomb.len() < 64 * 1024);
    assert_eq!(
        http_post(
            otlp,
            "/v1/traces",
            &[auth, protobuf, ("Content-Encoding", "gzip")],
            &bomb
        )
        .0,
        413
    );

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &first).expect("gzip");
    let gzipped = gz.finish().expect("gzip");
    let (status, body) = http_post(
        otlp,
        "/v1/traces",
        &[auth, protobuf, ("Content-Encoding", "gzip")],
        &gzipped,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer = ExportTraceServiceResponse::decode(body.as_slice()).expect("OTLP response");
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("no model"),
        "{}",
        partial.error_message
    );
    // The exporter retries the same export: nothing new on `telemetry`.
    assert_eq!(
        http_post(otlp, "/v1/traces", &[auth, protobuf], &first).0,
        200
    );
    // A JSON export of one more call.
    let json = serde_json::to_vec(&export(vec![span(5, true, true)])).expect("json");
    let (status, body) = http_post(
        otlp,
        "/v1/traces",
        &[auth, ("Content-Type", "application/json")],
        &json,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let telemetry = env.names().name(LogicalTopic::Telemetry);
    let three_out =
        format!("llmopt_events_out_total{{service=\"ingest\",topic=\"{telemetry}\"}} 3\n");
    wait_for("3 calls on telemetry", Duration::from_secs(60), || {
        http_get(admin, "/metrics").is_some_and(|(_, body)| body.contains(&three_out))
    });
    let (_, metrics) = http_get(admin, "/metrics").expect("metrics");
    for line in [
        "\nllmopt_otlp_spans_total{outcome=\"accepted\"} 5\n",
        "\nllmopt_otlp_spans_total{outcome=\"ignored\"} 2\n",
        "\nllmopt_otlp_spans_total{outcome=\"rejected\"} 2\n",
        "\nllmopt_otlp_requests_total{code=\"401\"} 2\n",
        "\nllmopt_otlp_requests_total{code=\"200\"} 3\n",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let dead = llmopt_transport::read_topic(
        transport.as_ref(),
        &env.names().name(LogicalTopic::DeadLetter),
        "otlp-test",
    )
    .await
    .expect("dead letters");
    assert_eq!(dead.len(), 2, "the span without a model, once per export");
    let stderr = sigterm_and_wait(child);
    assert!(stderr.contains("OTLP/HTTP trace receiver"), "{stderr}");
}

/// A real instrumented application: the `openai` client with OpenTelemetry's GenAI
/// instrumentation (`tests/python/genai_app.py`) calls a fake OpenAI server (a plain chat
/// completion, a streamed one, one the server fails) and exports its spans over OTLP/HTTP straight
/// to `llmopt run ingest`; the calls on `telemetry` carry what the application did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_instrumented_with_opentelemetry_genai_exports_its_calls_to_ingest() {
    let python = std::env::var("LLMOPT_PYTHON")
        .unwrap_or_else(|_| panic!("LLMOPT_PYTHON not set: run the README's test command"));
    let env = Env::new();
    let transport = env.transport().await;
    let (admin, otlp) = (free_port(), free_port());
    let child = env
        .command(&[
            "run",
            "ingest",
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .env("LLMOPT_INGEST__OTLP__LISTEN", format!("127.0.0.1:{otlp}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn llmopt run ingest");
    wait_for("/ready", Duration::from_secs(60), || {
        http_get(admin, "/ready").is_some_and(|(s, _)| s == 200)
    });
    let app = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/genai_app.py"
        ))
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("http://127.0.0.1:{otlp}/v1/traces"),
        )
        .env("OTEL_SERVICE_NAME", "checkout")
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "llmopt.route=order-summary,llmopt.tenant=acme",
        )
        .output()
        .expect("run the instrumented app");
    assert!(
        app.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&app.stdout),
        String::from_utf8_lossy(&app.stderr)
    );
    let telemetry = env.names().name(LogicalTopic::Telemetry);
    let three = format!("llmopt_events_out_total{{service=\"ingest\",topic=\"{telemetry}\"}} 3\n");
    wait_for("3 calls on telemetry", Duration::from_secs(60), || {
        http_get(admin, "/metrics").is_some_and(|(_, body)| body.contains(&three))
    });
    sigterm_and_wait(child);

    let mut calls: Vec<llmopt_events::LlmCall> =
        common::windows::read_all(transport.as_ref(), &telemetry)
            .await
            .into_iter()
            .map(|event| match event {
                llmopt_events::AnyEvent::LlmCall(call) => call,
                other => panic!("not an LlmCall: {other:?}"),
            })
            .collect();
    calls.sort_by_key(|c| c.event_time);
    assert_eq!(calls.len(), 3, "{calls:#?}");
    for c in &calls {
        assert_eq!(
            (c.app.as_str(), c.route.as_str(), c.tenant.as_deref()),
            ("checkout", "order-summary", Some("acme"))
        );
        assert_eq!(c.gen_ai_provider_name, "openai");
        assert_eq!(c.gen_ai_operation_name, "chat");
        assert!(c.latency_ms > 0.0 && c.latency_ms < 30_000.0, "{c:?}");
    }
    let (plain, streamed, failed) = (&calls[0], &calls[1], &calls[2]);
    assert_eq!(plain.gen_ai_request_model, "gpt-4o-mini");
    assert_eq!(
        plain.gen_ai_response_model.as_deref(),
        Some("gpt-4o-mini-2024-08-06")
    );
    assert_eq!(
        (
            plain.gen_ai_usage_input_tokens,
            plain.gen_ai_usage_output_tokens
        ),
        (11, 7)
    );
    assert_eq!(plain.status, llmopt_events::CallStatus::Ok);
    assert_eq!(plain.gen_ai_request_max_tokens, Some(64));
    assert_eq!(
        plain.gen_ai_response_finish_reasons,
        vec!["stop".to_string()]
    );
    assert!(plain.cost_usd.is_some_and(|c| c > 0.0), "priced by ingest");
    assert_eq!(streamed.gen_ai_request_model, "gpt-4o");
    assert_eq!(
        (
            streamed.gen_ai_usage_input_tokens,
            streamed.gen_ai_usage_output_tokens
        ),
        (13, 5)
    );
    assert_eq!(streamed.gen_ai_request_temperature, Some(0.3));
    assert!(
        streamed.latency_ms >= 150.0,
        "the stream's three chunks took 150 ms: {streamed:?}"
    );
    assert_eq!(failed.gen_ai_request_model, "broken-model");
    assert_eq!(failed.status, llmopt_events::CallStatus::Error);
    assert_eq!(
        failed.error_type.as_deref(),
        Some("openai.InternalServerError"),
        "the exception's qualified type name"
    );
}
