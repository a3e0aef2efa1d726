//! Model weights on the host, by name, as f32: what the quantizer reads, rewrites and packs. The
//! burn encoder is built from these, so a quantized model is just a different set of weights.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::QuantError;

/// A host tensor: row-major values and a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor of `shape` holding `data`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// Rows of a 2-D tensor (its first dimension).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Columns of a 2-D tensor (its last dimension).
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
}

/// A tensor kept as raw bytes because it is not floating point (e.g. BERT's int64
/// `position_ids` buffer): carried into artifacts untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// safetensors dtype.
    pub dtype: Dtype,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Little-endian bytes as stored.
    pub bytes: Vec<u8>,
}

/// All tensors of a model file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelWeights {
    /// Floating-point tensors, converted to f32.
    pub tensors: BTreeMap<String, HostTensor>,
    /// Everything else, as stored.
    pub raw: BTreeMap<String, RawTensor>,
}

impl ModelWeights {
    /// Reads `path` (a `model.safetensors`).
    pub fn load(path: &Path) -> Result<Self, QuantError> {
        let bytes = std::fs::read(path).map_err(|e| QuantError::io(path, e))?;
        Self::from_safetensors(&bytes).map_err(|reason| QuantError::UnsupportedArchitecture {
            reason: format!("{}: {reason}", path.display()),
        })
    }

    /// Parses safetensors bytes; F32, F16 and BF16 tensors become f32, others stay raw.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, String> {
        let file = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let mut weights = ModelWeights::default();
        for (name, view) in file.tensors() {
            let shape = view.shape().to_vec();
            let data = view.data();
            let values: Option<Vec<f32>> = match view.dtype() {
                Dtype::F32 => Some(
                    data.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ),
                Dtype::F16 => Some(
                    data.chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                ),
                Dtype::BF16 => Some(
                    data.chunks_exact(2)
                        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                ),
                _ => None,
            };
            match values {
                Some(values) => {
                    weights.tensors.insert(name, HostTensor::new(shape, values));
                }
                None => {
                    weights.raw.insert(
                        name,
                        RawTensor {
                            dtype: view.dtype(),
                            shape,
                            bytes: data.to_vec(),
                        },
                    );
                }
            }
        }
        Ok(weights)
    }

    /// The tensor `name` with the expected shape, or an error naming it.
    pub fn expect(&self, name: &str, shape: &[usize]) -> Result<&HostTensor, QuantError> {
        let tensor = self
            .tensors
            .get(name)
            .ok_or_else(|| QuantError::UnsupportedArchitecture {
                reason: format!("tensor {name} is missing"),
            })?;
        if tensor.shape != shape {
            return Err(QuantError::UnsupportedArchitecture {
                reason: format!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    tensor.shape
                ),
            });
        }
        Ok(tensor)
    }

    /// Number of floating-point parameters (what an FP32 copy of the model stores).
    pub fn float_parameters(&self) -> usize {
        self.tensors.values().map(|t| t.data.len()).sum()
    }
}
