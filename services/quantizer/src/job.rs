//! One quantization job, end to end: check the parameters, load the model, calibrate,
//! quantize, evaluate, write the artifact. The service and `llmopt quantize run` both call it.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::artifact::{self, sanitize, WrittenArtifact, MANIFEST_FILE};
use crate::error::QuantError;
use crate::model::tokenize::read_sentences;
use crate::quant::{Grouping, QuantSpec};
use crate::quantize::{Method, QuantizePlan, TensorDone};
use crate::workbench::Workbench;

/// Quantizer settings (`[quantizer]` in the config file, `LLMOPT_QUANTIZER__*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuantizerConfig {
    /// Artifact store: a local directory or a mounted volume. Each artifact is a directory
    /// inside it.
    pub artifact_store: PathBuf,
    /// Relative `model_location`s of jobs are resolved against this directory.
    pub model_root: PathBuf,
    /// Calibration sentences (one per line) for jobs that name none.
    pub calibration_set: Option<PathBuf>,
    /// Evaluation sentences; the calibration set when absent.
    pub evaluation_set: Option<PathBuf>,
    /// Whole-model mode: also quantize the word embeddings at this width (see
    /// [`QuantizePlan::embedding_bits`]).
    pub embedding_bits: Option<u8>,
    /// Search each grid's clipping range (better at 2–3 bits, several times slower).
    pub clip_search: bool,
}

impl Default for QuantizerConfig {
    fn default() -> Self {
        Self {
            artifact_store: PathBuf::from("artifacts"),
            model_root: PathBuf::from("."),
            calibration_set: None,
            evaluation_set: None,
            embedding_bits: None,
            clip_search: false,
        }
    }
}

/// What to quantize and how: the job's parameters, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Job id (idempotency key), if it came from the bus.
    pub job_id: Option<String>,
    /// Model name (for the artifact's name and events).
    pub model_name: String,
    /// Model directory.
    pub model_dir: PathBuf,
    /// Method, grid, act-order, embedding width.
    pub plan: QuantizePlan,
    /// Calibration sentences file.
    pub calibration: PathBuf,
    /// Evaluation sentences file.
    pub evaluation: PathBuf,
    /// Artifact store.
    pub store: PathBuf,
    /// Artifact directory name inside the store.
    pub artifact_name: String,
}

impl JobSpec {
    /// The artifact's directory.
    pub fn artifact_dir(&self) -> PathBuf {
        self.store.join(&self.artifact_name)
    }
}

/// Builds a plan from a job's raw parameters, refusing out-of-range ones.
pub fn plan_from(
    method: Method,
    bits: i32,
    group_size: Option<i32>,
    symmetric: bool,
    act_order: bool,
    embedding_bits: Option<u8>,
    clip_search: bool,
) -> Result<QuantizePlan, QuantError> {
    let bits = u8::try_from(bits).map_err(|_| {
        QuantError::bad(format!("bits = {bits}: supported widths are 8, 4, 3 and 2"))
    })?;
    let grouping = match group_size {
        None | Some(-1) => Grouping::PerChannel,
        Some(g) if g > 0 => Grouping::Group(g as usize),
        Some(g) => {
            return Err(QuantError::bad(format!(
                "group_size = {g}: must be positive (or absent for per-channel)"
            )))
        }
    };
    let plan = QuantizePlan {
        method,
        spec: QuantSpec {
            bits,
            grouping,
            symmetric,
            clip_search,
        },
        act_order,
        embedding_bits,
    };
    plan.validate()?;
    Ok(plan)
}

/// Name of the artifact directory of a job: model, plan and job id, made path-safe.
pub fn artifact_name(model_name: &str, plan: &QuantizePlan, job_id: Option<&str>) -> String {
    let mut name = format!("{}-{}", model_name, plan.tag());
    if let Some(id) = job_id {
        name.push('-');
        name.push_str(id);
    }
    sanitize(&name)
}

/// Runs a job: returns the written artifact. An artifact already complete for the same job id
/// (a crash after writing it, before announcing it) is returned as it is, not recomputed.
pub fn execute(
    spec: &JobSpec,
    device: Device,
    progress: &mut dyn FnMut(TensorDone),
) -> Result<WrittenArtifact, QuantError> {
    spec.plan.validate()?;
    let dir = spec.artifact_dir();
    if dir.join(MANIFEST_FILE).exists() {
        if let Ok(existing) = existing_artifact(&dir, spec.job_id.as_deref()) {
            return Ok(existing);
        }
    }
    if !spec.model_dir.is_dir() {
        return Err(QuantError::ModelNotFound {
            path: spec.model_dir.display().to_string(),
        });
    }
    let calibration =
        read_sentences(&spec.calibration).map_err(|e| param_file("calibration set", e))?;
    let evaluation =
        read_sentences(&spec.evaluation).map_err(|e| param_file("evaluation set", e))?;
    let bench = Workbench::new(&spec.model_dir, &calibration, &evaluation, device)?;
    let (model, took) = bench.quantize(&spec.plan, progress)?;
    let report = bench.evaluate(&model, took)?;
    artifact::write_artifact(
        &spec.store,
        &spec.artifact_name,
        &artifact::ArtifactSource {
            job_id: spec.job_id.as_deref(),
            model_name: &spec.model_name,
            files: &bench.files,
            calibration: &bench.calibration,
        },
        &model,
        &report,
    )
}

/// A missing sentence file is a bad parameter of the job, not a missing model.
fn param_file(what: &str, e: QuantError) -> QuantError {
    match e {
        QuantError::ModelNotFound { path } => {
            QuantError::bad(format!("{what} {path} does not exist"))
        }
        other => other,
    }
}

fn existing_artifact(dir: &Path, job_id: Option<&str>) -> Result<WrittenArtifact, QuantError> {
    let loaded = artifact::load_artifact(dir)?;
    if loaded.manifest.job_id.as_deref() != job_id {
        return Err(QuantError::bad("artifact belongs to another job"));
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_sha256 = artifact::file_sha256(&manifest_path)?;
    let manifest_bytes = std::fs::metadata(&manifest_path)
        .map_err(|e| QuantError::io(&manifest_path, e))?
        .len();
    Ok(WrittenArtifact {
        dir: dir.to_path_buf(),
        total_bytes: loaded.manifest.file_bytes + manifest_bytes,
        manifest: loaded.manifest,
        manifest_sha256,
    })
}
