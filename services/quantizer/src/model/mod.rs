//! The model the quantizer works on: a BERT sentence encoder (all-MiniLM-L6-v2 and its
//! relatives) read from a Hugging Face model directory.

pub mod bert;
pub mod config;
pub mod layout;
pub mod tokenize;
pub mod weights;

use std::path::{Path, PathBuf};

pub use bert::{encode_sequences, Batch, Bert};
pub use config::BertConfig;
pub use layout::{LinearId, LinearKind};
pub use tokenize::SentenceTokenizer;
pub use weights::{HostTensor, ModelWeights};

use crate::error::QuantError;

/// A model directory's contents: configuration, tokenizer and weights.
pub struct ModelFiles {
    /// Where it was read from.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: BertConfig,
    /// `tokenizer.json`, set up for sentence embeddings.
    pub tokenizer: SentenceTokenizer,
    /// `model.safetensors`.
    pub weights: ModelWeights,
}

impl ModelFiles {
    /// Reads `dir`, failing with the missing file's name or the unsupported feature.
    pub fn load(dir: &Path) -> Result<Self, QuantError> {
        if !dir.is_dir() {
            return Err(QuantError::ModelNotFound {
                path: dir.display().to_string(),
            });
        }
        let config = BertConfig::load(dir)?;
        let tokenizer = SentenceTokenizer::load(dir)?;
        let weights = ModelWeights::load(&dir.join("model.safetensors"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            tokenizer,
            weights,
        })
    }
}
