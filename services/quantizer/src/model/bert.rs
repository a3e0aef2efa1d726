//! The BERT encoder on burn (post-LayerNorm, exact erf GELU), split into the four steps GPTQ
//! needs to capture each Linear's input: attention context, attention block, intermediate,
//! output block. `forward` chains them; calibration calls them one at a time.

use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::BertConfig;
use super::layout::{detect_prefix, LinearId, LinearKind};
use super::weights::{HostTensor, ModelWeights};
use crate::error::QuantError;

/// A Linear layer: `y = x Wᵀ + b`, with `Wᵀ` kept as a transposed view of `[out, in]`.
#[derive(Clone)]
pub struct Linear {
    weight_t: Tensor<2>,
    bias: Tensor<1>,
}

impl Linear {
    fn new(weight: &HostTensor, bias: &HostTensor, device: &Device) -> Self {
        Self {
            weight_t: host_tensor_2d(weight, device).transpose(),
            bias: host_tensor_1d(bias, device),
        }
    }

    /// Applies the layer to `[tokens, in]` rows.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight_t.clone()) + self.bias.clone().unsqueeze::<2>()
    }
}

/// LayerNorm over the last dimension.
#[derive(Clone)]
pub struct LayerNorm {
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    fn new(gamma: &HostTensor, beta: &HostTensor, eps: f64, device: &Device) -> Self {
        Self {
            gamma: host_tensor_1d(gamma, device),
            beta: host_tensor_1d(beta, device),
            eps,
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let (var, mean) = x.clone().var_mean_bias(1);
        let normed = (x - mean) / (var + self.eps).sqrt();
        normed * self.gamma.clone().unsqueeze::<2>() + self.beta.clone().unsqueeze::<2>()
    }
}

/// One encoder layer.
#[derive(Clone)]
pub struct EncoderLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

/// A padded batch of token sequences.
pub struct Batch {
    /// Sequences in the batch.
    pub sequences: usize,
    /// Padded length.
    pub length: usize,
    /// 1 for a real token, 0 for padding, `[sequences * length]`.
    pub mask: Vec<f32>,
    ids: Tensor<1, Int>,
    positions: Tensor<1, Int>,
    additive_mask: Tensor<4>,
}

impl Batch {
    /// Pads `sequences` (token ids) to the longest one.
    pub fn new(sequences: &[Vec<u32>], device: &Device) -> Self {
        let length = sequences.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let count = sequences.len();
        let mut ids = vec![0i64; count * length];
        let mut positions = vec![0i64; count * length];
        let mut mask = vec![0f32; count * length];
        for (s, seq) in sequences.iter().enumerate() {
            for t in 0..length {
                positions[s * length + t] = t as i64;
            }
            for (t, &id) in seq.iter().enumerate() {
                ids[s * length + t] = i64::from(id);
                mask[s * length + t] = 1.0;
            }
        }
        // Masked keys get a large negative score, as transformers does with finfo.min.
        let additive: Vec<f32> = mask
            .iter()
            .map(|&m| if m > 0.0 { 0.0 } else { -1.0e30 })
            .collect();
        Self {
            sequences: count,
            length,
            ids: Tensor::from_data(TensorData::new(ids, [count * length]), device),
            positions: Tensor::from_data(TensorData::new(positions, [count * length]), device),
            additive_mask: Tensor::from_data(
                TensorData::new(additive, [count, 1, 1, length]),
                device,
            ),
            mask,
        }
    }

    /// Row indices (into `[sequences * length]`) of the real tokens.
    pub fn real_rows(&self) -> Vec<usize> {
        (0..self.mask.len())
            .filter(|&i| self.mask[i] > 0.0)
            .collect()
    }
}

impl EncoderLayer {
    /// Step 1: self-attention context (the input of the attention output projection).
    pub fn attention_context(&self, hidden: &Tensor<2>, batch: &Batch) -> Tensor<2> {
        let (b, t, h, d) = (batch.sequences, batch.length, self.heads, self.head_dim);
        let split = |x: Tensor<2>| x.reshape([b, t, h, d]).swap_dims(1, 2);
        let q = split(self.query.forward(hidden.clone()));
        let k = split(self.key.forward(hidden.clone()));
        let v = split(self.value.forward(hidden.clone()));
        let scores = q.matmul(k.swap_dims(2, 3)) / (d as f64).sqrt();
        let probs = softmax(scores + batch.additive_mask.clone(), 3);
        probs.matmul(v).swap_dims(1, 2).reshape([b * t, h * d])
    }

    /// Step 2: attention output projection, residual, LayerNorm (the intermediate's input).
    pub fn attention_block(&self, context: Tensor<2>, hidden: Tensor<2>) -> Tensor<2> {
        self.attention_norm
            .forward(self.attention_output.forward(context) + hidden)
    }

    /// Step 3: feed-forward expansion and GELU (the output projection's input).
    pub fn intermediate(&self, attended: &Tensor<2>) -> Tensor<2> {
        gelu(self.intermediate.forward(attended.clone()))
    }

    /// Step 4: feed-forward contraction, residual, LayerNorm (the next layer's input).
    pub fn output_block(&self, activated: Tensor<2>, attended: Tensor<2>) -> Tensor<2> {
        self.output_norm
            .forward(self.output.forward(activated) + attended)
    }

    /// The whole layer.
    pub fn forward(&self, hidden: Tensor<2>, batch: &Batch) -> Tensor<2> {
        let context = self.attention_context(&hidden, batch);
        let attended = self.attention_block(context, hidden);
        let activated = self.intermediate(&attended);
        self.output_block(activated, attended)
    }

    fn linear_mut(&mut self, kind: LinearKind) -> &mut Linear {
        match kind {
            LinearKind::Query => &mut self.query,
            LinearKind::Key => &mut self.key,
            LinearKind::Value => &mut self.value,
            LinearKind::AttentionOutput => &mut self.attention_output,
            LinearKind::Intermediate => &mut self.intermediate,
            LinearKind::Output => &mut self.output,
        }
    }
}

/// The encoder: embeddings and layers, on one device.
#[derive(Clone)]
pub struct Bert {
    word_embeddings: Tensor<2>,
    position_embeddings: Tensor<2>,
    token_type_row: Tensor<1>,
    embedding_norm: LayerNorm,
    /// Encoder layers, in order.
    pub layers: Vec<EncoderLayer>,
    config: BertConfig,
    prefix: &'static str,
    device: Device,
}

impl Bert {
    /// Builds the encoder from host weights, checking every tensor's presence and shape.
    pub fn new(
        config: &BertConfig,
        weights: &ModelWeights,
        device: &Device,
    ) -> Result<Self, QuantError> {
        let p = detect_prefix(weights.tensors.keys());
        let h = config.hidden_size;
        let get = |name: String, shape: &[usize]| weights.expect(&name, shape);
        let norm = |base: String| -> Result<LayerNorm, QuantError> {
            Ok(LayerNorm::new(
                get(format!("{base}.weight"), &[h])?,
                get(format!("{base}.bias"), &[h])?,
                config.layer_norm_eps,
                device,
            ))
        };
        let linear = |id: LinearId| -> Result<Linear, QuantError> {
            let (out, inp) = linear_shape(config, id.kind);
            Ok(Linear::new(
                get(id.weight_name(p), &[out, inp])?,
                get(id.bias_name(p), &[out])?,
                device,
            ))
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for layer in 0..config.num_hidden_layers {
            let id = |kind| LinearId { layer, kind };
            layers.push(EncoderLayer {
                query: linear(id(LinearKind::Query))?,
                key: linear(id(LinearKind::Key))?,
                value: linear(id(LinearKind::Value))?,
                attention_output: linear(id(LinearKind::AttentionOutput))?,
                attention_norm: norm(format!(
                    "{p}encoder.layer.{layer}.attention.output.LayerNorm"
                ))?,
                intermediate: linear(id(LinearKind::Intermediate))?,
                output: linear(id(LinearKind::Output))?,
                output_norm: norm(format!("{p}encoder.layer.{layer}.output.LayerNorm"))?,
                heads: config.num_attention_heads,
                head_dim: config.head_dim(),
            });
        }
        let token_types = get(
            format!("{p}embeddings.token_type_embeddings.weight"),
            &[config.type_vocab_size, h],
        )?;
        Ok(Self {
            word_embeddings: host_tensor_2d(
                get(
                    format!("{p}embeddings.word_embeddings.weight"),
                    &[config.vocab_size, h],
                )?,
                device,
            ),
            position_embeddings: host_tensor_2d(
                get(
                    format!("{p}embeddings.position_embeddings.weight"),
                    &[config.max_position_embeddings, h],
                )?,
                device,
            ),
            // token_type_ids are all 0 for single sentences.
            token_type_row: Tensor::from_data(
                TensorData::new(token_types.data[..h].to_vec(), [h]),
                device,
            ),
            embedding_norm: norm(format!("{p}embeddings.LayerNorm"))?,
            layers,
            config: config.clone(),
            prefix: p,
            device: device.clone(),
        })
    }

    /// The configuration the encoder was built from.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Name prefix of the checkpoint (`""` or `"bert."`).
    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// The device the encoder runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Replaces a Linear's weight (e.g. by its dequantized version); the bias stays.
    pub fn set_linear_weight(&mut self, id: LinearId, weight: &HostTensor) {
        let tensor = host_tensor_2d(weight, &self.device).transpose();
        self.layers[id.layer].linear_mut(id.kind).weight_t = tensor;
    }

    /// Replaces the word-embedding matrix.
    pub fn set_word_embeddings(&mut self, weight: &HostTensor) {
        self.word_embeddings = host_tensor_2d(weight, &self.device);
    }

    /// Replaces the position-embedding matrix.
    pub fn set_position_embeddings(&mut self, weight: &HostTensor) {
        self.position_embeddings = host_tensor_2d(weight, &self.device);
    }

    /// Embedding output: word + position + token type, LayerNorm. `[sequences * length, hidden]`.
    pub fn embed(&self, batch: &Batch) -> Tensor<2> {
        let words = self.word_embeddings.clone().select(0, batch.ids.clone());
        let positions = self
            .position_embeddings
            .clone()
            .select(0, batch.positions.clone());
        let summed = words + positions + self.token_type_row.clone().unsqueeze::<2>();
        self.embedding_norm.forward(summed)
    }

    /// Last hidden state of every token.
    pub fn hidden_states(&self, batch: &Batch) -> Tensor<2> {
        let mut hidden = self.embed(batch);
        for layer in &self.layers {
            hidden = layer.forward(hidden, batch);
        }
        hidden
    }

    /// Sentence embeddings: mean over real tokens ([CLS]/[SEP] included), L2-normalised.
    pub fn embed_sentences(&self, batch: &Batch) -> Vec<Vec<f32>> {
        let hidden = to_host(self.hidden_states(batch));
        mean_pool_normalize(&hidden, batch, self.config.hidden_size)
    }
}

/// Sentence embeddings of token sequences, in batches of `batch_size` sorted by length (which
/// changes nothing but the padding work), returned in input order.
pub fn encode_sequences(bert: &Bert, sequences: &[Vec<u32>], batch_size: usize) -> Vec<Vec<f32>> {
    let mut order: Vec<usize> = (0..sequences.len()).collect();
    order.sort_by_key(|&i| sequences[i].len());
    let mut out = vec![Vec::new(); sequences.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let seqs: Vec<Vec<u32>> = chunk.iter().map(|&i| sequences[i].clone()).collect();
        let batch = Batch::new(&seqs, bert.device());
        for (&i, emb) in chunk.iter().zip(bert.embed_sentences(&batch)) {
            out[i] = emb;
        }
    }
    out
}

/// `u = Σ m_t h_t / max(Σ m_t, 1e-9)`, then `u / max(‖u‖, 1e-12)`.
pub fn mean_pool_normalize(hidden: &[f32], batch: &Batch, width: usize) -> Vec<Vec<f32>> {
    (0..batch.sequences)
        .map(|s| {
            let mut sum = vec![0f64; width];
            let mut count = 0f64;
            for t in 0..batch.length {
                let row = s * batch.length + t;
                let m = f64::from(batch.mask[row]);
                if m == 0.0 {
                    continue;
                }
                count += m;
                for (acc, &v) in sum.iter_mut().zip(&hidden[row * width..(row + 1) * width]) {
                    *acc += m * f64::from(v);
                }
            }
            let count = count.max(1e-9);
            let pooled: Vec<f64> = sum.iter().map(|v| v / count).collect();
            let norm = pooled.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            pooled.iter().map(|v| (v / norm) as f32).collect()
        })
        .collect()
}

/// `[out, in]` of a Linear.
pub fn linear_shape(config: &BertConfig, kind: LinearKind) -> (usize, usize) {
    let (h, f) = (config.hidden_size, config.intermediate_size);
    match kind {
        LinearKind::Intermediate => (f, h),
        LinearKind::Output => (h, f),
        _ => (h, h),
    }
}

/// A tensor's values on the host.
pub fn to_host<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    // Float tensors built by this module are f32; conversion cannot fail for them.
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

fn host_tensor_2d(t: &HostTensor, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(t.data.clone(), [t.rows(), t.cols()]),
        device,
    )
}

fn host_tensor_1d(t: &HostTensor, device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(t.data.clone(), [t.data.len()]), device)
}
