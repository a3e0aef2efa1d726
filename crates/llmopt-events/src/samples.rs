//! Deterministic example events, one per contract.
//!
//! Tests, benchmarks, the load generator and the CLI's `schemas example` all need plausible
//! events; building them in one place keeps those fixtures in step with the contracts.

use std::collections::BTreeMap;

use crate::*;

const APPS: [&str; 3] = ["checkout", "support-bot", "search"];
const ROUTES: [&str; 2] = ["summarize", "answer"];
const MODELS: [(&str, &str); 3] = [
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-haiku"),
    ("self-hosted", "llama-3.1-8b"),
];

/// The `n`-th call of a deterministic stream: every field varies with `n`, optional fields are
/// alternately present and absent, so round trips exercise both union branches.
pub fn llm_call(n: u64) -> LlmCall {
    let (provider, model) = MODELS[(n % 3) as usize];
    let failed = n % 17 == 0;
    LlmCall {
        event_time: 1_767_225_600_000 + n as i64 * 37,
        request_id: format!("req-{n:08}"),
        app: APPS[(n % 3) as usize].to_string(),
        route: ROUTES[(n % 2) as usize].to_string(),
        tenant: (n % 4 == 0).then(|| format!("tenant-{}", n % 11)),
        gen_ai_operation_name: "chat".to_string(),
        gen_ai_provider_name: provider.to_string(),
        gen_ai_request_model: model.to_string(),
        gen_ai_response_model: (n % 2 == 0).then(|| format!("{model}-2025")),
        gen_ai_usage_input_tokens: 100 + (n % 900) as i64,
        gen_ai_usage_output_tokens: 20 + (n % 300) as i64,
        latency_ms: 250.0 + (n % 1000) as f64 * 1.5,
        time_to_first_token_ms: (n % 3 != 0).then_some(80.0 + (n % 50) as f64),
        status: if failed {
            CallStatus::Error
        } else {
            CallStatus::Ok
        },
        error_type: failed.then(|| "timeout".to_string()),
        cost_usd: (n % 5 != 0).then_some(0.0001 * (n % 40) as f64),
        quality_score: (n % 7 == 0).then(|| 0.5 + (n % 5) as f64 / 10.0),
        config_version: Some((n / 1000) as i64 + 1),
        gen_ai_usage_cache_read_input_tokens: None,
        gen_ai_usage_reasoning_output_tokens: None,
        gen_ai_request_max_tokens: None,
        gen_ai_request_temperature: None,
        gen_ai_response_finish_reasons: Vec::new(),
    }
}

/// A window result with every field set.
pub fn window_aggregate() -> WindowAggregate {
    WindowAggregate {
        id: "checkout/summarize/openai/gpt-4o-mini/T60000/1767225600000/r1".into(),
        window_id: "checkout/summarize/openai/gpt-4o-mini/T60000/1767225600000".into(),
        revision: 1,
        window_kind: WindowKind::Tumbling,
        window_start: 1_767_225_600_000,
        window_end: 1_767_225_660_000,
        app: "checkout".into(),
        route: "summarize".into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        count: 1200,
        error_count: 12,
        errors_by_type: BTreeMap::from([("rate_limited".into(), 4), ("timeout".into(), 8)]),
        latency_p50_ms: 410.0,
        latency_p90_ms: 900.5,
        latency_p95_ms: 1200.25,
        latency_p99_ms: 2400.0,
        ttft_p95_ms: Some(180.0),
        input_tokens: 480_000,
        output_tokens: 96_000,
        cost_usd: 1.234,
        quality_sum: 840.0,
        quality_count: 1000,
        latency_sketch: Some(vec![1, 2, 3, 255]),
        watermark: 1_767_225_670_000,
        cost_by_tenant: BTreeMap::from([("acme".into(), 0.25)]),
    }
}

/// An upward latency anomaly.
pub fn anomaly() -> Anomaly {
    Anomaly {
        id: "mad-z/checkout/summarize/openai/gpt-4o-mini/latency_p95_ms/1767225660000".into(),
        event_time: 1_767_225_660_000,
        window_id: window_aggregate().window_id,
        app: "checkout".into(),
        route: "summarize".into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        metric: "latency_p95_ms".into(),
        value: 2400.0,
        baseline: 1100.0,
        score: 7.5,
        direction: Direction::Up,
        detector: "robust-ewma-mad(z=5)".into(),
    }
}

/// A firing SLO alert.
pub fn alert() -> Alert {
    Alert {
        id: "slo-error-rate/checkout/summarize/FIRING/1767225660000".into(),
        dedup_key: "slo-error-rate/checkout/summarize".into(),
        status: AlertStatus::Firing,
        severity: Severity::Critical,
        alertname: "ErrorRateHigh".into(),
        summary: "checkout/summarize error rate 12.0% > 5.0% for 3 windows".into(),
        labels: BTreeMap::from([
            ("app".into(), "checkout".into()),
            ("route".into(), "summarize".into()),
        ]),
        value: Some(0.12),
        threshold: Some(0.05),
        starts_at: 1_767_225_660_000,
        ends_at: None,
        event_time: 1_767_225_660_000,
    }
}

/// A proposed failover decision.
pub fn decision() -> Decision {
    Decision {
        id: "failover/checkout/summarize/1767225660000".into(),
        event_time: 1_767_225_660_000,
        strategy: Strategy::Failover,
        state: DecisionState::Proposed,
        mode: DecisionMode::Propose,
        app: "checkout".into(),
        route: "summarize".into(),
        action: "shift_traffic".into(),
        params: BTreeMap::from([("to".into(), "anthropic/claude-3-5-haiku".into())]),
        reason: "openai/gpt-4o-mini error rate breached its SLO".into(),
        evidence: Evidence {
            test: "two-proportion z-test".into(),
            statistic: Some(6.2),
            p_value: Some(1e-9),
            metrics: BTreeMap::from([
                ("error_rate_after".into(), 0.12),
                ("error_rate_before".into(), 0.01),
            ]),
        },
        caused_by: vec![alert().id],
    }
}

/// A canary step on a route.
pub fn config_change() -> ConfigChange {
    ConfigChange {
        id: "checkout/summarize/v8".into(),
        event_time: 1_767_225_720_000,
        app: "checkout".into(),
        route: "summarize".into(),
        version: 8,
        previous_version: Some(7),
        kind: ChangeKind::CanaryStep,
        decision_id: Some(decision().id),
        targets: vec![
            RouteTarget {
                provider: "openai".into(),
                model: "gpt-4o-mini".into(),
                weight: 0.95,
            },
            RouteTarget {
                provider: "anthropic".into(),
                model: "claude-3-5-haiku".into(),
                weight: 0.05,
            },
        ],
        params: BTreeMap::from([("max_tokens".into(), "512".into())]),
    }
}

/// A GPTQ job.
pub fn quantization_job() -> QuantizationJob {
    QuantizationJob {
        job_id: "quant-llama-3.1-8b-1".into(),
        event_time: 1_767_225_780_000,
        model_name: "llama-3.1-8b".into(),
        model_location: "/models/llama-3.1-8b".into(),
        method: QuantMethod::Gptq,
        bits: 4,
        group_size: Some(128),
        symmetric: false,
        act_order: true,
        calibration_set: Some("/data/calib.txt".into()),
        decision_id: None,
    }
}

/// The artifact of [`quantization_job`].
pub fn artifact_published() -> ArtifactPublished {
    ArtifactPublished {
        id: "artifact-quant-llama-3.1-8b-1".into(),
        job_id: quantization_job().job_id,
        event_time: 1_767_226_000_000,
        model_name: "llama-3.1-8b".into(),
        location: "/artifacts/llama-3.1-8b-gptq-int4-g128".into(),
        manifest_sha256: "ab".repeat(32),
        method: QuantMethod::Gptq,
        bits: 4,
        group_size: Some(128),
        bytes: 4_200_000_000,
        fp32_bytes: 32_000_000_000,
        compression_ratio: 7.6,
        mean_cosine: 0.987,
        min_cosine: 0.95,
        spearman: 0.99,
        mean_layer_error: 0.046,
    }
}

/// [`quantization_job`] failing because its model directory is missing.
pub fn quantization_failed() -> QuantizationFailed {
    let job = quantization_job();
    QuantizationFailed {
        id: format!("failed-{}", job.job_id),
        job_id: job.job_id,
        event_time: 1_767_225_790_000,
        model_name: job.model_name,
        model_location: job.model_location,
        reason: QuantFailureReason::ModelNotFound,
        message: "model directory `/models/llama-3.1-8b` does not exist".into(),
        method: Some(job.method),
        bits: Some(job.bits),
        decision_id: job.decision_id,
    }
}

/// A dead-lettered record with binary key, headers and value.
pub fn dead_letter() -> DeadLetter {
    DeadLetter {
        id: "dlq/llmopt.telemetry.raw/3/42".into(),
        service: "ingest".into(),
        error_kind: "missing_attribute".into(),
        error_message: "missing required CloudEvents attribute `id`".into(),
        source_topic: "llmopt.telemetry.raw".into(),
        source_partition: 3,
        source_offset: 42,
        source_timestamp: Some(1_767_225_600_000),
        original_key: Some(b"checkout/summarize".to_vec()),
        original_headers: vec![
            Header {
                key: "ce_specversion".into(),
                value: Some(b"1.0".to_vec()),
            },
            Header {
                key: "empty".into(),
                value: None,
            },
        ],
        original_value: Some(vec![0, 159, 146, 150]),
    }
}
