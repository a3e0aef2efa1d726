//! The quantizer service on a real broker and Redis: a job delivered twice produces exactly one
//! artifact event and one artifact; a job naming a missing model or bad parameters produces a
//! failure event with its reason, and the worker goes on serving the next job; jobs that outlast
//! the consumer's poll interval run off the consumer thread without the worker being evicted.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use llmopt_cloudevents::KafkaMessage;
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{
    samples, AnyEvent, QuantFailureReason, QuantMethod, QuantizationJob, SchemaRegistry,
};
use llmopt_quantizer::{HandledJobs, Quantizer, QuantizerConfig};
use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::runner::{Runner, RunnerConfig};
use llmopt_runtime::shutdown;
use llmopt_state::redis::RedisStore;
use llmopt_state::{StateConfig, StateKind};
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{LogicalTopic, OutboundMessage, TopicNames, Transport, TransportConfig};

/// The consumers' `max.poll.interval.ms` (librdkafka's minimum is the session timeout).
const MAX_POLL_INTERVAL_MS: u64 = 6000;

fn job(
    id: &str,
    location: &str,
    method: QuantMethod,
    bits: i32,
    group: Option<i32>,
) -> QuantizationJob {
    QuantizationJob {
        job_id: id.into(),
        model_name: "all-MiniLM-L6-v2".into(),
        model_location: location.into(),
        method,
        bits,
        group_size: group,
        symmetric: false,
        act_order: true,
        calibration_set: None,
        ..samples::quantization_job()
    }
}

fn record(job: &QuantizationJob, delivery: usize) -> OutboundMessage {
    let meta = EventMeta {
        id: format!("{}-delivery-{delivery}", job.job_id),
        source: "llmopt/decision".into(),
        time_ms: Some(job.event_time),
        partition_key: Some(job.model_name.clone()),
        traceparent: None,
        subject: None,
    };
    OutboundMessage::from(wire::to_kafka(job, &meta, DataFormat::Avro).expect("encode"))
}

/// A quantizer runner on the test's transport and store, stopping after `idle_polls` empty polls.
fn worker(
    core: Quantizer,
    store: &Arc<RedisStore>,
    transport: &Arc<dyn Transport>,
    names: &TopicNames,
    idle_polls: u32,
) -> Runner<Quantizer, HandledJobs> {
    Runner::new(
        core,
        HandledJobs::new(store.clone()),
        transport.clone(),
        names.clone(),
        Arc::new(ServiceMetrics::new("quantizer")),
        Arc::new(Health::new()),
        RunnerConfig {
            stop_after_idle_polls: Some(idle_polls),
            rebuild_state: false,
            ..RunnerConfig::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_through_kafka_dedup_failures_and_keep_serving() {
    // A member that does not poll for `max.poll.interval.ms` is evicted and its job delivered
    // again: the GPTQ job runs far longer than this, so only a job run off the consumer thread
    // (partitions paused, polls going on) consumes each record once.
    let mut kafka = common::kafka_config();
    kafka.properties.insert(
        "max.poll.interval.ms".into(),
        MAX_POLL_INTERVAL_MS.to_string(),
    );
    let transport: Arc<dyn Transport> =
        Arc::new(KafkaTransport::new(&kafka, "quantizer-test").expect("kafka"));
    let store = Arc::new(
        RedisStore::connect(&StateConfig {
            kind: StateKind::Redis,
            redis_url: common::redis_url(),
            key_prefix: format!("{}:", common::unique("quantizer")),
            ..StateConfig::default()
        })
        .await
        .expect("redis"),
    );
    let config = TransportConfig {
        topic_prefix: format!("{}.", common::unique("quant")),
        partitions: 2,
        ..TransportConfig::default()
    };
    let names = TopicNames::new(&config);
    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");

    // A small calibration file keeps GPTQ quick; evaluation on the shared sentences.
    let work = std::env::temp_dir().join(common::unique("quantizer-service"));
    std::fs::create_dir_all(&work).expect("work dir");
    let shared = common::shared_quant();
    let calib: Vec<String> = std::fs::read_to_string(shared.join("calib_sentences.txt"))
        .expect("calibration")
        .lines()
        .take(64)
        .map(String::from)
        .collect();
    let calib_path = work.join("calib.txt");
    std::fs::write(&calib_path, calib.join("\n")).expect("write calibration");
    let store_dir = work.join("artifacts");
    let model = common::minilm_dir().display().to_string();

    let gptq = job("job-gptq", &model, QuantMethod::Gptq, 4, Some(128));
    let missing = job(
        "job-missing",
        "/nonexistent/models/llama",
        QuantMethod::Gptq,
        4,
        Some(128),
    );
    let bad_bits = job("job-5-bits", &model, QuantMethod::Rtn, 5, None);
    let rtn = job("job-rtn", &model, QuantMethod::Rtn, 8, None);
    let jobs_topic = names.name(LogicalTopic::QuantizationJobs);
    for (delivery, j) in [&gptq, &gptq, &missing, &bad_bits, &rtn, &gptq]
        .into_iter()
        .enumerate()
    {
        transport
            .publish(&jobs_topic, record(j, delivery))
            .await
            .expect("publish job");
    }

    let core = Quantizer::new(
        QuantizerConfig {
            artifact_store: store_dir.clone(),
            calibration_set: Some(calib_path),
            evaluation_set: Some(shared.join("eval_sentences.txt")),
            ..QuantizerConfig::default()
        },
        burn::tensor::Device::flex(),
    );
    let runner = worker(core, &store, &transport, &names, 15);
    let (_trigger, stop) = shutdown::channel();
    let started = std::time::Instant::now();
    let (_, summary) = runner.run(stop).await.expect("runner");
    assert!(
        started.elapsed() > Duration::from_millis(2 * MAX_POLL_INTERVAL_MS),
        "the jobs outlast the poll interval ({:?}), or this proves nothing",
        started.elapsed()
    );
    assert_eq!(
        summary.consumed, 6,
        "every record consumed once: the worker was never evicted mid-job"
    );

    // A restarted worker (new process, same Redis) does not redo a handled job.
    transport
        .publish(&jobs_topic, record(&gptq, 99))
        .await
        .expect("redeliver");
    let again = worker(
        Quantizer::new(
            QuantizerConfig {
                artifact_store: store_dir.clone(),
                ..QuantizerConfig::default()
            },
            burn::tensor::Device::flex(),
        ),
        &store,
        &transport,
        &names,
        10,
    );
    let (_trigger2, stop2) = shutdown::channel();
    let (_, summary2) = again.run(stop2).await.expect("second runner");
    assert_eq!(summary2.consumed, 1);
    assert_eq!(
        summary2.duplicates, 1,
        "the handled job is dropped as a duplicate"
    );

    // Read the outcomes.
    let mut consumer = transport
        .subscribe(
            &common::unique("check"),
            &[names.name(LogicalTopic::Artifacts)],
        )
        .await
        .expect("subscribe");
    let registry = SchemaRegistry::current();
    let mut artifacts = HashMap::new();
    let mut failures = HashMap::new();
    let mut seen = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let Some(m) = consumer
            .poll(Duration::from_millis(300))
            .await
            .expect("poll")
        else {
            if seen >= 4 {
                break;
            }
            continue;
        };
        seen += 1;
        let message = KafkaMessage {
            key: m.key.clone(),
            headers: m.headers.clone(),
            value: m.value.clone(),
        };
        let (ce, _) =
            llmopt_cloudevents::decode(&message, &Default::default()).expect("a CloudEvent");
        let event = AnyEvent::from_cloudevent(&ce, &registry).expect("decodes");
        match event {
            AnyEvent::ArtifactPublished(a) => {
                assert!(
                    artifacts.insert(a.job_id.clone(), a).is_none(),
                    "one artifact event per job"
                );
            }
            AnyEvent::QuantizationFailed(f) => {
                assert!(
                    failures.insert(f.job_id.clone(), f).is_none(),
                    "one failure event per job"
                );
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    consumer.close().await.expect("close");
    assert_eq!(artifacts.len(), 2, "{:?}", artifacts.keys());
    assert_eq!(failures.len(), 2, "{:?}", failures.keys());

    let a = &artifacts["job-gptq"];
    assert!(
        a.mean_cosine > 0.95 && a.mean_cosine <= 1.0,
        "{}",
        a.mean_cosine
    );
    assert!(a.compression_ratio > 1.6);
    let dir = std::path::Path::new(&a.location);
    assert!(dir.starts_with(&store_dir));
    let manifest_sha256 =
        llmopt_quantizer::artifact::file_sha256(&dir.join("manifest.json")).expect("manifest");
    assert_eq!(manifest_sha256, a.manifest_sha256);
    assert!(artifacts["job-rtn"].mean_cosine > 0.999);
    // One artifact directory per successful job, no leftovers.
    let entries: Vec<_> = std::fs::read_dir(&store_dir)
        .expect("store")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");

    assert_eq!(
        failures["job-missing"].reason,
        QuantFailureReason::ModelNotFound
    );
    assert!(failures["job-missing"]
        .message
        .contains("/nonexistent/models/llama"));
    assert_eq!(
        failures["job-5-bits"].reason,
        QuantFailureReason::BadParameters
    );
    assert!(failures["job-5-bits"].message.contains("bits = 5"));
    std::fs::remove_dir_all(&work).ok();
}
