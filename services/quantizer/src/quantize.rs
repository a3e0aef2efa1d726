//! Whole-model quantization: which tensors, which method, in which order. GPTQ runs the
//! encoder layer by layer and, inside a layer, step by step ("true-sequential"), so every
//! Hessian comes from the inputs the already-quantized prefix produces.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::calib::{activations_hessian, CalibrationSet};
use crate::error::QuantError;
use crate::model::layout::word_embeddings_name;
use crate::model::{Bert, BertConfig, HostTensor, LinearId, LinearKind, ModelWeights};
use crate::quant::{
    quantize_gptq, quantize_rtn, GptqOptions, Grouping, QuantSpec, QuantizedTensor,
};

/// Rounding method of the Linear weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Round-to-nearest.
    Rtn,
    /// GPTQ.
    Gptq,
}

/// Everything that decides the quantized weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantizePlan {
    /// Method for the Linear weights.
    pub method: Method,
    /// Grid of the Linear weights.
    pub spec: QuantSpec,
    /// GPTQ column order (ignored by RTN).
    pub act_order: bool,
    /// Whole-model mode: also quantize the word embeddings at this width (groups of 128,
    /// asymmetric), the position embeddings at 8 bits, and the pooler (unused by mean-pooled
    /// sentence embeddings) with RTN on the Linear grid. The word embeddings alone hold half
    /// of MiniLM's parameters, so whole-model compression needs this.
    pub embedding_bits: Option<u8>,
}

impl QuantizePlan {
    /// Checks every parameter, naming the bad one.
    pub fn validate(&self) -> Result<(), QuantError> {
        self.spec.validate()?;
        if let Some(bits) = self.embedding_bits {
            self.embedding_spec(bits).validate()?;
        }
        Ok(())
    }

    /// Word embeddings: groups of 128 along the row, asymmetric (a per-row symmetric grid
    /// costs 0.004 mean cosine more at 4 bits for 0.2 MB less).
    fn embedding_spec(&self, bits: u8) -> QuantSpec {
        QuantSpec {
            bits,
            grouping: Grouping::Group(128),
            symmetric: false,
            clip_search: self.spec.clip_search,
        }
    }

    /// Position embeddings: 8 bits per row, symmetric (they are small; 8 bits is lossless in
    /// practice).
    fn position_spec(&self) -> QuantSpec {
        QuantSpec {
            bits: 8,
            grouping: Grouping::PerChannel,
            symmetric: true,
            clip_search: false,
        }
    }

    /// A short tag such as `gptq-int4-g128-asym`.
    pub fn tag(&self) -> String {
        let method = match self.method {
            Method::Rtn => "rtn",
            Method::Gptq => "gptq",
        };
        let group = match self.spec.grouping {
            Grouping::PerTensor => "pt".to_string(),
            Grouping::PerChannel => "pc".to_string(),
            Grouping::Group(g) => format!("g{g}"),
        };
        let sym = if self.spec.symmetric { "sym" } else { "asym" };
        let mut tag = format!("{method}-int{}-{group}-{sym}", self.spec.bits);
        if self.spec.clip_search {
            tag.push_str("-clip");
        }
        if let Some(bits) = self.embedding_bits {
            tag.push_str(&format!("+emb-int{bits}"));
        }
        tag
    }
}

/// One finished tensor, for progress displays and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDone {
    /// Tensors finished so far (this one included).
    pub done: usize,
    /// Tensors to quantize in all.
    pub total: usize,
    /// Its checkpoint name.
    pub name: String,
}

/// The result: codes and grids by weight name, and the dequantized model they stand for.
pub struct QuantizedModel {
    /// The plan it was made with.
    pub plan: QuantizePlan,
    /// Quantized tensors by checkpoint name.
    pub tensors: BTreeMap<String, QuantizedTensor>,
    /// The full set of weights with every quantized tensor replaced by its dequantized value:
    /// exactly what evaluation runs and what loading the artifact gives back.
    pub weights: ModelWeights,
}

/// Quantizes `weights` following `plan`; GPTQ needs `calibration`.
pub fn quantize_model(
    config: &BertConfig,
    weights: &ModelWeights,
    plan: &QuantizePlan,
    calibration: Option<&CalibrationSet>,
    device: &Device,
    progress: &mut dyn FnMut(TensorDone),
) -> Result<QuantizedModel, QuantError> {
    plan.validate()?;
    let mut bert = Bert::new(config, weights, device)?;
    let prefix = bert.prefix();
    let linears = LinearId::all(config.num_hidden_layers);
    let pooler = format!("{prefix}pooler.dense.weight");
    let has_pooler = weights.tensors.contains_key(&pooler);
    let total = linears.len()
        + if plan.embedding_bits.is_some() {
            2 + usize::from(has_pooler)
        } else {
            0
        };
    let mut out = QuantizedModel {
        plan: *plan,
        tensors: BTreeMap::new(),
        weights: weights.clone(),
    };
    let mut done = 0;
    let mut finish = |out: &mut QuantizedModel, name: String, q: QuantizedTensor| -> HostTensor {
        let deq = q.dequantize();
        out.weights.tensors.insert(name.clone(), deq.clone());
        out.tensors.insert(name.clone(), q);
        done += 1;
        progress(TensorDone { done, total, name });
        deq
    };
    // Embeddings first: GPTQ then sees (and compensates) their rounding.
    if let Some(bits) = plan.embedding_bits {
        let h = config.hidden_size;
        let name = word_embeddings_name(prefix);
        let words = weights.expect(&name, &[config.vocab_size, h])?;
        let deq = finish(
            &mut out,
            name,
            quantize_rtn(words, plan.embedding_spec(bits)),
        );
        bert.set_word_embeddings(&deq);
        let name = format!("{prefix}embeddings.position_embeddings.weight");
        let positions = weights.expect(&name, &[config.max_position_embeddings, h])?;
        let deq = finish(
            &mut out,
            name,
            quantize_rtn(positions, plan.position_spec()),
        );
        bert.set_position_embeddings(&deq);
        if has_pooler {
            let weight = weights.expect(&pooler, &[h, h])?;
            finish(&mut out, pooler.clone(), quantize_rtn(weight, plan.spec));
        }
    }
    match plan.method {
        Method::Rtn => {
            for id in linears {
                let name = id.weight_name(prefix);
                let q = quantize_rtn(&weights.tensors[&name], plan.spec);
                finish(&mut out, name, q);
            }
        }
        Method::Gptq => {
            let calibration =
                calibration.ok_or_else(|| QuantError::bad("GPTQ needs a calibration set"))?;
            let options = GptqOptions {
                act_order: plan.act_order,
                ..GptqOptions::default()
            };
            let mut gptq =
                |out: &mut QuantizedModel, bert: &mut Bert, id: LinearId, h: &faer::Mat<f64>| {
                    let name = id.weight_name(prefix);
                    let q = quantize_gptq(&weights.tensors[&name], h, plan.spec, options)?;
                    let deq = finish(out, name, q);
                    bert.set_linear_weight(id, &deq);
                    Ok::<(), QuantError>(())
                };
            let batches = &calibration.batches;
            let mut hidden: Vec<Tensor<2>> = batches.iter().map(|b| bert.embed(b)).collect();
            for layer in 0..config.num_hidden_layers {
                let id = |kind| LinearId { layer, kind };
                let h = activations_hessian(&hidden, calibration);
                for kind in [LinearKind::Query, LinearKind::Key, LinearKind::Value] {
                    gptq(&mut out, &mut bert, id(kind), &h)?;
                }
                let contexts: Vec<Tensor<2>> = hidden
                    .iter()
                    .zip(batches)
                    .map(|(x, b)| bert.layers[layer].attention_context(x, b))
                    .collect();
                let h = activations_hessian(&contexts, calibration);
                gptq(&mut out, &mut bert, id(LinearKind::AttentionOutput), &h)?;
                let attended: Vec<Tensor<2>> = contexts
                    .into_iter()
                    .zip(hidden)
                    .map(|(c, x)| bert.layers[layer].attention_block(c, x))
                    .collect();
                let h = activations_hessian(&attended, calibration);
                gptq(&mut out, &mut bert, id(LinearKind::Intermediate), &h)?;
                let activated: Vec<Tensor<2>> = attended
                    .iter()
                    .map(|a| bert.layers[layer].intermediate(a))
                    .collect();
                let h = activations_hessian(&activated, calibration);
                gptq(&mut out, &mut bert, id(LinearKind::Output), &h)?;
                hidden = activated
                    .into_iter()
                    .zip(attended)
                    .map(|(x, a)| bert.layers[layer].output_block(x, a))
                    .collect();
            }
        }
    }
    Ok(out)
}
