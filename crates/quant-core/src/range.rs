//! Integer ranges of quantizers and bit-width validation.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Smallest supported bit width.
pub const MIN_BITS: u32 = 2;
/// Largest supported bit width.
pub const MAX_BITS: u32 = 8;

/// Whether a quantizer's integer grid includes negative values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Signedness {
    /// `[-2^(b-1), 2^(b-1) - 1]`: weights, and activations that can be negative.
    #[default]
    Signed,
    /// `[0, 2^b - 1]`: activations after a ReLU.
    Unsigned,
}

/// The closed integer range `[qn, qp]` a quantizer rounds onto.
///
/// ```
/// use quarc_quant_core::QRange;
/// let r = QRange::new(2, quarc_quant_core::Signedness::Signed)?;
/// assert_eq!((r.qn(), r.qp()), (-2, 1));
/// let u = QRange::new(4, quarc_quant_core::Signedness::Unsigned)?;
/// assert_eq!((u.qn(), u.qp(), u.levels()), (0, 15, 16));
/// assert!(QRange::new(1, quarc_quant_core::Signedness::Signed).is_err());
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QRange {
    bits: u32,
    signedness: Signedness,
}

impl QRange {
    /// The range for `bits` (2 to 8) with the given signedness.
    pub fn new(bits: u32, signedness: Signedness) -> Result<Self> {
        validate_bits(bits)?;
        Ok(Self { bits, signedness })
    }

    /// Signed range of `bits` bits.
    pub fn signed(bits: u32) -> Result<Self> {
        Self::new(bits, Signedness::Signed)
    }

    /// Unsigned range of `bits` bits.
    pub fn unsigned(bits: u32) -> Result<Self> {
        Self::new(bits, Signedness::Unsigned)
    }

    /// The bit width.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Signed or unsigned.
    pub fn signedness(&self) -> Signedness {
        self.signedness
    }

    /// The lowest integer code.
    pub fn qn(&self) -> i32 {
        match self.signedness {
            Signedness::Signed => -(1 << (self.bits - 1)),
            Signedness::Unsigned => 0,
        }
    }

    /// The highest integer code.
    pub fn qp(&self) -> i32 {
        match self.signedness {
            Signedness::Signed => (1 << (self.bits - 1)) - 1,
            Signedness::Unsigned => (1 << self.bits) - 1,
        }
    }

    /// Number of representable codes, `2^bits`.
    pub fn levels(&self) -> u32 {
        1 << self.bits
    }
}

/// Returns an error unless `bits` is in `2..=8`.
pub fn validate_bits(bits: u32) -> Result<()> {
    if (MIN_BITS..=MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(Error::InvalidBits { bits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_the_lsq_paper() {
        for bits in 2..=8u32 {
            let s = QRange::signed(bits).unwrap();
            assert_eq!(s.qn(), -(2i32.pow(bits - 1)));
            assert_eq!(s.qp(), 2i32.pow(bits - 1) - 1);
            let u = QRange::unsigned(bits).unwrap();
            assert_eq!(u.qn(), 0);
            assert_eq!(u.qp(), 2i32.pow(bits) - 1);
            assert_eq!((s.qp() - s.qn() + 1) as u32, s.levels());
        }
    }

    #[test]
    fn rejects_unsupported_widths() {
        for bits in [0, 1, 9, 32] {
            assert!(matches!(QRange::signed(bits), Err(Error::InvalidBits { bits: b }) if b == bits));
        }
    }
}
