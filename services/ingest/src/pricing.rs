use serde::{Deserialize, Serialize};

/// The price of one provider/model, in USD per 1 000 tokens, as providers publish them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    pub provider: String,
    pub model: String,
    pub input_per_1k: f64,
    pub output_per_1k: f64,
}

/// Prices calls that carry no cost. Configurable because contracts and self-hosting costs differ
/// per organisation; the defaults are list prices of common models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable {
    pub models: Vec<ModelPrice>,
}

impl Default for PriceTable {
    fn default() -> Self {
        let p = |provider: &str, model: &str, input: f64, output: f64| ModelPrice {
            provider: provider.into(),
            model: model.into(),
            input_per_1k: input / 1000.0,
            output_per_1k: output / 1000.0,
        };
        // USD per 1M tokens, divided to per 1K above.
        Self {
            models: vec![
                p("openai", "gpt-4o", 2.50, 10.00),
                p("openai", "gpt-4o-mini", 0.15, 0.60),
                p("anthropic", "claude-3-5-sonnet", 3.00, 15.00),
                p("anthropic", "claude-3-5-haiku", 0.80, 4.00),
                p("self-hosted", "llama-3.1-8b", 0.40, 0.40),
            ],
        }
    }
}

impl PriceTable {
    /// Cost of a call, or `None` when the model has no price.
    pub fn price(&self, provider: &str, model: &str, input: i64, output: i64) -> Option<f64> {
        self.models
            .iter()
            .find(|m| m.provider == provider && m.model == model)
            .map(|m| {
                (input.max(0) as f64 * m.input_per_1k + output.max(0) as f64 * m.output_per_1k)
                    / 1000.0
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_per_thousand_tokens() {
        let table = PriceTable::default();
        let cost = table
            .price("openai", "gpt-4o", 1000, 1000)
            .unwrap_or_default();
        assert!((cost - 0.0125).abs() < 1e-12, "{cost}");
        assert_eq!(table.price("openai", "unknown", 1, 1), None);
    }
}
