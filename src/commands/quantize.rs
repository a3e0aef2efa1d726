//! `llmopt quantize`: the quantizer without the bus. `run` quantizes a model directory into an
//! artifact with a progress bar, `eval` measures any artifact on any sentence file, `bench`
//! times GPTQ next to RTN and the PyTorch reference.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use burn::tensor::Device;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use llmopt_quantizer::artifact::{file_sha256, load_artifact, safe_name, WEIGHTS_FILE};
use llmopt_quantizer::eval;
use llmopt_quantizer::job::{execute, plan_from, JobSpec};
use llmopt_quantizer::model::tokenize::read_sentences;
use llmopt_quantizer::model::{Bert, ModelFiles};
use llmopt_quantizer::quant::{Grouping, QuantSpec};
use llmopt_quantizer::quantize::{Method, QuantizePlan, TensorDone};
use llmopt_quantizer::workbench::{Report, Workbench};

use llmopt::config::AppConfig;

/// `llmopt quantize` subcommands.
#[derive(Subcommand)]
pub enum QuantizeCommand {
    /// Quantize a model directory (config.json, tokenizer.json, model.safetensors) into an
    /// artifact directory.
    Run(RunArgs),
    /// Evaluate an artifact against its FP32 model on a sentence file (one sentence per line).
    Eval(EvalArgs),
    /// Time GPTQ INT4 g128 on the whole model next to RTN, against the reference's time.
    Bench(BenchArgs),
}

/// Rounding method.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MethodArg {
    /// Round-to-nearest.
    Rtn,
    /// GPTQ.
    Gptq,
}

/// `llmopt quantize run` options.
#[derive(Args)]
pub struct RunArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Rounding method.
    #[arg(long, value_enum, default_value = "gptq")]
    method: MethodArg,
    /// Bits per weight: 8, 4, 3 or 2.
    #[arg(long, default_value_t = 4)]
    bits: i32,
    /// Input columns sharing a scale (16 to 4096); omit for one scale per output channel.
    #[arg(long)]
    group_size: Option<i32>,
    /// Symmetric grid (no zero points).
    #[arg(long)]
    symmetric: bool,
    /// Quantize columns left to right instead of by decreasing Hessian diagonal (GPTQ).
    #[arg(long)]
    no_act_order: bool,
    /// Whole-model mode: also quantize the word embeddings at this width (groups of 128), the
    /// position embeddings at 8 bits and the unused pooler.
    #[arg(long)]
    embedding_bits: Option<u8>,
    /// Search each grid's clipping range (better at 2-3 bits, several times slower).
    #[arg(long)]
    clip_search: bool,
    /// Calibration sentences, one per line (default: quantizer.calibration_set).
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Evaluation sentences (default: quantizer.evaluation_set, else the calibration set).
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Artifact directory to create.
    #[arg(long)]
    out: PathBuf,
}

/// `llmopt quantize eval` options.
#[derive(Args)]
pub struct EvalArgs {
    /// Artifact directory.
    #[arg(long)]
    artifact: PathBuf,
    /// Sentences to evaluate on, one per line.
    #[arg(long)]
    sentences: PathBuf,
    /// FP32 model directory (default: the one recorded in the manifest).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `llmopt quantize bench` options.
#[derive(Args)]
pub struct BenchArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Calibration sentences.
    #[arg(long)]
    calibration: PathBuf,
    /// Evaluation sentences.
    #[arg(long)]
    eval: PathBuf,
    /// The reference's `reference_results.json`, for its timing.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Timed runs of each method (the best is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

pub fn run(config: &AppConfig, cmd: QuantizeCommand) -> anyhow::Result<()> {
    match cmd {
        QuantizeCommand::Run(args) => run_job(config, args),
        QuantizeCommand::Eval(args) => run_eval(args),
        QuantizeCommand::Bench(args) => run_bench(args),
    }
}

fn method(m: MethodArg) -> Method {
    match m {
        MethodArg::Rtn => Method::Rtn,
        MethodArg::Gptq => Method::Gptq,
    }
}

fn run_job(config: &AppConfig, args: RunArgs) -> anyhow::Result<()> {
    let plan = plan_from(
        method(args.method),
        args.bits,
        args.group_size,
        args.symmetric,
        !args.no_act_order,
        args.embedding_bits,
        args.clip_search,
    )?;
    let calibration = args
        .calibration
        .or_else(|| config.quantizer.calibration_set.clone())
        .context("--calibration FILE is required (or set quantizer.calibration_set)")?;
    let evaluation = args
        .eval
        .or_else(|| config.quantizer.evaluation_set.clone())
        .unwrap_or_else(|| calibration.clone());
    let name = args
        .out
        .file_name()
        .and_then(|n| n.to_str())
        .context("--out must name a directory")?;
    safe_name(name)?;
    let store = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let model_name = args
        .model
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model")
        .to_string();
    let spec = JobSpec {
        job_id: None,
        model_name,
        model_dir: args.model,
        plan,
        calibration,
        evaluation,
        store,
        artifact_name: name.to_string(),
    };
    eprintln!(
        "quantizing {} with {}",
        spec.model_dir.display(),
        plan.tag()
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("loading model, calibrating");
    let written = execute(&spec, Device::flex(), &mut |done: TensorDone| {
        bar.set_length(done.total as u64);
        bar.set_position(done.done as u64);
        bar.set_message(done.name);
    })?;
    bar.finish_and_clear();
    print_report(&written.manifest.report);
    println!(
        "artifact         {} ({} bytes in files, {:.2}x vs FP32; manifest sha256 {})",
        written.dir.display(),
        written.total_bytes,
        written.manifest.file_compression_ratio,
        written.manifest_sha256
    );
    Ok(())
}

fn print_report(r: &Report) {
    println!("plan             {}", r.plan.tag());
    println!("sentences        {}", r.quality.sentences);
    println!("mean cosine      {:.6}", r.quality.mean_cosine);
    println!("min cosine       {:.6}", r.quality.min_cosine);
    println!("spearman         {:.6}", r.quality.spearman);
    println!(
        "layer rel. error {:.6} mean, {:.6} max over {} layers",
        r.mean_layer_error,
        r.max_layer_error,
        r.layer_errors.len()
    );
    println!(
        "size             {} bytes packed vs {} FP32 = {:.2}x",
        r.sizes.packed_bytes, r.sizes.fp32_bytes, r.sizes.compression_ratio
    );
    println!("quantize time    {:.2} s", r.quantize_seconds);
}

fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let loaded = load_artifact(&args.artifact)?;
    let model_dir = args
        .model
        .unwrap_or_else(|| PathBuf::from(&loaded.manifest.source.location));
    check_source(&model_dir, &loaded.manifest.source.weights_sha256)?;
    let fp32_files = ModelFiles::load(&model_dir)?;
    let sentences = read_sentences(&args.sentences)?;
    let device = Device::flex();
    let sequences = fp32_files.tokenizer.encode_all(&sentences)?;
    let fp32 = Bert::new(&fp32_files.config, &fp32_files.weights, &device)?;
    let quantized = Bert::new(&fp32_files.config, &loaded.weights, &device)?;
    let quality = eval::compare(
        &eval::embed(&fp32, &sequences),
        &eval::embed(&quantized, &sequences),
    );
    let r = &loaded.manifest.report;
    if args.json {
        let out = serde_json::json!({
            "artifact": args.artifact,
            "plan": r.plan.tag(),
            "sentences": quality.sentences,
            "mean_cosine": quality.mean_cosine,
            "min_cosine": quality.min_cosine,
            "spearman": quality.spearman,
            "mean_layer_error": r.mean_layer_error,
            "compression_ratio": r.sizes.compression_ratio,
            "packed_bytes": r.sizes.packed_bytes,
            "file_bytes": loaded.manifest.file_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("artifact         {}", args.artifact.display());
        println!("plan             {}", r.plan.tag());
        println!("sentences        {}", quality.sentences);
        println!("mean cosine      {:.6}", quality.mean_cosine);
        println!("min cosine       {:.6}", quality.min_cosine);
        println!("spearman         {:.6}", quality.spearman);
        println!(
            "layer rel. error {:.6} (calibration set, from the manifest)",
            r.mean_layer_error
        );
        println!(
            "size             {} bytes packed vs {} FP32 = {:.2}x ({} bytes in files)",
            r.sizes.packed_bytes,
            r.sizes.fp32_bytes,
            r.sizes.compression_ratio,
            loaded.manifest.file_bytes
        );
    }
    Ok(())
}

fn check_source(model_dir: &Path, expected: &str) -> anyhow::Result<()> {
    let got = file_sha256(&model_dir.join(WEIGHTS_FILE))
        .with_context(|| format!("FP32 model at {} (pass --model DIR)", model_dir.display()))?;
    if got != expected {
        bail!(
            "{} is not the model this artifact was made from (sha256 {got}, manifest says {expected})",
            model_dir.join(WEIGHTS_FILE).display()
        );
    }
    Ok(())
}

fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let calibration = read_sentences(&args.calibration)?;
    let evaluation = read_sentences(&args.eval)?;
    let started = Instant::now();
    let bench = Workbench::new(&args.model, &calibration, &evaluation, Device::flex())?;
    println!(
        "setup (load, FP32 calibration pass, FP32 eval embeddings): {:.2} s; {} calibration tokens",
        started.elapsed().as_secs_f64(),
        bench.calibration.tokens
    );
    let plan = |m| QuantizePlan {
        method: m,
        spec: QuantSpec {
            bits: 4,
            grouping: Grouping::Group(128),
            symmetric: false,
            clip_search: false,
        },
        act_order: true,
        embedding_bits: None,
    };
    let best = |m: Method| -> anyhow::Result<(f64, Report)> {
        let mut seconds = f64::INFINITY;
        let mut report = None;
        for _ in 0..args.repeat.max(1) {
            let (model, took) = bench.quantize(&plan(m), &mut |_| {})?;
            seconds = seconds.min(took.as_secs_f64());
            if report.is_none() {
                report = Some(bench.evaluate(&model, took)?);
            }
        }
        let report = report.context("no run")?;
        Ok((seconds, report))
    };
    let (gptq_s, gptq) = best(Method::Gptq)?;
    let (rtn_s, rtn) = best(Method::Rtn)?;
    println!(
        "{:24} {:>10} {:>10} {:>10}",
        "config", "seconds", "mean cos", "layer err"
    );
    for (s, r) in [(gptq_s, &gptq), (rtn_s, &rtn)] {
        println!(
            "{:24} {:>10.2} {:>10.4} {:>10.4}",
            r.plan.tag(),
            s,
            r.quality.mean_cosine,
            r.mean_layer_error
        );
    }
    println!("GPTQ / RTN time: {:.1}x", gptq_s / rtn_s.max(1e-9));
    if let Some(path) = args.reference {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)?;
        let seconds = |tag: &str| {
            json["results"].as_array().and_then(|rows| {
                rows.iter()
                    .find(|r| r["tag"] == tag)
                    .and_then(|r| r["quant_seconds"].as_f64())
            })
        };
        if let Some(reference) = seconds("gptq-int4-g128-asym") {
            println!(
                "reference (PyTorch, its results table) gptq-int4-g128-asym: {reference:.2} s -> ours is {:.1}x faster",
                reference / gptq_s
            );
        }
        if let Some(reference) = seconds("rtn-int4-g128-asym") {
            println!("reference rtn-int4-g128-asym: {reference:.2} s");
        }
    }
    Ok(())
}
