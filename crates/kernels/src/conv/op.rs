//! The candle custom ops: forward, input gradient and weight gradient.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::epilogue::Epilogue;
use super::geometry::{ConvGeometry, ConvKind};
use super::input_quant::{Grid, LsqInput, Packing};
use super::stash::TileStash;
use super::winograd::SavedTiles;
use super::{Conv2dParams, dense, depthwise, winograd, winograd_policy};
use crate::batch_norm::Activation;
use crate::storage::f32_slice;

fn dims4(l: &Layout, what: &str) -> candle_core::Result<(usize, usize, usize, usize)> {
    match *l.shape().dims() {
        [a, b, c, d] => Ok((a, b, c, d)),
        ref other => candle_core::bail!("quarc conv2d: {what} must be 4-D, got shape {other:?}"),
    }
}

/// Builds and validates the geometry from the input and weight shapes.
pub(crate) fn geometry(
    x: (usize, usize, usize, usize),
    w: (usize, usize, usize, usize),
    p: &Conv2dParams,
) -> Result<(ConvGeometry, ConvKind), String> {
    let (batch, c_in, h, wd) = x;
    let (c_out, c_in_g, kh, kw) = w;
    if p.groups == 0 || c_in_g * p.groups != c_in {
        return Err(format!(
            "conv2d: weight expects {c_in_g}×{} input channels, input has {c_in}",
            p.groups
        ));
    }
    let g = ConvGeometry {
        batch,
        c_in,
        h,
        w: wd,
        c_out,
        kh,
        kw,
        stride: p.stride,
        padding: p.padding,
        dilation: p.dilation,
        groups: p.groups,
    };
    let kind = g.validate()?;
    Ok((g, kind))
}

/// Runs the forward algorithm the geometry calls for, then `epi` on each output chunk; a
/// Winograd forward leaves its transformed input in `stash` when that is on.
fn forward_storage(
    g: &ConvGeometry,
    kind: ConvKind,
    x: &[f32],
    w: &[f32],
    epi: Option<&Epilogue<'_>>,
    stash: &TileStash,
) -> (CpuStorage, Shape) {
    let out = match kind {
        _ if g.batch == 0 => Vec::new(),
        ConvKind::Depthwise => depthwise::forward(g, x, w, epi),
        ConvKind::Dense if winograd::applies(g, winograd_policy()) => {
            let (out, tiles) = winograd::forward_fresh(g, x, w, epi, None, stash.is_on());
            stash.put(tiles);
            out
        }
        ConvKind::Dense => {
            let mut out = crate::zeroed::zeros(g.batch * g.c_out * g.p_out());
            dense::forward(g, x, w, &mut out, epi, None);
            out
        }
    };
    (
        CpuStorage::F32(out),
        Shape::from((g.batch, g.c_out, g.h_out(), g.w_out())),
    )
}

/// `conv2d(x, w)`, differentiable in both arguments; the stash carries the Winograd tiles from
/// the forward to the weight gradient when on.
#[derive(Clone, Debug)]
pub(crate) struct Forward {
    pub params: Conv2dParams,
    pub stash: TileStash,
}

impl Forward {
    /// The op without a stash.
    pub fn plain(params: Conv2dParams) -> Self {
        Self {
            params,
            stash: TileStash::default(),
        }
    }
}

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "quarc-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, kind) =
            geometry(dims4(l1, "input")?, dims4(l2, "weight")?, &self.params).map_err(candle_core::Error::msg)?;
        let (x, w) = (
            f32_slice(s1, l1, "quarc conv2d", "input")?,
            f32_slice(s2, l2, "quarc conv2d", "weight")?,
        );
        Ok(forward_storage(&g, kind, x, w, None, &self.stash))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (_, _, h, wd) = x.dims4()?;
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(
                w,
                &GradInput {
                    params: self.params,
                    h,
                    w: wd,
                },
            )?)
        } else {
            None
        };
        let (_, _, kh, kw) = w.dims4()?;
        let dw = x.apply_op2_no_bwd(
            &grad,
            &GradWeight {
                params: self.params,
                kh,
                kw,
                quant: None,
                saved: self.stash.take().map(Arc::new),
            },
        )?;
        Ok((dx, Some(dw)))
    }
}

/// `(dy, w) ↦ dx`; stores the input size, which the output size does not determine for stride > 1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GradInput {
    pub params: Conv2dParams,
    pub h: usize,
    pub w: usize,
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "quarc-conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (batch, c_out, ho, wo) = dims4(l1, "output gradient")?;
        let wdims = dims4(l2, "weight")?;
        let c_in = wdims.1 * self.params.groups;
        let (g, kind) =
            geometry((batch, c_in, self.h, self.w), wdims, &self.params).map_err(candle_core::Error::msg)?;
        if (g.c_out, g.h_out(), g.w_out()) != (c_out, ho, wo) {
            candle_core::bail!(
                "quarc conv2d: output gradient {:?} does not match the convolution",
                l1.shape()
            );
        }
        let (dy, w) = (
            f32_slice(s1, l1, "quarc conv2d", "output gradient")?,
            f32_slice(s2, l2, "quarc conv2d", "weight")?,
        );
        let dx = match kind {
            _ if g.batch == 0 => Vec::new(),
            ConvKind::Depthwise => depthwise::grad_input(&g, dy, w),
            ConvKind::Dense if winograd::applies(&g, winograd_policy()) => winograd::grad_input_fresh(&g, dy, w),
            ConvKind::Dense => {
                let mut dx = crate::zeroed::zeros(batch * c_in * g.p_in());
                dense::grad_input(&g, dy, w, &mut dx);
                dx
            }
        };
        Ok((CpuStorage::F32(dx), Shape::from((batch, c_in, self.h, self.w))))
    }
}

/// `(x, dy) ↦ dw`; stores the kernel size, the input fake-quant grid when the forward
/// quantized `x` while packing it, and the Winograd tiles the forward kept, if any.
#[derive(Clone, Debug)]
pub(crate) struct GradWeight {
    pub params: Conv2dParams,
    pub kh: usize,
    pub kw: usize,
    pub quant: Option<Grid>,
    pub saved: Option<Arc<SavedTiles>>,
}

impl CustomOp2 for GradWeight {
    fn name(&self) -> &'static str {
        "quarc-conv2d-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xd = dims4(l1, "input")?;
        let (batch, c_out, ho, wo) = dims4(l2, "output gradient")?;
        let c_in_g = xd.1 / self.params.groups.max(1);
        let (g, kind) =
            geometry(xd, (c_out, c_in_g, self.kh, self.kw), &self.params).map_err(candle_core::Error::msg)?;
        if (g.batch, g.h_out(), g.w_out()) != (batch, ho, wo) {
            candle_core::bail!(
                "quarc conv2d: output gradient {:?} does not match the convolution",
                l2.shape()
            );
        }
        let (x, dy) = (
            f32_slice(s1, l1, "quarc conv2d", "input")?,
            f32_slice(s2, l2, "quarc conv2d", "output gradient")?,
        );
        let mut dw = vec![0.0f32; c_out * g.k_dim()];
        match kind {
            _ if g.batch == 0 => {}
            ConvKind::Dense => {
                let packing = self.quant.map(Packing::new);
                if winograd::applies(&g, winograd_policy()) {
                    winograd::grad_weight(&g, x, dy, &mut dw, packing.as_ref(), self.saved.as_deref())
                } else {
                    dense::grad_weight(&g, x, dy, &mut dw, packing.as_ref())
                }
            }
            ConvKind::Depthwise => depthwise::grad_weight(&g, x, dy, &mut dw),
        }
        Ok((CpuStorage::F32(dw), Shape::from((c_out, c_in_g, self.kh, self.kw))))
    }
}

/// `(x, w, [scale; shift]) ↦ act(conv2d(x, w) · scale + shift)`, differentiable in all three.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ForwardAffine {
    pub params: Conv2dParams,
    pub act: Activation,
}

impl CustomOp3 for ForwardAffine {
    fn name(&self) -> &'static str {
        "quarc-conv2d-affine-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, kind) =
            geometry(dims4(l1, "input")?, dims4(l2, "weight")?, &self.params).map_err(candle_core::Error::msg)?;
        let (x, w, ss) = (
            f32_slice(s1, l1, "quarc conv2d", "input")?,
            f32_slice(s2, l2, "quarc conv2d", "weight")?,
            f32_slice(s3, l3, "quarc conv2d", "scale and shift")?,
        );
        if ss.len() != 2 * g.c_out {
            candle_core::bail!(
                "quarc conv2d: scale and shift need {} values each, got {:?}",
                g.c_out,
                l3.shape()
            );
        }
        let epi = Epilogue {
            scale: &ss[..g.c_out],
            shift: &ss[g.c_out..],
            act: self.act,
        };
        Ok(forward_storage(&g, kind, x, w, Some(&epi), &TileStash::default()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        ss: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // g = grad · act'(y); the convolution sees g · scale; scale sees Σ g · conv; shift Σ g.
        let c = w.dim(0)?;
        let mask = |t: Tensor| t.to_dtype(grad.dtype());
        let g = match self.act {
            Activation::Identity => grad.clone(),
            Activation::Relu => (grad * mask(res.gt(0.0)?)?)?,
            Activation::Relu6 => (grad * (mask(res.gt(0.0)?)? * mask(res.lt(6.0)?)?)?)?,
        };
        let scale = ss.get(0)?.reshape((1, c, 1, 1))?;
        let dconv = g.broadcast_mul(&scale)?.contiguous()?;
        let (dx, dw) = Forward::plain(self.params).bwd(x, w, &dconv, &dconv)?;
        let conv = x.apply_op2_no_bwd(w, &Forward::plain(self.params))?;
        let dscale = (&g * &conv)?.sum((0, 2, 3))?;
        let dshift = g.sum((0, 2, 3))?;
        Ok((dx, dw, Some(Tensor::stack(&[dscale, dshift], 0)?)))
    }
}

/// `(x, w, step) ↦ conv2d(lsq(x; step), w)` with the fake-quant applied while `x` is packed
/// (into the im2col operand, or the Winograd tile transform's interleaved planes; dense
/// convolutions only, the caller checks). Raises `nan` when an input or the step is NaN.
#[derive(Clone, Debug)]
pub(crate) struct ForwardLsqInput {
    pub params: Conv2dParams,
    pub spec: LsqInput,
    pub nan: Arc<AtomicBool>,
    pub stash: TileStash,
}

/// The step, read from its one-element tensor.
fn step_value(step: &Tensor) -> candle_core::Result<f32> {
    step.flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?
        .first()
        .copied()
        .ok_or_else(|| candle_core::Error::msg("quarc conv2d: the input quantizer's step is empty"))
}

impl CustomOp3 for ForwardLsqInput {
    fn name(&self) -> &'static str {
        "quarc-conv2d-lsq-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, kind) =
            geometry(dims4(l1, "input")?, dims4(l2, "weight")?, &self.params).map_err(candle_core::Error::msg)?;
        if kind != ConvKind::Dense {
            candle_core::bail!("quarc conv2d: input fake-quant fusion needs a dense convolution");
        }
        let (x, w, step) = (
            f32_slice(s1, l1, "quarc conv2d", "input")?,
            f32_slice(s2, l2, "quarc conv2d", "weight")?,
            f32_slice(s3, l3, "quarc conv2d", "step")?,
        );
        let step = *step
            .first()
            .ok_or_else(|| candle_core::Error::msg("quarc conv2d: the input quantizer's step is empty"))?;
        let packing = Packing::new(Grid::new(step, &self.spec));
        let len = g.batch * g.c_out * g.p_out();
        let out = if g.batch > 0 && winograd::applies(&g, winograd_policy()) {
            let (out, tiles) = winograd::forward_fresh(&g, x, w, None, Some(&packing), self.stash.is_on());
            self.stash.put(tiles);
            out
        } else {
            let mut out = crate::zeroed::zeros(len);
            if g.batch > 0 {
                dense::forward(&g, x, w, &mut out, None, Some(&packing));
            }
            out
        };
        if packing.saw_nan() {
            self.nan.store(true, Ordering::Relaxed);
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.batch, g.c_out, g.h_out(), g.w_out())),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        step: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        let grid = Grid::new(step_value(step)?, &self.spec);
        // d x_q (needed for both the input and the step gradients), then LSQ's backward.
        let dxq = grad.apply_op2_no_bwd(
            w,
            &GradInput {
                params: self.params,
                h,
                w: wd,
            },
        )?;
        let numel = x.elem_count();
        let packed = x.apply_op2_no_bwd(&dxq, &LsqInputBackward { grid, spec: self.spec })?;
        let dx = packed.narrow(0, 0, numel)?.reshape(x.shape())?;
        // copied out: a view would keep `packed` (an activation's size) alive in the gradient store
        let dstep = packed.narrow(0, numel, 1)?.force_contiguous()?.reshape(step.shape())?;
        let dw = x.apply_op2_no_bwd(
            &grad,
            &GradWeight {
                params: self.params,
                kh,
                kw,
                quant: Some(grid),
                saved: self.stash.take().map(Arc::new),
            },
        )?;
        Ok((x.track_op().then_some(dx), Some(dw), Some(dstep)))
    }
}

/// `(x, d x_q) ↦ [d x | d step]`: LSQ's straight-through input gradient and its scaled step
/// gradient (the fake-quant kernels' closed-form backward, per tensor).
#[derive(Clone, Copy, Debug)]
struct LsqInputBackward {
    grid: Grid,
    spec: LsqInput,
}

impl CustomOp2 for LsqInputBackward {
    fn name(&self) -> &'static str {
        "quarc-conv2d-lsq-input-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, g) = (
            f32_slice(s1, l1, "quarc conv2d", "input")?,
            f32_slice(s2, l2, "quarc conv2d", "input gradient")?,
        );
        let params = crate::fake_quant::Params {
            steps: &[self.grid.step],
            offsets: None,
            qn: self.grid.qn,
            qp: self.grid.qp,
            eps: self.spec.eps,
            layout: crate::fake_quant::ChannelLayout::per_tensor(x.len()),
        };
        let mut out = vec![0.0f32; x.len() + 1];
        let (d_step, _) =
            crate::fake_quant::backward(x, g, &params, crate::fake_quant::StepGrad::Lsq, &mut out[..x.len()]);
        out[x.len()] = (d_step.first().copied().unwrap_or(0.0) * self.spec.grad_scale) as f32;
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}
