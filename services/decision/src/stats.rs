//! The hypothesis tests decisions rest on, one-sided in the direction that matters ("worse"),
//! on top of `statrs` distributions.
//!
//! Every function returns `None` when the data cannot support a test (too few samples, no
//! calls), so callers treat "no evidence" as "no decision" rather than guessing.

use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal, StudentsT};

/// Outcome of a one-sided test: its statistic and p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    /// Test statistic (z or t); infinite when the samples have no variance.
    pub statistic: f64,
    /// One-sided p-value.
    pub p_value: f64,
}

impl TestResult {
    /// Whether the alternative is accepted at level `alpha`.
    pub fn significant(&self, alpha: f64) -> bool {
        self.p_value < alpha
    }

    /// The statistic as evidence: `None` when infinite (JSON has no infinity).
    pub fn finite_statistic(&self) -> Option<f64> {
        self.statistic.is_finite().then_some(self.statistic)
    }
}

fn standard_normal_sf(z: f64) -> Option<f64> {
    let n = Normal::new(0.0, 1.0).ok()?;
    Some(n.sf(z))
}

/// Sample mean.
pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Unbiased sample variance (n − 1).
pub fn variance(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    Some(xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64)
}

/// Pooled two-proportion z-test of H1: p₂ > p₁ (`x` successes out of `n` trials in each group).
/// `None` when a group is empty or the pooled proportion is 0 or 1 (no variance, no evidence).
pub fn two_proportion_z_greater(x1: i64, n1: i64, x2: i64, n2: i64) -> Option<TestResult> {
    if n1 <= 0 || n2 <= 0 || x1 < 0 || x2 < 0 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1f + n2f);
    if pooled <= 0.0 || pooled >= 1.0 {
        return None;
    }
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    let z = (x2 as f64 / n2f - x1 as f64 / n1f) / se;
    Some(TestResult {
        statistic: z,
        p_value: standard_normal_sf(z)?,
    })
}

/// Welch's t-test of H1: mean(y) − mean(x) > `delta` (unequal variances, Welch–Satterthwaite
/// degrees of freedom). `None` with fewer than two samples in a group. When both groups have
/// zero variance the difference is certain: p = 0 if it exceeds `delta`, else 1.
pub fn welch_t_greater(x: &[f64], y: &[f64], delta: f64) -> Option<TestResult> {
    let (mx, my) = (mean(x)?, mean(y)?);
    let (vx, vy) = (variance(x)?, variance(y)?);
    let (nx, ny) = (x.len() as f64, y.len() as f64);
    let diff = my - mx - delta;
    let se2 = vx / nx + vy / ny;
    if se2 <= 0.0 {
        return Some(if diff > 0.0 {
            TestResult {
                statistic: f64::INFINITY,
                p_value: 0.0,
            }
        } else {
            TestResult {
                statistic: if diff < 0.0 { f64::NEG_INFINITY } else { 0.0 },
                p_value: 1.0,
            }
        });
    }
    let t = diff / se2.sqrt();
    let df = se2.powi(2) / ((vx / nx).powi(2) / (nx - 1.0) + (vy / ny).powi(2) / (ny - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some(TestResult {
        statistic: t,
        p_value: dist.sf(t),
    })
}

/// One-sample t-test of H1: mean(xs) > `target`. `None` with fewer than two samples; with zero
/// variance, p = 0 if the mean exceeds the target, else 1.
pub fn one_sample_t_greater(xs: &[f64], target: f64) -> Option<TestResult> {
    let m = mean(xs)?;
    let v = variance(xs)?;
    let n = xs.len() as f64;
    let diff = m - target;
    if v <= 0.0 {
        return Some(TestResult {
            statistic: if diff > 0.0 { f64::INFINITY } else { 0.0 },
            p_value: if diff > 0.0 { 0.0 } else { 1.0 },
        });
    }
    let t = diff / (v / n).sqrt();
    let dist = StudentsT::new(0.0, 1.0, n - 1.0).ok()?;
    Some(TestResult {
        statistic: t,
        p_value: dist.sf(t),
    })
}

/// Exact one-sided binomial test of H1: rate > `p0` for `x` failures in `n` calls; the statistic
/// is the normal-approximation z, reported for readability. `None` without calls or with `p0`
/// outside (0, 1).
pub fn binomial_greater(x: i64, n: i64, p0: f64) -> Option<TestResult> {
    if n <= 0 || x < 0 || x > n || !(p0 > 0.0 && p0 < 1.0) {
        return None;
    }
    let dist = Binomial::new(p0, n as u64).ok()?;
    // P(X >= x) = P(X > x - 1).
    let p_value = if x == 0 { 1.0 } else { dist.sf((x - 1) as u64) };
    let nf = n as f64;
    let z = (x as f64 / nf - p0) / (p0 * (1.0 - p0) / nf).sqrt();
    Some(TestResult {
        statistic: z,
        p_value: p_value.clamp(0.0, 1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_proportion_detects_increase_only() {
        let up = two_proportion_z_greater(10, 1000, 60, 1000).unwrap();
        assert!(up.significant(0.01), "{up:?}");
        let same = two_proportion_z_greater(10, 1000, 11, 1000).unwrap();
        assert!(!same.significant(0.01));
        let down = two_proportion_z_greater(60, 1000, 10, 1000).unwrap();
        assert!(down.p_value > 0.99);
        assert!(two_proportion_z_greater(0, 100, 0, 100).is_none());
        assert!(two_proportion_z_greater(0, 0, 1, 10).is_none());
    }

    #[test]
    fn welch_matches_reference() {
        // x = [1,2,3,4,5], y = [3,4,5,6,8]: t = 2.2 / sqrt(2.5/5 + 3.7/5) = 1.97566,
        // df = 7.711, one-sided p = 0.04248 (numerical integration of the t density).
        let r = welch_t_greater(&[1., 2., 3., 4., 5.], &[3., 4., 5., 6., 8.], 0.0).unwrap();
        assert!((r.statistic - 1.97566).abs() < 1e-4, "{r:?}");
        assert!((r.p_value - 0.04248).abs() < 1e-4, "{r:?}");
        assert!(welch_t_greater(&[1.0], &[2.0, 3.0], 0.0).is_none());
        let flat = welch_t_greater(&[1.0, 1.0], &[2.0, 2.0], 0.0).unwrap();
        assert_eq!(flat.p_value, 0.0);
        assert_eq!(flat.finite_statistic(), None);
        let flat = welch_t_greater(&[1.0, 1.0], &[2.0, 2.0], 1.5).unwrap();
        assert_eq!(flat.p_value, 1.0);
    }

    #[test]
    fn binomial_exact_tail() {
        // P(X >= 3 | n = 10, p = 0.1) = 0.0702.
        let r = binomial_greater(3, 10, 0.1).unwrap();
        assert!((r.p_value - 0.0702).abs() < 1e-3, "{r:?}");
        assert_eq!(binomial_greater(0, 10, 0.1).unwrap().p_value, 1.0);
        assert!(binomial_greater(120, 300, 0.05).unwrap().significant(0.01));
        assert!(!binomial_greater(16, 300, 0.05).unwrap().significant(0.01));
        assert!(binomial_greater(1, 0, 0.05).is_none());
    }

    #[test]
    fn one_sample_t() {
        let r = one_sample_t_greater(&[11.0, 12.0, 13.0], 10.0).unwrap();
        assert!(r.significant(0.05));
        assert!(!one_sample_t_greater(&[9.0, 10.0, 11.0], 10.0)
            .unwrap()
            .significant(0.05));
        assert_eq!(one_sample_t_greater(&[2.0, 2.0], 1.0).unwrap().p_value, 0.0);
        assert!(one_sample_t_greater(&[2.0], 1.0).is_none());
    }
}
