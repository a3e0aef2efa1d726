//! Quality figures, computed exactly as the shared reference defines them: cosine of each
//! sentence's embedding vs FP32, Spearman correlation of pairwise similarities, per-layer
//! relative reconstruction error, and whole-model size accounting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::calib::{hex, relative_error, FpInputs};
use crate::model::{encode_sequences, Bert, BertConfig, LinearId, ModelWeights};
use crate::quant::QuantizedTensor;

/// Sentences per evaluation batch.
pub const EVAL_BATCH: usize = 64;

/// How close the quantized model's sentence embeddings are to FP32's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingQuality {
    /// Sentences evaluated.
    pub sentences: usize,
    /// Mean cosine to the FP32 embedding.
    pub mean_cosine: f64,
    /// Worst sentence's cosine.
    pub min_cosine: f64,
    /// Spearman correlation of all pairwise similarities, FP32 vs quantized.
    pub spearman: f64,
}

/// Sentence embeddings of `sequences` (token ids).
pub fn embed(bert: &Bert, sequences: &[Vec<u32>]) -> Vec<Vec<f32>> {
    encode_sequences(bert, sequences, EVAL_BATCH)
}

/// Compares quantized embeddings with the FP32 ones of the same sentences.
pub fn compare(fp32: &[Vec<f32>], quantized: &[Vec<f32>]) -> EmbeddingQuality {
    let cosines: Vec<f64> = fp32.iter().zip(quantized).map(|(e, q)| dot(e, q)).collect();
    let n = cosines.len();
    let mut s = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    let mut t = Vec::with_capacity(s.capacity());
    for i in 0..n {
        for j in i + 1..n {
            s.push(dot(&fp32[i], &fp32[j]));
            t.push(dot(&quantized[i], &quantized[j]));
        }
    }
    EmbeddingQuality {
        sentences: n,
        mean_cosine: cosines.iter().sum::<f64>() / n.max(1) as f64,
        min_cosine: cosines.iter().copied().fold(f64::INFINITY, f64::min),
        spearman: spearman(&s, &t),
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// Pearson correlation of the ranks (ties get their average rank).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (ma, mb) = (mean(&ra), mean(&rb));
    let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        num += (x - ma) * (y - mb);
        da += (x - ma).powi(2);
        db += (y - mb).powi(2);
    }
    if da == 0.0 || db == 0.0 {
        return 0.0;
    }
    num / (da * db).sqrt()
}

fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let average = (start + end - 1) as f64 / 2.0 + 1.0;
        for &i in &order[start..end] {
            ranks[i] = average;
        }
        start = end;
    }
    ranks
}

/// sha256 of embeddings' f32 bytes: lets a loaded artifact prove it reproduces the evaluated
/// model bit for bit.
pub fn embeddings_sha256(embeddings: &[Vec<f32>]) -> String {
    let mut hasher = Sha256::new();
    for e in embeddings {
        for v in e {
            hasher.update(v.to_le_bytes());
        }
    }
    hex(&hasher.finalize())
}

/// Relative output error of every quantized Linear, fed FP32 activations.
pub fn layer_errors(
    config: &BertConfig,
    prefix: &str,
    fp_inputs: &FpInputs,
    original: &ModelWeights,
    quantized: &ModelWeights,
) -> BTreeMap<String, f64> {
    let mut errors = BTreeMap::new();
    for id in LinearId::all(config.num_hidden_layers) {
        let name = id.weight_name(prefix);
        let (Some(w), Some(q)) = (original.tensors.get(&name), quantized.tensors.get(&name)) else {
            continue;
        };
        if w.data == q.data {
            continue;
        }
        errors.insert(
            name,
            relative_error(fp_inputs.gram(id), &w.data, &q.data, w.cols()),
        );
    }
    errors
}

/// Sizes as the reference accounts them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SizeAccount {
    /// FP32 size of every floating-point tensor (4 bytes per parameter).
    pub fp32_bytes: u64,
    /// Packed size: quantized tensors at their code width with fp16 scales (and zeros at the
    /// code width), every other tensor at 4 bytes per value.
    pub packed_bytes: u64,
    /// `fp32_bytes / packed_bytes`.
    pub compression_ratio: f64,
}

/// Accounts `original` with `tensors` replaced by their packed form.
pub fn account(
    original: &ModelWeights,
    tensors: &BTreeMap<String, QuantizedTensor>,
) -> SizeAccount {
    let fp32_bytes = 4 * original.float_parameters() as u64;
    let mut packed = 0u64;
    for (name, t) in &original.tensors {
        packed += match tensors.get(name) {
            Some(q) => q.accounted_bytes() as u64,
            None => 4 * t.data.len() as u64,
        };
    }
    SizeAccount {
        fp32_bytes,
        packed_bytes: packed,
        compression_ratio: fp32_bytes as f64 / packed.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_monotone_and_reversed_orders() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!((spearman(&a, &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(ranks(&[5.0, 1.0, 5.0]), vec![2.5, 1.0, 2.5]);
    }

    #[test]
    fn identical_embeddings_compare_perfectly() {
        let e = vec![vec![1.0, 0.0], vec![0.6, 0.8], vec![0.0, 1.0]];
        let q = compare(&e, &e);
        assert!((q.mean_cosine - 1.0).abs() < 1e-6 && (q.spearman - 1.0).abs() < 1e-12);
        let worse = compare(&e, &[vec![1.0, 0.0], vec![0.8, 0.6], vec![0.0, 1.0]]);
        assert!(worse.min_cosine < 1.0);
    }
}
