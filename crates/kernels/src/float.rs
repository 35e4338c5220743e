//! The scalar float operations the kernels need, for `f32` and `f64`.

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
