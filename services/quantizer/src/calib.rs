//! Calibration: the sentences GPTQ learns its Hessians from, batched once, and the helpers that
//! turn captured activations into Hessians (GPTQ) and Gram matrices (the layer-error metric).

use burn::tensor::{Device, Tensor};
use faer::Mat;
use sha2::{Digest, Sha256};

use crate::error::QuantError;
use crate::model::bert::to_host;
use crate::model::{Batch, Bert, LinearId, LinearKind, SentenceTokenizer};
use crate::quant::hessian;

/// Sentences per calibration batch (sorted by length, so padding stays small; padding tokens
/// never reach a Hessian).
pub const CALIBRATION_BATCH: usize = 32;

/// Tokenized calibration sentences in padded batches.
pub struct CalibrationSet {
    /// The batches.
    pub batches: Vec<Batch>,
    /// Real (non-padding) tokens over all batches.
    pub tokens: usize,
    /// Sentences.
    pub sentences: usize,
    /// sha256 of the sentences joined by newlines: names the calibration set in manifests.
    pub sha256: String,
}

impl CalibrationSet {
    /// Tokenizes and batches `sentences`.
    pub fn new(
        tokenizer: &SentenceTokenizer,
        sentences: &[String],
        device: &Device,
    ) -> Result<Self, QuantError> {
        if sentences.is_empty() {
            return Err(QuantError::bad("the calibration set is empty"));
        }
        let sha256 = sentences_sha256(sentences);
        let mut sequences = tokenizer.encode_all(sentences)?;
        sequences.sort_by_key(Vec::len);
        let tokens = sequences.iter().map(Vec::len).sum();
        let batches = sequences
            .chunks(CALIBRATION_BATCH)
            .map(|chunk| Batch::new(chunk, device))
            .collect();
        Ok(Self {
            batches,
            tokens,
            sentences: sentences.len(),
            sha256,
        })
    }
}

/// sha256 (hex) of sentences joined by `\n`.
pub fn sentences_sha256(sentences: &[String]) -> String {
    let mut hasher = Sha256::new();
    for (i, s) in sentences.iter().enumerate() {
        if i > 0 {
            hasher.update(b"\n");
        }
        hasher.update(s.as_bytes());
    }
    hex(&hasher.finalize())
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The real-token rows of per-batch activations, stacked: `[tokens, columns]` row-major.
pub fn real_rows(activations: &[Tensor<2>], set: &CalibrationSet) -> (Vec<f32>, usize) {
    let mut columns = 0;
    let mut out = Vec::new();
    for (x, batch) in activations.iter().zip(&set.batches) {
        columns = x.dims()[1];
        let values = to_host(x.clone());
        for row in batch.real_rows() {
            out.extend_from_slice(&values[row * columns..(row + 1) * columns]);
        }
    }
    (out, columns)
}

/// Hessian `(2/N) XᵀX` of per-batch activations over real tokens.
pub fn activations_hessian(activations: &[Tensor<2>], set: &CalibrationSet) -> Mat<f64> {
    let (rows, columns) = real_rows(activations, set);
    hessian(&rows, columns)
}

/// Gram matrices of every Linear's input in the unquantized model (keyed by the Linear; query,
/// key and value share theirs): the per-layer relative error is computed from them.
pub struct FpInputs {
    grams: Vec<[Mat<f64>; 4]>,
}

impl FpInputs {
    /// Runs the FP32 encoder over the calibration set, recording each Linear's input.
    pub fn capture(bert: &Bert, set: &CalibrationSet) -> Self {
        let mut hidden: Vec<Tensor<2>> = set.batches.iter().map(|b| bert.embed(b)).collect();
        let mut grams = Vec::with_capacity(bert.layers.len());
        for layer in &bert.layers {
            let qkv = activations_hessian(&hidden, set);
            let contexts: Vec<Tensor<2>> = hidden
                .iter()
                .zip(&set.batches)
                .map(|(h, b)| layer.attention_context(h, b))
                .collect();
            let attention_output = activations_hessian(&contexts, set);
            let attended: Vec<Tensor<2>> = contexts
                .into_iter()
                .zip(hidden)
                .map(|(c, h)| layer.attention_block(c, h))
                .collect();
            let intermediate = activations_hessian(&attended, set);
            let activated: Vec<Tensor<2>> =
                attended.iter().map(|a| layer.intermediate(a)).collect();
            let output = activations_hessian(&activated, set);
            hidden = activated
                .into_iter()
                .zip(attended)
                .map(|(x, a)| layer.output_block(x, a))
                .collect();
            grams.push([qkv, attention_output, intermediate, output]);
        }
        Self { grams }
    }

    /// The (scaled) Gram matrix of `id`'s FP32 input.
    pub fn gram(&self, id: LinearId) -> &Mat<f64> {
        let step = match id.kind {
            LinearKind::Query | LinearKind::Key | LinearKind::Value => 0,
            LinearKind::AttentionOutput => 1,
            LinearKind::Intermediate => 2,
            LinearKind::Output => 3,
        };
        &self.grams[id.layer][step]
    }
}

/// `‖X(Ŵ−W)ᵀ‖_F / ‖XWᵀ‖_F` from the Gram matrix `G ∝ XᵀX` (the scale cancels).
pub fn relative_error(gram: &Mat<f64>, original: &[f32], quantized: &[f32], cols: usize) -> f64 {
    let rows = original.len() / cols;
    let quadratic = |vectors: &dyn Fn(usize, usize) -> f64| -> f64 {
        // Σ_r v_r G v_rᵀ with v_r a row; G symmetric.
        let v = Mat::<f64>::from_fn(rows, cols, vectors);
        let vg = &v * gram;
        let mut total = 0.0;
        for r in 0..rows {
            for c in 0..cols {
                total += vg[(r, c)] * v[(r, c)];
            }
        }
        total
    };
    let diff =
        quadratic(&|r, c| f64::from(quantized[r * cols + c]) - f64::from(original[r * cols + c]));
    let base = quadratic(&|r, c| f64::from(original[r * cols + c]));
    (diff.max(0.0) / base.max(f64::MIN_POSITIVE)).sqrt()
}
