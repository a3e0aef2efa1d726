//! The contracts in `schemas/` parse, every type round-trips through Avro and JSON, and the
//! evolution rule (add fields with defaults only) is enforced.

use std::fmt::Debug;

use apache_avro::Schema;
use llmopt_events::codec::{self, CodecError};
use llmopt_events::compat::{check_evolution, EvolutionError};
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::*;

fn round_trip<T: EventType + PartialEq + Debug>(event: T) {
    let registry = SchemaRegistry::current();
    let avro = codec::encode_avro(&event).expect("avro encode");
    assert_eq!(&avro[..2], &[0xC3, 0x01], "single-object marker");
    assert_eq!(
        codec::decode_avro::<T>(&avro, &registry).expect("avro decode"),
        event
    );
    let json = codec::encode_json(&event).expect("json encode");
    assert_eq!(codec::decode_json::<T>(&json).expect("json decode"), event);
    for format in [DataFormat::Avro, DataFormat::Json] {
        let meta = EventMeta {
            id: "id-1".into(),
            source: "llmopt/test".into(),
            time_ms: Some(1_767_225_600_123),
            partition_key: Some("checkout/summarize".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            subject: None,
        };
        let record = wire::to_kafka(&event, &meta, format).expect("to kafka");
        let (ce, _, back) =
            wire::decode_kafka::<T>(&record, &Default::default(), &registry).expect("from kafka");
        assert_eq!(back, event);
        assert_eq!(ce.time.as_deref(), Some("2026-01-01T00:00:00.123Z"));
        assert_eq!(ce.partitionkey(), Some("checkout/summarize"));
    }
}

#[test]
fn every_schema_parses_and_names_its_record() {
    for contract in Contract::ALL {
        let schema = Schema::parse_str(contract.source())
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", contract.file_name()));
        assert!(
            matches!(schema, Schema::Record(_)),
            "{} is a record",
            contract.file_name()
        );
        assert!(contract.full_name().starts_with("llmopt.events."));
        assert_eq!(Contract::from_ce_type(contract.ce_type()), Some(*contract));
    }
}

#[test]
fn schemas_directory_holds_exactly_the_contracts() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("schemas dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".avsc"))
        .collect();
    files.sort();
    let mut expected: Vec<String> = Contract::ALL
        .iter()
        .map(|c| c.file_name().to_string())
        .collect();
    expected.sort();
    assert_eq!(files, expected);
}

#[test]
fn every_type_round_trips_through_avro_and_json() {
    for n in 0..200 {
        round_trip(samples::llm_call(n));
    }
    round_trip(samples::window_aggregate());
    round_trip(samples::anomaly());
    round_trip(samples::alert());
    round_trip(samples::decision());
    round_trip(samples::config_change());
    round_trip(samples::quantization_job());
    round_trip(samples::artifact_published());
    round_trip(samples::quantization_failed());
    round_trip(samples::dead_letter());
}

#[test]
fn json_input_accepts_opentelemetry_attribute_names() {
    let json = br#"{"event_time": 1767225600000, "request_id": "r1", "app": "a", "route": "r",
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3,
        "latency_ms": 812.5, "status": "error", "error.type": "timeout"}"#;
    let call: LlmCall = codec::decode_json(json).expect("decode");
    assert_eq!(call.gen_ai_provider_name, "openai");
    assert_eq!(call.gen_ai_usage_input_tokens, 12);
    assert_eq!(call.status, CallStatus::Error);
    assert_eq!(call.error_type.as_deref(), Some("timeout"));
    assert_eq!(call.gen_ai_operation_name, "chat", "schema default applies");
}

#[test]
fn old_writer_new_reader_fills_defaults() {
    let old_text = include_str!("fixtures/llm_call_v0.avsc");
    check_evolution(old_text, Contract::LlmCall.source()).expect("v0 -> current is allowed");
    let old = Schema::parse_str(old_text).expect("v0 parses");

    /// What an older producer's type looked like.
    #[derive(serde::Serialize)]
    struct LlmCallV0 {
        event_time: i64,
        request_id: String,
        app: String,
        route: String,
        gen_ai_operation_name: String,
        gen_ai_provider_name: String,
        gen_ai_request_model: String,
        gen_ai_response_model: Option<String>,
        gen_ai_usage_input_tokens: i64,
        gen_ai_usage_output_tokens: i64,
        latency_ms: f64,
        status: CallStatus,
        error_type: Option<String>,
        cost_usd: Option<f64>,
    }
    let v0 = LlmCallV0 {
        event_time: 1_767_225_600_000,
        request_id: "old-1".into(),
        app: "legacy".into(),
        route: "r".into(),
        gen_ai_operation_name: "chat".into(),
        gen_ai_provider_name: "openai".into(),
        gen_ai_request_model: "gpt-3.5-turbo".into(),
        gen_ai_response_model: None,
        gen_ai_usage_input_tokens: 10,
        gen_ai_usage_output_tokens: 5,
        latency_ms: 321.0,
        status: CallStatus::Ok,
        error_type: None,
        cost_usd: Some(0.001),
    };
    let bytes = codec::encode_avro_with(&old, &v0).expect("old writer encodes");

    // A reader that does not know the old schema says so, naming the fingerprint.
    let current_only = SchemaRegistry::current();
    let err = codec::decode_avro::<LlmCall>(&bytes, &current_only).expect_err("unknown writer");
    assert!(matches!(err, CodecError::UnknownSchema(_)), "{err}");

    let mut registry = SchemaRegistry::current();
    registry.register_writer(old);
    let read = codec::decode_avro::<LlmCall>(&bytes, &registry).expect("new reader reads old data");
    assert_eq!(read.request_id, "old-1");
    assert_eq!(read.cost_usd, Some(0.001));
    assert_eq!(read.tenant, None);
    assert_eq!(read.time_to_first_token_ms, None);
    assert_eq!(read.quality_score, None);
    assert_eq!(read.config_version, None);
}

#[test]
fn new_writer_old_reader_ignores_added_fields() {
    let old = Schema::parse_str(include_str!("fixtures/llm_call_v0.avsc")).expect("v0");
    let new_bytes = codec::encode_avro(&samples::llm_call(4)).expect("encode");
    let value = apache_avro::from_avro_datum(
        Contract::LlmCall.schema(),
        &mut &new_bytes[10..],
        Some(&old),
    )
    .expect("old reader resolves new data");
    let apache_avro::types::Value::Record(fields) = value else {
        panic!("record expected")
    };
    assert!(fields.iter().all(|(name, _)| name != "tenant"));
    assert!(fields.iter().any(|(name, _)| name == "request_id"));
}

#[test]
fn breaking_changes_are_rejected() {
    let current = Contract::LlmCall.source();
    let required = include_str!("fixtures/llm_call_breaking_required_field.avsc");
    let err = check_evolution(current, required).expect_err("required field without default");
    assert!(matches!(err, EvolutionError::Backward(_)), "{err}");
    assert!(err.to_string().contains("region"), "names the field: {err}");

    let retyped = include_str!("fixtures/llm_call_breaking_type_change.avsc");
    let err = check_evolution(current, retyped).expect_err("type change");
    assert!(
        matches!(
            err,
            EvolutionError::Backward(_) | EvolutionError::Forward(_)
        ),
        "{err}"
    );

    // Removing a field that had no default breaks old readers.
    let err = check_evolution(required, current).expect_err("dropping a required field");
    assert!(matches!(err, EvolutionError::Forward(_)), "{err}");

    // Every committed contract is trivially compatible with itself.
    for contract in Contract::ALL {
        check_evolution(contract.source(), contract.source()).expect("self-compatible");
    }
}

#[test]
fn avro_encoding_is_deterministic() {
    let a = codec::encode_avro(&samples::window_aggregate()).expect("encode");
    for _ in 0..20 {
        assert_eq!(
            codec::encode_avro(&samples::window_aggregate()).expect("encode"),
            a
        );
    }
}

#[test]
fn quantization_failure_reasons_match_the_schema() {
    let reasons = [
        QuantFailureReason::ModelNotFound,
        QuantFailureReason::UnsupportedArchitecture,
        QuantFailureReason::BadParameters,
        QuantFailureReason::OutOfDisk,
        QuantFailureReason::IoError,
        QuantFailureReason::Internal,
    ];
    let Schema::Record(record) = Contract::QuantizationFailed.schema() else {
        panic!("record expected")
    };
    let field = record
        .fields
        .iter()
        .find(|f| f.name == "reason")
        .expect("reason field");
    let Schema::Enum(reason) = &field.schema else {
        panic!("reason is an enum")
    };
    assert_eq!(reason.default.as_deref(), Some("INTERNAL"));
    for (r, symbol) in reasons.iter().zip(&reason.symbols) {
        assert_eq!(
            serde_json::to_string(r).expect("json"),
            format!("\"{symbol}\"")
        );
        assert_eq!(
            r.as_str(),
            symbol.to_ascii_lowercase(),
            "metrics label of {symbol}"
        );
        assert_eq!(r.to_string(), r.as_str());
    }
    assert_eq!(reasons.len(), reason.symbols.len());
    // apache-avro writes an enum by its Rust variant index, so every reason must survive Avro.
    for r in reasons {
        round_trip(QuantizationFailed {
            reason: r,
            ..samples::quantization_failed()
        });
    }
}

#[test]
fn unknown_quantization_failure_reason_reads_as_internal() {
    // A later producer that knows one more reason.
    let newer_text = Contract::QuantizationFailed
        .source()
        .replace("\"INTERNAL\"]", "\"INTERNAL\", \"GPU_OUT_OF_MEMORY\"]");
    assert_ne!(newer_text, Contract::QuantizationFailed.source());
    // Only decoding is checked here: `check_evolution` (apache-avro 0.21's checker) still rejects
    // a reader that lacks a writer symbol, even when the reader's enum has a default.
    let newer = Schema::parse_str(&newer_text).expect("newer parses");

    /// The newer producer's reason enum: apache-avro writes enums by variant index, so this
    /// lists every symbol in schema order.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    #[allow(dead_code)]
    enum NewerReason {
        ModelNotFound,
        UnsupportedArchitecture,
        BadParameters,
        OutOfDisk,
        IoError,
        Internal,
        GpuOutOfMemory,
    }
    #[derive(serde::Serialize)]
    struct Newer {
        id: String,
        job_id: String,
        event_time: i64,
        model_name: String,
        model_location: String,
        reason: NewerReason,
        message: String,
        method: Option<QuantMethod>,
        bits: Option<i32>,
        decision_id: Option<String>,
    }
    let sample = samples::quantization_failed();
    let bytes = codec::encode_avro_with(
        &newer,
        &Newer {
            id: sample.id.clone(),
            job_id: sample.job_id.clone(),
            event_time: sample.event_time,
            model_name: sample.model_name.clone(),
            model_location: sample.model_location.clone(),
            reason: NewerReason::GpuOutOfMemory,
            message: "CUDA out of memory".into(),
            method: sample.method,
            bits: sample.bits,
            decision_id: None,
        },
    )
    .expect("newer writer encodes");
    let mut registry = SchemaRegistry::current();
    registry.register_writer(newer);
    let read = codec::decode_avro::<QuantizationFailed>(&bytes, &registry)
        .expect("today's reader reads the newer reason");
    assert_eq!(read.reason, QuantFailureReason::Internal);
    assert_eq!(read.job_id, sample.job_id);
    assert_eq!(read.method, Some(QuantMethod::Gptq));
}
