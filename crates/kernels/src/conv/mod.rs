//! A training `conv2d` for CPU: forward, input gradient and weight gradient as candle custom
//! ops, with candle's own `conv2d` as the reference and the path every other device runs.
//!
//! | shape | algorithm |
//! |---|---|
//! | dense (`groups = 1`), any kernel, stride, padding, dilation | im2col + AVX-512/AVX2 GEMM, images batched into one GEMM when the output plane is small |
//! | 1×1, stride 1, unpadded | the input is the GEMM operand (no im2col) |
//! | 3×3, stride 1, ≥ 64 channels in and out (forward, input gradient and weight gradient) | Winograd: F(4×4, 3×3) (36 GEMMs) where the batch gives its GEMMs at least half as many columns as channels, else F(2×2, 3×3) (16 GEMMs), over tiles transformed sixteen images at a time; the weight gradient through the transforms' adjoints ([`WinogradPolicy`]; `QUARC_WINOGRAD=off`/`always`) |
//! | dense with a per-tensor LSQ input quantizer ([`conv2d_lsq_input`]) | the fake-quant applied while packing the im2col operand, or to the planes the Winograd transform interleaves |
//! | depthwise (`groups = c_in = c_out`) | direct loop per NCHW plane: a zero-padded, stride-phase-split copy makes every tap one contiguous run; planes of ≤ 100 values sixteen channels at a time (one per vector lane), 3×3 stride-1 taps row by row; AVX-512/AVX2 picked at run time |
//! | anything else, non-f32, CUDA, Metal | candle's `Tensor::conv2d` |

use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::{DType, Tensor};

use crate::batch_norm::{Activation, channel_affine, channel_affine_reference};

mod dense;
mod depthwise;
mod epilogue;
mod geometry;
mod im2col;
mod input_quant;
mod op;
mod small_k;
mod stash;
mod winograd;

pub use geometry::{ConvGeometry, ConvKind};
pub use input_quant::LsqInput;
pub use stash::{keeping_winograd_tiles, winograd_tiles_reused};

/// Padding, stride, dilation and groups of a convolution (same meaning as candle's
/// `Tensor::conv2d` arguments; square kernels' settings apply to both axes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Zero padding on each side.
    pub padding: usize,
    /// Stride.
    pub stride: usize,
    /// Dilation.
    pub dilation: usize,
    /// Groups (1 = dense; `c_in` = depthwise).
    pub groups: usize,
}

/// The largest padding and dilation a convolution accepts: far beyond any real network, small
/// enough that no size computed from them overflows or asks for more memory than the data has.
pub const MAX_PAD_OR_DILATION: usize = 1 << 12;

impl Conv2dParams {
    /// Checks the hyper-parameters against an NCHW input `x` and an OIHW weight `w` before any
    /// arithmetic on them: stride, dilation and groups positive, padding and dilation at most
    /// [`MAX_PAD_OR_DILATION`], groups dividing the channels, the dilated kernel inside the padded
    /// input. An error names what is wrong (candle would divide by zero on a zero stride, and a
    /// huge padding would overflow the output size).
    pub fn check(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<()> {
        let p = self;
        let fail = |m: String| Err(candle_core::Error::Msg(format!("conv2d: {m}")));
        if p.stride == 0 || p.dilation == 0 || p.groups == 0 {
            return fail(format!(
                "stride {}, dilation {}, groups {} must be positive",
                p.stride, p.dilation, p.groups
            ));
        }
        if p.padding > MAX_PAD_OR_DILATION || p.dilation > MAX_PAD_OR_DILATION {
            return fail(format!(
                "padding {} or dilation {} above {MAX_PAD_OR_DILATION}",
                p.padding, p.dilation
            ));
        }
        let (Ok((_, c, h, wd)), Ok((o, ci, kh, kw))) = (x.dims4(), w.dims4()) else {
            return fail(format!(
                "input {:?} and weight {:?} must both be 4-D",
                x.dims(),
                w.dims()
            ));
        };
        if ci * p.groups != c || o % p.groups != 0 {
            return fail(format!(
                "{c} input channels, weight {:?}, groups {}",
                w.dims(),
                p.groups
            ));
        }
        let (eh, ew) = (
            p.dilation * kh.saturating_sub(1) + 1,
            p.dilation * kw.saturating_sub(1) + 1,
        );
        if kh == 0 || kw == 0 || h + 2 * p.padding < eh || wd + 2 * p.padding < ew {
            return fail(format!(
                "padded input {h}×{wd} (+{}) smaller than the dilated kernel {eh}×{ew}",
                p.padding
            ));
        }
        Ok(())
    }
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Self {
            padding: 0,
            stride: 1,
            dilation: 1,
            groups: 1,
        }
    }
}

/// Which implementation CPU convolutions use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuConvEngine {
    /// This crate's kernels (the default).
    Quarc,
    /// candle's `conv2d` / `conv_transpose2d` (the reference; `QUARC_CPU_CONV=candle`).
    Candle,
}

const UNSET: u8 = 0;
const QUARC: u8 = 1;
const CANDLE: u8 = 2;
static ENGINE: AtomicU8 = AtomicU8::new(UNSET);

/// The engine CPU convolutions use: set by [`set_cpu_engine`], else by the environment variable
/// `QUARC_CPU_CONV` (`candle` selects candle's kernels), else [`CpuConvEngine::Quarc`].
pub fn cpu_engine() -> CpuConvEngine {
    match ENGINE.load(Ordering::Relaxed) {
        QUARC => CpuConvEngine::Quarc,
        CANDLE => CpuConvEngine::Candle,
        _ => {
            let candle = std::env::var("QUARC_CPU_CONV").is_ok_and(|v| v.eq_ignore_ascii_case("candle"));
            let e = if candle {
                CpuConvEngine::Candle
            } else {
                CpuConvEngine::Quarc
            };
            set_cpu_engine(e);
            e
        }
    }
}

/// Selects the engine for all later CPU convolutions in this process (benchmarks compare the two).
pub fn set_cpu_engine(engine: CpuConvEngine) {
    ENGINE.store(
        if engine == CpuConvEngine::Quarc { QUARC } else { CANDLE },
        Ordering::Relaxed,
    );
}

/// When stride-1 3×3 convolutions use Winograd (F(4×4, 3×3) or F(2×2, 3×3); forward pass, input
/// and weight gradients) instead of im2col.
///
/// Which tile runs is picked per layer: F(4×4, 3×3) (6 × 6 input tiles, 36 products per 16
/// outputs) where its GEMMs get at least half as many columns (images × tiles) as the layer has
/// channels, F(2×2, 3×3) elsewhere. F(4×4, 3×3)'s constants cost accuracy: its f32 error is up to
/// about 2e-5 of the largest output on ResNet-18's layers, against under 1e-6 for F(2×2, 3×3) and
/// im2col. Where that matters, [`WinogradPolicy::Off`] gives im2col, and the environment variable
/// `QUARC_WINOGRAD_TILE=2` (read once per process) keeps every Winograd layer on F(2×2, 3×3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WinogradPolicy {
    /// Never.
    Off,
    /// Where it measured faster: from 64 channels in and out (docs/performance.md has the A/B
    /// tables). The default.
    Auto,
    /// For every eligible shape (≥ 1 channel): tests and benchmarks.
    Always,
}

const POLICY_UNSET: u8 = 0;
const POLICY_OFF: u8 = 1;
const POLICY_AUTO: u8 = 2;
const POLICY_ALWAYS: u8 = 3;
static WINOGRAD: AtomicU8 = AtomicU8::new(POLICY_UNSET);

/// The Winograd policy: set by [`set_winograd`], else from the environment variable
/// `QUARC_WINOGRAD` (`0`/`off`, `always`; anything else or unset: auto).
pub fn winograd_policy() -> WinogradPolicy {
    match WINOGRAD.load(Ordering::Relaxed) {
        POLICY_OFF => WinogradPolicy::Off,
        POLICY_AUTO => WinogradPolicy::Auto,
        POLICY_ALWAYS => WinogradPolicy::Always,
        _ => {
            let v = std::env::var("QUARC_WINOGRAD").unwrap_or_default().to_ascii_lowercase();
            let policy = match v.trim() {
                "0" | "off" => WinogradPolicy::Off,
                "always" => WinogradPolicy::Always,
                _ => WinogradPolicy::Auto,
            };
            set_winograd(policy);
            policy
        }
    }
}

/// Sets the Winograd policy for all later CPU convolutions in this process.
pub fn set_winograd(policy: WinogradPolicy) {
    let v = match policy {
        WinogradPolicy::Off => POLICY_OFF,
        WinogradPolicy::Auto => POLICY_AUTO,
        WinogradPolicy::Always => POLICY_ALWAYS,
    };
    WINOGRAD.store(v, Ordering::Relaxed);
}

/// Whether [`conv2d`] runs this crate's kernels for these arguments (CPU, f32, dense or
/// depthwise, engine not switched to candle).
pub fn runs_fast_path(x: &Tensor, w: &Tensor, params: &Conv2dParams) -> bool {
    if cpu_engine() != CpuConvEngine::Quarc
        || !x.device().is_cpu()
        || !w.device().is_cpu()
        || x.dtype() != DType::F32
        || w.dtype() != DType::F32
    {
        return false;
    }
    match (x.dims4(), w.dims4()) {
        (Ok(xd), Ok(wd)) => op::geometry(xd, wd, params).is_ok(),
        _ => false,
    }
}

/// 2-D convolution of `x` (`N × C_in × H × W`) with `w` (`C_out × C_in/groups × KH × KW`),
/// differentiable in both. Runs this crate's kernels where [`runs_fast_path`] says so, and
/// candle's `conv2d` otherwise, with identical results up to f32 summation order.
///
/// The backward pass skips the input gradient when `x` tracks no gradient (an image).
pub fn conv2d(x: &Tensor, w: &Tensor, params: &Conv2dParams) -> candle_core::Result<Tensor> {
    params.check(x, w)?;
    if runs_fast_path(x, w, params) {
        let op = op::Forward {
            params: *params,
            stash: stash::TileStash::when(stash::keeps_tiles() && w.track_op()),
        };
        x.contiguous()?.apply_op2(&w.contiguous()?, op)
    } else {
        conv2d_reference(x, w, params)
    }
}

/// `act(conv2d(x, w) · scale[o] + shift[o])`: a convolution followed by evaluation-mode
/// BatchNorm (as a per-output-channel affine) and an activation, in one pass on CPU — the
/// affine and the activation run on each output chunk while it is still in cache. Bit for bit
/// the result of [`conv2d`] followed by [`channel_affine`]; differentiable in all four inputs
/// (the backward is composed and recomputes the convolution). Other devices and dtypes run
/// exactly that composition.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use quarc_kernels::{Activation, Conv2dParams, channel_affine, conv2d, conv2d_affine_act};
/// let dev = Device::Cpu;
/// let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev)?;
/// let w = Tensor::randn(0f32, 0.5, (4, 3, 3, 3), &dev)?;
/// let (scale, shift) = (Tensor::new(&[1.0f32, 0.5, 2.0, -1.0], &dev)?, Tensor::new(&[0.1f32, 0.0, -0.2, 0.3], &dev)?);
/// let p = Conv2dParams { padding: 1, ..Default::default() };
/// let fused = conv2d_affine_act(&x, &w, &scale, &shift, Activation::Relu, &p)?;
/// let separate = channel_affine(&conv2d(&x, &w, &p)?, &scale, &shift, Activation::Relu)?;
/// assert_eq!(fused.flatten_all()?.to_vec1::<f32>()?, separate.flatten_all()?.to_vec1::<f32>()?);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv2d_affine_act(
    x: &Tensor,
    w: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    act: Activation,
    params: &Conv2dParams,
) -> candle_core::Result<Tensor> {
    params.check(x, w)?;
    let c_out = w.dim(0)?;
    let affine_ok = [scale, shift]
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32 && t.dims() == [c_out]);
    if runs_fast_path(x, w, params) && affine_ok {
        let ss = Tensor::stack(&[scale, shift], 0)?;
        x.contiguous()?
            .apply_op3(&w.contiguous()?, &ss, op::ForwardAffine { params: *params, act })
    } else {
        channel_affine(&conv2d(x, w, params)?, scale, shift, act)
    }
}

/// `conv2d(lsq(x; step), w)`: a per-tensor LSQ fake-quant of the input applied while the input
/// is packed into the im2col operand or interleaved for the Winograd tile transform (no
/// separate pass writing and re-reading `x_q`), with the straight-through input gradient and
/// LSQ's step gradient (scaled by `spec.grad_scale`) in the backward. Returns `None` where the
/// fusion does not apply — anything but a dense convolution on the CPU fast path (depthwise,
/// other devices and dtypes) or a step that is not one f32 value — and the caller quantizes and
/// convolves separately. Otherwise `Some((y, nan))`, `nan` saying whether an input or the step
/// was NaN. Bit for bit the result of the separate fused fake-quant followed by [`conv2d`] on
/// the same path.
pub fn conv2d_lsq_input(
    x: &Tensor,
    w: &Tensor,
    step: &Tensor,
    spec: LsqInput,
    params: &Conv2dParams,
) -> candle_core::Result<Option<(Tensor, bool)>> {
    if !runs_fast_path(x, w, params) || step.elem_count() != 1 || !step.device().is_cpu() || step.dtype() != DType::F32
    {
        return Ok(None);
    }
    let (_, kind) = op::geometry(x.dims4()?, w.dims4()?, params).map_err(candle_core::Error::msg)?;
    if kind != ConvKind::Dense {
        return Ok(None);
    }
    let nan = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let op = op::ForwardLsqInput {
        params: *params,
        spec,
        nan: nan.clone(),
        stash: stash::TileStash::when(stash::keeps_tiles() && w.track_op()),
    };
    let y = x.contiguous()?.apply_op3(&w.contiguous()?, &step.contiguous()?, op)?;
    Ok(Some((y, nan.load(std::sync::atomic::Ordering::Relaxed))))
}

/// candle's composed conv2d → affine → activation (the reference of [`conv2d_affine_act`]).
pub fn conv2d_affine_act_reference(
    x: &Tensor,
    w: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    act: Activation,
    params: &Conv2dParams,
) -> candle_core::Result<Tensor> {
    channel_affine_reference(&conv2d_reference(x, w, params)?, scale, shift, act)
}

/// candle's composed `conv2d` (the reference every fast path is tested against).
pub fn conv2d_reference(x: &Tensor, w: &Tensor, params: &Conv2dParams) -> candle_core::Result<Tensor> {
    x.conv2d(w, params.padding, params.stride, params.dilation, params.groups)
}

/// The input gradient alone (no autograd), for benchmarks: `dy` is the output gradient, `hw`
/// the input's spatial size. CPU and f32 only.
pub fn conv2d_grad_input(
    dy: &Tensor,
    w: &Tensor,
    hw: (usize, usize),
    params: &Conv2dParams,
) -> candle_core::Result<Tensor> {
    dy.contiguous()?.apply_op2_no_bwd(
        &w.contiguous()?,
        &op::GradInput {
            params: *params,
            h: hw.0,
            w: hw.1,
        },
    )
}

/// The weight gradient alone (no autograd), for benchmarks: `kernel` is `(KH, KW)`. CPU and
/// f32 only.
pub fn conv2d_grad_weight(
    x: &Tensor,
    dy: &Tensor,
    kernel: (usize, usize),
    params: &Conv2dParams,
) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2_no_bwd(
        &dy.contiguous()?,
        &op::GradWeight {
            params: *params,
            kh: kernel.0,
            kw: kernel.1,
            quant: None,
            saved: None,
        },
    )
}
