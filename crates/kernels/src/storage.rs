//! Reading a custom op's CPU operand as a plain f32 slice.

use candle_core::{CpuStorage, Layout};

/// The contiguous f32 data of `s` under layout `l`; `op` and `what` name the operand in errors.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(d) => d.as_slice(),
        _ => candle_core::bail!("{op}: {what} must be f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: {what} must be contiguous"),
    }
}
