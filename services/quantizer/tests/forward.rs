//! The burn forward pass against PyTorch's FP32 embeddings of the shared evaluation sentences,
//! checkpoint by checkpoint for the first sentence, then every sentence batched.

mod common;

use burn::tensor::Device;
use llmopt_quantizer::model::bert::to_host;
use llmopt_quantizer::model::{encode_sequences, Batch, Bert, ModelFiles};

fn floats(value: &serde_json::Value) -> Vec<f32> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

fn assert_close(what: &str, ours: &[f32], reference: &[f32]) {
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!((a - b).abs() < 2e-5, "{what}[{i}]: {a} vs {b}");
    }
}

#[test]
fn forward_pass_matches_the_pytorch_reference() {
    let files = ModelFiles::load(&common::model_dir()).expect("load model");
    let device = Device::flex();
    let bert = Bert::new(&files.config, &files.weights, &device).expect("build encoder");
    let reference = common::reference();
    let debug = &reference["debug_first_sentence"];

    // Tokenizer.
    let ids = files
        .tokenizer
        .encode(debug["sentence"].as_str().expect("sentence"))
        .expect("tokenize");
    let expected_ids: Vec<u32> = debug["input_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect();
    assert_eq!(ids, expected_ids);

    // Embeddings, layer 0, last layer: token 0, first 8 values.
    let batch = Batch::new(std::slice::from_ref(&ids), &device);
    let hidden = bert.embed(&batch);
    assert_close(
        "embeddings",
        &to_host(hidden.clone())[..8],
        &floats(&debug["embeddings_output_token0_first8"]),
    );
    let layer0 = bert.layers[0].forward(hidden, &batch);
    assert_close(
        "layer0",
        &to_host(layer0)[..8],
        &floats(&debug["layer0_output_token0_first8"]),
    );
    let last = to_host(bert.hidden_states(&batch));
    assert_close(
        "layer5",
        &last[..8],
        &floats(&debug["layer5_output_token0_first8"]),
    );

    // Every evaluation sentence, batched with padding.
    let sentences: Vec<String> = reference["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| s.as_str().expect("sentence").to_string())
        .collect();
    let expected = reference["embeddings"].as_array().expect("embeddings");
    let sequences = files.tokenizer.encode_all(&sentences).expect("tokenize");
    let ours = encode_sequences(&bert, &sequences, 16);
    assert_eq!(ours.len(), expected.len());
    let mut worst = 1.0f64;
    for (i, (emb, want)) in ours.iter().zip(expected).enumerate() {
        let cos = common::cosine(emb, &floats(want));
        assert!(
            cos >= 0.99999,
            "sentence {i} ({:?}): cosine {cos}",
            sentences[i]
        );
        worst = worst.min(cos);
    }
    println!(
        "worst cosine vs PyTorch over {} sentences: {worst:.9}",
        ours.len()
    );
}

#[test]
fn a_missing_or_foreign_model_is_refused_with_a_reason() {
    let missing = ModelFiles::load(std::path::Path::new("/nonexistent/model"));
    assert!(matches!(
        missing,
        Err(llmopt_quantizer::QuantError::ModelNotFound { .. })
    ));

    let dir = std::env::temp_dir().join(format!("llmopt-foreign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("config.json"), r#"{"model_type":"llama","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":1,"intermediate_size":8,"vocab_size":8,"max_position_embeddings":8}"#).expect("write");
    let foreign = ModelFiles::load(&dir);
    std::fs::remove_dir_all(&dir).ok();
    let err = foreign.err().expect("refused").to_string();
    assert!(err.contains("llama"), "{err}");
}
