//! Conformance with the CloudEvents Python SDK (`cloudevents==2.2.0`, core API), both ways and in
//! both Kafka content modes.
//!
//! `tests/python/ce_conformance.py` (at the workspace root) does the SDK's half: `write` encodes
//! events with the SDK's `to_binary`/`to_structured`, `read` decodes what Rust encoded with
//! `from_binary`/`from_structured`. The interpreter comes from `LLMOPT_PYTHON`, a venv with the
//! SDK installed; without it these tests fail rather than skip, so conformance is never silently
//! unchecked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::DateTime;
use llmopt_cloudevents::{
    decode, to_binary, to_structured, CloudEvent, ContentMode, DecodeLimits, KafkaMessage,
    SPEC_VERSION,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/python/ce_conformance.py"
);
const LLM_CALL_TYPE: &str = "io.llmopt.llm_call.v1";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

// ---------------------------------------------------------------------------------------------
// The message file shared with ce_conformance.py.
// ---------------------------------------------------------------------------------------------

/// One Kafka message of the file, with what the SDK says it holds (files written by `write`).
#[derive(Debug, Deserialize)]
struct Entry {
    mode: String,
    headers: BTreeMap<String, String>,
    key: Option<String>,
    value: Option<String>,
    expected: Option<SdkEvent>,
}

/// An event as the SDK sees it: `expected` of `write`, and each entry `read` prints.
#[derive(Debug, Deserialize)]
struct SdkEvent {
    id: String,
    source: String,
    #[serde(rename = "type")]
    ty: String,
    specversion: String,
    time: Option<String>,
    subject: Option<String>,
    dataschema: Option<String>,
    datacontenttype: Option<String>,
    extensions: BTreeMap<String, String>,
    /// A JSON object when the SDK holds a dict, otherwise base64 of the bytes.
    data: Option<Value>,
    /// `dict`, `bytes`, `str` or null.
    data_type: Option<String>,
}

fn unbase64(text: &str, what: &str) -> Vec<u8> {
    BASE64
        .decode(text.as_bytes())
        .unwrap_or_else(|e| panic!("{what} is not base64: {e}"))
}

impl Entry {
    fn message(&self) -> KafkaMessage {
        KafkaMessage {
            key: self.key.as_deref().map(|k| unbase64(k, "key")),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), Some(unbase64(value, name))))
                .collect(),
            value: self.value.as_deref().map(|v| unbase64(v, "value")),
        }
    }
}

fn mode_name(mode: ContentMode) -> &'static str {
    match mode {
        ContentMode::Binary => "binary",
        ContentMode::Structured => "structured",
    }
}

/// Serialises messages in the file's shape. The SDK's `KafkaMessage` holds headers in a dict of
/// bytes, so null header values (which Rust never writes) are refused here.
fn write_messages(messages: &[(ContentMode, KafkaMessage)]) -> Value {
    let entries = messages
        .iter()
        .map(|(mode, message)| {
            let headers: Map<String, Value> = message
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = value
                        .as_deref()
                        .unwrap_or_else(|| panic!("header `{name}` has a null value"));
                    (name.clone(), Value::String(BASE64.encode(value)))
                })
                .collect();
            json!({
                "mode": mode_name(*mode),
                "headers": headers,
                "key": message.key.as_deref().map(|k| BASE64.encode(k)),
                "value": message.value.as_deref().map(|v| BASE64.encode(v)),
            })
        })
        .collect();
    Value::Array(entries)
}

// ---------------------------------------------------------------------------------------------
// Running the SDK.
// ---------------------------------------------------------------------------------------------

fn python() -> PathBuf {
    match std::env::var_os("LLMOPT_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("LLMOPT_PYTHON not set: run the README's test command"),
    }
}

/// A file in the temp dir that is removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(label: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Self(std::env::temp_dir().join(format!(
            "llmopt-ce-conformance-{label}-{}-{nanos}.json",
            std::process::id()
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `ce_conformance.py SUBCOMMAND PATH` and returns its stdout, failing with its stderr.
fn run_sdk(subcommand: &str, path: &TempFile) -> Vec<u8> {
    let python = python();
    let output = Command::new(&python)
        .arg(SCRIPT)
        .arg(subcommand)
        .arg(&path.0)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (LLMOPT_PYTHON): {e}", python.display()));
    assert!(
        output.status.success(),
        "`{} {SCRIPT} {subcommand}` failed ({}):\n{}",
        python.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

// ---------------------------------------------------------------------------------------------
// Comparison.
// ---------------------------------------------------------------------------------------------

fn is_json_content_type(ct: Option<&str>) -> bool {
    ct.is_none_or(|ct| {
        let media = ct.split(';').next().unwrap_or_default().trim();
        media == "application/json" || media.ends_with("+json")
    })
}

/// Compares the data of `sdk` with `data` of a Rust event: as JSON values for a dict, byte for
/// byte otherwise.
fn assert_same_data(label: &str, sdk: &SdkEvent, data: Option<&[u8]>) {
    match sdk.data_type.as_deref() {
        None => assert_eq!(data, None, "{label}: the SDK has no data"),
        Some("dict") => {
            let data = data.unwrap_or_else(|| panic!("{label}: Rust has no data"));
            let rust: Value = serde_json::from_slice(data)
                .unwrap_or_else(|e| panic!("{label}: Rust's data is not JSON: {e}"));
            let sdk_data = sdk.data.as_ref().expect("dict data is present");
            assert_eq!(&rust, sdk_data, "{label}: JSON data");
        }
        Some(kind @ ("bytes" | "str")) => {
            let b64 = sdk
                .data
                .as_ref()
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{label}: {kind} data is not a base64 string"));
            assert_eq!(
                data,
                Some(unbase64(b64, "data").as_slice()),
                "{label}: {kind} data"
            );
        }
        Some(other) => panic!("{label}: unknown data_type `{other}`"),
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn python_sdk_messages_decode_in_rust() {
    let file = TempFile::new("sdk-to-rust");
    run_sdk("write", &file);
    let text = std::fs::read(&file.0).expect("read the SDK's message file");
    let entries: Vec<Entry> = serde_json::from_slice(&text).expect("message file is JSON");

    let modes: Vec<&str> = entries.iter().map(|e| e.mode.as_str()).collect();
    assert!(
        modes.contains(&"binary") && modes.contains(&"structured"),
        "the SDK wrote both modes: {modes:?}"
    );
    assert!(
        entries.len() >= 8,
        "the SDK wrote {} messages",
        entries.len()
    );

    for entry in &entries {
        let expected = entry.expected.as_ref().expect("write gives `expected`");
        let label = format!("{} `{}`", entry.mode, expected.id);
        let message = entry.message();
        let (ce, mode) = decode(&message, &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{label}: Rust cannot decode the SDK's message: {e}"));

        assert_eq!(mode_name(mode), entry.mode, "{label}: content mode");
        assert_eq!(expected.specversion, SPEC_VERSION, "{label}: specversion");
        assert_eq!(ce.id, expected.id, "{label}: id");
        assert_eq!(ce.source, expected.source, "{label}: source");
        assert_eq!(ce.ty, expected.ty, "{label}: type");
        assert_eq!(
            ce.time, expected.time,
            "{label}: time, exactly as the SDK wrote it"
        );
        assert_eq!(ce.subject, expected.subject, "{label}: subject");
        assert_eq!(ce.dataschema, expected.dataschema, "{label}: dataschema");
        assert_eq!(
            ce.datacontenttype, expected.datacontenttype,
            "{label}: datacontenttype"
        );
        assert_eq!(ce.extensions, expected.extensions, "{label}: extensions");
        let key = message
            .key
            .as_deref()
            .map(|k| std::str::from_utf8(k).expect("SDK key is UTF-8"));
        assert_eq!(ce.partitionkey(), key, "{label}: partitionkey is the key");
        if let Some(tp) = expected.extensions.get("traceparent") {
            assert_eq!(ce.traceparent(), Some(tp.as_str()), "{label}: traceparent");
        }
        if is_json_content_type(expected.datacontenttype.as_deref()) {
            assert_eq!(expected.data_type.as_deref(), Some("dict"), "{label}");
        } else {
            assert_eq!(expected.data_type.as_deref(), Some("bytes"), "{label}");
        }
        assert_same_data(&label, expected, ce.data.as_deref());
    }
}

fn llm_call_json(n: u64) -> Vec<u8> {
    let call = json!({
        "event_time": 1_767_225_600_000_u64 + n * 37,
        "request_id": format!("req-rs-{n:04}"),
        "app": "checkout",
        "route": "summarize",
        "tenant": null,
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "anthropic",
        "gen_ai_request_model": "claude-3-5-haiku",
        "gen_ai_usage_input_tokens": 100 + n,
        "gen_ai_usage_output_tokens": 20 + n,
        "latency_ms": 250.75,
        "time_to_first_token_ms": 81.5,
        "status": "ERROR",
        "error_type": "timeout",
        "cost_usd": 0.000123,
        "quality_score": null,
        "config_version": 7,
    });
    serde_json::to_vec(&call).expect("JSON serialises")
}

fn rust_events() -> Vec<CloudEvent> {
    let mut avro = vec![0xC3, 0x01, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80];
    avro.extend((0..=255u8).rev());
    vec![
        // JSON data, every optional attribute, both extensions and one of our own.
        CloudEvent {
            id: "rust-json-full".into(),
            source: "llmopt/ingest".into(),
            ty: LLM_CALL_TYPE.into(),
            time: Some("2026-01-01T00:00:00.123Z".into()),
            subject: Some("checkout/summarize".into()),
            datacontenttype: Some("application/json".into()),
            dataschema: Some("urn:llmopt:schema:llmopt.events.LlmCall".into()),
            extensions: BTreeMap::from([
                ("partitionkey".into(), "checkout/summarize".into()),
                ("traceparent".into(), TRACEPARENT.into()),
                ("llmoptreplay".into(), "false".into()),
            ]),
            data: Some(llm_call_json(1)),
        },
        // Avro single-object bytes, a non-UTC offset and a non-ASCII subject.
        CloudEvent {
            id: "rust-avro".into(),
            source: "https://llmopt.example/aggregator".into(),
            ty: "io.llmopt.window_aggregate.v1".into(),
            time: Some("2026-03-04T12:30:00.25+02:00".into()),
            subject: Some("r\u{e9}sum\u{e9}/\u{fc}".into()),
            datacontenttype: Some("application/avro".into()),
            dataschema: Some("urn:llmopt:schema:llmopt.events.WindowAggregate".into()),
            extensions: BTreeMap::from([
                ("partitionkey".into(), "search/answer".into()),
                ("traceparent".into(), TRACEPARENT.into()),
            ]),
            data: Some(avro),
        },
        // JSON data without a datacontenttype (JSON is the default), microsecond time.
        CloudEvent {
            id: "rust-json-implicit".into(),
            source: "/apps/support-bot".into(),
            ty: LLM_CALL_TYPE.into(),
            time: Some("2025-12-31T23:59:59.999999Z".into()),
            subject: None,
            datacontenttype: None,
            dataschema: None,
            extensions: BTreeMap::from([("traceparent".into(), TRACEPARENT.into())]),
            data: Some(llm_call_json(2)),
        },
    ]
}

#[test]
fn rust_messages_decode_in_python_sdk() {
    let events = rust_events();
    let mut messages = Vec::new();
    for event in &events {
        event.validate().expect("the Rust events are valid");
        messages.push((ContentMode::Binary, to_binary(event), event));
        messages.push((ContentMode::Structured, to_structured(event), event));
    }
    let file = TempFile::new("rust-to-sdk");
    let pairs: Vec<(ContentMode, KafkaMessage)> = messages
        .iter()
        .map(|(m, msg, _)| (*m, msg.clone()))
        .collect();
    let text = serde_json::to_vec_pretty(&write_messages(&pairs)).expect("serialise messages");
    std::fs::write(&file.0, text).expect("write the message file");

    let stdout = run_sdk("read", &file);
    let decoded: Vec<SdkEvent> = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "`read` printed no JSON list ({e}):\n{}",
            String::from_utf8_lossy(&stdout)
        )
    });
    assert_eq!(
        decoded.len(),
        messages.len(),
        "one decoded event per message"
    );

    for ((mode, _, event), sdk) in messages.iter().zip(&decoded) {
        let label = format!("{} `{}`", mode_name(*mode), event.id);
        assert_eq!(sdk.specversion, SPEC_VERSION, "{label}: specversion");
        assert_eq!(sdk.id, event.id, "{label}: id");
        assert_eq!(sdk.source, event.source, "{label}: source");
        assert_eq!(sdk.ty, event.ty, "{label}: type");
        assert_eq!(sdk.subject, event.subject, "{label}: subject");
        assert_eq!(sdk.dataschema, event.dataschema, "{label}: dataschema");
        assert_eq!(
            sdk.datacontenttype, event.datacontenttype,
            "{label}: datacontenttype"
        );
        assert_eq!(sdk.extensions, event.extensions, "{label}: extensions");

        // The SDK parses `time` into a datetime; compare the instant and the offset it kept.
        let rust_time = event.time.as_deref().expect("every Rust event has a time");
        let sdk_time = sdk.time.as_deref().expect("the SDK kept the time");
        let rust_time = DateTime::parse_from_rfc3339(rust_time).expect("Rust time is RFC 3339");
        let sdk_time = DateTime::parse_from_rfc3339(sdk_time)
            .unwrap_or_else(|e| panic!("{label}: SDK time `{sdk_time}` is not RFC 3339: {e}"));
        assert_eq!(sdk_time, rust_time, "{label}: time instant");
        assert_eq!(
            sdk_time.offset(),
            rust_time.offset(),
            "{label}: time offset"
        );

        let expected_type = if is_json_content_type(event.datacontenttype.as_deref()) {
            "dict"
        } else {
            "bytes"
        };
        assert_eq!(
            sdk.data_type.as_deref(),
            Some(expected_type),
            "{label}: kind of data"
        );
        assert_same_data(&label, sdk, event.data.as_deref());
    }
}

#[test]
fn rust_round_trips_what_it_sends_the_sdk() {
    // The same events through Rust's own decoder, so a difference in the two tests above is the
    // SDK's doing or the wire's, not an encoder that cannot read itself.
    for event in rust_events() {
        for message in [to_binary(&event), to_structured(&event)] {
            let (back, _) = decode(&message, &DecodeLimits::default()).expect("decode");
            assert_eq!(back.id, event.id);
            assert_eq!(back.time, event.time);
            assert_eq!(back.extensions, event.extensions);
            if is_json_content_type(event.datacontenttype.as_deref()) {
                let a: Value =
                    serde_json::from_slice(back.data.as_deref().expect("data")).expect("JSON data");
                let b: Value = serde_json::from_slice(event.data.as_deref().expect("data"))
                    .expect("JSON data");
                assert_eq!(a, b);
            } else {
                assert_eq!(back.data, event.data);
            }
        }
    }
}
