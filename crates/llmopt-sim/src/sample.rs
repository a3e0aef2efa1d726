//! The few distributions the simulator draws from, written out by hand.
//!
//! Why not `rand_distr`: the exact algorithm behind every draw is part of the simulator's
//! determinism contract (same seed ⇒ same events), so it lives here where a dependency upgrade
//! cannot change it, and the workspace lockfile stays untouched.

use rand::Rng;

/// A uniform draw in (0, 1], safe to take the logarithm of.
fn open_unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    1.0 - rng.gen::<f64>()
}

/// A standard normal draw (Box–Muller, one value per pair of uniforms).
pub(crate) fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1 = open_unit(rng);
    let u2 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A normal draw with the given mean and standard deviation.
pub(crate) fn normal<R: Rng + ?Sized>(rng: &mut R, mean: f64, sd: f64) -> f64 {
    mean + sd * standard_normal(rng)
}

/// A lognormal draw given its median (`exp(mu)`) and the sigma of its logarithm.
pub(crate) fn lognormal<R: Rng + ?Sized>(rng: &mut R, median: f64, sigma: f64) -> f64 {
    median * (sigma * standard_normal(rng)).exp()
}

/// An exponential draw with the given rate (events per unit); the gap of a Poisson process.
pub(crate) fn exponential<R: Rng + ?Sized>(rng: &mut R, rate: f64) -> f64 {
    -open_unit(rng).ln() / rate
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn moments_are_plausible() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 20_000;
        let normals: Vec<f64> = (0..n).map(|_| normal(&mut rng, 2.0, 0.5)).collect();
        let mean = normals.iter().sum::<f64>() / n as f64;
        let var = normals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 2.0).abs() < 0.02, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.02, "sd {}", var.sqrt());

        let mut logs: Vec<f64> = (0..n).map(|_| lognormal(&mut rng, 100.0, 0.4)).collect();
        logs.sort_by(f64::total_cmp);
        let median = logs[n / 2];
        assert!((median - 100.0).abs() < 3.0, "median {median}");

        let gaps = (0..n).map(|_| exponential(&mut rng, 4.0)).sum::<f64>() / n as f64;
        assert!((gaps - 0.25).abs() < 0.01, "mean gap {gaps}");
    }
}
