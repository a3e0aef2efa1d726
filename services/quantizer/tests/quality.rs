//! Quality bars on the real model and the shared evaluation sentences: at least the PyTorch
//! reference's figures (RTN INT8 per-channel ≥ 0.9997, GPTQ INT4 g128 ≥ 0.978, GPTQ INT2 g32
//! ≥ 0.717 mean cosine), GPTQ better than RTN at every supported width (8, 4, 3, 2 bits), and
//! the goal beyond it: INT4 ≥ 0.985 and INT2 ≥ 0.80 at ≥ 7× whole-model compression.

mod common;

use burn::tensor::Device;
use llmopt_quantizer::model::tokenize::read_sentences;
use llmopt_quantizer::quant::{Grouping, QuantSpec};
use llmopt_quantizer::quantize::{Method, QuantizePlan};
use llmopt_quantizer::workbench::{Report, Workbench};

fn plan(method: Method, bits: u8, grouping: Grouping) -> QuantizePlan {
    QuantizePlan {
        method,
        spec: QuantSpec {
            bits,
            grouping,
            symmetric: false,
            clip_search: false,
        },
        act_order: true,
        embedding_bits: None,
    }
}

fn whole_model(bits: u8, group: usize, clip_search: bool) -> QuantizePlan {
    QuantizePlan {
        spec: QuantSpec {
            clip_search,
            ..plan(Method::Gptq, bits, Grouping::Group(group)).spec
        },
        embedding_bits: Some(4),
        ..plan(Method::Gptq, bits, Grouping::Group(group))
    }
}

fn run(bench: &Workbench, plan: QuantizePlan) -> Report {
    let (model, took) = bench.quantize(&plan, &mut |_| {}).expect("quantize");
    let report = bench.evaluate(&model, took).expect("evaluate");
    println!(
        "{:24} mean {:.4} min {:.4} spearman {:.4} layer {:.4} ratio {:.2}x {:.1}s",
        plan.tag(),
        report.quality.mean_cosine,
        report.quality.min_cosine,
        report.quality.spearman,
        report.mean_layer_error,
        report.sizes.compression_ratio,
        report.quantize_seconds
    );
    report
}

#[test]
fn gptq_and_rtn_meet_the_reference_and_gptq_wins_at_every_width() {
    let shared = common::shared_quant();
    let calibration = read_sentences(&shared.join("calib_sentences.txt")).expect("calibration");
    let evaluation = read_sentences(&shared.join("eval_sentences.txt")).expect("evaluation");
    let bench = Workbench::new(
        &common::model_dir(),
        &calibration,
        &evaluation,
        Device::flex(),
    )
    .expect("workbench");
    assert_eq!(
        bench.calibration.tokens, 4878,
        "same calibration tokens as the reference"
    );

    // (bits, grouping, reference GPTQ mean cosine bar or none)
    let widths = [
        (8, Grouping::PerChannel, None),
        (4, Grouping::Group(128), Some(0.978)),
        (3, Grouping::Group(32), None),
        (2, Grouping::Group(32), Some(0.717)),
    ];
    for (bits, grouping, bar) in widths {
        let rtn = run(&bench, plan(Method::Rtn, bits, grouping));
        let gptq = run(&bench, plan(Method::Gptq, bits, grouping));
        assert!(
            gptq.quality.mean_cosine > rtn.quality.mean_cosine,
            "{bits} bits: GPTQ {} vs RTN {}",
            gptq.quality.mean_cosine,
            rtn.quality.mean_cosine
        );
        assert!(gptq.mean_layer_error < rtn.mean_layer_error);
        assert!(gptq.quality.spearman > rtn.quality.spearman);
        if let Some(bar) = bar {
            assert!(
                gptq.quality.mean_cosine >= bar,
                "{bits} bits: {}",
                gptq.quality.mean_cosine
            );
        }
        if bits == 8 {
            assert!(
                rtn.quality.mean_cosine >= 0.9997,
                "RTN INT8: {}",
                rtn.quality.mean_cosine
            );
            // Same accounting as the reference table.
            assert_eq!(rtn.sizes.packed_bytes, 59_064_576);
            assert_eq!(rtn.sizes.fp32_bytes, 90_852_864);
        }
        if bits == 4 {
            // The per-layer error is the most direct check of the GPTQ sweep (reference 0.0461
            // vs 0.0889 for RTN).
            assert!(
                (gptq.mean_layer_error - 0.0461).abs() < 0.002,
                "{}",
                gptq.mean_layer_error
            );
            assert!(
                (rtn.mean_layer_error - 0.0889).abs() < 0.002,
                "{}",
                rtn.mean_layer_error
            );
        }
    }
    // The goal beyond the reference: INT4 >= 0.985 and INT2 >= 0.80 mean cosine at >= 7x
    // whole-model size reduction (embeddings quantized too; clip search at 2 bits).
    for (bits, group, clip, bar) in [(4, 32, false, 0.985), (2, 16, true, 0.80)] {
        let report = run(&bench, whole_model(bits, group, clip));
        assert!(
            report.sizes.compression_ratio >= 7.0,
            "{}",
            report.sizes.compression_ratio
        );
        assert!(
            report.quality.mean_cosine >= bar,
            "{bits} bits: {}",
            report.quality.mean_cosine
        );
    }
}
