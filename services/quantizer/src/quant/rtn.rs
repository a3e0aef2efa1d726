//! Round-to-nearest: every weight snapped to its group's grid, fitted on the original weights.

use super::grid::{Grouping, QuantSpec};
use super::tensor::QuantizedTensor;
use crate::model::HostTensor;

/// Quantizes a `[rows, cols]` matrix with RTN.
pub fn quantize_rtn(weight: &HostTensor, spec: QuantSpec) -> QuantizedTensor {
    let (rows, cols) = (weight.rows(), weight.cols());
    let mut q = QuantizedTensor::new(rows, cols, spec);
    let fit = |values: &[f32]| {
        let values: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        spec.fit(&values)
    };
    if spec.grouping == Grouping::PerTensor {
        let grid = fit(&weight.data);
        q.set_grid(0, &grid);
    } else {
        let g = spec.grouping.group_cols(cols);
        for row in 0..rows {
            for start in (0..cols).step_by(g) {
                let end = (start + g).min(cols);
                let grid = fit(&weight.data[row * cols + start..row * cols + end]);
                q.set_grid(q.grid_index(row, start), &grid);
            }
        }
    }
    for row in 0..rows {
        for col in 0..cols {
            let grid = q.grid(q.grid_index(row, col));
            q.codes[row * cols + col] = grid.code(f64::from(weight.data[row * cols + col]));
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize) -> HostTensor {
        let data = (0..rows * cols)
            .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.2)
            .collect();
        HostTensor::new(vec![rows, cols], data)
    }

    fn max_error(a: &HostTensor, b: &HostTensor) -> f32 {
        a.data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn error_is_at_most_half_a_step_and_shrinks_with_bits() {
        let w = matrix(8, 64);
        let mut last = f32::INFINITY;
        for bits in [2, 3, 4, 8] {
            for grouping in [
                Grouping::PerTensor,
                Grouping::PerChannel,
                Grouping::Group(16),
            ] {
                for symmetric in [false, true] {
                    let spec = QuantSpec {
                        bits,
                        grouping,
                        symmetric,
                        clip_search: false,
                    };
                    let q = quantize_rtn(&w, spec);
                    assert!(q.codes.iter().all(|&c| u32::from(c) <= spec.maxq()));
                    let deq = q.dequantize();
                    let worst_step = q.scales.iter().map(|s| s.to_f32()).fold(0.0, f32::max);
                    // Half a step, plus what rounding the scale to fp16 (relative 2^-11) moves
                    // the outermost code.
                    let fp16_slack = spec.maxq() as f32 * 2f32.powi(-12);
                    let bound = worst_step * (0.5 + fp16_slack) + 1e-6;
                    assert!(max_error(&w, &deq) <= bound, "{spec:?}");
                }
            }
            let spec = QuantSpec {
                bits,
                grouping: Grouping::Group(16),
                symmetric: false,
                clip_search: false,
            };
            let err = max_error(&w, &quantize_rtn(&w, spec).dequantize());
            assert!(err < last);
            last = err;
        }
    }

    #[test]
    fn smaller_groups_fit_better() {
        let w = matrix(16, 128);
        let err = |g| {
            let spec = QuantSpec {
                bits: 3,
                grouping: g,
                symmetric: false,
                clip_search: false,
            };
            let deq = quantize_rtn(&w, spec).dequantize();
            w.data
                .iter()
                .zip(&deq.data)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
        };
        assert!(err(Grouping::Group(16)) < err(Grouping::PerChannel));
        assert!(err(Grouping::PerChannel) <= err(Grouping::PerTensor));
    }
}
