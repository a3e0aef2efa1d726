//! Mergeable latency sketch with a 1% relative-error bound (DDSketch).
//!
//! Percentiles of a window must be mergeable across windows and partitions (a 5-minute p99 is not
//! an average of 1-minute p99s), so each window keeps a DDSketch rather than the raw latencies.
//! The sketch is DataDog's [`sketches_ddsketch`] with relative accuracy α = 1 % (γ = 1.01 / 0.99):
//! every quantile it returns is within 1 % of the exact sample at the same rank.
//!
//! The bytes (`WindowAggregate.latency_sketch`) are DataDog's Java-compatible DDSketch binary
//! encoding, which lists the non-empty bins by absolute index: identical inputs give identical
//! bytes, independent of how the in-memory store happened to be laid out, and Java or Go
//! consumers can decode and merge them.
//!
//! **Small windows stay small.** The library's dense store grows in chunks of 128 eight-byte
//! bins, so even a window of three calls held at least 1 KiB per sketch, two sketches a window
//! and six open windows a series: with 100,000 series that was gigabytes. A sketch therefore
//! keeps its first [`BUFFER_LIMIT`] values as recorded, in order, and becomes the DDSketch they
//! would have built (the same values added in the same order: the same bins, count, minimum,
//! maximum and floating-point sum) when it outgrows the buffer, is merged, or is asked for a
//! quantile or its bytes. Every answer and every byte is the DDSketch's, whatever the form.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sketches_ddsketch::{Config, DDSketch};

use crate::error::SketchError;

mod validate;

/// Relative accuracy of every quantile (α): the guarantee the detector's thresholds rely on.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Values a sketch keeps as recorded before it becomes a dense DDSketch: 512 bytes, half of the
/// dense store's first chunk.
pub const BUFFER_LIMIT: usize = 64;

/// A DDSketch of non-negative durations in milliseconds.
#[derive(Clone)]
pub struct LatencySketch {
    form: Form,
}

#[derive(Clone)]
enum Form {
    /// Up to [`BUFFER_LIMIT`] values, as recorded (already clamped at 0), in order.
    Values(Vec<f64>),
    /// Boxed: the library's sketch is some 150 bytes inline, which every window's metrics
    /// would carry even while it holds a handful of values.
    Dense(Box<DDSketch>),
}

impl LatencySketch {
    /// An empty sketch with α = 1 %, 2048 bins (≈ 17 orders of magnitude before the lowest bins
    /// collapse) and values below 1e-9 ms counted as zero.
    pub fn new() -> Self {
        Self {
            form: Form::Values(Vec::new()),
        }
    }

    /// Records one duration. Negative durations (clock skew at the producer) count as 0; NaN and
    /// infinities are ignored, because one bad value must not poison a window's sum.
    pub fn add(&mut self, value_ms: f64) {
        if !value_ms.is_finite() {
            return;
        }
        let value = value_ms.max(0.0);
        match &mut self.form {
            Form::Values(values) if values.len() < BUFFER_LIMIT => values.push(value),
            Form::Values(_) => {
                let mut dense = self.sketch().into_owned();
                dense.add(value);
                self.form = Form::Dense(Box::new(dense));
            }
            Form::Dense(sketch) => sketch.add(value),
        }
    }

    /// The DDSketch of the values recorded: built from them for a sketch still holding values.
    fn sketch(&self) -> Cow<'_, DDSketch> {
        match &self.form {
            Form::Values(values) => {
                let mut sketch = DDSketch::new(config());
                for value in values {
                    sketch.add(*value);
                }
                Cow::Owned(sketch)
            }
            Form::Dense(sketch) => Cow::Borrowed(sketch.as_ref()),
        }
    }

    /// Adds every value recorded in `other`, as if they had been added here: how hopping or
    /// cross-partition percentiles are built from finer sketches.
    pub fn merge(&mut self, other: &LatencySketch) -> Result<(), SketchError> {
        let mut dense = self.sketch().into_owned();
        dense
            .merge(&other.sketch())
            .map_err(|_| SketchError::MergeMismatch)?;
        self.form = Form::Dense(Box::new(dense));
        Ok(())
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        match &self.form {
            Form::Values(values) => values.len() as u64,
            Form::Dense(sketch) => sketch.count() as u64,
        }
    }

    /// Whether no value was recorded (then there is no percentile to report).
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// The `q`-quantile (`q` in [0, 1]) with the sketch's rank convention (the sample at rank
    /// ⌊q·(n−1)⌋ of the sorted values), within 1 % relative error; `None` if the sketch is empty
    /// or `q` is out of range.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.sketch().quantile(q).ok().flatten()
    }

    /// Deterministic bytes: the Java-compatible DDSketch binary encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.sketch().to_java_bytes()
    }

    /// Reads bytes written by [`LatencySketch::to_bytes`] (or by another DDSketch library with
    /// the same logarithmic mapping). The bytes are checked before decoding, so corrupt or
    /// hostile input yields an error, never a panic or a sketch that cannot be merged.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        validate::check(bytes, config().gamma)?;
        let sketch =
            DDSketch::from_java_bytes(bytes).map_err(|e| SketchError::Malformed(e.to_string()))?;
        Ok(Self {
            form: Form::Dense(Box::new(sketch)),
        })
    }
}

impl Default for LatencySketch {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LatencySketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sketch = self.sketch();
        f.debug_struct("LatencySketch")
            .field("count", &self.count())
            .field("min", &sketch.min())
            .field("max", &sketch.max())
            .finish()
    }
}

/// Two sketches are equal when they encode to the same bytes: same bins, counts and summary.
impl PartialEq for LatencySketch {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

/// Serialised as its bytes, so checkpoints hold the same canonical form as the windows topic.
impl Serialize for LatencySketch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_bytes::Bytes::new(&self.to_bytes()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LatencySketch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        LatencySketch::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

fn config() -> Config {
    // `from_java_bytes` rebuilds the config from gamma with these same defaults (2048 bins,
    // min value 1e-9), so decoded sketches stay mergeable with fresh ones.
    Config::new(RELATIVE_ACCURACY, 2048, 1e-9)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Lognormal(mu, sigma) by Box-Muller: long-tailed like real LLM latencies.
    fn lognormal(rng: &mut ChaCha8Rng, mu: f64, sigma: f64) -> f64 {
        let u1: f64 = 1.0 - rng.gen::<f64>();
        let u2: f64 = rng.gen::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (mu + sigma * z).exp()
    }

    fn samples(seed: u64, n: usize) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| lognormal(&mut rng, 6.0, 1.0)).collect()
    }

    #[test]
    fn relative_error_within_one_percent_on_100k_lognormal_samples() {
        let values = samples(42, 100_000);
        let mut sketch = LatencySketch::new();
        for v in &values {
            sketch.add(*v);
        }
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.95, 0.99] {
            let rank = (q * (sorted.len() as f64 - 1.0)) as usize;
            let exact = sorted[rank];
            let estimate = sketch.quantile(q).expect("non-empty sketch");
            let rel = (estimate - exact).abs() / exact;
            assert!(
                rel <= RELATIVE_ACCURACY * (1.0 + 1e-9),
                "q={q}: exact {exact}, sketch {estimate}, relative error {rel}"
            );
        }
        assert_eq!(sketch.count(), 100_000);
    }

    #[test]
    fn bytes_are_deterministic_and_round_trip() {
        let build = || {
            let mut s = LatencySketch::new();
            for v in samples(7, 5_000) {
                s.add(v);
            }
            s
        };
        let a = build().to_bytes();
        let b = build().to_bytes();
        assert_eq!(a, b);
        let decoded = LatencySketch::from_bytes(&a).expect("own bytes decode");
        assert_eq!(decoded.to_bytes(), a);
        assert_eq!(decoded.quantile(0.99), build().quantile(0.99));

        let empty = LatencySketch::new();
        let decoded = LatencySketch::from_bytes(&empty.to_bytes()).expect("empty decodes");
        assert!(decoded.is_empty());
        assert_eq!(decoded.quantile(0.5), None);
    }

    #[test]
    fn merge_equals_sketch_of_union() {
        let values = samples(9, 10_000);
        let (left, right) = values.split_at(4_000);
        let mut a = LatencySketch::new();
        let mut b = LatencySketch::new();
        let mut all = LatencySketch::new();
        left.iter().for_each(|v| a.add(*v));
        right.iter().for_each(|v| b.add(*v));
        values.iter().for_each(|v| all.add(*v));
        let b = LatencySketch::from_bytes(&b.to_bytes()).expect("decodes");
        a.merge(&b).expect("same mapping");
        assert_eq!(a.count(), all.count());
        for q in [0.5, 0.9, 0.99] {
            assert_eq!(a.quantile(q), all.quantile(q));
        }
    }

    /// The DDSketch the values build when added to it directly, as the sketch did before it
    /// kept small windows as values.
    fn reference(values: &[f64]) -> DDSketch {
        let mut sketch = DDSketch::new(config());
        for v in values.iter().filter(|v| v.is_finite()) {
            sketch.add(v.max(0.0));
        }
        sketch
    }

    #[test]
    fn small_and_large_sketches_answer_and_encode_as_the_dense_ddsketch() {
        let mut values = samples(11, 1_000);
        values[3] = -2.0;
        values[7] = f64::NAN;
        for n in [
            0,
            1,
            2,
            5,
            BUFFER_LIMIT - 1,
            BUFFER_LIMIT,
            BUFFER_LIMIT + 1,
            300,
            1_000,
        ] {
            let mut sketch = LatencySketch::new();
            values[..n].iter().for_each(|v| sketch.add(*v));
            let dense = reference(&values[..n]);
            assert_eq!(sketch.to_bytes(), dense.to_java_bytes(), "{n} values");
            assert_eq!(sketch.count(), dense.count() as u64);
            for q in [0.0, 0.5, 0.9, 0.95, 0.99, 1.0] {
                assert_eq!(
                    sketch.quantile(q),
                    dense.quantile(q).ok().flatten(),
                    "{n} q={q}"
                );
            }
            // Merging a small sketch into another, either way round, is the dense merge.
            let mut small = LatencySketch::new();
            values[500..510].iter().for_each(|v| small.add(*v));
            let mut merged = sketch.clone();
            merged.merge(&small).expect("same mapping");
            let mut dense_merged = dense.clone();
            dense_merged
                .merge(&reference(&values[500..510]))
                .expect("same mapping");
            assert_eq!(
                merged.to_bytes(),
                dense_merged.to_java_bytes(),
                "{n} merged"
            );
            let mut other_way = small.clone();
            other_way.merge(&sketch).expect("same mapping");
            let mut dense_other_way = reference(&values[500..510]);
            dense_other_way.merge(&dense).expect("same mapping");
            assert_eq!(other_way.to_bytes(), dense_other_way.to_java_bytes());
            // Checkpoints restore the dense form with the same bytes.
            let restored = LatencySketch::from_bytes(&sketch.to_bytes()).expect("decodes");
            assert_eq!(restored, sketch);
        }
    }

    #[test]
    fn ignores_non_finite_and_clamps_negative() {
        let mut s = LatencySketch::new();
        s.add(f64::NAN);
        s.add(f64::INFINITY);
        assert!(s.is_empty());
        s.add(-5.0);
        assert_eq!(s.count(), 1);
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert_eq!(s.quantile(1.5), None);
    }

    #[test]
    fn serde_uses_the_canonical_bytes() {
        let mut s = LatencySketch::new();
        s.add(12.5);
        s.add(250.0);
        let json = serde_json::to_string(&s).expect("serialises");
        let back: LatencySketch = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, s);
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        let mut s = LatencySketch::new();
        for v in samples(3, 500) {
            s.add(v);
        }
        let good = s.to_bytes();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // Truncations, bit flips and random garbage.
        for cut in 0..good.len() {
            let _ = LatencySketch::from_bytes(&good[..cut]);
        }
        for _ in 0..20_000 {
            let mut bytes = good.clone();
            let flips = rng.gen_range(1..4);
            for _ in 0..flips {
                let i = rng.gen_range(0..bytes.len());
                bytes[i] ^= 1 << rng.gen_range(0..8);
            }
            if let Ok(decoded) = LatencySketch::from_bytes(&bytes) {
                // Whatever decodes must be usable.
                let _ = decoded.quantile(0.99);
                let mut merged = LatencySketch::new();
                merged.add(1.0);
                merged.merge(&decoded).expect("validated sketches merge");
                merged.add(1e6);
            }
        }
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = LatencySketch::from_bytes(&bytes);
        }
        assert!(matches!(
            LatencySketch::from_bytes(&[0xFF]),
            Err(SketchError::Malformed(_))
        ));
    }

    /// Zigzag + var-long, as the DDSketch encoding writes bin index deltas.
    fn push_signed_var(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value >> 63) ^ (value << 1)) as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    #[test]
    fn scattered_bin_indices_decode_and_merge_without_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut accepted = 0;
        for _ in 0..2_000 {
            let mut bytes = vec![0x02];
            bytes.extend_from_slice(&config().gamma.to_le_bytes());
            bytes.extend_from_slice(&0.0_f64.to_le_bytes());
            // Positive store, "index deltas" mode (every bin counts 1), bins in random order.
            bytes.push((2 << 2) | 1);
            let n = rng.gen_range(1..40_i64);
            bytes.push(n as u8); // Bin count: an unsigned var-long, one byte below 128.
            let mut prev = 0_i64;
            for _ in 0..n {
                let index = rng.gen_range(-70_000..70_000_i64);
                push_signed_var(&mut bytes, index - prev);
                prev = index;
            }
            match LatencySketch::from_bytes(&bytes) {
                Ok(decoded) => {
                    let mut merged = LatencySketch::new();
                    merged.add(3.0);
                    merged.merge(&decoded).expect("same mapping");
                    merged.add(1e-3);
                    merged.add(1e300);
                    assert!(merged.quantile(0.5).is_some());
                    accepted += 1;
                }
                Err(e) => assert!(matches!(e, SketchError::Malformed(_))),
            }
        }
        assert!(accepted > 200, "only {accepted} inputs reached the decoder");
    }

    #[test]
    fn foreign_mapping_is_rejected() {
        let other = DDSketch::new(Config::new(0.05, 2048, 1e-9));
        let err = LatencySketch::from_bytes(&other.to_java_bytes()).expect_err("other gamma");
        assert!(matches!(err, SketchError::IncompatibleMapping { .. }));
    }
}
