//! GPTQ (Frantar et al. 2022) for one Linear layer, following IST-DASLab's `fasterquant` and
//! AutoGPTQ 0.7.1: dead-input handling, act-order with static groups, dampening, the upper
//! Cholesky factor of H⁻¹, and lazy block updates. Runs in f64 like the reference.

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::triangular_inverse::invert_upper_triangular;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};

use super::grid::{Grid, Grouping, QuantSpec};
use super::tensor::QuantizedTensor;
use crate::error::QuantError;
use crate::model::HostTensor;

/// GPTQ knobs beyond the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptqOptions {
    /// Process input columns by decreasing Hessian diagonal (static groups keep the stored
    /// scales group-contiguous, so no group index is needed).
    pub act_order: bool,
    /// Dampening as a fraction of the mean Hessian diagonal.
    pub percdamp: f64,
    /// Columns per lazy batch update.
    pub block_size: usize,
}

impl Default for GptqOptions {
    fn default() -> Self {
        Self {
            act_order: true,
            percdamp: 0.01,
            block_size: 128,
        }
    }
}

/// `H = (2/N) Σ xᵀx` over `rows` (`[tokens, in]`, row-major). The product runs in f32 on the
/// lower triangle only (half the work of a full f64 product, which is what dominated GPTQ's
/// time); the result is mirrored and widened to f64 for the factorizations.
pub fn hessian(rows: &[f32], columns: usize) -> Mat<f64> {
    let tokens = rows.len() / columns.max(1);
    // Column-major [in, tokens] view of the row-major [tokens, in] activations = Xᵀ.
    let xt = MatRef::from_column_major_slice(rows, columns, tokens);
    let mut lower = Mat::<f32>::zeros(columns, columns);
    triangular::matmul(
        lower.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        xt,
        BlockStructure::Rectangular,
        xt.transpose(),
        BlockStructure::Rectangular,
        2.0 / tokens.max(1) as f32,
        Par::rayon(0),
    );
    Mat::<f64>::from_fn(columns, columns, |i, j| {
        let (r, c) = if i >= j { (i, j) } else { (j, i) };
        f64::from(lower[(r, c)])
    })
}

/// Quantizes `weight` (`[out, in]`) with GPTQ against the Hessian of its inputs.
pub fn quantize_gptq(
    weight: &HostTensor,
    hessian: &Mat<f64>,
    spec: QuantSpec,
    options: GptqOptions,
) -> Result<QuantizedTensor, QuantError> {
    let (rows, cols) = (weight.rows(), weight.cols());
    if hessian.nrows() != cols || hessian.ncols() != cols {
        return Err(QuantError::Numerical {
            reason: format!(
                "Hessian is {}x{}, weight has {cols} inputs",
                hessian.nrows(),
                hessian.ncols()
            ),
        });
    }
    let mut h = hessian.clone();
    // Column-major copy of W: column j (one input) is contiguous, as the sweep wants.
    let mut w = vec![0f64; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            w[c * rows + r] = f64::from(weight.data[r * cols + c]);
        }
    }
    // Dead inputs: never active in calibration, so their weights cannot matter.
    for c in 0..cols {
        if h[(c, c)] == 0.0 {
            h[(c, c)] = 1.0;
            w[c * rows..(c + 1) * rows].fill(0.0);
        }
    }
    // Grids: static groups (and per-channel rows) fitted on the original weights.
    let mut out = QuantizedTensor::new(rows, cols, spec);
    fit_grids(&mut out, &w, rows, cols);

    let perm: Vec<usize> = if options.act_order {
        let mut order: Vec<usize> = (0..cols).collect();
        order.sort_by(|&a, &b| h[(b, b)].total_cmp(&h[(a, a)]));
        order
    } else {
        (0..cols).collect()
    };
    let mut wp = vec![0f64; rows * cols];
    for (j, &c) in perm.iter().enumerate() {
        wp[j * rows..(j + 1) * rows].copy_from_slice(&w[c * rows..(c + 1) * rows]);
    }
    let mut hp = Mat::<f64>::from_fn(cols, cols, |i, j| h[(perm[i], perm[j])]);
    let damp = options.percdamp * (0..cols).map(|i| hp[(i, i)]).sum::<f64>() / cols as f64;
    for i in 0..cols {
        hp[(i, i)] += damp;
    }
    let upper = inverse_upper_cholesky(&hp)?;

    let block = options.block_size.max(1);
    let mut err_block = vec![0f64; rows * block];
    let mut column = vec![0f64; rows];
    for i1 in (0..cols).step_by(block) {
        let i2 = (i1 + block).min(cols);
        let width = i2 - i1;
        for j in i1..i2 {
            let original = perm[j];
            let d = upper[(j, j)];
            column.copy_from_slice(&wp[j * rows..(j + 1) * rows]);
            for (r, &value) in column.iter().enumerate() {
                let index = out.grid_index(r, original);
                let grid: Grid = out.grid(index);
                let code = grid.code(value);
                out.codes[r * cols + original] = code;
                err_block[(j - i1) * rows + r] = (value - grid.value(code)) / d;
            }
            let err = &err_block[(j - i1) * rows..(j - i1 + 1) * rows];
            for k in j + 1..i2 {
                let u = upper[(j, k)];
                if u == 0.0 {
                    continue;
                }
                for (x, e) in wp[k * rows..(k + 1) * rows].iter_mut().zip(err) {
                    *x -= e * u;
                }
            }
        }
        if i2 < cols {
            let rest = MatMut::from_column_major_slice_mut(&mut wp[i2 * rows..], rows, cols - i2);
            let errs = MatRef::from_column_major_slice(&err_block[..rows * width], rows, width);
            matmul(
                rest,
                Accum::Add,
                errs,
                upper.as_ref().submatrix(i1, i2, width, cols - i2),
                -1.0,
                Par::rayon(0),
            );
        }
    }
    Ok(out)
}

fn fit_grids(out: &mut QuantizedTensor, w: &[f64], rows: usize, cols: usize) {
    let spec = out.spec;
    match spec.grouping {
        Grouping::PerTensor => {
            let grid = spec.fit(w);
            out.set_grid(0, &grid);
        }
        grouping => {
            let g = grouping.group_cols(cols);
            for r in 0..rows {
                for start in (0..cols).step_by(g) {
                    let end = (start + g).min(cols);
                    let values: Vec<f64> = (start..end).map(|c| w[c * rows + r]).collect();
                    let grid = spec.fit(&values);
                    let index = out.grid_index(r, start);
                    out.set_grid(index, &grid);
                }
            }
        }
    }
}

/// `U` upper triangular with `UᵀU = H⁻¹`: the reference computes it as the upper Cholesky
/// factor of `cholesky_inverse(cholesky(H))`. Here one Cholesky of the reversed matrix gives
/// `H = R Rᵀ` with `R` upper triangular, so `U = R⁻¹` (the same unique factor) for one
/// factorization and one triangular inverse instead of two factorizations and an inverse.
fn inverse_upper_cholesky(h: &Mat<f64>) -> Result<Mat<f64>, QuantError> {
    let reversed = h.as_ref().reverse_rows_and_cols().to_owned();
    let factor = reversed
        .llt(Side::Lower)
        .map_err(|_| QuantError::Numerical {
            reason: "the damped Hessian is not positive definite (try more calibration data or more dampening)".into(),
        })?;
    let r = factor.L().reverse_rows_and_cols().to_owned();
    let mut u = Mat::<f64>::zeros(h.nrows(), h.ncols());
    invert_upper_triangular(u.as_mut(), r.as_ref(), Par::rayon(0));
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::rtn::quantize_rtn;

    /// Correlated inputs (so the Hessian matters) and a weight matrix.
    fn problem(tokens: usize, inputs: usize, outputs: usize) -> (Vec<f32>, HostTensor) {
        let mut state = 12345u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        let mut x = vec![0f32; tokens * inputs];
        for t in 0..tokens {
            let shared = next();
            for i in 0..inputs {
                let scale = 1.0 + (i % 7) as f64;
                x[t * inputs + i] = ((next() + 0.8 * shared) * scale) as f32;
            }
        }
        let w: Vec<f32> = (0..outputs * inputs).map(|_| next() as f32 * 0.2).collect();
        (x, HostTensor::new(vec![outputs, inputs], w))
    }

    fn output_error(x: &[f32], w: &HostTensor, q: &HostTensor) -> f64 {
        let inputs = w.cols();
        let mut num = 0.0;
        for row in x.chunks(inputs) {
            for o in 0..w.rows() {
                let wr = &w.data[o * inputs..(o + 1) * inputs];
                let qr = &q.data[o * inputs..(o + 1) * inputs];
                let d: f64 = row
                    .iter()
                    .zip(wr.iter().zip(qr))
                    .map(|(&xv, (&a, &b))| f64::from(xv) * f64::from(a - b))
                    .sum();
                num += d * d;
            }
        }
        num
    }

    #[test]
    fn gptq_beats_rtn_on_the_layer_output() {
        let (x, w) = problem(512, 64, 24);
        let h = hessian(&x, 64);
        for bits in [2u8, 3, 4, 8] {
            for (grouping, act_order) in [
                (Grouping::PerChannel, true),
                (Grouping::Group(16), true),
                (Grouping::Group(32), false),
            ] {
                let spec = QuantSpec {
                    bits,
                    grouping,
                    symmetric: false,
                    clip_search: false,
                };
                let options = GptqOptions {
                    act_order,
                    block_size: 16,
                    ..GptqOptions::default()
                };
                let gptq = quantize_gptq(&w, &h, spec, options).unwrap().dequantize();
                let rtn = quantize_rtn(&w, spec).dequantize();
                let (e_gptq, e_rtn) = (output_error(&x, &w, &gptq), output_error(&x, &w, &rtn));
                assert!(
                    e_gptq < e_rtn,
                    "{spec:?} act_order {act_order}: {e_gptq} vs {e_rtn}"
                );
            }
        }
    }

    #[test]
    fn block_size_changes_only_rounding() {
        let (x, w) = problem(256, 48, 8);
        let h = hessian(&x, 48);
        let spec = QuantSpec {
            bits: 4,
            grouping: Grouping::Group(16),
            symmetric: false,
            clip_search: false,
        };
        let run = |block_size| {
            let options = GptqOptions {
                block_size,
                ..GptqOptions::default()
            };
            quantize_gptq(&w, &h, spec, options).unwrap()
        };
        let (a, b) = (run(1), run(128));
        let differing = a.codes.iter().zip(&b.codes).filter(|(x, y)| x != y).count();
        assert!(differing <= a.codes.len() / 100, "{differing} codes differ");
    }

    #[test]
    fn dead_inputs_are_zeroed_and_shapes_checked() {
        let (mut x, w) = problem(128, 16, 4);
        for row in x.chunks_mut(16) {
            row[3] = 0.0;
        }
        let h = hessian(&x, 16);
        let spec = QuantSpec {
            bits: 4,
            grouping: Grouping::PerChannel,
            symmetric: false,
            clip_search: false,
        };
        let q = quantize_gptq(&w, &h, spec, GptqOptions::default())
            .unwrap()
            .dequantize();
        for r in 0..4 {
            assert_eq!(q.data[r * 16 + 3], 0.0);
        }
        let wrong = hessian(&x[..15 * 8], 15);
        assert!(quantize_gptq(&w, &wrong, spec, GptqOptions::default()).is_err());
    }
}
