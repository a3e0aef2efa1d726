use llmopt_events::{AnyEvent, CallStatus, LlmCall};
use llmopt_runtime::{Input, Output, Processor, Rejection};
use llmopt_transport::LogicalTopic;

use crate::validate::validate;
use crate::IngestConfig;

/// The ingest core: raw telemetry in, validated, normalised and priced telemetry out.
pub struct Ingest {
    config: IngestConfig,
}

impl Ingest {
    /// A core with these rules and prices.
    pub fn new(config: IngestConfig) -> Self {
        Self { config }
    }

    /// Canonical form of a call: trimmed, lower-case provider, aliases resolved, an error type
    /// on every failure, a cost on every priced model.
    pub fn normalise(&self, call: &LlmCall) -> LlmCall {
        let mut call = call.clone();
        call.gen_ai_provider_name = call.gen_ai_provider_name.trim().to_ascii_lowercase();
        call.gen_ai_request_model =
            self.canonical_model(&call.gen_ai_provider_name, &call.gen_ai_request_model);
        call.gen_ai_response_model = call
            .gen_ai_response_model
            .as_deref()
            .map(|m| self.canonical_model(&call.gen_ai_provider_name, m));
        call.app = call.app.trim().to_string();
        call.route = call.route.trim().to_string();
        if call.status == CallStatus::Error && call.error_type.is_none() {
            call.error_type = Some("unknown".into());
        }
        if call.cost_usd.is_none() {
            // The model that answered sets the price; a dated snapshot name the table does not
            // know falls back to the model asked for.
            let price = |model: &str| {
                self.config.prices.price(
                    &call.gen_ai_provider_name,
                    model,
                    call.gen_ai_usage_input_tokens,
                    call.gen_ai_usage_output_tokens,
                )
            };
            call.cost_usd = call
                .gen_ai_response_model
                .as_deref()
                .and_then(price)
                .or_else(|| price(&call.gen_ai_request_model));
        }
        call
    }

    fn canonical_model(&self, provider: &str, model: &str) -> String {
        let model = model.trim();
        self.config
            .model_aliases
            .get(&format!("{provider}/{model}"))
            .cloned()
            .unwrap_or_else(|| model.to_string())
    }
}

impl Processor for Ingest {
    fn name(&self) -> &'static str {
        crate::SERVICE_NAME
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![LogicalTopic::TelemetryRaw]
    }

    fn validate(&self, input: &Input) -> Result<(), Rejection> {
        match &input.event {
            AnyEvent::LlmCall(call) => validate(call, self.config.max_latency_ms),
            other => Err(Rejection {
                kind: "wrong_type",
                message: format!(
                    "expected {}, got {}",
                    llmopt_events::Contract::LlmCall.ce_type(),
                    other.contract().ce_type()
                ),
            }),
        }
    }

    fn process(&mut self, input: &Input) -> Vec<Output> {
        let AnyEvent::LlmCall(call) = &input.event else {
            return Vec::new();
        };
        let call = self.normalise(call);
        vec![Output {
            topic: LogicalTopic::Telemetry,
            // The producer's id, so a downstream replay reproduces it.
            id: input.id.clone(),
            key: format!("{}/{}", call.app, call.route),
            time_ms: call.event_time,
            event: AnyEvent::LlmCall(call),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmopt_events::samples;

    fn input(call: LlmCall) -> Input {
        Input {
            topic: LogicalTopic::TelemetryRaw,
            partition: 0,
            offset: 0,
            id: "e1".into(),
            source: "/apps/a".into(),
            time_ms: None,
            event: AnyEvent::LlmCall(call),
        }
    }

    #[test]
    fn prices_unpriced_calls_and_normalises() {
        let mut config = IngestConfig::default();
        config
            .model_aliases
            .insert("openai/gpt-4o-2024-08-06".into(), "gpt-4o".into());
        let mut core = Ingest::new(config);
        let mut call = samples::llm_call(1);
        call.gen_ai_provider_name = " OpenAI ".into();
        call.gen_ai_request_model = "gpt-4o-2024-08-06".into();
        call.gen_ai_response_model = None;
        call.cost_usd = None;
        call.gen_ai_usage_input_tokens = 1000;
        call.gen_ai_usage_output_tokens = 1000;
        let out = core.process(&input(call));
        let AnyEvent::LlmCall(priced) = &out[0].event else {
            panic!("llm call")
        };
        assert_eq!(priced.gen_ai_provider_name, "openai");
        assert_eq!(priced.gen_ai_request_model, "gpt-4o");
        assert!((priced.cost_usd.unwrap_or_default() - 0.0125).abs() < 1e-12);
        assert_eq!(out[0].topic, LogicalTopic::Telemetry);
        assert_eq!(out[0].key, format!("{}/{}", priced.app, priced.route));
    }

    #[test]
    fn keeps_producer_cost_and_fills_error_type() {
        let mut core = Ingest::new(IngestConfig::default());
        let mut call = samples::llm_call(17);
        call.cost_usd = Some(0.5);
        call.status = CallStatus::Error;
        call.error_type = None;
        let out = core.process(&input(call));
        let AnyEvent::LlmCall(c) = &out[0].event else {
            panic!("llm call")
        };
        assert_eq!(c.cost_usd, Some(0.5));
        assert_eq!(c.error_type.as_deref(), Some("unknown"));
    }

    #[test]
    fn rejects_each_invalid_field_by_name() {
        let core = Ingest::new(IngestConfig::default());
        type Mutation = Box<dyn Fn(&mut LlmCall)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("app", Box::new(|c| c.app = " ".into())),
            ("latency_ms", Box::new(|c| c.latency_ms = -1.0)),
            ("latency_ms", Box::new(|c| c.latency_ms = f64::NAN)),
            (
                "gen_ai_usage_output_tokens",
                Box::new(|c| c.gen_ai_usage_output_tokens = -5),
            ),
            ("quality_score", Box::new(|c| c.quality_score = Some(1.5))),
            ("cost_usd", Box::new(|c| c.cost_usd = Some(-0.1))),
            ("event_time", Box::new(|c| c.event_time = 0)),
        ];
        for (field, mutate) in cases {
            let mut call = samples::llm_call(2);
            mutate(&mut call);
            let err = core.validate(&input(call)).expect_err(field);
            assert!(err.message.contains(field), "{field}: {}", err.message);
            assert_eq!(err.kind, "invalid_telemetry");
        }
        assert!(core.validate(&input(samples::llm_call(2))).is_ok());
    }
}
