//! Weight quantization: grids, round-to-nearest, GPTQ, bit packing.

pub mod gptq;
pub mod grid;
pub mod pack;
pub mod rtn;
pub mod tensor;

pub use gptq::{hessian, quantize_gptq, GptqOptions};
pub use grid::{Grid, Grouping, QuantSpec};
pub use rtn::quantize_rtn;
pub use tensor::QuantizedTensor;
