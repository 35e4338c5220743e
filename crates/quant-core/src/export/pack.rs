//! Bit packing of integer codes: 2-bit codes four to a byte, 4-bit codes two to a byte,
//! wider codes one per byte; least significant bits first.

use crate::{Error, Result, validate_bits};

/// Codes per byte for a bit width.
pub fn codes_per_byte(bits: u32) -> usize {
    match bits {
        2 => 4,
        4 => 2,
        _ => 1,
    }
}

/// Packed size in bytes of `n` codes.
pub fn packed_len(n: usize, bits: u32) -> usize {
    n.div_ceil(codes_per_byte(bits))
}

/// Packs unsigned codes (each `< 2^bits`) into bytes.
///
/// ```
/// use quarc_quant_core::export::{pack_codes, unpack_codes};
/// let packed = pack_codes(&[1, 2, 3, 0, 2], 2)?;
/// assert_eq!(packed, vec![0b00_11_10_01, 0b10]);
/// assert_eq!(unpack_codes(&packed, 2, 5)?, vec![1, 2, 3, 0, 2]);
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
pub fn pack_codes(codes: &[u8], bits: u32) -> Result<Vec<u8>> {
    validate_bits(bits)?;
    let per = codes_per_byte(bits);
    let width = 8 / per as u32;
    let limit = 1u16 << bits;
    let mut out = vec![0u8; packed_len(codes.len(), bits)];
    for (i, &c) in codes.iter().enumerate() {
        if u16::from(c) >= limit {
            return Err(Error::config(format!("code {c} does not fit in {bits} bits")));
        }
        out[i / per] |= c << ((i % per) as u32 * width);
    }
    Ok(out)
}

/// Unpacks `n` codes of `bits` bits.
pub fn unpack_codes(packed: &[u8], bits: u32, n: usize) -> Result<Vec<u8>> {
    validate_bits(bits)?;
    if packed.len() != packed_len(n, bits) {
        return Err(Error::config(format!(
            "{} packed bytes cannot hold exactly {n} codes of {bits} bits (need {})",
            packed.len(),
            packed_len(n, bits)
        )));
    }
    let per = codes_per_byte(bits);
    let width = 8 / per as u32;
    let mask = if width == 8 { 0xff } else { (1u8 << width) - 1 };
    Ok((0..n)
        .map(|i| (packed[i / per] >> ((i % per) as u32 * width)) & mask)
        .collect())
}
