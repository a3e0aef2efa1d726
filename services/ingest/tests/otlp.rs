//! GenAI spans as instrumentations emit them, mapped to calls: current and deprecated attribute
//! names, failures, time to first token, spans that are not calls, and the OTLP JSON encoding.

use llmopt_events::CallStatus;
use llmopt_ingest::otlp::{
    decode_export, map_export, MappedExport, OtlpEncoding, OtlpMapping, SpanError,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

/// 2026-01-01T00:00:00Z in ns.
const T0: u64 = 1_767_225_600_000_000_000;
const MS: u64 = 1_000_000;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, Value::StringValue(v.into()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, Value::IntValue(v))
}

fn span(n: u8, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![0xab; 15].into_iter().chain([n]).collect(),
        span_id: vec![0xcd, 0, 0, 0, 0, 0, 0, n],
        name: "chat gpt-4o-mini".into(),
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + 850 * MS,
        attributes,
        flags: 0x101,
        ..Default::default()
    }
}

fn export(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn map(spans: Vec<Span>) -> MappedExport {
    map_export(
        &export(vec![s("service.name", "checkout")], spans),
        &OtlpMapping::default(),
    )
}

/// What `opentelemetry-instrumentation-openai-v2` records for a chat completion (it still writes
/// the deprecated `gen_ai.system`), plus the route and tenant attributes an app adds.
fn openai_v2_chat(n: u8) -> Span {
    span(
        n,
        vec![
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.system", "openai"),
            s("gen_ai.request.model", "gpt-4o-mini"),
            s("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
            i("gen_ai.usage.input_tokens", 120),
            i("gen_ai.usage.output_tokens", 30),
            kv("gen_ai.request.temperature", Value::DoubleValue(0.2)),
            i("gen_ai.request.max_tokens", 256),
            kv(
                "gen_ai.response.finish_reasons",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::StringValue("stop".into())),
                    }],
                }),
            ),
            s("gen_ai.response.id", "chatcmpl-123"),
            s("server.address", "api.openai.com"),
            s("llmopt.route", "order-summary"),
            s("enduser.id", "acme"),
        ],
    )
}

#[test]
fn an_instrumented_chat_completion_is_a_call() {
    let out = map(vec![openai_v2_chat(1)]);
    assert_eq!(
        (out.calls.len(), out.ignored, out.rejected.len()),
        (1, 0, 0)
    );
    let m = &out.calls[0];
    let trace = format!("{}01", "ab".repeat(15));
    assert_eq!(m.event_id, format!("otel-{trace}-cd00000000000001"));
    assert_eq!(m.traceparent, format!("00-{trace}-cd00000000000001-01"));
    let c = &m.call;
    assert_eq!(c.event_time, 1_767_225_600_850);
    assert_eq!(c.request_id, format!("{trace}-cd00000000000001"));
    assert_eq!(
        (c.app.as_str(), c.route.as_str()),
        ("checkout", "order-summary")
    );
    assert_eq!(c.tenant.as_deref(), Some("acme"));
    assert_eq!(c.gen_ai_operation_name, "chat");
    assert_eq!(c.gen_ai_provider_name, "openai");
    assert_eq!(c.gen_ai_request_model, "gpt-4o-mini");
    assert_eq!(
        c.gen_ai_response_model.as_deref(),
        Some("gpt-4o-mini-2024-07-18")
    );
    assert_eq!(
        (c.gen_ai_usage_input_tokens, c.gen_ai_usage_output_tokens),
        (120, 30)
    );
    assert!((c.latency_ms - 850.0).abs() < 1e-9);
    assert_eq!(c.status, CallStatus::Ok);
    assert_eq!(c.error_type, None);
    assert_eq!(c.cost_usd, None, "ingest prices it");
    assert_eq!(c.gen_ai_request_temperature, Some(0.2));
    assert_eq!(c.gen_ai_request_max_tokens, Some(256));
    assert_eq!(c.gen_ai_response_finish_reasons, vec!["stop".to_string()]);
    assert_eq!(c.time_to_first_token_ms, None);
    // The same export sent again gives the same ids (ingest deduplicates them).
    assert_eq!(map(vec![openai_v2_chat(1)]), out);
}

#[test]
fn current_names_win_over_deprecated_ones_which_are_still_read() {
    let out = map(vec![span(
        2,
        vec![
            s("gen_ai.provider.name", "anthropic"),
            s("gen_ai.system", "legacy"),
            s("gen_ai.response.model", "claude-3-5-haiku"),
            i("gen_ai.usage.prompt_tokens", 900),
            s("gen_ai.usage.completion_tokens", "40"),
            i("gen_ai.usage.cache_read_input_tokens", 512),
            i("gen_ai.usage.output_tokens.reasoning", 12),
        ],
    )]);
    let c = &out.calls[0].call;
    assert_eq!(c.gen_ai_provider_name, "anthropic");
    assert_eq!(c.gen_ai_operation_name, "chat", "the default operation");
    // Only a response model: it is the request model too.
    assert_eq!(c.gen_ai_request_model, "claude-3-5-haiku");
    assert_eq!(
        (c.gen_ai_usage_input_tokens, c.gen_ai_usage_output_tokens),
        (900, 40)
    );
    assert_eq!(c.gen_ai_usage_cache_read_input_tokens, Some(512));
    assert_eq!(c.gen_ai_usage_reasoning_output_tokens, Some(12));
    assert_eq!(c.route, "default", "no route attribute");
    assert_eq!(c.tenant, None);
}

#[test]
fn failures_come_from_the_span_status_and_error_type() {
    let mut timeout = openai_v2_chat(3);
    timeout.attributes.push(s("error.type", "timeout"));
    timeout.status = Some(Status {
        code: StatusCode::Error as i32,
        message: "Request timed out.".into(),
    });
    let mut class = openai_v2_chat(16);
    class
        .attributes
        .push(s("error.type", "<class 'openai.InternalServerError'>"));
    let mut unnamed = openai_v2_chat(4);
    unnamed.status = Some(Status {
        code: StatusCode::Error as i32,
        message: "boom".into(),
    });
    let mut ok = openai_v2_chat(5);
    ok.status = Some(Status {
        code: StatusCode::Ok as i32,
        message: String::new(),
    });
    let out = map(vec![timeout, class, unnamed, ok]);
    let calls: Vec<_> = out
        .calls
        .iter()
        .map(|m| (m.call.status, m.call.error_type.clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            (CallStatus::Error, Some("timeout".to_string())),
            // As openai-v2 2.4b0 with util-genai 1.1b0 writes it.
            (
                CallStatus::Error,
                Some("openai.InternalServerError".to_string())
            ),
            (CallStatus::Error, Some("_OTHER".to_string())),
            (CallStatus::Ok, None),
        ]
    );
}

#[test]
fn time_to_first_token_comes_from_an_attribute_or_the_first_chunk_event() {
    let mut streamed = openai_v2_chat(6);
    for (name, at) in [
        ("gen_ai.choice", 840),
        ("llm.content.completion.chunk", 260),
        ("llm.content.completion.chunk", 310),
    ] {
        streamed.events.push(Event {
            time_unix_nano: T0 + at * MS,
            name: name.into(),
            ..Default::default()
        });
    }
    let mut attributed = openai_v2_chat(7);
    attributed.attributes.push(kv(
        "gen_ai.server.time_to_first_token",
        Value::DoubleValue(0.125),
    ));
    let out = map(vec![streamed, attributed]);
    assert_eq!(out.calls[0].call.time_to_first_token_ms, Some(260.0));
    assert_eq!(out.calls[1].call.time_to_first_token_ms, Some(125.0));
}

#[test]
fn other_spans_are_ignored_and_genai_spans_that_are_not_calls_are_rejected_with_their_bytes() {
    let http = span(
        8,
        vec![
            s("http.request.method", "POST"),
            i("http.response.status_code", 200),
        ],
    );
    let no_model = span(
        9,
        vec![
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.system", "openai"),
        ],
    );
    let mut backwards = openai_v2_chat(10);
    backwards.end_time_unix_nano = T0 - MS;
    let mut negative_tokens = openai_v2_chat(11);
    negative_tokens
        .attributes
        .push(i("gen_ai.usage.prompt_tokens", 1));
    negative_tokens
        .attributes
        .retain(|a| a.key != "gen_ai.usage.input_tokens");
    negative_tokens
        .attributes
        .push(i("gen_ai.usage.input_tokens", -5));
    let mut bad_ids = openai_v2_chat(12);
    bad_ids.span_id = vec![1, 2, 3];
    let out = map(vec![
        http,
        no_model.clone(),
        backwards,
        negative_tokens,
        bad_ids,
        openai_v2_chat(13),
    ]);
    assert_eq!(out.ignored, 1);
    assert_eq!(out.calls.len(), 1);
    let reasons: Vec<&str> = out.rejected.iter().map(|r| r.error.reason()).collect();
    assert_eq!(
        reasons,
        vec![
            "otlp_no_model",
            "otlp_negative_duration",
            "otlp_bad_attribute",
            "otlp_bad_ids"
        ]
    );
    assert_eq!(out.rejected[0].error, SpanError::NoModel);
    assert_eq!(
        Span::decode(out.rejected[0].span.as_slice()).expect("span bytes"),
        no_model
    );
    assert!(out.rejected[2]
        .error
        .to_string()
        .contains("gen_ai.usage.input_tokens"));
    // No app attribute anywhere.
    let anonymous = map_export(
        &export(vec![], vec![openai_v2_chat(14)]),
        &OtlpMapping::default(),
    );
    assert_eq!(anonymous.rejected[0].error.reason(), "otlp_no_app");
    // A span attribute overrides the resource's, in the configured order.
    let mut named = openai_v2_chat(15);
    named.attributes.push(s("llmopt.app", "shop"));
    assert_eq!(map(vec![named]).calls[0].call.app, "shop");
}

/// The same export as an OTLP/HTTP JSON body, as a collector or SDK writes it (camelCase keys,
/// hex ids, 64-bit integers as strings), and as protobuf: both decode to the same calls.
#[test]
fn json_and_protobuf_bodies_decode_to_the_same_calls() {
    let json = r#"{
      "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeSpans": [{
          "scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"},
          "spans": [{
            "traceId": "abababababababababababababababab",
            "spanId": "cd00000000000001",
            "name": "chat gpt-4o-mini",
            "kind": 3,
            "startTimeUnixNano": "1767225600000000000",
            "endTimeUnixNano": "1767225600850000000",
            "attributes": [
              {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
              {"key": "gen_ai.system", "value": {"stringValue": "openai"}},
              {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
              {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "120"}},
              {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "30"}},
              {"key": "gen_ai.response.finish_reasons", "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}}},
              {"key": "llmopt.route", "value": {"stringValue": "order-summary"}}
            ],
            "status": {}
          }]
        }]
      }]
    }"#;
    let from_json = decode_export(json.as_bytes(), OtlpEncoding::Json).expect("json");
    let out = map_export(&from_json, &OtlpMapping::default());
    assert_eq!(out.calls.len(), 1, "{out:?}");
    let c = &out.calls[0].call;
    assert_eq!(c.event_time, 1_767_225_600_850);
    assert_eq!(
        (c.gen_ai_usage_input_tokens, c.gen_ai_usage_output_tokens),
        (120, 30)
    );
    assert_eq!(
        out.calls[0].event_id,
        "otel-abababababababababababababababab-cd00000000000001"
    );
    // A collector's Kafka exporter may write the bare array of resource spans.
    let value: serde_json::Value = serde_json::from_str(json).expect("json");
    let bare = serde_json::to_vec(&value["resourceSpans"]).expect("array");
    let from_array = decode_export(&bare, OtlpEncoding::Json).expect("bare array");
    assert_eq!(map_export(&from_array, &OtlpMapping::default()), out);
    let bytes = from_json.encode_to_vec();
    let from_protobuf = decode_export(&bytes, OtlpEncoding::Protobuf).expect("protobuf");
    assert_eq!(map_export(&from_protobuf, &OtlpMapping::default()), out);
    assert!(decode_export(b"{not json", OtlpEncoding::Json).is_err());
    assert!(decode_export(&[0xff, 0xff, 0xff], OtlpEncoding::Protobuf).is_err());
}

/// Random and mutated bodies, protobuf and JSON: every one decodes to an export or to an error,
/// and every export maps; nothing panics. Seeded, so a failure reproduces.
#[test]
fn random_and_mutated_bodies_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let mut streamed = openai_v2_chat(20);
    streamed.events.push(Event {
        time_unix_nano: T0 + 5 * MS,
        name: "llm.content.completion.chunk".into(),
        ..Default::default()
    });
    let valid = export(
        vec![s("service.name", "checkout")],
        vec![
            openai_v2_chat(21),
            streamed,
            span(22, vec![s("http.route", "/")]),
        ],
    );
    let protobuf = valid.encode_to_vec();
    let json = serde_json::to_vec(&valid).expect("json");
    let mapping = OtlpMapping::default();
    let (mut decoded, mut failed) = (0, 0);
    let mut check = |body: &[u8], encoding| match decode_export(body, encoding) {
        Ok(request) => {
            let out = map_export(&request, &mapping);
            let _ = out.calls.len() + out.rejected.len();
            decoded += 1;
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            failed += 1;
        }
    };
    for (base, encoding) in [
        (&protobuf, OtlpEncoding::Protobuf),
        (&json, OtlpEncoding::Json),
    ] {
        for _ in 0..3000 {
            let mut body = base.clone();
            for _ in 0..rng.gen_range(1..8) {
                let at = rng.gen_range(0..body.len());
                match rng.gen_range(0..4) {
                    0 => body[at] ^= 1 << rng.gen_range(0..8),
                    1 => body[at] = rng.gen(),
                    2 => body.truncate(at.max(1)),
                    _ => body.insert(at, rng.gen()),
                }
            }
            check(&body, encoding);
        }
        for _ in 0..1000 {
            let len = rng.gen_range(0..256);
            let body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            check(&body, encoding);
        }
    }
    // Both outcomes happened: the mutations reached the mapping, not only the decoder.
    assert!(
        decoded > 100 && failed > 100,
        "decoded {decoded}, failed {failed}"
    );
}
