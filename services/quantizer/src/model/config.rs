//! The subset of a Hugging Face `config.json` the BERT encoder needs, checked up front so that an
//! unsupported model is refused with a reason instead of producing garbage embeddings.

use std::path::Path;

use serde::Deserialize;

use crate::error::QuantError;

/// Encoder hyper-parameters, read from `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    /// `model_type`; only `bert` is supported.
    #[serde(default)]
    pub model_type: String,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Positions the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Token types (segments).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Activation; only exact `gelu` is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Position embedding kind; only `absolute` is supported.
    #[serde(default = "default_position_kind")]
    pub position_embedding_type: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position_kind() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Reads and checks `dir/config.json`.
    pub fn load(dir: &Path) -> Result<Self, QuantError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| QuantError::io(&path, e))?;
        let config: BertConfig =
            serde_json::from_str(&text).map_err(|e| QuantError::UnsupportedArchitecture {
                reason: format!("{}: {e}", path.display()),
            })?;
        config.check()?;
        Ok(config)
    }

    /// Refuses configurations this encoder does not implement.
    pub fn check(&self) -> Result<(), QuantError> {
        let refuse = |reason: String| Err(QuantError::UnsupportedArchitecture { reason });
        if self.model_type != "bert" {
            return refuse(format!(
                "model_type {:?}: only BERT encoders are supported",
                self.model_type
            ));
        }
        if self.hidden_act != "gelu" {
            return refuse(format!(
                "hidden_act {:?}: only exact (erf) gelu is supported",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return refuse(format!(
                "position_embedding_type {:?}: only absolute positions are supported",
                self.position_embedding_type
            ));
        }
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return refuse(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
