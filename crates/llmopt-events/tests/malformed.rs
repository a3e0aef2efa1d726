//! Malformed records: every way a Kafka record can be wrong gives its own typed error, with a
//! stable `kind()` and a message naming the attribute or field at fault, and nothing panics.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use llmopt_cloudevents::{CeError, ContentMode, DecodeLimits, KafkaMessage};
use llmopt_events::codec::CodecError;
use llmopt_events::wire::{self, DataFormat, EventMeta, WireError};
use llmopt_events::{samples, Contract, LlmCall, SchemaRegistry};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Building records.
// ---------------------------------------------------------------------------------------------

fn meta() -> EventMeta {
    EventMeta {
        id: "call-42".into(),
        source: "/apps/checkout".into(),
        time_ms: Some(1_767_225_600_123),
        partition_key: Some("checkout/summarize".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        subject: Some("checkout/summarize".into()),
    }
}

/// A valid binary-mode record with JSON data.
fn binary_json() -> KafkaMessage {
    wire::to_kafka(&samples::llm_call(42), &meta(), DataFormat::Json).expect("encode JSON record")
}

/// A valid binary-mode record with Avro data.
fn binary_avro() -> KafkaMessage {
    wire::to_kafka(&samples::llm_call(42), &meta(), DataFormat::Avro).expect("encode Avro record")
}

/// The structured-mode JSON document of a valid record with JSON data.
fn structured_doc() -> Value {
    let ce = wire::to_cloudevent(&samples::llm_call(42), &meta(), DataFormat::Json)
        .expect("encode CloudEvent");
    let message = llmopt_cloudevents::to_structured(&ce);
    serde_json::from_slice(message.value.as_deref().expect("structured value"))
        .expect("structured value is JSON")
}

/// A structured-mode record holding `doc`.
fn structured(doc: &Value) -> KafkaMessage {
    KafkaMessage {
        key: None,
        headers: vec![(
            "content-type".into(),
            Some(b"application/cloudevents+json".to_vec()),
        )],
        value: Some(serde_json::to_vec(doc).expect("serialise document")),
    }
}

fn without_header(mut message: KafkaMessage, name: &str) -> KafkaMessage {
    let before = message.headers.len();
    message.headers.retain(|(k, _)| k != name);
    assert!(
        message.headers.len() < before,
        "record had a `{name}` header"
    );
    message
}

fn with_header(mut message: KafkaMessage, name: &str, value: &[u8]) -> KafkaMessage {
    message.headers.retain(|(k, _)| k != name);
    message.headers.push((name.into(), Some(value.to_vec())));
    message
}

fn with_value(mut message: KafkaMessage, value: Vec<u8>) -> KafkaMessage {
    message.value = Some(value);
    message
}

fn json_value(message: &KafkaMessage) -> Value {
    serde_json::from_slice(message.value.as_deref().expect("value")).expect("JSON value")
}

/// JSON data of the valid record with one field edited.
fn edited_json_data(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let mut data = json_value(&binary_json());
    edit(data.as_object_mut().expect("LlmCall JSON is an object"));
    serde_json::to_vec(&data).expect("serialise data")
}

// ---------------------------------------------------------------------------------------------
// Decoding.
// ---------------------------------------------------------------------------------------------

type Decoded = Result<(llmopt_cloudevents::CloudEvent, ContentMode, LlmCall), WireError>;

/// Decodes as `LlmCall`, turning a panic into a test failure that shows the record.
fn decode_with(message: &KafkaMessage, limits: &DecodeLimits) -> Decoded {
    let registry = SchemaRegistry::current();
    catch_unwind(AssertUnwindSafe(|| {
        wire::decode_kafka::<LlmCall>(message, limits, &registry)
    }))
    .unwrap_or_else(|_| panic!("decode_kafka panicked on {message:?}"))
}

/// The error of a record that must not decode.
fn decode_err(message: &KafkaMessage, limits: &DecodeLimits) -> WireError {
    match decode_with(message, limits) {
        Ok((ce, mode, _)) => panic!("malformed record decoded ({mode:?}): {ce:?}"),
        Err(e) => e,
    }
}

/// The error of the CloudEvents layer alone, for the envelope cases.
fn envelope_err(message: &KafkaMessage, limits: &DecodeLimits) -> CeError {
    match llmopt_cloudevents::decode(message, limits) {
        Ok((ce, mode)) => panic!("malformed envelope decoded ({mode:?}): {ce:?}"),
        Err(e) => e,
    }
}

fn default_limits() -> DecodeLimits {
    DecodeLimits::default()
}

/// Checks an error's kind and that its message mentions each of `needles`.
fn assert_reported(err: &WireError, kind: &str, needles: &[&str]) {
    assert_eq!(err.kind(), kind, "kind of `{err}` ({err:?})");
    let text = err.to_string();
    for needle in needles {
        assert!(
            text.contains(needle),
            "message `{text}` should name `{needle}` ({err:?})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The named cases.
// ---------------------------------------------------------------------------------------------

/// A named malformed record: the category of mistake, and the record.
struct Case {
    category: &'static str,
    label: &'static str,
    message: KafkaMessage,
    limits: DecodeLimits,
}

fn case(category: &'static str, label: &'static str, message: KafkaMessage) -> Case {
    Case {
        category,
        label,
        message,
        limits: default_limits(),
    }
}

fn not_json() -> KafkaMessage {
    KafkaMessage {
        key: None,
        headers: Vec::new(),
        value: Some(b"\x00garbage".to_vec()),
    }
}

fn missing_binary(attribute: &str) -> KafkaMessage {
    without_header(binary_json(), &format!("ce_{attribute}"))
}

fn missing_structured_id() -> KafkaMessage {
    let mut doc = structured_doc();
    doc.as_object_mut().expect("object").remove("id");
    structured(&doc)
}

fn wrong_specversion_binary() -> KafkaMessage {
    with_header(binary_json(), "ce_specversion", b"0.3")
}

fn wrong_specversion_structured() -> KafkaMessage {
    let mut doc = structured_doc();
    doc["specversion"] = json!("0.3");
    structured(&doc)
}

fn json_data_missing_app() -> KafkaMessage {
    with_value(
        binary_json(),
        edited_json_data(|o| {
            o.remove("app");
        }),
    )
}

fn json_data_latency_string() -> KafkaMessage {
    with_value(
        binary_json(),
        edited_json_data(|o| {
            o.insert("latency_ms".into(), json!("slow"));
        }),
    )
}

fn avro_truncated() -> KafkaMessage {
    let mut message = binary_avro();
    let value = message.value.as_mut().expect("Avro value");
    value.truncate(value.len() - 7);
    message
}

/// Not a fingerprint of any llmopt schema: 8 bytes from a fixed seed.
fn unknown_fingerprint() -> [u8; 8] {
    let mut fp = [0u8; 8];
    ChaCha8Rng::seed_from_u64(0xF1_4E_E4).fill_bytes(&mut fp);
    assert!(
        SchemaRegistry::current().writer(&fp).is_none(),
        "random fingerprint collides with a real one"
    );
    fp
}

fn avro_unknown_schema() -> KafkaMessage {
    let mut message = binary_avro();
    let value = message.value.as_mut().expect("Avro value");
    value[2..10].copy_from_slice(&unknown_fingerprint());
    message
}

/// A record that is valid apart from its 2 KiB size (the JSON data is padded with spaces).
fn oversized() -> KafkaMessage {
    let mut data = json_value(&binary_json()).to_string().into_bytes();
    data.resize(2048, b' ');
    with_value(binary_json(), data)
}

fn oversized_limits() -> DecodeLimits {
    DecodeLimits {
        max_message_bytes: 1024,
    }
}

fn unknown_type() -> KafkaMessage {
    with_header(binary_json(), "ce_type", b"com.example.unknown.v1")
}

fn header_not_utf8() -> KafkaMessage {
    with_header(binary_json(), "ce_source", b"/apps/\xff\xfecheckout")
}

fn text_plain() -> KafkaMessage {
    with_value(
        with_header(binary_json(), "content-type", b"text/plain"),
        b"app=checkout latency=412".to_vec(),
    )
}

/// Every named case, with the category that says which of them must share a kind.
fn named_cases() -> Vec<Case> {
    vec![
        case("not_json", "not JSON", not_json()),
        case(
            "missing_attribute",
            "binary without id",
            missing_binary("id"),
        ),
        case(
            "missing_attribute",
            "binary without source",
            missing_binary("source"),
        ),
        case(
            "missing_attribute",
            "binary without type",
            missing_binary("type"),
        ),
        case(
            "missing_attribute",
            "binary without specversion",
            missing_binary("specversion"),
        ),
        case(
            "missing_attribute",
            "structured without id",
            missing_structured_id(),
        ),
        case(
            "wrong_specversion",
            "binary 0.3",
            wrong_specversion_binary(),
        ),
        case(
            "wrong_specversion",
            "structured 0.3",
            wrong_specversion_structured(),
        ),
        case("bad_data", "JSON data without app", json_data_missing_app()),
        case(
            "bad_data",
            "JSON latency_ms a string",
            json_data_latency_string(),
        ),
        case("bad_data", "Avro data truncated", avro_truncated()),
        case(
            "unknown_schema",
            "Avro unknown fingerprint",
            avro_unknown_schema(),
        ),
        Case {
            limits: oversized_limits(),
            ..case("oversized", "2 KiB over a 1 KiB limit", oversized())
        },
        case("unknown_type", "unknown CloudEvents type", unknown_type()),
        case("header_not_utf8", "non-UTF-8 ce_source", header_not_utf8()),
        case("unsupported_content_type", "text/plain data", text_plain()),
    ]
}

// (a)
#[test]
fn not_json_without_headers_is_not_json() {
    let message = not_json();
    let err = decode_err(&message, &default_limits());
    assert!(
        matches!(err, WireError::Envelope(CeError::NotJson(_))),
        "{err:?}"
    );
    assert_reported(&err, "not_json", &["not valid JSON"]);
    assert!(matches!(
        envelope_err(&message, &default_limits()),
        CeError::NotJson(_)
    ));
}

// (b)
#[test]
fn missing_required_attribute_in_binary_mode_names_it() {
    for attribute in ["id", "source", "type", "specversion"] {
        let message = missing_binary(attribute);
        let err = decode_err(&message, &default_limits());
        match &err {
            WireError::Envelope(CeError::MissingAttribute(name)) => {
                assert_eq!(*name, attribute, "{err}")
            }
            other => panic!("missing {attribute}: expected MissingAttribute, got {other:?}"),
        }
        assert_reported(&err, "missing_attribute", &[&format!("`{attribute}`")]);
        assert_eq!(
            envelope_err(&message, &default_limits()),
            CeError::MissingAttribute(attribute_static(attribute))
        );
    }
}

fn attribute_static(attribute: &str) -> &'static str {
    match attribute {
        "id" => "id",
        "source" => "source",
        "type" => "type",
        "specversion" => "specversion",
        other => panic!("not a required attribute: {other}"),
    }
}

#[test]
fn missing_id_in_structured_mode_names_it() {
    let message = missing_structured_id();
    let err = decode_err(&message, &default_limits());
    assert!(
        matches!(err, WireError::Envelope(CeError::MissingAttribute("id"))),
        "{err:?}"
    );
    assert_reported(&err, "missing_attribute", &["`id`"]);
}

#[test]
fn missing_specversion_without_content_type_is_still_missing_specversion() {
    // No `content-type` and no `ce_specversion`: the decoder tries structured mode, and the JSON
    // data has no `specversion` either, so the report is the same.
    let message = without_header(missing_binary("specversion"), "content-type");
    let err = decode_err(&message, &default_limits());
    assert!(
        matches!(
            err,
            WireError::Envelope(CeError::MissingAttribute("specversion"))
        ),
        "{err:?}"
    );
}

// (c)
#[test]
fn wrong_specversion_is_reported_in_both_modes() {
    for message in [wrong_specversion_binary(), wrong_specversion_structured()] {
        let err = decode_err(&message, &default_limits());
        match &err {
            WireError::Envelope(CeError::WrongSpecVersion(v)) => assert_eq!(v, "0.3"),
            other => panic!("expected WrongSpecVersion, got {other:?}"),
        }
        assert_reported(&err, "wrong_specversion", &["specversion", "`0.3`"]);
    }
}

// (d)
#[test]
fn json_data_without_a_required_field_names_the_field() {
    let err = decode_err(&json_data_missing_app(), &default_limits());
    assert!(
        matches!(err, WireError::Data(CodecError::JsonMismatch { .. })),
        "{err:?}"
    );
    assert_reported(&err, "bad_data", &["llmopt.events.LlmCall", "`app`"]);
}

#[test]
fn json_data_with_a_mistyped_field_is_bad_data() {
    let err = decode_err(&json_data_latency_string(), &default_limits());
    assert!(
        matches!(err, WireError::Data(CodecError::JsonMismatch { .. })),
        "{err:?}"
    );
    assert_reported(
        &err,
        "bad_data",
        &["llmopt.events.LlmCall", "invalid type", "\"slow\"", "f64"],
    );
}

/// A mistyped field is named by its path, not only by a line and column.
#[test]
fn json_data_with_a_mistyped_field_names_the_field() {
    let err = decode_err(&json_data_latency_string(), &default_limits());
    assert_reported(&err, "bad_data", &["llmopt.events.LlmCall", "latency_ms"]);
}

#[test]
fn truncated_avro_data_is_bad_data() {
    let err = decode_err(&avro_truncated(), &default_limits());
    assert!(
        matches!(err, WireError::Data(CodecError::AvroMismatch { .. })),
        "{err:?}"
    );
    assert_reported(&err, "bad_data", &["llmopt.events.LlmCall"]);
}

// (e)
#[test]
fn avro_with_an_unknown_schema_names_the_fingerprint() {
    let err = decode_err(&avro_unknown_schema(), &default_limits());
    let hex: String = unknown_fingerprint()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match &err {
        WireError::Data(CodecError::UnknownSchema(fp)) => assert_eq!(fp, &hex),
        other => panic!("expected UnknownSchema, got {other:?}"),
    }
    assert_reported(&err, "unknown_schema", &["unknown schema", &hex]);
}

// (f)
#[test]
fn oversized_message_is_rejected_before_parsing() {
    let message = oversized();
    assert!(message.size() > 2048, "record is over 2 KiB");
    // Under the default limit the same record is fine: size is the only thing wrong with it.
    decode_with(&message, &default_limits()).expect("the record is valid under 1 MiB");
    let err = decode_err(&message, &oversized_limits());
    match &err {
        WireError::Envelope(CeError::Oversized { size, limit }) => {
            assert_eq!((*size, *limit), (message.size(), 1024));
        }
        other => panic!("expected Oversized, got {other:?}"),
    }
    assert_reported(
        &err,
        "oversized",
        &[&message.size().to_string(), "1024-byte limit"],
    );
    // Checked first: even a record that is also garbage is reported as oversized.
    let garbage = KafkaMessage {
        value: Some(vec![0xFF; 2048]),
        ..KafkaMessage::default()
    };
    assert_eq!(
        decode_err(&garbage, &oversized_limits()).kind(),
        "oversized"
    );
}

// (g)
#[test]
fn unknown_cloudevents_type_names_the_type() {
    let err = decode_err(&unknown_type(), &default_limits());
    match &err {
        WireError::UnknownType(t) => assert_eq!(t, "com.example.unknown.v1"),
        other => panic!("expected UnknownType, got {other:?}"),
    }
    assert_reported(&err, "unknown_type", &["type", "com.example.unknown.v1"]);
}

#[test]
fn another_llmopt_type_is_wrong_type_not_unknown() {
    let message = with_header(
        binary_json(),
        "ce_type",
        Contract::Alert.ce_type().as_bytes(),
    );
    let err = decode_err(&message, &default_limits());
    assert!(matches!(err, WireError::WrongType { .. }), "{err:?}");
    assert_reported(
        &err,
        "wrong_type",
        &["io.llmopt.llm_call.v1", "io.llmopt.alert.v1"],
    );
}

// (h)
#[test]
fn non_utf8_header_value_names_the_header() {
    let err = decode_err(&header_not_utf8(), &default_limits());
    match &err {
        WireError::Envelope(CeError::HeaderNotUtf8(h)) => assert_eq!(h, "ce_source"),
        other => panic!("expected HeaderNotUtf8, got {other:?}"),
    }
    assert_reported(&err, "header_not_utf8", &["`ce_source`", "UTF-8"]);

    let content_type = with_header(binary_json(), "content-type", b"application/\xc3json");
    let err = decode_err(&content_type, &default_limits());
    assert!(
        matches!(&err, WireError::Envelope(CeError::HeaderNotUtf8(h)) if h == "content-type"),
        "{err:?}"
    );
    assert_reported(&err, "header_not_utf8", &["`content-type`"]);
}

// (i)
#[test]
fn unsupported_datacontenttype_names_it() {
    let err = decode_err(&text_plain(), &default_limits());
    match &err {
        WireError::UnsupportedContentType(ct) => assert_eq!(ct, "text/plain"),
        other => panic!("expected UnsupportedContentType, got {other:?}"),
    }
    assert_reported(
        &err,
        "unsupported_content_type",
        &["datacontenttype", "`text/plain`"],
    );
}

#[test]
fn further_envelope_and_data_mistakes_have_their_own_kinds() {
    let no_data = KafkaMessage {
        value: None,
        ..binary_json()
    };
    let err = decode_err(&no_data, &default_limits());
    assert!(matches!(err, WireError::MissingData(_)), "{err:?}");
    assert_reported(&err, "missing_data", &["call-42", "no data"]);

    let json_as_avro = with_header(binary_json(), "content-type", b"application/avro");
    let err = decode_err(&json_as_avro, &default_limits());
    assert!(
        matches!(err, WireError::Data(CodecError::NotSingleObject)),
        "{err:?}"
    );
    assert_reported(&err, "not_avro", &["C3 01"]);

    let bad_time = with_header(binary_json(), "ce_time", b"yesterday");
    let err = decode_err(&bad_time, &default_limits());
    assert!(
        matches!(&err, WireError::Envelope(CeError::InvalidAttribute { name, .. }) if name == "time"),
        "{err:?}"
    );
    assert_reported(&err, "invalid_attribute", &["`time`", "yesterday"]);

    let avro_format = with_header(
        binary_json(),
        "content-type",
        b"application/cloudevents+avro",
    );
    let err = decode_err(&avro_format, &default_limits());
    assert!(
        matches!(err, WireError::Envelope(CeError::UnsupportedFormat(_))),
        "{err:?}"
    );
    assert_reported(
        &err,
        "unsupported_format",
        &["application/cloudevents+avro"],
    );
}

#[test]
fn each_category_of_mistake_has_one_distinct_kind() {
    let mut kinds: BTreeMap<&str, BTreeSet<&'static str>> = BTreeMap::new();
    for case in named_cases() {
        let err = decode_err(&case.message, &case.limits);
        assert!(
            !err.to_string().is_empty(),
            "{}: empty error message",
            case.label
        );
        kinds.entry(case.category).or_default().insert(err.kind());
        println!("{:<28} {:<26} {err}", case.label, err.kind());
    }
    // Cases of one category share one kind...
    for (category, seen) in &kinds {
        assert_eq!(seen.len(), 1, "category {category} has kinds {seen:?}");
    }
    // ... which is the stable string named after it, and no two categories share a kind.
    let per_category: Vec<(&str, &str)> = kinds
        .iter()
        .map(|(c, k)| (*c, *k.iter().next().expect("one kind")))
        .collect();
    for (category, kind) in &per_category {
        assert_eq!(category, kind, "kind of category {category}");
    }
    let distinct: BTreeSet<&str> = per_category.iter().map(|(_, k)| *k).collect();
    assert_eq!(distinct.len(), per_category.len(), "{per_category:?}");
    assert_eq!(
        distinct.len(),
        9,
        "nine categories of mistake: {distinct:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Property-style: random records never decode and never panic.
// ---------------------------------------------------------------------------------------------

const HEADER_NAMES: &[&str] = &[
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_specversion",
    "ce_time",
    "ce_subject",
    "ce_dataschema",
    "ce_datacontenttype",
    "ce_partitionkey",
    "ce_traceparent",
    "CE_ID",
    "ce_",
    "ce_Bad-Name",
    "content-type",
    "Content-Type",
    "traceparent",
];

const HEADER_VALUES: &[&[u8]] = &[
    b"1.0",
    b"0.3",
    b"",
    b"io.llmopt.llm_call.v1",
    b"io.llmopt.alert.v1",
    b"application/json",
    b"application/avro",
    b"application/cloudevents+json",
    b"application/cloudevents+avro",
    b"text/plain",
    b"2026-01-01T00:00:00Z",
    b"not-a-time",
    b"/apps/checkout",
    b"id-1",
    b"\xff\xfe",
];

/// Base64 strings for `data_base64`: Avro-marked bytes with unknown fingerprints, JSON, junk.
const BASE64_VALUES: &[&str] = &[
    "wwHerb7vAQIDBAUG",
    "wwEAAAAAAAAAAA==",
    "eyJhcHAiOiJjaGVja291dCJ9",
    "AAAA",
    "not base64!",
];

const JSON_FIELDS: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
    "partitionkey",
    "Bad-Name",
];

fn random_bytes(rng: &mut ChaCha8Rng, max: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; rng.gen_range(0..=max)];
    rng.fill_bytes(&mut bytes);
    bytes
}

fn random_header_value(rng: &mut ChaCha8Rng) -> Option<Vec<u8>> {
    match rng.gen_range(0..10) {
        0 => None,
        1..=3 => Some(random_bytes(rng, 24)),
        _ => Some(HEADER_VALUES[rng.gen_range(0..HEADER_VALUES.len())].to_vec()),
    }
}

fn random_header_name(rng: &mut ChaCha8Rng) -> String {
    if rng.gen_bool(0.15) {
        let len = rng.gen_range(0..12);
        (0..len)
            .map(|_| char::from(rng.gen_range(0x20u8..0x7F)))
            .collect()
    } else {
        HEADER_NAMES[rng.gen_range(0..HEADER_NAMES.len())].to_string()
    }
}

/// A value that can never hold a valid `LlmCall`: random bytes, sometimes behind the Avro marker
/// (the random fingerprint is unknown), sometimes a prefix of JSON.
fn random_value(rng: &mut ChaCha8Rng) -> Option<Vec<u8>> {
    match rng.gen_range(0..8) {
        0 => None,
        1 => {
            let mut v = vec![0xC3, 0x01];
            v.extend(random_bytes(rng, 64));
            Some(v)
        }
        2 => {
            let mut v = b"{\"".to_vec();
            v.extend(random_bytes(rng, 64));
            Some(v)
        }
        _ => Some(random_bytes(rng, 256)),
    }
}

/// A JSON value for a structured-mode field; never a valid `LlmCall` object.
fn random_json(rng: &mut ChaCha8Rng) -> Value {
    match rng.gen_range(0..9) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i32>()),
        3 => json!(rng.gen::<f64>()),
        4 => json!({ "app": "checkout", "latency_ms": "slow" }),
        5 => json!([1, "two", null]),
        6 => json!(BASE64_VALUES[rng.gen_range(0..BASE64_VALUES.len())]),
        _ => {
            let v = HEADER_VALUES[rng.gen_range(0..HEADER_VALUES.len())];
            json!(String::from_utf8_lossy(v))
        }
    }
}

/// CloudEvents types a random record may claim: ours, another llmopt one, a foreign one.
const TYPES: &[&str] = &[
    "io.llmopt.llm_call.v1",
    "io.llmopt.alert.v1",
    "com.example.unknown.v1",
];

/// Content types of data a random record may claim.
const DATA_CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "application/avro",
    "avro/binary",
    "text/plain",
];

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

fn random_structured(rng: &mut ChaCha8Rng) -> KafkaMessage {
    let mut doc = serde_json::Map::new();
    // Half the documents get a valid envelope, so the data layer is reached too.
    if rng.gen_bool(0.5) {
        doc.insert("specversion".into(), json!("1.0"));
        doc.insert("id".into(), json!("id-1"));
        doc.insert("source".into(), json!("/apps/checkout"));
        doc.insert("type".into(), json!(pick(rng, TYPES)));
        if rng.gen_bool(0.7) {
            doc.insert(
                "datacontenttype".into(),
                json!(pick(rng, DATA_CONTENT_TYPES)),
            );
        }
    }
    for _ in 0..rng.gen_range(0..6) {
        let field = JSON_FIELDS[rng.gen_range(0..JSON_FIELDS.len())];
        doc.insert(field.into(), random_json(rng));
    }
    let mut headers = Vec::new();
    if rng.gen_bool(0.7) {
        headers.push((
            "content-type".into(),
            Some(b"application/cloudevents+json".to_vec()),
        ));
    }
    KafkaMessage {
        key: rng.gen_bool(0.3).then(|| random_bytes(rng, 16)),
        headers,
        value: Some(serde_json::to_vec(&Value::Object(doc)).expect("serialise document")),
    }
}

fn random_binary(rng: &mut ChaCha8Rng) -> KafkaMessage {
    let mut headers = Vec::new();
    // Half the records get a valid envelope, so the data layer is reached too.
    if rng.gen_bool(0.5) {
        let ty = pick(rng, TYPES);
        for (name, value) in [
            ("ce_specversion", "1.0"),
            ("ce_id", "id-1"),
            ("ce_source", "/apps/checkout"),
            ("ce_type", ty),
        ] {
            headers.push((name.to_string(), Some(value.as_bytes().to_vec())));
        }
        if rng.gen_bool(0.8) {
            let ct = pick(rng, DATA_CONTENT_TYPES);
            headers.push(("content-type".into(), Some(ct.as_bytes().to_vec())));
        }
    }
    for _ in 0..rng.gen_range(0..if headers.is_empty() { 10 } else { 3 }) {
        headers.push((random_header_name(rng), random_header_value(rng)));
    }
    KafkaMessage {
        key: rng.gen_bool(0.3).then(|| random_bytes(rng, 16)),
        headers,
        value: random_value(rng),
    }
}

fn random_message(rng: &mut ChaCha8Rng) -> KafkaMessage {
    match rng.gen_range(0..3) {
        // Random bytes and nothing else.
        0 => KafkaMessage {
            key: rng.gen_bool(0.5).then(|| random_bytes(rng, 32)),
            headers: Vec::new(),
            value: Some(random_bytes(rng, 512)),
        },
        // Random header sets around a value that cannot be an LlmCall.
        1 => random_binary(rng),
        // Random structured-mode documents.
        _ => random_structured(rng),
    }
}

#[test]
fn ten_thousand_random_records_are_all_rejected_without_panicking() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x11_0D7);
    let limits = default_limits();
    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    for i in 0..10_000 {
        let message = random_message(&mut rng);
        match decode_with(&message, &limits) {
            Ok((ce, _, _)) => panic!("random record #{i} decoded: {ce:?} from {message:?}"),
            Err(e) => *kinds.entry(e.kind()).or_default() += 1,
        }
    }
    println!("kinds seen: {kinds:?}");
    // The generator reaches well past the first check.
    for kind in [
        "not_json",
        "missing_attribute",
        "wrong_specversion",
        "invalid_attribute",
        "header_not_utf8",
        "unsupported_format",
        "unknown_type",
        "wrong_type",
        "missing_data",
        "unsupported_content_type",
        "not_avro",
        "unknown_schema",
        "bad_data",
    ] {
        assert!(kinds.contains_key(kind), "no `{kind}` among {kinds:?}");
    }
}

#[test]
fn mutated_avro_records_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xA7_0B);
    let original = binary_avro();
    let value = original.value.clone().expect("Avro value");
    let limits = default_limits();
    let (mut ok, mut err) = (0usize, 0usize);
    for i in 0..10_000 {
        let mut mutated = value.clone();
        match i % 4 {
            // Flip a few random bits anywhere, marker and fingerprint included.
            0 | 1 => {
                for _ in 0..rng.gen_range(1..=4) {
                    let at = rng.gen_range(0..mutated.len());
                    mutated[at] ^= 1 << rng.gen_range(0..8);
                }
            }
            // Replace random bytes of the body, where length prefixes live.
            2 => {
                for _ in 0..rng.gen_range(1..=4) {
                    let at = rng.gen_range(10..mutated.len());
                    mutated[at] = rng.gen();
                }
            }
            // Truncate or extend.
            _ => {
                if rng.gen_bool(0.5) {
                    mutated.truncate(rng.gen_range(0..mutated.len()));
                } else {
                    mutated.extend(random_bytes(&mut rng, 8));
                }
            }
        }
        let message = with_value(original.clone(), mutated);
        match decode_with(&message, &limits) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    println!("mutated Avro records: {ok} decoded, {err} rejected");
    assert!(err > 0, "some mutations must be rejected");
}

#[test]
fn mutated_json_records_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x15_0B);
    let messages = [binary_json(), structured(&structured_doc())];
    let limits = default_limits();
    for i in 0..4_000 {
        let original = &messages[i % 2];
        let mut mutated = original.value.clone().expect("value");
        for _ in 0..rng.gen_range(1..=3) {
            let at = rng.gen_range(0..mutated.len());
            mutated[at] = rng.gen();
        }
        let _ = decode_with(&with_value(original.clone(), mutated), &limits);
    }
}
