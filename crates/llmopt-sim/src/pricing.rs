//! List prices per 1K tokens, for the ingest service to price calls that arrive without
//! `cost_usd`.
//!
//! It lives here because the simulator and ingest must agree on prices: a call the simulator
//! leaves unpriced must cost the same once ingest prices it as one it priced itself, otherwise
//! the cost series would jump for no reason. The table is serde so a deployment can load it
//! from configuration, as nested tables keyed by provider then model:
//!
//! ```toml
//! [openai."gpt-4o"]
//! input_per_1k = 0.0025
//! output_per_1k = 0.01
//!
//! [self-hosted."llama-3.1-8b"]
//! input_per_1k = 0.0004
//! output_per_1k = 0.0004
//! per_call = 0.0001
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalogue::Catalogue;
use crate::error::{check_range, SimError};

/// The price of one model: per 1K input and output tokens, plus a fixed amount per call.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// USD per 1,000 input tokens.
    pub input_per_1k: f64,
    /// USD per 1,000 output tokens.
    pub output_per_1k: f64,
    /// USD per call regardless of tokens (self-hosted GPU overhead); 0 for API models.
    #[serde(default)]
    pub per_call: f64,
}

impl ModelPrice {
    /// Cost in USD of a call with these token counts; negative counts (malformed input) count
    /// as zero so a price is never negative.
    pub fn cost(&self, input_tokens: i64, output_tokens: i64) -> f64 {
        let i = input_tokens.max(0) as f64;
        let o = output_tokens.max(0) as f64;
        (i * self.input_per_1k + o * self.output_per_1k) / 1000.0 + self.per_call
    }
}

/// Prices by provider, then model. Nested maps keep lookups allocation-free on ingest's hot
/// path and give a readable TOML layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable {
    providers: BTreeMap<String, BTreeMap<String, ModelPrice>>,
}

impl Default for PriceTable {
    /// The prices of the built-in catalogue, so ingest and the demo agree out of the box.
    fn default() -> Self {
        Self::from_catalogue(&Catalogue::builtin())
    }
}

impl PriceTable {
    /// A table with no prices; every lookup misses.
    pub fn empty() -> Self {
        Self {
            providers: BTreeMap::new(),
        }
    }

    /// The list prices of every model of `catalogue`.
    pub fn from_catalogue(catalogue: &Catalogue) -> Self {
        let mut t = Self::empty();
        for m in &catalogue.models {
            t.insert(&m.provider, &m.model, m.list_price());
        }
        t
    }

    /// Parses a table from TOML and validates it.
    pub fn from_toml_str(text: &str) -> Result<Self, SimError> {
        let t: Self = toml::from_str(text)?;
        t.validate()?;
        Ok(t)
    }

    /// Adds or replaces the price of `provider/model`.
    pub fn insert(&mut self, provider: &str, model: &str, price: ModelPrice) {
        self.providers
            .entry(provider.to_string())
            .or_default()
            .insert(model.to_string(), price);
    }

    /// The price of `provider/model`, if known.
    pub fn get(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        self.providers.get(provider)?.get(model)
    }

    /// Cost in USD of a call; `None` when the model has no price, so the caller can tell
    /// "free" from "unknown" (ingest leaves such calls unpriced or dead-letters them).
    pub fn price(
        &self,
        provider: &str,
        model: &str,
        input_tokens: i64,
        output_tokens: i64,
    ) -> Option<f64> {
        self.get(provider, model)
            .map(|p| p.cost(input_tokens, output_tokens))
    }

    /// Every `(provider, model, price)`, in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &ModelPrice)> {
        self.providers.iter().flat_map(|(p, models)| {
            models
                .iter()
                .map(move |(m, price)| (p.as_str(), m.as_str(), price))
        })
    }

    /// Rejects negative or non-finite prices, which would corrupt every cost aggregate.
    pub fn validate(&self) -> Result<(), SimError> {
        for (p, m, price) in self.iter() {
            let f = format!("prices.{p}/{m}");
            check_range(
                &format!("{f}.input_per_1k"),
                price.input_per_1k,
                0.0,
                f64::MAX,
            )?;
            check_range(
                &format!("{f}.output_per_1k"),
                price.output_per_1k,
                0.0,
                f64::MAX,
            )?;
            check_range(&format!("{f}.per_call"), price.per_call, 0.0, f64::MAX)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn builtin_figures() {
        let t = PriceTable::default();
        let gpt4o = t.get("openai", "gpt-4o").copied();
        assert!(gpt4o
            .is_some_and(|p| (p.input_per_1k - 0.0025).abs() < 1e-15
                && (p.output_per_1k - 0.01).abs() < 1e-15));
        // 1M in + 1M out = 2.50 + 10.00
        assert!(close(
            t.price("openai", "gpt-4o", 1_000_000, 1_000_000),
            12.5
        ));
        assert!(close(
            t.price("openai", "gpt-4o-mini", 1_000_000, 1_000_000),
            0.75
        ));
        assert!(close(
            t.price("anthropic", "claude-3-5-sonnet", 1000, 1000),
            0.018
        ));
        assert!(close(
            t.price("anthropic", "claude-3-5-haiku", 1000, 0),
            0.0008
        ));
        // self-hosted: 0.40 / 0.40 per 1M plus a fixed 0.0001 per call
        assert!(close(
            t.price("self-hosted", "llama-3.1-8b", 1000, 1000),
            0.0009
        ));
        assert!(close(t.price("self-hosted", "llama-3.1-8b", 0, 0), 0.0001));
        assert_eq!(t.price("openai", "gpt-5", 10, 10), None);
        assert_eq!(t.price("nobody", "gpt-4o", 10, 10), None);
        assert!(close(t.price("openai", "gpt-4o", -5, -5), 0.0));
        for m in &Catalogue::builtin().models {
            assert!(t.get(&m.provider, &m.model).is_some(), "{}", m.model);
        }
    }

    #[test]
    fn toml_round_trip_and_validation() {
        let t = PriceTable::default();
        let text = toml::to_string(&t).unwrap_or_default();
        assert!(text.contains("[openai.gpt-4o]") || text.contains("[openai.\"gpt-4o\"]"));
        let back = PriceTable::from_toml_str(&text);
        assert!(matches!(back, Ok(ref b) if *b == t), "{back:?}");
        let bad = "[openai.\"gpt-4o\"]\ninput_per_1k = -1.0\noutput_per_1k = 0.01\n";
        assert!(matches!(
            PriceTable::from_toml_str(bad),
            Err(SimError::InvalidValue { .. })
        ));
    }
}
