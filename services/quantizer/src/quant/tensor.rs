//! A quantized matrix in memory: one code per weight plus the grids. This is what GPTQ and RTN
//! produce, what the artifact packs, and what dequantizes back into the evaluated weights.

use half::f16;

use super::grid::{Grid, Grouping, QuantSpec};
use crate::model::HostTensor;

/// Codes and grids of one `[rows, cols]` matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedTensor {
    /// `[rows, cols]`.
    pub rows: usize,
    /// Input columns.
    pub cols: usize,
    /// How it was quantized.
    pub spec: QuantSpec,
    /// One code per weight, row-major, each `< 2^bits`.
    pub codes: Vec<u8>,
    /// fp16 scales, `[rows, groups]` (`[1, 1]` per-tensor).
    pub scales: Vec<f16>,
    /// Integer zero points, same layout as `scales`; the sym grid's zero is implied.
    pub zeros: Vec<u8>,
}

impl QuantizedTensor {
    /// An empty tensor to fill group by group.
    pub fn new(rows: usize, cols: usize, spec: QuantSpec) -> Self {
        let grids = grid_count(rows, cols, spec.grouping);
        Self {
            rows,
            cols,
            spec,
            codes: vec![0; rows * cols],
            scales: vec![f16::ZERO; grids],
            zeros: vec![0; grids],
        }
    }

    /// Groups per row.
    pub fn groups_per_row(&self) -> usize {
        self.spec.grouping.groups_per_row(self.cols)
    }

    /// Index into `scales`/`zeros` of weight `(row, col)`.
    pub fn grid_index(&self, row: usize, col: usize) -> usize {
        match self.spec.grouping {
            Grouping::PerTensor => 0,
            grouping => row * self.groups_per_row() + col / grouping.group_cols(self.cols),
        }
    }

    /// Stores a grid at `index`.
    pub fn set_grid(&mut self, index: usize, grid: &Grid) {
        self.scales[index] = f16::from_f64(grid.scale);
        self.zeros[index] = grid.zero as u8;
    }

    /// The grid at `index`, as stored.
    pub fn grid(&self, index: usize) -> Grid {
        let zero = if self.spec.symmetric {
            f64::from(1u32 << (self.spec.bits - 1))
        } else {
            f64::from(self.zeros[index])
        };
        Grid {
            scale: self.scales[index].to_f64(),
            zero,
            maxq: f64::from(self.spec.maxq()),
        }
    }

    /// The weights this tensor stands for: `scale · (code − zero)` in f32, exactly what the
    /// evaluated model used.
    pub fn dequantize(&self) -> HostTensor {
        let mut data = Vec::with_capacity(self.rows * self.cols);
        for row in 0..self.rows {
            for col in 0..self.cols {
                let grid = self.grid(self.grid_index(row, col));
                let code = self.codes[row * self.cols + col];
                data.push(grid.scale as f32 * (f32::from(code) - grid.zero as f32));
            }
        }
        HostTensor::new(vec![self.rows, self.cols], data)
    }

    /// Packed size as the reference accounts it: codes, fp16 scales, zeros at the code width.
    pub fn accounted_bytes(&self) -> usize {
        let bits = usize::from(self.spec.bits);
        let grids = self.scales.len();
        let codes = self.rows * self.cols * bits / 8;
        let zeros = if self.spec.symmetric {
            0
        } else {
            grids * bits / 8
        };
        codes + grids * 2 + zeros
    }
}

fn grid_count(rows: usize, cols: usize, grouping: Grouping) -> usize {
    match grouping {
        Grouping::PerTensor => 1,
        g => rows * g.groups_per_row(cols),
    }
}
