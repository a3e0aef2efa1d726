//! Bit packing of integer codes: `bits` per value, least significant bit first, values laid out
//! back to back across byte boundaries (so 3-bit codes take exactly 3/8 of a byte each).

/// Packs `values` (each `< 2^bits`) into `⌈len·bits/8⌉` bytes.
pub fn pack(values: &[u8], bits: u8) -> Vec<u8> {
    let bits = usize::from(bits);
    let mut out = vec![0u8; (values.len() * bits).div_ceil(8)];
    let mask = ((1u16 << bits) - 1) as u8;
    for (i, &v) in values.iter().enumerate() {
        let bit = i * bits;
        let (byte, shift) = (bit / 8, bit % 8);
        let v = u16::from(v & mask) << shift;
        out[byte] |= (v & 0xff) as u8;
        if shift + bits > 8 {
            out[byte + 1] |= (v >> 8) as u8;
        }
    }
    out
}

/// Unpacks `count` values of `bits` each; `None` if `bytes` is too short.
pub fn unpack(bytes: &[u8], bits: u8, count: usize) -> Option<Vec<u8>> {
    let width = usize::from(bits);
    if !(1..=8).contains(&width) || bytes.len() < (count * width).div_ceil(8) {
        return None;
    }
    let mask = (1u16 << width) - 1;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let bit = i * width;
        let (byte, shift) = (bit / 8, bit % 8);
        let mut word = u16::from(bytes[byte]);
        if shift + width > 8 {
            word |= u16::from(bytes[byte + 1]) << 8;
        }
        out.push(((word >> shift) & mask) as u8);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_width_and_length() {
        for bits in 1..=8u8 {
            for len in [0usize, 1, 7, 8, 9, 33, 1000] {
                let values: Vec<u8> = (0..len)
                    .map(|i| ((i * 37 + 11) % (1usize << bits)) as u8)
                    .collect();
                let packed = pack(&values, bits);
                assert_eq!(packed.len(), (len * usize::from(bits)).div_ceil(8));
                assert_eq!(unpack(&packed, bits, len).unwrap(), values, "bits {bits}");
            }
        }
    }

    #[test]
    fn layout_is_lsb_first() {
        assert_eq!(pack(&[1, 2, 3, 0], 2), vec![0b00_11_10_01]);
        assert_eq!(pack(&[0b101, 0b111, 0b011], 3), vec![0b11_111_101, 0]);
        assert!(unpack(&[0], 4, 3).is_none());
    }
}
