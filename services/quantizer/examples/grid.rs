//! Development helper: quantizes the model with the configs given on the command line and
//! prints one line of figures per config. `cargo run --release -p llmopt-quantizer --example
//! grid -- MODEL_DIR SHARED_QUANT_DIR gptq-4-128 rtn-8-pc ...`

use std::path::PathBuf;

use burn::tensor::Device;
use llmopt_quantizer::model::tokenize::read_sentences;
use llmopt_quantizer::quant::{Grouping, QuantSpec};
use llmopt_quantizer::quantize::{Method, QuantizePlan};
use llmopt_quantizer::workbench::Workbench;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = PathBuf::from(&args[0]);
    let shared = PathBuf::from(&args[1]);
    let calib = read_sentences(&shared.join("calib_sentences.txt")).expect("calib");
    let eval = read_sentences(&shared.join("eval_sentences.txt")).expect("eval");
    let t = std::time::Instant::now();
    let bench = Workbench::new(&model, &calib, &eval, Device::flex()).expect("workbench");
    println!(
        "setup {:.2}s, {} calibration tokens",
        t.elapsed().as_secs_f64(),
        bench.calibration.tokens
    );
    for config in &args[2..] {
        let parts: Vec<&str> = config.split('-').collect();
        let method = if parts[0] == "gptq" {
            Method::Gptq
        } else {
            Method::Rtn
        };
        let bits: u8 = parts[1].parse().expect("bits");
        let grouping = match parts[2] {
            "pc" => Grouping::PerChannel,
            "pt" => Grouping::PerTensor,
            g => Grouping::Group(g.parse().expect("group")),
        };
        let symmetric = parts.get(3) == Some(&"sym");
        let embedding_bits = parts.get(4).and_then(|b| b.parse().ok());
        let clip_search = parts.get(5) == Some(&"clip");
        let plan = QuantizePlan {
            method,
            spec: QuantSpec {
                bits,
                grouping,
                symmetric,
                clip_search,
            },
            act_order: true,
            embedding_bits,
        };
        let (q, took) = bench.quantize(&plan, &mut |_| {}).expect("quantize");
        let r = bench.evaluate(&q, took).expect("evaluate");
        println!(
            "{:32} mean {:.4} min {:.4} spearman {:.4} layer {:.4} bytes {} ratio {:.2}x  {:.2}s",
            plan.tag(),
            r.quality.mean_cosine,
            r.quality.min_cosine,
            r.quality.spearman,
            r.mean_layer_error,
            r.sizes.packed_bytes,
            r.sizes.compression_ratio,
            r.quantize_seconds
        );
    }
}
