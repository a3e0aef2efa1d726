//! `llmopt demo`: the foundation's end-to-end run, in one process with no servers.
//!
//! A seeded producer emits LLM-call telemetry as Avro CloudEvents onto the raw telemetry topic
//! of the embedded log (with a share of retried, duplicate deliveries, as gateways produce); a
//! consumer group of two members decodes every record, drops duplicates through a TTL set in
//! the state store, acks and commits, and the run ends with a summary per provider/model. The
//! analysis services (ingest → aggregator → detector → decision → actuator) plug into this same
//! transport and store.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{samples, CallStatus, LlmCall, SchemaRegistry};
use llmopt_state::memory::MemoryStore;
use llmopt_state::StateStore;
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::{Consumer, LogicalTopic, OutboundMessage, TopicNames, Transport};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Mutex;

use crate::config::AppConfig;

/// `llmopt demo` options.
#[derive(Args)]
pub struct DemoArgs {
    /// Telemetry events to simulate.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Seed of the simulation; the same seed gives the same summary.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of events delivered twice (producer retries), which the consumers must drop.
    #[arg(long, default_value_t = 0.02)]
    duplicate_rate: f64,
}

#[derive(Default)]
struct ModelStats {
    calls: u64,
    errors: u64,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: f64,
}

#[derive(Default)]
struct Totals {
    consumed: u64,
    duplicates: u64,
    rejected: u64,
    by_model: BTreeMap<(String, String), ModelStats>,
    ids: HashSet<String>,
}

pub async fn run(config: &AppConfig, args: DemoArgs) -> anyhow::Result<()> {
    let transport = Arc::new(EmbeddedTransport::new(config.transport.partitions));
    let state: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let names = TopicNames::new(&config.transport);
    transport.ensure_topics(&names.all_specs()).await?;
    let raw = names.name(LogicalTopic::TelemetryRaw);

    println!(
        "llmopt demo: {} events, seed {}, embedded transport ({} partitions), in-memory state",
        args.events, args.seed, config.transport.partitions
    );
    let started = Instant::now();
    let published = publish_fleet(transport.as_ref(), &raw, &args).await?;

    let totals = Arc::new(Mutex::new(Totals::default()));
    let group = "llmopt-demo";
    let mut members = Vec::new();
    for member in 0..2 {
        let consumer = transport
            .subscribe(group, std::slice::from_ref(&raw))
            .await?;
        members.push(tokio::spawn(consume(
            member,
            consumer,
            state.clone(),
            totals.clone(),
            published,
        )));
    }
    for member in members {
        member.await??;
    }
    let elapsed = started.elapsed();
    print_summary(&*totals.lock().await, &args, published, elapsed);
    Ok(())
}

/// Publishes the simulated fleet's telemetry; returns the number of records written.
async fn publish_fleet(
    transport: &dyn Transport,
    topic: &str,
    args: &DemoArgs,
) -> anyhow::Result<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut written = 0;
    let mut batch = Vec::with_capacity(5000);
    for n in 0..args.events {
        let mut call = samples::llm_call(rng.gen_range(0..1_000_000));
        call.event_time = 1_767_225_600_000 + n as i64 * 10;
        call.request_id = format!("req-{n}");
        let meta = EventMeta {
            id: format!("call-{n}"),
            source: format!("/apps/{}", call.app),
            time_ms: Some(call.event_time),
            partition_key: Some(format!("{}/{}", call.app, call.route)),
            traceparent: None,
            subject: None,
        };
        let record = wire::to_kafka(&call, &meta, DataFormat::Avro)?;
        let copies = if rng.gen_bool(args.duplicate_rate.clamp(0.0, 1.0)) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            batch.push(OutboundMessage {
                key: record.key.clone(),
                value: record.value.clone(),
                headers: record.headers.clone(),
                timestamp_ms: Some(call.event_time),
            });
            written += 1;
        }
        if batch.len() >= 5000 {
            transport
                .publish_batch(topic, std::mem::take(&mut batch))
                .await?;
        }
    }
    transport.publish_batch(topic, batch).await?;
    Ok(written)
}

async fn consume(
    member: usize,
    mut consumer: Box<dyn Consumer>,
    state: Arc<dyn StateStore>,
    totals: Arc<Mutex<Totals>>,
    published: u64,
) -> anyhow::Result<()> {
    let registry = SchemaRegistry::current();
    let horizon = Duration::from_secs(600);
    let mut since_commit = 0;
    loop {
        {
            let t = totals.lock().await;
            if t.consumed + t.duplicates + t.rejected >= published {
                break;
            }
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)).await? else {
            continue;
        };
        let record = llmopt_cloudevents::KafkaMessage {
            key: message.key.clone(),
            headers: message.headers.clone(),
            value: message.value.clone(),
        };
        let decoded = wire::decode_kafka::<LlmCall>(&record, &Default::default(), &registry);
        let mut t = totals.lock().await;
        match decoded {
            Err(e) => {
                tracing::warn!(member, error = %e, "undecodable record");
                t.rejected += 1;
            }
            Ok((ce, _, call)) => {
                let first = state
                    .set_add("demo-dedup", &format!("{}/{}", ce.source, ce.id), horizon)
                    .await?;
                if first {
                    t.consumed += 1;
                    t.ids.insert(ce.id);
                    record_call(&mut t, &call);
                } else {
                    t.duplicates += 1;
                }
            }
        }
        drop(t);
        consumer.ack(&message)?;
        since_commit += 1;
        if since_commit >= 1000 {
            consumer.commit().await?;
            since_commit = 0;
        }
    }
    consumer.close().await?;
    Ok(())
}

fn record_call(totals: &mut Totals, call: &LlmCall) {
    let key = (
        call.gen_ai_provider_name.clone(),
        call.gen_ai_request_model.clone(),
    );
    let stats = totals.by_model.entry(key).or_default();
    stats.calls += 1;
    stats.errors += u64::from(call.status == CallStatus::Error);
    stats.input_tokens += call.gen_ai_usage_input_tokens;
    stats.output_tokens += call.gen_ai_usage_output_tokens;
    stats.cost_usd += call.cost_usd.unwrap_or_default();
}

fn print_summary(totals: &Totals, args: &DemoArgs, published: u64, elapsed: Duration) {
    println!();
    println!(
        "{:<14} {:<20} {:>9} {:>8} {:>13} {:>13} {:>10}",
        "PROVIDER", "MODEL", "CALLS", "ERR %", "INPUT TOK", "OUTPUT TOK", "COST $"
    );
    for ((provider, model), s) in &totals.by_model {
        println!(
            "{:<14} {:<20} {:>9} {:>7.2}% {:>13} {:>13} {:>10.2}",
            provider,
            model,
            s.calls,
            100.0 * s.errors as f64 / s.calls.max(1) as f64,
            s.input_tokens,
            s.output_tokens,
            s.cost_usd
        );
    }
    let lost = args.events.saturating_sub(totals.ids.len() as u64);
    println!();
    println!(
        "records published {published}, unique events {}, duplicates dropped {}, rejected {}, lost {lost}",
        totals.consumed, totals.duplicates, totals.rejected
    );
    println!(
        "throughput: {:.0} records/s end to end (publish + consume + decode + dedup) in {:.2} s",
        published as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}
