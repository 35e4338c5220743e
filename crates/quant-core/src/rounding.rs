//! The rounding mode used by every quantizer in quarc: **round half to even**.
//!
//! candle's `Tensor::round` rounds half away from zero (2.5 → 3); PyTorch, NumPy and the
//! default IEEE-754 mode round half to even (2.5 → 2, 3.5 → 4, −2.5 → −2). quarc uses half to
//! even in both the fused CPU kernels and the composed candle reference, so fake-quant results,
//! integer exports and PyTorch references agree bit for bit. Ties are rare on real data but
//! common on weights that are already on the grid (a loaded quantized checkpoint).

use candle_core::{Result, Tensor};

/// Rounds each element half to even, composed from candle ops (runs on every device).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6], &Device::Cpu)?;
/// let r = quarc_quant_core::round_half_even(&x)?;
/// assert_eq!(r.to_vec1::<f32>()?, vec![0.0, 2.0, 2.0, -0.0, -2.0, -2.0, 2.0, -3.0]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn round_half_even(x: &Tensor) -> Result<Tensor> {
    // For a tie, v - floor(v) is exactly 0.5 (exact in binary floating point) and
    // 2 * round(v / 2) is the even neighbour: v / 2 has a fractional part of .25 or .75, so
    // candle's half-away rounding cannot hit a tie there.
    let frac = (x - x.floor()?)?;
    let is_tie = frac.eq(0.5)?;
    let even = ((x * 0.5)?.round()? * 2.0)?;
    is_tie.where_cond(&even, &x.round()?)
}

pub(crate) mod num_like {
    /// The float operations the fused kernels need, for `f32` and `f64`.
    pub trait Float:
        Copy
        + PartialOrd
        + Send
        + Sync
        + std::ops::Add<Output = Self>
        + std::ops::Sub<Output = Self>
        + std::ops::Mul<Output = Self>
        + std::ops::Div<Output = Self>
        + 'static
    {
        /// Round half to even, valid for |v| < 2^22 (all the kernels need: values are clamped to
        /// the integer range first). Adding and subtracting 1.5·2^mantissa makes the FPU's default
        /// round-to-nearest-even do the work, and vectorises on any x86-64 (no SSE4.1 needed).
        fn round_even_small(self) -> Self;
        /// Conversion from f64.
        fn cast_from(v: f64) -> Self;
        /// Conversion to f64.
        fn cast_to(self) -> f64;
        /// NaN test.
        fn is_nan_value(self) -> bool;
    }
    impl Float for f32 {
        #[inline(always)]
        fn round_even_small(self) -> Self {
            const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
            (self + MAGIC) - MAGIC
        }
        #[inline(always)]
        fn cast_from(v: f64) -> Self {
            v as f32
        }
        #[inline(always)]
        fn cast_to(self) -> f64 {
            self as f64
        }
        #[inline(always)]
        fn is_nan_value(self) -> bool {
            f32::is_nan(self)
        }
    }
    impl Float for f64 {
        #[inline(always)]
        fn round_even_small(self) -> Self {
            const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
            (self + MAGIC) - MAGIC
        }
        #[inline(always)]
        fn cast_from(v: f64) -> Self {
            v
        }
        #[inline(always)]
        fn cast_to(self) -> f64 {
            self
        }
        #[inline(always)]
        fn is_nan_value(self) -> bool {
            f64::is_nan(self)
        }
    }
}
