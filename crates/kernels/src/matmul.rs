//! `a · b` for two f32 matrices on the CPU, on quarc's own cache-blocked, multi-threaded GEMM.
//!
//! candle's `matmul` runs the `gemm` crate, which on an AVX2-only CPU (AMD Zen 3, 2 threads)
//! reached 0.74× PyTorch's GEMM at 2048³; this op packs both operands into cache-sized blocks
//! for the AVX2 + FMA (6 × 16) or AVX-512 (8 × 32) register tiles and splits the rows of `a`
//! over rayon's threads. Each output is a chain of fused multiply-adds in increasing `k`, the same
//! bits for any thread count and on both vector paths. Elsewhere (other devices, dtypes, ranks,
//! or a CPU without AVX2 + FMA) [`matmul`] is candle's `matmul`.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use crate::gemm::MatRef;
use crate::packed::{has_micro_kernel, matmul_blocked};

/// `a · b` for `a` of shape `(m, k)` and `b` of shape `(k, n)`, differentiable in both.
///
/// Any strides (a transposed view is read in place). Shapes that disagree are candle's error.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let a = Tensor::new(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::Cpu)?;
/// let b = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &Device::Cpu)?;
/// let c = quarc_kernels::matmul(&a, &b)?;
/// assert_eq!(c.to_vec2::<f32>()?, vec![vec![4.0, 5.0], vec![10.0, 11.0]]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn matmul(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let ours = has_micro_kernel()
        && [a, b]
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32 && t.rank() == 2)
        && a.dim(1)? == b.dim(0)?;
    if ours {
        a.apply_op2(b, BlockedMatmul)
    } else {
        a.matmul(b)
    }
}

struct BlockedMatmul;

/// The rank-2 operand under `l` as a strided view.
fn view<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<MatRef<'a>> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("matmul: {what} must be f32")
    };
    let (&[rows, cols], &[rs, cs]) = (l.dims(), l.stride()) else {
        candle_core::bail!("matmul: {what} must be a matrix, got shape {:?}", l.dims())
    };
    Ok(MatRef::strided(&data[l.start_offset()..], rows, cols, rs, cs))
}

impl CustomOp2 for BlockedMatmul {
    fn name(&self) -> &'static str {
        "quarc-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = (view(s1, l1, "a")?, view(s2, l2, "b")?);
        if a.cols() != b.rows() {
            candle_core::bail!("matmul: ({}, {}) · ({}, {})", a.rows(), a.cols(), b.rows(), b.cols())
        }
        let (m, n) = (a.rows(), b.cols());
        let mut out = vec![0.0f32; m * n];
        if !matmul_blocked(&mut out, n, a, b, false) {
            crate::gemm::matmul(&mut out, n, a, b, false);
        }
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(matmul(grad, &b.t()?)?), Some(matmul(&a.t()?, grad)?)))
    }
}

#[cfg(test)]
mod tests;
