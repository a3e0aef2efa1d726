//! Throughput of the Kafka transport against a bare rdkafka consumer loop, on the same broker,
//! topic and records, in the same process, so the figure is a ratio that machine noise affects
//! little.
//!
//! `loadtest/run.sh` brings up a broker and runs it; or set `LLMOPT_KAFKA_BOOTSTRAP` and run
//! `cargo run --release -p llmopt-loadtest -- transport --events 200000`. The `pipeline` mode
//! (`loadtest/run.sh pipeline`) measures the services end to end (see [`pipeline`]); the
//! `restart` mode (`loadtest/run.sh restart`) measures restart cost against history (see
//! [`restart`]); the `chaos` mode (`loadtest/run.sh chaos`) kills every service at random points
//! under load and compares every record with an uninterrupted run's (see [`chaos`]); the `scale`
//! mode (`loadtest/run.sh scale`) runs three aggregators, kills one for good and adds one, and
//! compares every window with a single aggregator's (see [`scale`]); the `otlp` mode
//! (`loadtest/run.sh otlp`) measures spans/s through ingest's OTLP/HTTP receiver against the
//! CloudEvents path (see [`otlp`]); the `backlog` mode (`loadtest/run.sh backlog`) times
//! ingest and the aggregator each alone on a backlog against a bare consumer (see [`backlog`]);
//! the `memory` mode measures the aggregator's memory per active key-window (see [`memory`]).

mod backlog;
mod chaos;
mod memory;
mod otlp;
mod pipeline;
mod restart;
mod scale;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{samples, LlmCall, SchemaRegistry};
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{KafkaConfig, OutboundMessage, TopicSpec, Transport};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

#[derive(Parser)]
#[command(name = "llmopt-loadtest", about = "llmopt throughput measurements")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Produce N events through the Kafka transport, consume them through it, and consume the
    /// same topic with a bare rdkafka loop; print events/s of each and their ratio.
    Transport {
        /// Events to produce.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Partitions of the test topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Broker (defaults to $LLMOPT_KAFKA_BOOTSTRAP).
        #[arg(long, env = "LLMOPT_KAFKA_BOOTSTRAP")]
        bootstrap: String,
    },
    /// `llmopt loadgen` at full speed through ingest and aggregator processes; events/s end to
    /// end next to a bare rdkafka consume of the same raw topic.
    Pipeline {
        #[command(flatten)]
        stack: Stack,
        /// Simulated seconds of the default scenario.
        #[arg(long, default_value_t = 3600)]
        duration: u64,
    },
    /// Each service alone on a backlog: loadgen fills the raw topic, then ingest is timed on
    /// it, then the aggregator on ingest's output, each next to a bare rdkafka consumer
    /// counting the same topic (ratios).
    Backlog {
        #[command(flatten)]
        stack: Stack,
        /// Simulated seconds of the default scenario; 18,000 (5 hours) is about 206,000 events.
        #[arg(long, default_value_t = 18_000)]
        duration: u64,
        /// Ingest's state store for deduplication: redis or embedded.
        #[arg(long, default_value = "redis")]
        state: String,
    },
    /// Memory per active key-window of the aggregator core (in this process): RSS growth with
    /// 10,000 and 100,000 series each holding its open tumbling and hopping windows.
    Memory {
        /// Series counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        series: Vec<u64>,
        /// Calls per series (within one minute).
        #[arg(long, default_value_t = 20)]
        calls: u64,
    },
    /// Restart cost: seconds from a restart of each stateful service to `/ready`, with
    /// `base × factor` simulated seconds of history in its topics (checkpoints), and at the
    /// largest history without checkpoints (state rebuilt by replay) as the baseline.
    Restart {
        #[command(flatten)]
        stack: Stack,
        /// Simulated seconds of history of the smallest run.
        #[arg(long, default_value_t = 360)]
        base: u64,
        /// History multiples.
        #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
        factors: Vec<u64>,
    },
    /// Chaos at load: the loop in lock-step twice over the same fleet, uninterrupted and with
    /// every service killed (SIGKILL) in `rounds` overlapping rounds and Redis restarted once;
    /// every record of every topic of the loop must be the same.
    Chaos {
        #[command(flatten)]
        stack: Stack,
        /// Simulated seconds of the default scenario (its two hours of incidents, then quiet
        /// traffic); 18,000 (5 hours) is about 206,000 events.
        #[arg(long, default_value_t = 18_000)]
        duration: u64,
        /// Kill rounds; each kills all five services once, in a random order.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seed of the kill schedule.
        #[arg(long, default_value_t = 9)]
        seed: u64,
    },
    /// Scale-out and scale-in at load: ingest and the aggregator as processes, once with one
    /// aggregator and once with `instances` in one group (one killed for good a third of the
    /// way, one added at two thirds); every window must be the same, nothing late.
    Scale {
        #[command(flatten)]
        stack: Stack,
        /// Simulated seconds of the default scenario; 18,000 (5 hours) is about 206,000 events.
        #[arg(long, default_value_t = 18_000)]
        duration: u64,
        /// Events per second loadgen publishes at most.
        #[arg(long, default_value_t = 2_000)]
        rate: u64,
        /// Aggregators at the start of the scaled run.
        #[arg(long, default_value_t = 3)]
        instances: usize,
    },
    /// Spans/s through ingest's OTLP/HTTP receiver into Kafka against the CloudEvents producer
    /// path for the same calls (same process, same broker).
    Otlp {
        /// Calls (spans) per path.
        #[arg(long, default_value_t = 100_000)]
        calls: u64,
        /// Spans per export and records per publish batch (the OpenTelemetry SDK's 512).
        #[arg(long, default_value_t = 512)]
        batch: usize,
        /// Concurrent exporters / publishers.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Broker (defaults to $LLMOPT_KAFKA_BOOTSTRAP).
        #[arg(long, env = "LLMOPT_KAFKA_BOOTSTRAP")]
        bootstrap: String,
    },
}

/// The binary and servers a pipeline load test runs against.
#[derive(clap::Args)]
struct Stack {
    /// The `llmopt` binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/llmopt")]
    llmopt: std::path::PathBuf,
    /// Partitions of the pipeline's topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Broker (defaults to $LLMOPT_KAFKA_BOOTSTRAP).
    #[arg(long, env = "LLMOPT_KAFKA_BOOTSTRAP")]
    bootstrap: String,
    /// Redis (defaults to $LLMOPT_REDIS_URL).
    #[arg(long, env = "LLMOPT_REDIS_URL")]
    redis: String,
}

impl Stack {
    fn pipeline(self, duration_s: u64) -> pipeline::PipelineRun {
        pipeline::PipelineRun {
            llmopt: self.llmopt,
            bootstrap: self.bootstrap,
            redis: self.redis,
            duration_s,
            partitions: self.partitions,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Transport {
            events,
            partitions,
            bootstrap,
        } => transport(events, partitions, bootstrap).await,
        Cmd::Pipeline { stack, duration } => stack.pipeline(duration).run(),
        Cmd::Memory { series, calls } => memory::run(&series, calls),
        Cmd::Backlog {
            stack,
            duration,
            state,
        } => backlog::BacklogRun {
            pipeline: stack.pipeline(duration),
            state,
        }
        .run(),
        Cmd::Otlp {
            calls,
            batch,
            clients,
            bootstrap,
        } => {
            otlp::OtlpBench {
                calls,
                batch,
                clients,
                bootstrap,
            }
            .run()
            .await
        }
        Cmd::Restart {
            stack,
            base,
            factors,
        } => restart::RestartRun {
            pipeline: stack.pipeline(base),
            base_s: base,
            factors,
        }
        .run(),
        Cmd::Chaos {
            stack,
            duration,
            rounds,
            seed,
        } => chaos::ChaosRun {
            pipeline: stack.pipeline(duration),
            rounds,
            seed,
        }
        .run(),
        Cmd::Scale {
            stack,
            duration,
            rate,
            instances,
        } => scale::ScaleRun {
            pipeline: stack.pipeline(duration),
            rate,
            instances,
        }
        .run(),
    }
}

fn record(n: u64) -> anyhow::Result<OutboundMessage> {
    let call = samples::llm_call(n);
    let meta = EventMeta {
        id: format!("evt-{n}"),
        source: "/loadtest".into(),
        time_ms: Some(call.event_time),
        partition_key: Some(call.request_id.clone()),
        traceparent: None,
        subject: None,
    };
    let kafka = wire::to_kafka(&call, &meta, DataFormat::Avro)?;
    Ok(OutboundMessage {
        key: kafka.key,
        value: kafka.value,
        headers: kafka.headers,
        timestamp_ms: Some(call.event_time),
    })
}

fn decode(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    registry: &SchemaRegistry,
) -> anyhow::Result<()> {
    let message = llmopt_cloudevents::KafkaMessage {
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers,
    };
    wire::decode_kafka::<LlmCall>(&message, &Default::default(), registry)?;
    Ok(())
}

async fn transport(events: u64, partitions: i32, bootstrap: String) -> anyhow::Result<()> {
    let config = KafkaConfig {
        bootstrap_servers: bootstrap.clone(),
        client_id: "llmopt-loadtest".into(),
        ..KafkaConfig::default()
    };
    let transport = KafkaTransport::new(&config, "loadtest")?;
    let suffix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let topic = format!("llmopt.loadtest.{suffix}");
    transport
        .ensure_topics(&[TopicSpec {
            name: topic.clone(),
            partitions,
        }])
        .await?;
    let registry = SchemaRegistry::current();

    let records: Vec<OutboundMessage> = (0..events).map(record).collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    for chunk in records.chunks(10_000) {
        transport.publish_batch(&topic, chunk.to_vec()).await?;
    }
    let produce_rate = events as f64 / started.elapsed().as_secs_f64();

    // Alternate the two loops (bare, llmopt, bare, llmopt), each on its own consumer group over
    // the same records, and keep each one's best run, so broker warm-up favours neither.
    let mut llmopt_rate: f64 = 0.0;
    let mut bare_rate: f64 = 0.0;
    for round in 0..2 {
        let group = format!("{topic}-bare-{round}");
        bare_rate = bare_rate.max(bare_loop(&bootstrap, &group, &topic, events, &registry)?);
        let group = format!("{topic}-llmopt-{round}");
        llmopt_rate =
            llmopt_rate.max(llmopt_loop(&transport, &group, &topic, events, &registry).await?);
    }

    println!("events: {events}, partitions: {partitions}, broker: {bootstrap}");
    println!("produce (llmopt transport, idempotent, acks=all): {produce_rate:>10.0} events/s");
    println!("consume llmopt transport (decode+ack+commit):     {llmopt_rate:>10.0} events/s");
    println!("consume bare rdkafka BaseConsumer (decode):       {bare_rate:>10.0} events/s");
    println!(
        "ratio llmopt/bare:                                {:>10.2}",
        llmopt_rate / bare_rate
    );
    Ok(())
}

/// Through llmopt's transport: poll, decode, ack; a synchronous commit every 5000 records (on
/// top of librdkafka's interval commits of acked offsets), as a service would.
async fn llmopt_loop(
    transport: &KafkaTransport,
    group: &str,
    topic: &str,
    events: u64,
    registry: &SchemaRegistry,
) -> anyhow::Result<f64> {
    let mut consumer = transport.subscribe(group, &[topic.to_string()]).await?;
    let mut seen = 0u64;
    let mut first = None;
    while seen < events {
        let Some(m) = consumer.poll(Duration::from_secs(30)).await? else {
            anyhow::bail!("transport consumer stalled at {seen}/{events}");
        };
        first.get_or_insert_with(Instant::now);
        decode(
            m.key.as_deref(),
            m.value.as_deref(),
            m.headers.clone(),
            registry,
        )?;
        consumer.ack(&m)?;
        seen += 1;
        if seen % 5000 == 0 {
            consumer.commit().await?;
        }
    }
    let rate = events as f64 / first.context("no message")?.elapsed().as_secs_f64();
    consumer.close().await?;
    Ok(rate)
}

/// A bare rdkafka `BaseConsumer` loop on the same topic: poll and decode, no commits.
fn bare_loop(
    bootstrap: &str,
    group: &str,
    topic: &str,
    events: u64,
    registry: &SchemaRegistry,
) -> anyhow::Result<f64> {
    bare_consume(bootstrap, group, topic, events, |m| {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        decode(m.key(), m.payload(), headers, registry)
    })
}

/// A bare rdkafka `BaseConsumer` reading `events` records of `topic` (count only): the ceiling
/// any consumer of that topic on this broker can reach.
pub(crate) fn bare_count(
    bootstrap: &str,
    group: &str,
    topic: &str,
    events: u64,
) -> anyhow::Result<f64> {
    bare_consume(bootstrap, group, topic, events, |_| Ok(()))
}

/// Polls `events` records of `topic` with a bare `BaseConsumer` (no commits), handing each to
/// `handle`; events/s from the first record on.
fn bare_consume(
    bootstrap: &str,
    group: &str,
    topic: &str,
    events: u64,
    mut handle: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let bare: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()?;
    bare.subscribe(&[topic])?;
    let mut seen = 0u64;
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen < events {
        anyhow::ensure!(
            Instant::now() < deadline,
            "bare consumer stalled at {seen}/{events}"
        );
        let Some(result) = bare.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = result?;
        first.get_or_insert_with(Instant::now);
        handle(&m)?;
        seen += 1;
    }
    Ok(events as f64 / first.context("no message")?.elapsed().as_secs_f64())
}
