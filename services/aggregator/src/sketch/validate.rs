//! Structural check of DDSketch binary encodings before they reach the decoder.
//!
//! `sketches_ddsketch`'s decoder trusts the bin indices and counts it reads: an index near the
//! `i32` limits or counts that overflow `u64` make its dense store index out of bounds or
//! overflow. This walks the same format (flags, var-length integers and doubles, bins) and
//! accepts only what the decoder handles safely and what is mergeable with this crate's sketches.

use crate::error::SketchError;

/// Largest |bin index| accepted. With γ = 1.0202, finite doubles above the 1e-9 zero threshold
/// map to indices in about [-1 030, 35 200]; anything beyond this is corrupt.
const MAX_ABS_INDEX: i64 = 1 << 16;
/// Largest total count accepted (2^53: exact in the f64 the format uses, far from `u64` overflow).
const MAX_TOTAL_COUNT: f64 = 9_007_199_254_740_992.0;

const TYPE_SKETCH_FEATURES: u8 = 0;
const TYPE_POSITIVE_STORE: u8 = 1;
const TYPE_INDEX_MAPPING: u8 = 2;
const TYPE_NEGATIVE_STORE: u8 = 3;

const FLAG_INDEX_MAPPING_LOG: u8 = 0x02;
const FLAG_ZERO_COUNT: u8 = 0x04;
const FLAG_COUNT: u8 = 0xA0;
const FLAG_SUM: u8 = 0x84;
const FLAG_MIN: u8 = 0x88;
const FLAG_MAX: u8 = 0x8C;

const MODE_INDEX_DELTAS_AND_COUNTS: u8 = 1;
const MODE_INDEX_DELTAS: u8 = 2;
const MODE_CONTIGUOUS_COUNTS: u8 = 3;

/// Accepts `bytes` if the decoder can read them without panicking into a sketch with gamma
/// `expected_gamma` (bit for bit) and index offset 0.
pub(super) fn check(bytes: &[u8], expected_gamma: f64) -> Result<(), SketchError> {
    if bytes.is_empty() {
        return Err(malformed("no bytes"));
    }
    let mut r = Reader { rest: bytes };
    // The decoder skips an optional 0x02 version prefix when a valid flag follows it.
    if bytes.len() >= 2 && bytes[0] == 0x02 && is_valid_flag_byte(bytes[1]) {
        r.rest = &bytes[1..];
    }
    let mut total = 0.0_f64;
    while !r.rest.is_empty() {
        let flag = r.byte()?;
        match flag & 0x03 {
            TYPE_INDEX_MAPPING => {
                if flag != FLAG_INDEX_MAPPING_LOG {
                    return Err(malformed(format!(
                        "index mapping 0x{flag:02X} is not logarithmic"
                    )));
                }
                let gamma = r.f64_le()?;
                let offset = r.f64_le()?;
                if gamma.to_bits() != expected_gamma.to_bits() {
                    return Err(SketchError::IncompatibleMapping {
                        expected: expected_gamma,
                        found: gamma,
                    });
                }
                if offset != 0.0 {
                    return Err(malformed(format!("index offset {offset} is not 0")));
                }
            }
            TYPE_SKETCH_FEATURES => match flag {
                FLAG_ZERO_COUNT => total = add_count(total, r.var_f64()?)?,
                FLAG_COUNT => {
                    count_value(r.var_f64()?)?;
                }
                FLAG_SUM | FLAG_MIN | FLAG_MAX => {
                    if r.f64_le()?.is_nan() {
                        return Err(malformed("NaN summary statistic"));
                    }
                }
                other => return Err(malformed(format!("unknown flag 0x{other:02X}"))),
            },
            TYPE_POSITIVE_STORE | TYPE_NEGATIVE_STORE => {
                total = check_store(&mut r, flag >> 2, total)?;
            }
            _ => return Err(malformed("flag type out of range")),
        }
    }
    Ok(())
}

fn check_store(r: &mut Reader<'_>, mode: u8, mut total: f64) -> Result<f64, SketchError> {
    let bins = r.var_u64()?;
    match mode {
        MODE_INDEX_DELTAS_AND_COUNTS | MODE_INDEX_DELTAS => {
            let mut index = 0_i64;
            // Every bin consumes at least one byte, so this loop ends at the input's end.
            for _ in 0..bins {
                index = bounded_index(index.checked_add(r.var_i64()?))?;
                if mode == MODE_INDEX_DELTAS_AND_COUNTS {
                    total = add_count(total, r.var_f64()?)?;
                } else {
                    total = add_count(total, 1.0)?;
                }
            }
        }
        MODE_CONTIGUOUS_COUNTS => {
            let mut index = r.var_i64()?;
            let delta = r.var_i64()?;
            for _ in 0..bins {
                bounded_index(Some(index))?;
                total = add_count(total, r.var_f64()?)?;
                // The decoder steps past the last bin too: that step must not overflow either.
                index = index
                    .checked_add(delta)
                    .ok_or_else(|| malformed("bin index out of range"))?;
            }
        }
        other => return Err(malformed(format!("unknown bin encoding mode {other}"))),
    }
    Ok(total)
}

fn bounded_index(index: Option<i64>) -> Result<i64, SketchError> {
    match index {
        Some(i) if i.abs() <= MAX_ABS_INDEX => Ok(i),
        _ => Err(malformed("bin index out of range")),
    }
}

fn count_value(count: f64) -> Result<f64, SketchError> {
    if count.is_finite() && (0.0..=MAX_TOTAL_COUNT).contains(&count) {
        Ok(count)
    } else {
        Err(malformed(format!("invalid count {count}")))
    }
}

fn add_count(total: f64, count: f64) -> Result<f64, SketchError> {
    // The decoder truncates fractional counts to integers; sum what it will store.
    count_value(total + count_value(count)?.trunc())
}

fn malformed(message: impl Into<String>) -> SketchError {
    SketchError::Malformed(message.into())
}

/// The decoder's rule for recognising a version prefix.
fn is_valid_flag_byte(b: u8) -> bool {
    if matches!(
        b,
        FLAG_ZERO_COUNT | FLAG_COUNT | FLAG_SUM | FLAG_MIN | FLAG_MAX | FLAG_INDEX_MAPPING_LOG
    ) {
        return true;
    }
    let subflag = b >> 2;
    match b & 0x03 {
        TYPE_POSITIVE_STORE | TYPE_NEGATIVE_STORE => (1..=3).contains(&subflag),
        TYPE_INDEX_MAPPING => subflag <= 4,
        _ => false,
    }
}

/// Cursor over the encoding, reading its primitives the way the decoder does.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, SketchError> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or_else(|| malformed("unexpected end of input"))?;
        self.rest = rest;
        Ok(b)
    }

    fn f64_le(&mut self) -> Result<f64, SketchError> {
        let mut buf = [0_u8; 8];
        for b in &mut buf {
            *b = self.byte()?;
        }
        Ok(f64::from_le_bytes(buf))
    }

    fn var_u64(&mut self) -> Result<u64, SketchError> {
        let mut value = 0_u64;
        let mut shift = 0_u32;
        loop {
            let next = self.byte()?;
            if next < 0x80 || shift == 56 {
                return Ok(value | (u64::from(next) << shift));
            }
            value |= (u64::from(next) & 0x7F) << shift;
            shift += 7;
        }
    }

    fn var_i64(&mut self) -> Result<i64, SketchError> {
        let encoded = self.var_u64()?;
        Ok(((encoded >> 1) as i64) ^ -((encoded & 1) as i64))
    }

    fn var_f64(&mut self) -> Result<f64, SketchError> {
        let mut bits = 0_u64;
        let mut shift = 57_i32;
        loop {
            let next = self.byte()?;
            if shift == 1 {
                bits |= u64::from(next);
                break;
            }
            if next < 0x80 {
                bits |= u64::from(next) << shift;
                break;
            }
            bits |= (u64::from(next) & 0x7F) << shift;
            shift -= 7;
        }
        Ok(f64::from_bits(bits.rotate_right(6).wrapping_add(1.0_f64.to_bits())) - 1.0)
    }
}
