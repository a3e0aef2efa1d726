//! A model loaded once with everything needed to quantize and judge it: the FP32 encoder, the
//! calibration batches, the FP32 activations' Gram matrices and the FP32 embeddings of the
//! evaluation sentences. The CLI, the benchmark, the service and the tests all go through it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::calib::{CalibrationSet, FpInputs};
use crate::error::QuantError;
use crate::eval::{self, EmbeddingQuality, SizeAccount};
use crate::model::{Bert, ModelFiles};
use crate::quantize::{quantize_model, QuantizePlan, QuantizedModel, TensorDone};

/// Quality and size of one quantized model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What was done.
    pub plan: QuantizePlan,
    /// Embedding quality on the evaluation sentences.
    pub quality: EmbeddingQuality,
    /// sha256 of the evaluation sentences.
    pub eval_sha256: String,
    /// sha256 of the quantized model's evaluation embeddings (f32 bytes).
    pub embeddings_sha256: String,
    /// Relative output error of each quantized Linear, on FP32 calibration activations.
    pub layer_errors: BTreeMap<String, f64>,
    /// Mean of `layer_errors`.
    pub mean_layer_error: f64,
    /// Max of `layer_errors`.
    pub max_layer_error: f64,
    /// Size accounting.
    pub sizes: SizeAccount,
    /// Wall-clock seconds of the quantization step (calibration passes included, evaluation
    /// not).
    pub quantize_seconds: f64,
}

/// The FP32 model and the data it is judged on.
pub struct Workbench {
    /// Model files.
    pub files: ModelFiles,
    /// Device everything runs on.
    pub device: Device,
    /// FP32 encoder.
    pub fp32: Bert,
    /// Calibration batches.
    pub calibration: CalibrationSet,
    fp_inputs: FpInputs,
    eval_sequences: Vec<Vec<u32>>,
    eval_sha256: String,
    fp32_embeddings: Vec<Vec<f32>>,
}

impl Workbench {
    /// Loads the model at `model_dir` and prepares calibration and evaluation.
    pub fn new(
        model_dir: &Path,
        calibration: &[String],
        evaluation: &[String],
        device: Device,
    ) -> Result<Self, QuantError> {
        let files = ModelFiles::load(model_dir)?;
        let fp32 = Bert::new(&files.config, &files.weights, &device)?;
        let calibration = CalibrationSet::new(&files.tokenizer, calibration, &device)?;
        let fp_inputs = FpInputs::capture(&fp32, &calibration);
        if evaluation.is_empty() {
            return Err(QuantError::bad("the evaluation set is empty"));
        }
        let eval_sequences = files.tokenizer.encode_all(evaluation)?;
        let fp32_embeddings = eval::embed(&fp32, &eval_sequences);
        Ok(Self {
            eval_sha256: crate::calib::sentences_sha256(evaluation),
            files,
            device,
            fp32,
            calibration,
            fp_inputs,
            eval_sequences,
            fp32_embeddings,
        })
    }

    /// Quantizes the model; returns the result and the time it took.
    pub fn quantize(
        &self,
        plan: &QuantizePlan,
        progress: &mut dyn FnMut(TensorDone),
    ) -> Result<(QuantizedModel, Duration), QuantError> {
        let started = Instant::now();
        let model = quantize_model(
            &self.files.config,
            &self.files.weights,
            plan,
            Some(&self.calibration),
            &self.device,
            progress,
        )?;
        Ok((model, started.elapsed()))
    }

    /// Sentence embeddings of the evaluation set under `weights`.
    pub fn eval_embeddings(&self, model: &QuantizedModel) -> Result<Vec<Vec<f32>>, QuantError> {
        let bert = Bert::new(&self.files.config, &model.weights, &self.device)?;
        Ok(eval::embed(&bert, &self.eval_sequences))
    }

    /// Judges a quantized model.
    pub fn evaluate(&self, model: &QuantizedModel, took: Duration) -> Result<Report, QuantError> {
        let embeddings = self.eval_embeddings(model)?;
        let layer_errors = eval::layer_errors(
            &self.files.config,
            self.fp32.prefix(),
            &self.fp_inputs,
            &self.files.weights,
            &model.weights,
        );
        let n = layer_errors.len().max(1) as f64;
        Ok(Report {
            plan: model.plan,
            quality: eval::compare(&self.fp32_embeddings, &embeddings),
            eval_sha256: self.eval_sha256.clone(),
            embeddings_sha256: eval::embeddings_sha256(&embeddings),
            mean_layer_error: layer_errors.values().sum::<f64>() / n,
            max_layer_error: layer_errors.values().copied().fold(0.0, f64::max),
            layer_errors,
            sizes: eval::account(&self.files.weights, &model.tensors),
            quantize_seconds: took.as_secs_f64(),
        })
    }

    /// FP32 embeddings of the evaluation set.
    pub fn fp32_embeddings(&self) -> &[Vec<f32>] {
        &self.fp32_embeddings
    }
}
