//! Quantized-model artifacts: a directory with `model.safetensors` (bit-packed codes, fp16
//! scales, packed zero points, untouched tensors as they were), the model's config and
//! tokenizer, and a `manifest.json` that says how it was made, how good it is, and the sha256
//! of every file. Written to a temporary directory and renamed, so a directory that has a
//! manifest is complete.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use half::f16;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::calib::{hex, CalibrationSet};
use crate::error::QuantError;
use crate::model::{ModelFiles, ModelWeights};
use crate::quant::pack::{pack, unpack};
use crate::quant::{QuantSpec, QuantizedTensor};
use crate::quantize::{QuantizePlan, QuantizedModel};
use crate::workbench::Report;

/// Manifest format identifier.
pub const FORMAT: &str = "llmopt-quantized-model/1";
/// Name of the weights file inside an artifact.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Name of the manifest.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Model files copied next to the weights so an artifact can be loaded on its own.
const COPIED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "sentence_bert_config.json"];

/// One quantized tensor's layout in the weights file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// `[rows, cols]` of the original matrix.
    pub shape: [usize; 2],
    /// Grid it was quantized on.
    pub spec: QuantSpec,
}

/// Where the source model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceModel {
    /// Model name (from the job).
    pub name: String,
    /// Directory it was read from.
    pub location: String,
    /// sha256 of its `model.safetensors`.
    pub weights_sha256: String,
}

/// The calibration set, named by hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationInfo {
    /// sha256 of the sentences joined by newlines.
    pub sha256: String,
    /// Sentences.
    pub sentences: usize,
    /// Real tokens.
    pub tokens: usize,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// Quantization job that made it, if any.
    pub job_id: Option<String>,
    /// Source model.
    pub source: SourceModel,
    /// Method, grid, act-order, embedding width.
    pub plan: QuantizePlan,
    /// Calibration set.
    pub calibration: CalibrationInfo,
    /// Quantized tensors by checkpoint name.
    pub tensors: BTreeMap<String, TensorEntry>,
    /// Quality and size figures measured when it was made.
    pub report: Report,
    /// Bytes of all files of the artifact (manifest excluded).
    pub file_bytes: u64,
    /// FP32 bytes divided by `file_bytes`.
    pub file_compression_ratio: f64,
    /// sha256 of every file of the artifact except the manifest.
    pub files: BTreeMap<String, String>,
}

/// A written artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenArtifact {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// sha256 of `manifest.json`.
    pub manifest_sha256: String,
    /// Bytes of every file including the manifest.
    pub total_bytes: u64,
}

/// Checks that `name` is a single, plain path component, so that an artifact name taken from
/// a job cannot write outside the artifact store.
pub fn safe_name(name: &str) -> Result<&str, QuantError> {
    let plain = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        Ok(name)
    } else {
        Err(QuantError::bad(format!(
            "artifact name {name:?} must be a plain file name ([A-Za-z0-9._-], not starting with '.')"
        )))
    }
}

/// Turns any text (a model name, a job id) into a name [`safe_name`] accepts.
pub fn sanitize(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    let mut name: String = trimmed.chars().take(200).collect();
    if name.is_empty() {
        name.push('_');
    }
    name
}

/// sha256 (hex) of a file.
pub fn file_sha256(path: &Path) -> Result<String, QuantError> {
    let bytes = std::fs::read(path).map_err(|e| QuantError::io(path, e))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

/// Where a quantized model came from: recorded in its manifest.
pub struct ArtifactSource<'a> {
    /// The job that asked for it, if any.
    pub job_id: Option<&'a str>,
    /// Model name.
    pub model_name: &'a str,
    /// The FP32 model files.
    pub files: &'a ModelFiles,
    /// The calibration set used.
    pub calibration: &'a CalibrationSet,
}

/// Writes the artifact `store/name`; an existing complete artifact there is an error.
pub fn write_artifact(
    store: &Path,
    name: &str,
    source: &ArtifactSource<'_>,
    model: &QuantizedModel,
    report: &Report,
) -> Result<WrittenArtifact, QuantError> {
    let name = safe_name(name)?;
    std::fs::create_dir_all(store).map_err(|e| QuantError::write(store, e))?;
    let dir = store.join(name);
    if dir.join(MANIFEST_FILE).exists() {
        return Err(QuantError::bad(format!(
            "artifact {} already exists",
            dir.display()
        )));
    }
    let staging = store.join(format!(".{name}.partial-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| QuantError::write(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| QuantError::write(&staging, e))?;
    let result = write_into(&staging, source, model, report);
    let (manifest, manifest_sha256, total_bytes) = match result {
        Ok(done) => done,
        Err(e) => {
            std::fs::remove_dir_all(&staging).ok();
            return Err(e);
        }
    };
    if dir.exists() {
        // A partial directory from a crashed run: replace it.
        std::fs::remove_dir_all(&dir).map_err(|e| QuantError::write(&dir, e))?;
    }
    std::fs::rename(&staging, &dir).map_err(|e| QuantError::write(&dir, e))?;
    Ok(WrittenArtifact {
        dir,
        manifest,
        manifest_sha256,
        total_bytes,
    })
}

fn write_into(
    dir: &Path,
    origin: &ArtifactSource<'_>,
    model: &QuantizedModel,
    report: &Report,
) -> Result<(Manifest, String, u64), QuantError> {
    let (job_id, source, model_name, calibration) = (
        origin.job_id,
        origin.files,
        origin.model_name,
        origin.calibration,
    );
    let weights_path = dir.join(WEIGHTS_FILE);
    let bytes = serialize_weights(&source.weights, &model.tensors)?;
    std::fs::write(&weights_path, bytes).map_err(|e| QuantError::write(&weights_path, e))?;
    for file in COPIED_FILES {
        let from = source.dir.join(file);
        if from.exists() {
            let to = dir.join(file);
            std::fs::copy(&from, &to).map_err(|e| QuantError::write(&to, e))?;
        }
    }
    let mut files = BTreeMap::new();
    let mut file_bytes = 0u64;
    for file in std::iter::once(WEIGHTS_FILE).chain(COPIED_FILES) {
        let path = dir.join(file);
        if path.exists() {
            files.insert(file.to_string(), file_sha256(&path)?);
            file_bytes += std::fs::metadata(&path)
                .map_err(|e| QuantError::io(&path, e))?
                .len();
        }
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        job_id: job_id.map(String::from),
        source: SourceModel {
            name: model_name.into(),
            location: source.dir.display().to_string(),
            weights_sha256: file_sha256(&source.dir.join(WEIGHTS_FILE))?,
        },
        plan: model.plan,
        calibration: CalibrationInfo {
            sha256: calibration.sha256.clone(),
            sentences: calibration.sentences,
            tokens: calibration.tokens,
        },
        tensors: model
            .tensors
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    TensorEntry {
                        shape: [t.rows, t.cols],
                        spec: t.spec,
                    },
                )
            })
            .collect(),
        report: report.clone(),
        file_bytes,
        file_compression_ratio: report.sizes.fp32_bytes as f64 / file_bytes.max(1) as f64,
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| QuantError::InvalidArtifact {
        reason: format!("manifest: {e}"),
    })?;
    let manifest_path = dir.join(MANIFEST_FILE);
    std::fs::write(&manifest_path, &text).map_err(|e| QuantError::write(&manifest_path, e))?;
    let manifest_sha256 = hex(&Sha256::digest(&text));
    Ok((manifest, manifest_sha256, file_bytes + text.len() as u64))
}

fn serialize_weights(
    original: &ModelWeights,
    tensors: &BTreeMap<String, QuantizedTensor>,
) -> Result<Vec<u8>, QuantError> {
    // Owned byte buffers first; the views borrow them.
    let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in &original.tensors {
        match tensors.get(name) {
            Some(q) => {
                let codes = pack(&q.codes, q.spec.bits);
                buffers.push((
                    format!("{name}.qweight"),
                    Dtype::U8,
                    vec![codes.len()],
                    codes,
                ));
                let scales: Vec<u8> = q.scales.iter().flat_map(|s| s.to_le_bytes()).collect();
                let groups = q.scales.len() / q.rows.max(1);
                let scale_shape = if q.scales.len() == 1 {
                    vec![1, 1]
                } else {
                    vec![q.rows, groups]
                };
                buffers.push((format!("{name}.scales"), Dtype::F16, scale_shape, scales));
                if !q.spec.symmetric {
                    let zeros = pack(&q.zeros, q.spec.bits);
                    buffers.push((
                        format!("{name}.qzeros"),
                        Dtype::U8,
                        vec![zeros.len()],
                        zeros,
                    ));
                }
            }
            None => {
                let bytes: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                buffers.push((name.clone(), Dtype::F32, t.shape.clone(), bytes));
            }
        }
    }
    for (name, raw) in &original.raw {
        buffers.push((
            name.clone(),
            raw.dtype,
            raw.shape.clone(),
            raw.bytes.clone(),
        ));
    }
    let views: Result<Vec<(String, TensorView<'_>)>, _> = buffers
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect();
    let views = views.map_err(|e| QuantError::InvalidArtifact {
        reason: format!("building the weights file: {e}"),
    })?;
    let mut info = HashMap::new();
    info.insert("format".to_string(), FORMAT.to_string());
    safetensors::tensor::serialize(views, Some(info)).map_err(|e| QuantError::InvalidArtifact {
        reason: format!("serializing the weights file: {e}"),
    })
}

/// An artifact read back: its manifest, the quantized tensors and the dequantized weights.
pub struct LoadedArtifact {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Quantized tensors, unpacked.
    pub tensors: BTreeMap<String, QuantizedTensor>,
    /// All weights, quantized ones dequantized: the model that was evaluated.
    pub weights: ModelWeights,
}

/// Reads `dir`, checking every file against the manifest's sha256.
pub fn load_artifact(dir: &Path) -> Result<LoadedArtifact, QuantError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read(&manifest_path).map_err(|e| QuantError::io(&manifest_path, e))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| QuantError::InvalidArtifact {
            reason: format!("{}: {e}", manifest_path.display()),
        })?;
    if manifest.format != FORMAT {
        return Err(QuantError::InvalidArtifact {
            reason: format!("format {:?}, expected {FORMAT:?}", manifest.format),
        });
    }
    for (file, want) in &manifest.files {
        safe_name(file)?;
        let got = file_sha256(&dir.join(file))?;
        if &got != want {
            return Err(QuantError::InvalidArtifact {
                reason: format!("{file}: sha256 {got} does not match the manifest's {want}"),
            });
        }
    }
    let weights_path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights_path).map_err(|e| QuantError::io(&weights_path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| QuantError::InvalidArtifact {
        reason: format!("{}: {e}", weights_path.display()),
    })?;
    let mut weights = ModelWeights::from_safetensors(&bytes)
        .map_err(|reason| QuantError::InvalidArtifact { reason })?;
    let mut tensors = BTreeMap::new();
    for (name, entry) in &manifest.tensors {
        let q = read_quantized(&file, name, entry)?;
        weights.tensors.remove(&format!("{name}.scales"));
        weights.raw.remove(&format!("{name}.qweight"));
        weights.raw.remove(&format!("{name}.qzeros"));
        weights.tensors.insert(name.clone(), q.dequantize());
        tensors.insert(name.clone(), q);
    }
    Ok(LoadedArtifact {
        dir: dir.to_path_buf(),
        manifest,
        tensors,
        weights,
    })
}

fn read_quantized(
    file: &SafeTensors<'_>,
    name: &str,
    entry: &TensorEntry,
) -> Result<QuantizedTensor, QuantError> {
    let invalid = |what: String| QuantError::InvalidArtifact {
        reason: format!("{name}: {what}"),
    };
    let [rows, cols] = entry.shape;
    entry.spec.validate()?;
    let mut q = QuantizedTensor::new(rows, cols, entry.spec);
    let get = |suffix: &str| {
        file.tensor(&format!("{name}.{suffix}"))
            .map_err(|e| invalid(format!("{suffix}: {e}")))
    };
    let codes = get("qweight")?;
    q.codes = unpack(codes.data(), entry.spec.bits, rows * cols)
        .ok_or_else(|| invalid("codes too short".into()))?;
    let scales = get("scales")?;
    if scales.dtype() != Dtype::F16 || scales.data().len() != q.scales.len() * 2 {
        return Err(invalid(format!(
            "scales: expected {} fp16 values",
            q.scales.len()
        )));
    }
    q.scales = scales
        .data()
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]))
        .collect();
    if !entry.spec.symmetric {
        let zeros = get("qzeros")?;
        q.zeros = unpack(zeros.data(), entry.spec.bits, q.scales.len())
            .ok_or_else(|| invalid("zero points too short".into()))?;
    }
    Ok(q)
}
