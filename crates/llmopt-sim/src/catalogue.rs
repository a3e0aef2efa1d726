//! The models the simulated fleet can call, with realistic prices, latencies, failure rates
//! and quality.
//!
//! The figures are what the optimizer reasons about: list prices (per 1M tokens, as providers
//! publish them) drive cost, long-tailed latencies make p95/p99 meaningful, small base error
//! rates give the detectors a quiet baseline, and per-model quality lets a cheaper model be
//! "within a few points" of an expensive one so that a non-inferiority canary is justified.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{check_positive, check_range, SimError};
use crate::pricing::ModelPrice;
use crate::sample;

/// `error.type` of a call the provider did not answer in time.
pub const ERROR_TIMEOUT: &str = "timeout";
/// `error.type` of a call the provider refused for quota reasons (HTTP 429).
pub const ERROR_RATE_LIMITED: &str = "rate_limited";
/// `error.type` of a call the provider failed (HTTP 5xx).
pub const ERROR_SERVER: &str = "server_error";
/// `error.type` of a call routed to a model the catalogue does not know, so that a bad routing
/// config shows up in telemetry as failures instead of crashing the simulator.
pub const ERROR_MODEL_NOT_FOUND: &str = "model_not_found";

/// A lognormal distribution given by its median and the sigma of its logarithm; the shape of
/// latencies and token counts, whose tails are long.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogNormal {
    /// Median of the distribution (`exp(mu)`), in the unit of the quantity.
    pub median: f64,
    /// Standard deviation of the logarithm; 0 makes the distribution a constant.
    pub sigma: f64,
}

impl LogNormal {
    /// A distribution with the given median and sigma.
    pub const fn new(median: f64, sigma: f64) -> Self {
        Self { median, sigma }
    }

    /// One draw.
    pub(crate) fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        sample::lognormal(rng, self.median, self.sigma)
    }

    /// Rejects a non-positive median or a negative sigma.
    pub(crate) fn validate(&self, field: &str) -> Result<(), SimError> {
        check_positive(&format!("{field}.median"), self.median)?;
        check_range(&format!("{field}.sigma"), self.sigma, 0.0, 10.0)
    }
}

/// Relative weights of the error types a model fails with; real providers fail differently
/// (a self-hosted server has no rate limits), and failover rules may care which.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ErrorMix {
    /// Weight of [`ERROR_TIMEOUT`].
    pub timeout: f64,
    /// Weight of [`ERROR_RATE_LIMITED`].
    pub rate_limited: f64,
    /// Weight of [`ERROR_SERVER`].
    pub server_error: f64,
}

impl ErrorMix {
    /// Picks an error type for a uniform draw `u` in [0, 1).
    pub(crate) fn pick(&self, u: f64) -> &'static str {
        let total = self.timeout + self.rate_limited + self.server_error;
        let x = u * total;
        if x < self.timeout {
            ERROR_TIMEOUT
        } else if x < self.timeout + self.rate_limited {
            ERROR_RATE_LIMITED
        } else {
            ERROR_SERVER
        }
    }

    fn validate(&self, field: &str) -> Result<(), SimError> {
        for (name, w) in [
            ("timeout", self.timeout),
            ("rate_limited", self.rate_limited),
            ("server_error", self.server_error),
        ] {
            check_range(&format!("{field}.{name}"), w, 0.0, f64::MAX)?;
        }
        if self.timeout + self.rate_limited + self.server_error <= 0.0 {
            return Err(SimError::invalid(field, "weights must not all be zero"));
        }
        Ok(())
    }
}

/// Everything the simulator needs to know about one provider/model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelProfile {
    /// `gen_ai.provider.name`, e.g. `openai` or `self-hosted`.
    pub provider: String,
    /// `gen_ai.request.model`, e.g. `gpt-4o`.
    pub model: String,
    /// Runs on our own GPUs: its price is GPU cost spread over tokens, and it is what a
    /// quantization request can make cheaper.
    #[serde(default)]
    pub self_hosted: bool,
    /// List price of input tokens, USD per 1M.
    pub input_usd_per_1m: f64,
    /// List price of output tokens, USD per 1M.
    pub output_usd_per_1m: f64,
    /// Fixed cost per call in USD (GPU time a self-hosted call holds regardless of tokens).
    #[serde(default)]
    pub per_call_usd: f64,
    /// Time to first token, ms.
    pub ttft_ms: LogNormal,
    /// Decode time per output token, ms; whole-call latency is TTFT + tokens × this, so it is
    /// long-tailed and grows with the answer's length.
    pub ms_per_output_token: LogNormal,
    /// Latency reported by calls that time out, ms.
    pub timeout_ms: f64,
    /// Probability that a call fails when no incident is going on.
    pub error_rate: f64,
    /// How failures split into error types.
    pub errors: ErrorMix,
    /// Mean quality score in [0, 1].
    pub quality_mean: f64,
    /// Standard deviation of the quality score (draws are clipped to [0, 1]).
    pub quality_sd: f64,
}

impl ModelProfile {
    /// The list price as the ingest service knows it (per 1K tokens).
    pub fn list_price(&self) -> ModelPrice {
        ModelPrice {
            input_per_1k: self.input_usd_per_1m / 1000.0,
            output_per_1k: self.output_usd_per_1m / 1000.0,
            per_call: self.per_call_usd,
        }
    }

    /// Blended price of a typical call (4 input tokens per output token), to tell which of two
    /// models is the cheaper one.
    pub fn blended_usd_per_1m(&self) -> f64 {
        (4.0 * self.input_usd_per_1m + self.output_usd_per_1m) / 5.0
    }

    /// Rejects figures that would make the simulation meaningless (negative prices, error
    /// rates outside [0, 1], ...).
    pub fn validate(&self) -> Result<(), SimError> {
        let f = format!("catalogue.{}/{}", self.provider, self.model);
        if self.provider.is_empty() || self.model.is_empty() {
            return Err(SimError::invalid(f, "provider and model must not be empty"));
        }
        check_range(
            &format!("{f}.input_usd_per_1m"),
            self.input_usd_per_1m,
            0.0,
            f64::MAX,
        )?;
        check_range(
            &format!("{f}.output_usd_per_1m"),
            self.output_usd_per_1m,
            0.0,
            f64::MAX,
        )?;
        check_range(
            &format!("{f}.per_call_usd"),
            self.per_call_usd,
            0.0,
            f64::MAX,
        )?;
        self.ttft_ms.validate(&format!("{f}.ttft_ms"))?;
        self.ms_per_output_token
            .validate(&format!("{f}.ms_per_output_token"))?;
        check_positive(&format!("{f}.timeout_ms"), self.timeout_ms)?;
        check_range(&format!("{f}.error_rate"), self.error_rate, 0.0, 1.0)?;
        self.errors.validate(&format!("{f}.errors"))?;
        check_range(&format!("{f}.quality_mean"), self.quality_mean, 0.0, 1.0)?;
        check_range(&format!("{f}.quality_sd"), self.quality_sd, 0.0, 1.0)
    }
}

/// The set of models the fleet may route to. Serialisable so a fleet file can bring its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalogue {
    /// The models, looked up by provider and model name.
    pub models: Vec<ModelProfile>,
}

impl Default for Catalogue {
    fn default() -> Self {
        Self::builtin()
    }
}

const API_ERRORS: ErrorMix = ErrorMix {
    timeout: 0.25,
    rate_limited: 0.35,
    server_error: 0.40,
};

#[allow(clippy::too_many_arguments)]
fn api_model(
    provider: &str,
    model: &str,
    price: (f64, f64),
    ttft_median_ms: f64,
    ms_per_token: f64,
    error_rate: f64,
    quality: (f64, f64),
) -> ModelProfile {
    ModelProfile {
        provider: provider.to_string(),
        model: model.to_string(),
        self_hosted: false,
        input_usd_per_1m: price.0,
        output_usd_per_1m: price.1,
        per_call_usd: 0.0,
        ttft_ms: LogNormal::new(ttft_median_ms, 0.35),
        ms_per_output_token: LogNormal::new(ms_per_token, 0.30),
        timeout_ms: 60_000.0,
        error_rate,
        errors: API_ERRORS,
        quality_mean: quality.0,
        quality_sd: quality.1,
    }
}

impl Catalogue {
    /// The built-in catalogue: 2024-era list prices of hosted models and one self-hosted
    /// Llama whose GPU cost is expressed per token plus a fixed cost per call.
    pub fn builtin() -> Self {
        Self {
            models: vec![
                api_model(
                    "openai",
                    "gpt-4o",
                    (2.50, 10.00),
                    450.0,
                    11.0,
                    0.006,
                    (0.88, 0.08),
                ),
                api_model(
                    "openai",
                    "gpt-4o-mini",
                    (0.15, 0.60),
                    350.0,
                    7.0,
                    0.005,
                    (0.86, 0.09),
                ),
                api_model(
                    "anthropic",
                    "claude-3-5-sonnet",
                    (3.00, 15.00),
                    650.0,
                    13.0,
                    0.008,
                    (0.90, 0.07),
                ),
                api_model(
                    "anthropic",
                    "claude-3-5-haiku",
                    (0.80, 4.00),
                    420.0,
                    8.0,
                    0.007,
                    (0.85, 0.09),
                ),
                api_model(
                    "google",
                    "gemini-1.5-flash",
                    (0.075, 0.30),
                    300.0,
                    5.0,
                    0.006,
                    (0.83, 0.10),
                ),
                api_model(
                    "google",
                    "gemini-1.5-pro",
                    (1.25, 5.00),
                    700.0,
                    11.0,
                    0.007,
                    (0.87, 0.08),
                ),
                ModelProfile {
                    provider: "self-hosted".to_string(),
                    model: "llama-3.1-8b".to_string(),
                    self_hosted: true,
                    input_usd_per_1m: 0.40,
                    output_usd_per_1m: 0.40,
                    per_call_usd: 0.0001,
                    ttft_ms: LogNormal::new(120.0, 0.30),
                    ms_per_output_token: LogNormal::new(6.0, 0.25),
                    timeout_ms: 30_000.0,
                    error_rate: 0.010,
                    errors: ErrorMix {
                        timeout: 0.5,
                        rate_limited: 0.0,
                        server_error: 0.5,
                    },
                    quality_mean: 0.78,
                    quality_sd: 0.12,
                },
            ],
        }
    }

    /// The profile of `provider/model`, if the catalogue has it.
    pub fn get(&self, provider: &str, model: &str) -> Option<&ModelProfile> {
        self.position(provider, model).map(|i| &self.models[i])
    }

    /// Index of `provider/model` in [`Catalogue::models`].
    pub(crate) fn position(&self, provider: &str, model: &str) -> Option<usize> {
        self.models
            .iter()
            .position(|m| m.provider == provider && m.model == model)
    }

    /// Validates every profile and rejects duplicates, so lookups are unambiguous.
    pub fn validate(&self) -> Result<(), SimError> {
        for (i, m) in self.models.iter().enumerate() {
            m.validate()?;
            if self.models[..i]
                .iter()
                .any(|o| o.provider == m.provider && o.model == m.model)
            {
                return Err(SimError::Duplicate {
                    what: "model",
                    name: format!("{}/{}", m.provider, m.model),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_is_valid_and_realistic() {
        let c = Catalogue::builtin();
        assert!(c.validate().is_ok());
        let big = c.get("openai", "gpt-4o").map(|m| m.quality_mean);
        let mini = c.get("openai", "gpt-4o-mini").map(|m| m.quality_mean);
        assert_eq!(big, Some(0.88));
        assert_eq!(mini, Some(0.86));
        for m in &c.models {
            assert!(m.error_rate >= 0.005 && m.error_rate <= 0.01, "{}", m.model);
        }
        assert!(c
            .get("self-hosted", "llama-3.1-8b")
            .is_some_and(|m| m.self_hosted));
    }

    #[test]
    fn error_mix_picks_by_weight() {
        let mix = ErrorMix {
            timeout: 1.0,
            rate_limited: 1.0,
            server_error: 2.0,
        };
        assert_eq!(mix.pick(0.1), ERROR_TIMEOUT);
        assert_eq!(mix.pick(0.3), ERROR_RATE_LIMITED);
        assert_eq!(mix.pick(0.9), ERROR_SERVER);
    }
}
