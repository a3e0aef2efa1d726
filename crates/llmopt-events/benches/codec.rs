//! Encode/decode cost of one telemetry event: Avro vs JSON data, and the whole Kafka record
//! (CloudEvents binary mode) as consumers see it.
//!
//! `cargo bench -p llmopt-events --bench codec`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use llmopt_events::codec;
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{samples, LlmCall, SchemaRegistry};

fn bench(c: &mut Criterion) {
    let call = samples::llm_call(12);
    let registry = SchemaRegistry::current();
    let avro = codec::encode_avro(&call).expect("avro");
    let json = codec::encode_json(&call).expect("json");
    let meta = EventMeta {
        id: "evt-12".into(),
        source: "/apps/checkout".into(),
        time_ms: Some(call.event_time),
        partition_key: Some("checkout/summarize".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        subject: None,
    };
    let record = wire::to_kafka(&call, &meta, DataFormat::Avro).expect("record");

    let mut group = c.benchmark_group("llm_call");
    group.throughput(Throughput::Elements(1));
    group.bench_function("avro_encode", |b| {
        b.iter(|| codec::encode_avro(black_box(&call)))
    });
    group.bench_function("avro_decode", |b| {
        b.iter(|| codec::decode_avro::<LlmCall>(black_box(&avro), &registry))
    });
    group.bench_function("json_encode", |b| {
        b.iter(|| codec::encode_json(black_box(&call)))
    });
    group.bench_function("json_decode", |b| {
        b.iter(|| codec::decode_json::<LlmCall>(black_box(&json)))
    });
    group.bench_function("cloudevent_record_encode_avro", |b| {
        b.iter(|| wire::to_kafka(black_box(&call), &meta, DataFormat::Avro))
    });
    group.bench_function("cloudevent_record_decode_avro", |b| {
        b.iter(|| wire::decode_kafka::<LlmCall>(black_box(&record), &Default::default(), &registry))
    });
    group.finish();
    println!(
        "sizes: avro data {} bytes, json data {} bytes",
        avro.len(),
        json.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
