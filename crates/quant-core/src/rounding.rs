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

pub(crate) use quarc_kernels::float as num_like;
