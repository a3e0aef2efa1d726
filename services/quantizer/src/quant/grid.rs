//! The rounding grid of RTN and GPTQ: IST-DASLab's / AutoGPTQ's `quant.py` quantizer, so that
//! our figures are comparable with the published ones. Scales are rounded to fp16 *before*
//! codes are chosen, so the stored artifact reproduces the evaluated model exactly and GPTQ
//! compensates the scale rounding too.

use half::f16;
use serde::{Deserialize, Serialize};

use crate::error::QuantError;

/// Which weights share one scale (and zero point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "size")]
pub enum Grouping {
    /// One grid for the whole matrix.
    PerTensor,
    /// One grid per output row.
    PerChannel,
    /// One grid per output row and run of this many consecutive input columns.
    Group(usize),
}

impl Grouping {
    /// Columns per group for a matrix with `cols` columns (per-tensor counts as one group per
    /// row for indexing; its rows all share one grid).
    pub fn group_cols(self, cols: usize) -> usize {
        match self {
            Grouping::PerTensor | Grouping::PerChannel => cols,
            Grouping::Group(g) => g.min(cols).max(1),
        }
    }

    /// Number of groups per row.
    pub fn groups_per_row(self, cols: usize) -> usize {
        cols.div_ceil(self.group_cols(cols))
    }

    /// The group size as the job and manifest name it: absent for per-channel.
    pub fn as_group_size(self) -> Option<usize> {
        match self {
            Grouping::Group(g) => Some(g),
            _ => None,
        }
    }
}

/// Bits, grouping and symmetry: how a matrix is quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantSpec {
    /// Bits per code: 2 to 8.
    pub bits: u8,
    /// Scale sharing.
    pub grouping: Grouping,
    /// Symmetric (no zero point) or asymmetric (min/max with an integer zero point).
    pub symmetric: bool,
    /// Shrink each grid's range to the one minimising the rounding error (AutoGPTQ's `mse`
    /// option: clipping a few outliers buys finer steps for everything else).
    #[serde(default)]
    pub clip_search: bool,
}

/// Bit widths the quantizer supports.
pub const SUPPORTED_BITS: [u8; 4] = [2, 3, 4, 8];

impl QuantSpec {
    /// Checks the spec, naming the bad parameter.
    pub fn validate(&self) -> Result<(), QuantError> {
        if !SUPPORTED_BITS.contains(&self.bits) {
            return Err(QuantError::bad(format!(
                "bits = {}: supported widths are 8, 4, 3 and 2",
                self.bits
            )));
        }
        if let Grouping::Group(g) = self.grouping {
            if !(16..=4096).contains(&g) {
                return Err(QuantError::bad(format!(
                    "group_size = {g}: must be between 16 and 4096 (or absent for per-channel)"
                )));
            }
        }
        Ok(())
    }

    /// The grid of `values` under this spec.
    pub fn fit(&self, values: &[f64]) -> Grid {
        if self.clip_search {
            Grid::fit_clipped(values, self.bits, self.symmetric)
        } else {
            Grid::fit(values.iter().copied(), self.bits, self.symmetric)
        }
    }

    /// Largest code.
    pub fn maxq(&self) -> u32 {
        (1u32 << self.bits) - 1
    }
}

/// One `(scale, zero)` pair: `x̂ = scale · (q − zero)`, `q ∈ [0, maxq]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Step between codes, exactly representable in fp16.
    pub scale: f64,
    /// Code of 0.0 (an integer).
    pub zero: f64,
    /// Largest code.
    pub maxq: f64,
}

impl Grid {
    /// Fits the grid to `values` (the range always contains 0; the sym grid is centred on it).
    pub fn fit(values: impl Iterator<Item = f64>, bits: u8, symmetric: bool) -> Grid {
        let maxq = f64::from((1u32 << bits) - 1);
        let (mut xmin, mut xmax) = grid_range(values, symmetric);
        if xmin == 0.0 && xmax == 0.0 {
            xmin = -1.0;
            xmax = 1.0;
        }
        let scale = fp16_scale((xmax - xmin) / maxq);
        let zero = if symmetric {
            (maxq + 1.0) / 2.0
        } else {
            (-xmin / scale).round_ties_even()
        };
        Grid { scale, zero, maxq }
    }

    /// Like [`Grid::fit`], then shrinks the range by 1%, 2%, … 80% and keeps the grid with the
    /// smallest `Σ|x̂ − x|^2.4` (AutoGPTQ's `find_params(mse=True)`: norm 2.4, grid 100,
    /// maxshrink 0.8).
    pub fn fit_clipped(values: &[f64], bits: u8, symmetric: bool) -> Grid {
        const NORM: f64 = 2.4;
        const STEPS: usize = 100;
        const MAX_SHRINK: f64 = 0.8;
        let full = Grid::fit(values.iter().copied(), bits, symmetric);
        let (xmin, xmax) = grid_range(values.iter().copied(), symmetric);
        let error = |grid: &Grid| -> f64 {
            values
                .iter()
                .map(|&x| (grid.round(x) - x).abs().powf(NORM))
                .sum()
        };
        let mut best = full;
        let mut best_error = error(&full);
        if xmax - xmin <= 0.0 {
            return best;
        }
        let maxq = f64::from((1u32 << bits) - 1);
        for i in 1..(MAX_SHRINK * STEPS as f64) as usize {
            let p = 1.0 - i as f64 / STEPS as f64;
            let (lo, hi) = (p * xmin, p * xmax);
            let scale = fp16_scale((hi - lo) / maxq);
            let zero = if symmetric {
                (maxq + 1.0) / 2.0
            } else {
                (-lo / scale).round_ties_even()
            };
            let candidate = Grid { scale, zero, maxq };
            let e = error(&candidate);
            if e < best_error {
                best = candidate;
                best_error = e;
            }
        }
        best
    }

    /// Nearest code (ties to even, like `torch.round`).
    pub fn code(&self, x: f64) -> u8 {
        ((x / self.scale).round_ties_even() + self.zero).clamp(0.0, self.maxq) as u8
    }

    /// Value of a code.
    pub fn value(&self, code: u8) -> f64 {
        self.scale * (f64::from(code) - self.zero)
    }

    /// Rounds `x` onto the grid.
    pub fn round(&self, x: f64) -> f64 {
        self.value(self.code(x))
    }
}

/// The range a grid spans before any clipping: always containing 0, centred on it when
/// symmetric.
fn grid_range(values: impl Iterator<Item = f64>, symmetric: bool) -> (f64, f64) {
    let (mut xmin, mut xmax) = (0f64, 0f64);
    for v in values {
        xmin = xmin.min(v);
        xmax = xmax.max(v);
    }
    if symmetric {
        xmax = xmax.max(-xmin);
        if xmin < 0.0 {
            xmin = -xmax;
        }
    }
    (xmin, xmax)
}

/// Rounds a scale to fp16, keeping it positive and finite so division by it stays defined.
pub fn fp16_scale(scale: f64) -> f64 {
    let min = f16::from_bits(1).to_f64(); // smallest positive subnormal
    let rounded = f16::from_f64(scale.clamp(min, f16::MAX.to_f64())).to_f64();
    rounded.max(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asym_grid_spans_min_to_max_with_zero_exact() {
        let grid = Grid::fit([-1.0, 0.5, 3.0].into_iter(), 4, false);
        assert!((grid.scale - 4.0 / 15.0).abs() < 1e-3);
        assert_eq!(grid.zero, (1.0 / grid.scale).round_ties_even());
        assert_eq!(grid.round(0.0), 0.0);
        assert_eq!(grid.code(-100.0), 0);
        assert_eq!(grid.code(100.0), 15);
    }

    #[test]
    fn sym_grid_is_centred_and_keeps_the_all_positive_quirk() {
        let grid = Grid::fit([-2.0, 1.0].into_iter(), 4, true);
        assert_eq!(grid.zero, 8.0);
        assert!((grid.scale - 4.0 / 15.0).abs() < 1e-3);
        // All non-negative: xmin stays 0, so the top half of the range is clipped.
        let quirk = Grid::fit([0.5, 2.0].into_iter(), 4, true);
        assert!((quirk.scale - 2.0 / 15.0).abs() < 1e-3);
        assert!(quirk.round(2.0) < 1.01);
    }

    #[test]
    fn ties_round_to_even_and_scales_are_fp16() {
        let grid = Grid {
            scale: 1.0,
            zero: 0.0,
            maxq: 15.0,
        };
        assert_eq!(grid.code(2.5), 2);
        assert_eq!(grid.code(3.5), 4);
        let fitted = Grid::fit([-0.123_456_7, 0.7].into_iter(), 8, false);
        assert_eq!(f16::from_f64(fitted.scale).to_f64(), fitted.scale);
    }

    #[test]
    fn clip_search_never_does_worse_and_helps_with_outliers() {
        let mut values: Vec<f64> = (0..64)
            .map(|i| ((i * 37 % 64) as f64 / 64.0 - 0.5) * 0.1)
            .collect();
        values[5] = 1.0; // one outlier
        let sq = |g: &Grid| {
            values
                .iter()
                .map(|&x| (g.round(x) - x).powi(2))
                .sum::<f64>()
        };
        for bits in [2u8, 3, 4] {
            let plain = Grid::fit(values.iter().copied(), bits, false);
            let clipped = Grid::fit_clipped(&values, bits, false);
            assert!(clipped.scale < plain.scale, "{bits} bits: range shrunk");
            assert!(sq(&clipped) < sq(&plain), "{bits} bits");
        }
    }

    #[test]
    fn zero_input_gets_a_unit_range() {
        let grid = Grid::fit([0.0, 0.0].into_iter(), 2, false);
        assert_eq!(grid.round(0.0), 0.0);
        assert!(grid.scale > 0.0);
    }

    #[test]
    fn bad_specs_are_named() {
        let spec = QuantSpec {
            bits: 5,
            grouping: Grouping::PerChannel,
            symmetric: false,
            clip_search: false,
        };
        assert!(spec
            .validate()
            .unwrap_err()
            .to_string()
            .contains("bits = 5"));
        let spec = QuantSpec {
            bits: 4,
            grouping: Grouping::Group(7),
            symmetric: false,
            clip_search: false,
        };
        assert!(spec
            .validate()
            .unwrap_err()
            .to_string()
            .contains("group_size = 7"));
    }
}
