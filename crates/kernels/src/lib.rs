//! # quarc-kernels
//!
//! CPU compute kernels shared by quarc's crates, as candle custom ops with candle's composed
//! ops as the reference (and the path CUDA and Metal run).
//!
//! - [`conv2d`]: a training convolution — forward, input gradient and weight gradient — by
//!   im2col + GEMM (the forward and input gradient on quarc's own AVX-512 or AVX2 + FMA kernel
//!   with the weights packed once per call, the weight gradient and other CPUs on the `gemm`
//!   crate's kernels, feature `x86-v4`, picked at run time), Winograd F(4×4, 3×3) and F(2×2, 3×3)
//!   for stride-1 3×3 layers (all three passes), pointwise convs as a plain GEMM and depthwise convs as a
//!   direct loop over stride-phase-split planes (16 channels per vector for planes of ≤ 100
//!   values on AVX-512F or AVX2). Deterministic for any thread count.
//! - [`batch_norm`]: training-mode BatchNorm with a fused ReLU/ReLU6, closed-form backward.
//! - [`matmul()`]: `a · b` for f32 matrices on quarc's cache-blocked, multi-threaded GEMM (both
//!   operands packed, the AVX2 + FMA or AVX-512 register tiles), the same bits for any thread count.
//! - [`add_relu()`]: the end of a residual block, `relu(a + b)`, as one pass each way.
//! - [`fake_quant`]: the fused fake-quant forward and closed-form backward (LSQ, LSQ+, PACT,
//!   uniform) over plain slices, which `quarc-quant-core` wraps as candle custom ops.
//! - [`retain_freed_memory()`]: keeps freed activations mapped for the next step instead of
//!   page-faulting them in again (glibc; process-wide, so a training program calls it once).
//!
//! The loops are compiled for AVX-512F and AVX2 besides baseline x86-64 and picked at run time
//! with the same results on every path; the environment variable `QUARC_CPU_ISA=avx2` (or
//! `sse2`) caps them, to measure or test a narrower path on a wider CPU ([`vector_isa`] says
//! which is in use).
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use quarc_kernels::{Conv2dParams, conv2d, conv2d_reference};
//! let dev = Device::Cpu;
//! let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 9, 9), &dev)?)?;
//! let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev)?)?;
//! let p = Conv2dParams { padding: 1, stride: 2, ..Default::default() };
//! let fast = conv2d(&x, &w, &p)?;
//! let reference = conv2d_reference(&x, &w, &p)?;
//! assert_eq!(fast.dims(), &[2, 4, 5, 5]);
//! let diff = (&fast - &reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
//! assert!(diff < 1e-4);
//! // gradients flow to both arguments
//! let grads = fast.sqr()?.sum_all()?.backward()?;
//! assert!(grads.get(&x).is_some() && grads.get(&w).is_some());
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod add_relu;
mod aligned;
pub mod batch_norm;
pub mod conv;
mod copy;
pub mod fake_quant;
pub mod float;
mod fresh;
mod gather;
pub mod gemm;
mod lanes;
mod matmul;
mod memory;
mod packed;
mod storage;
mod transpose;
mod wide;
mod zeroed;

pub use add_relu::{add_relu, add_relu_reference};
pub use batch_norm::{
    Activation, BatchStats, batch_norm_train, batch_norm_train_reference, channel_affine, channel_affine_reference,
};
/// candle, as this crate's signatures use it.
pub use candle_core;
pub use conv::{
    Conv2dParams, CpuConvEngine, LsqInput, MAX_PAD_OR_DILATION, WinogradPolicy, conv2d, conv2d_affine_act,
    conv2d_affine_act_reference, conv2d_grad_input, conv2d_grad_weight, conv2d_lsq_input, conv2d_reference, cpu_engine,
    keeping_winograd_tiles, runs_fast_path, set_cpu_engine, set_winograd, winograd_policy, winograd_tiles_reused,
};
pub use matmul::matmul;
pub use memory::{MemoryRetention, retain_freed_memory};
pub use wide::vector_isa;
