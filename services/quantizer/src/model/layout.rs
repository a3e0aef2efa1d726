//! Names of the BERT tensors: one place that knows the checkpoint layout, shared by the encoder,
//! the quantizer and the artifact writer.

/// One of the six Linear layers of a BERT encoder layer, in the order GPTQ quantizes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinearKind {
    /// Attention query projection.
    Query,
    /// Attention key projection.
    Key,
    /// Attention value projection.
    Value,
    /// Attention output projection.
    AttentionOutput,
    /// Feed-forward expansion.
    Intermediate,
    /// Feed-forward contraction.
    Output,
}

impl LinearKind {
    /// All six, in forward order.
    pub const ALL: [LinearKind; 6] = [
        LinearKind::Query,
        LinearKind::Key,
        LinearKind::Value,
        LinearKind::AttentionOutput,
        LinearKind::Intermediate,
        LinearKind::Output,
    ];

    /// Path of the module inside `encoder.layer.{i}`.
    pub fn module(self) -> &'static str {
        match self {
            LinearKind::Query => "attention.self.query",
            LinearKind::Key => "attention.self.key",
            LinearKind::Value => "attention.self.value",
            LinearKind::AttentionOutput => "attention.output.dense",
            LinearKind::Intermediate => "intermediate.dense",
            LinearKind::Output => "output.dense",
        }
    }
}

/// A Linear layer of the encoder: layer index and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinearId {
    /// Encoder layer, from 0.
    pub layer: usize,
    /// Which Linear of the layer.
    pub kind: LinearKind,
}

impl LinearId {
    /// Checkpoint name of the weight, e.g. `encoder.layer.0.attention.self.query.weight`.
    pub fn weight_name(self, prefix: &str) -> String {
        format!(
            "{prefix}encoder.layer.{}.{}.weight",
            self.layer,
            self.kind.module()
        )
    }

    /// Checkpoint name of the bias.
    pub fn bias_name(self, prefix: &str) -> String {
        format!(
            "{prefix}encoder.layer.{}.{}.bias",
            self.layer,
            self.kind.module()
        )
    }

    /// Every Linear of a `layers`-layer encoder, in forward order.
    pub fn all(layers: usize) -> Vec<LinearId> {
        (0..layers)
            .flat_map(|layer| LinearKind::ALL.map(|kind| LinearId { layer, kind }))
            .collect()
    }
}

/// The word-embedding matrix, which the quantizer may also compress.
pub fn word_embeddings_name(prefix: &str) -> String {
    format!("{prefix}embeddings.word_embeddings.weight")
}

/// Checkpoints exported from `BertForX` prefix every name with `bert.`; plain `BertModel` ones
/// do not. Returns the prefix the weights use.
pub fn detect_prefix<'a>(names: impl IntoIterator<Item = &'a String>) -> &'static str {
    let bert = word_embeddings_name("bert.");
    if names.into_iter().any(|n| *n == bert) {
        "bert."
    } else {
        ""
    }
}
