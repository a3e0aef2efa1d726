//! Artifacts: quantize → write → load → dequantize reproduces the evaluated model bit for bit
//! (same embeddings hash as at quantization time); every file is checked against the manifest;
//! artifact names cannot leave the artifact store.

mod common;

use burn::tensor::Device;
use llmopt_quantizer::artifact::{load_artifact, safe_name, sanitize};
use llmopt_quantizer::eval;
use llmopt_quantizer::job::{execute, plan_from, JobSpec};
use llmopt_quantizer::model::tokenize::read_sentences;
use llmopt_quantizer::model::{Bert, ModelFiles};
use llmopt_quantizer::quantize::Method;
use llmopt_quantizer::QuantError;

fn spec(
    store: &std::path::Path,
    name: &str,
    method: Method,
    bits: i32,
    group: Option<i32>,
    emb: Option<u8>,
) -> JobSpec {
    let shared = common::shared_quant();
    JobSpec {
        job_id: Some(format!("job-{name}")),
        model_name: "all-MiniLM-L6-v2".into(),
        model_dir: common::model_dir(),
        plan: plan_from(method, bits, group, false, true, emb, false).expect("plan"),
        calibration: shared.join("calib_sentences.txt"),
        evaluation: shared.join("eval_sentences.txt"),
        store: store.to_path_buf(),
        artifact_name: name.into(),
    }
}

#[test]
fn round_trip_reproduces_the_evaluated_model_exactly() {
    let store = std::env::temp_dir().join(format!("llmopt-artifacts-{}", std::process::id()));
    let files = ModelFiles::load(&common::model_dir()).expect("model");
    let sentences =
        read_sentences(&common::shared_quant().join("eval_sentences.txt")).expect("eval");
    let sequences = files.tokenizer.encode_all(&sentences).expect("tokenize");
    let device = Device::flex();

    // GPTQ 4-bit asym with 8-bit embeddings, and 3-bit RTN (codes straddle byte boundaries).
    for (name, method, bits, group, emb) in [
        ("gptq4", Method::Gptq, 4, Some(128), Some(8)),
        ("rtn3", Method::Rtn, 3, Some(32), None),
    ] {
        let job = spec(&store, name, method, bits, group, emb);
        let mut progress = Vec::new();
        let written = execute(&job, device.clone(), &mut |d| progress.push(d)).expect("quantize");
        assert_eq!(progress.len(), 36 + if emb.is_some() { 3 } else { 0 });
        let manifest = &written.manifest;
        assert_eq!(
            manifest.files.len(),
            4,
            "weights, config, tokenizer, sentence config"
        );

        let loaded = load_artifact(&written.dir).expect("load");
        assert_eq!(loaded.manifest, *manifest);
        let bert = Bert::new(&files.config, &loaded.weights, &device).expect("encoder");
        let embeddings = eval::embed(&bert, &sequences);
        assert_eq!(
            eval::embeddings_sha256(&embeddings),
            manifest.report.embeddings_sha256,
            "{name}: loaded artifact gives exactly the evaluated embeddings"
        );
        // The file really is packed: weights file close to the accounted size.
        let weights_bytes = std::fs::metadata(written.dir.join("model.safetensors"))
            .expect("size")
            .len();
        let accounted = manifest.report.sizes.packed_bytes;
        assert!(
            weights_bytes < accounted + 64 * 1024 + 1024 * 8,
            "{weights_bytes} vs {accounted}"
        );
        assert!(weights_bytes + 8 * 1024 * 1024 < manifest.report.sizes.fp32_bytes || bits == 8);

        // Running the same job again returns the artifact that is there, unchanged.
        let again = execute(&job, device.clone(), &mut |_| panic!("recomputed")).expect("again");
        assert_eq!(again.manifest_sha256, written.manifest_sha256);
    }

    // A tampered file is refused, naming it.
    let dir = store.join("rtn3");
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).expect("write");
    let err = load_artifact(&dir)
        .err()
        .expect("tampered artifact refused");
    assert!(
        matches!(err, QuantError::InvalidArtifact { .. })
            && err.to_string().contains("model.safetensors"),
        "{err}"
    );
    std::fs::remove_dir_all(&store).ok();
}

#[test]
fn artifact_names_cannot_escape_the_store() {
    for bad in [
        "../evil",
        "..",
        "/etc/passwd",
        "a/b",
        ".hidden",
        "",
        "a\\b",
        "x\0y",
    ] {
        assert!(safe_name(bad).is_err(), "{bad:?} accepted");
    }
    assert!(safe_name("minilm-gptq-int4-g128-asym-job_1").is_ok());
    for text in ["../../etc", "/abs/path", "..", "a/../../b", "模型"] {
        let name = sanitize(text);
        assert!(safe_name(&name).is_ok(), "{text:?} → {name:?}");
    }
    let store = std::env::temp_dir().join(format!("llmopt-escape-{}", std::process::id()));
    let job = spec(&store, "../escaped", Method::Rtn, 8, None, None);
    let err = execute(&job, Device::flex(), &mut |_| {}).expect_err("refused");
    assert!(matches!(err, QuantError::BadParameters { .. }), "{err}");
    assert!(!store.join("../escaped").exists());
}

#[test]
fn bad_parameters_are_refused_before_any_work() {
    for (bits, group) in [
        (5, None),
        (0, None),
        (4, Some(0)),
        (4, Some(7)),
        (16, Some(128)),
    ] {
        let err =
            plan_from(Method::Gptq, bits, group, false, true, None, false).expect_err("refused");
        assert!(matches!(err, QuantError::BadParameters { .. }), "{err}");
    }
}
