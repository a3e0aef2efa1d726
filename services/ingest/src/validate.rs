use llmopt_events::{CallStatus, LlmCall};
use llmopt_runtime::Rejection;

fn reject(message: String) -> Rejection {
    Rejection {
        kind: "invalid_telemetry",
        message,
    }
}

/// The semantic checks a schema cannot express. Each names the field at fault.
pub(crate) fn validate(call: &LlmCall, max_latency_ms: f64) -> Result<(), Rejection> {
    let required = [
        ("request_id", &call.request_id),
        ("app", &call.app),
        ("route", &call.route),
        ("gen_ai_provider_name", &call.gen_ai_provider_name),
        ("gen_ai_request_model", &call.gen_ai_request_model),
    ];
    for (field, value) in required {
        if value.trim().is_empty() {
            return Err(reject(format!("`{field}` is empty")));
        }
    }
    if call.event_time <= 0 {
        return Err(reject(format!(
            "`event_time` {} is not a Unix time in ms",
            call.event_time
        )));
    }
    if !call.latency_ms.is_finite() || call.latency_ms < 0.0 || call.latency_ms > max_latency_ms {
        return Err(reject(format!(
            "`latency_ms` {} is outside [0, {max_latency_ms}]",
            call.latency_ms
        )));
    }
    if let Some(ttft) = call.time_to_first_token_ms {
        if !ttft.is_finite() || ttft < 0.0 {
            return Err(reject(format!(
                "`time_to_first_token_ms` {ttft} is negative or not finite"
            )));
        }
    }
    for (field, tokens) in [
        ("gen_ai_usage_input_tokens", call.gen_ai_usage_input_tokens),
        (
            "gen_ai_usage_output_tokens",
            call.gen_ai_usage_output_tokens,
        ),
    ] {
        if tokens < 0 {
            return Err(reject(format!("`{field}` {tokens} is negative")));
        }
    }
    if let Some(cost) = call.cost_usd {
        if !cost.is_finite() || cost < 0.0 {
            return Err(reject(format!(
                "`cost_usd` {cost} is negative or not finite"
            )));
        }
    }
    if let Some(q) = call.quality_score {
        if !(0.0..=1.0).contains(&q) {
            return Err(reject(format!("`quality_score` {q} is outside [0, 1]")));
        }
    }
    if call.status == CallStatus::Ok && call.error_type.is_some() {
        return Err(reject(
            "`error_type` is set on a call with status OK".into(),
        ));
    }
    Ok(())
}
