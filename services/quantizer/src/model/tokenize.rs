//! Sentence → token ids with the model's own `tokenizer.json`, truncated the way
//! sentence-transformers truncates (its `max_seq_length`, not the tokenizer's limit).

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::QuantError;

/// all-MiniLM-L6-v2's `max_seq_length` (from `sentence_bert_config.json`), [CLS] and [SEP]
/// included. The tokenizer file itself says 128 and pads to 128: both are overridden.
pub const DEFAULT_MAX_SEQ_LEN: usize = 256;

/// The model's tokenizer, without padding and with sentence-transformers truncation.
pub struct SentenceTokenizer {
    inner: Tokenizer,
}

impl SentenceTokenizer {
    /// Loads `dir/tokenizer.json`; the truncation length comes from
    /// `dir/sentence_bert_config.json` when present.
    pub fn load(dir: &Path) -> Result<Self, QuantError> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(QuantError::ModelNotFound {
                path: path.display().to_string(),
            });
        }
        let mut inner =
            Tokenizer::from_file(&path).map_err(|e| QuantError::UnsupportedArchitecture {
                reason: format!("{}: {e}", path.display()),
            })?;
        let max_length = max_seq_length(dir);
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| QuantError::UnsupportedArchitecture {
                reason: format!("truncation: {e}"),
            })?;
        inner.with_padding(None);
        Ok(Self { inner })
    }

    /// Token ids of `sentence`, [CLS] and [SEP] included.
    pub fn encode(&self, sentence: &str) -> Result<Vec<u32>, QuantError> {
        let encoding = self
            .inner
            .encode(sentence, true)
            .map_err(|e| QuantError::bad(format!("cannot tokenize {sentence:?}: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of every sentence.
    pub fn encode_all(&self, sentences: &[String]) -> Result<Vec<Vec<u32>>, QuantError> {
        sentences.iter().map(|s| self.encode(s)).collect()
    }
}

fn max_seq_length(dir: &Path) -> usize {
    #[derive(serde::Deserialize)]
    struct SentenceBertConfig {
        max_seq_length: usize,
    }
    std::fs::read_to_string(dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<SentenceBertConfig>(&text).ok())
        .map(|c| c.max_seq_length)
        .unwrap_or(DEFAULT_MAX_SEQ_LEN)
}

/// Reads a sentence file: one sentence per line, blank lines skipped.
pub fn read_sentences(path: &Path) -> Result<Vec<String>, QuantError> {
    let text = std::fs::read_to_string(path).map_err(|e| QuantError::io(path, e))?;
    let sentences: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if sentences.is_empty() {
        return Err(QuantError::bad(format!(
            "{} holds no sentences",
            path.display()
        )));
    }
    Ok(sentences)
}
