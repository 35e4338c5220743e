//! The candle custom ops: forward, input gradient and weight gradient.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use super::geometry::{ConvGeometry, ConvKind};
use super::{Conv2dParams, dense, depthwise, winograd, winograd_policy};
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

/// `conv2d(x, w)`, differentiable in both arguments.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Forward(pub Conv2dParams);

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
            geometry(dims4(l1, "input")?, dims4(l2, "weight")?, &self.0).map_err(candle_core::Error::msg)?;
        let (x, w) = (
            f32_slice(s1, l1, "quarc conv2d", "input")?,
            f32_slice(s2, l2, "quarc conv2d", "weight")?,
        );
        let mut out = vec![0.0f32; g.batch * g.c_out * g.p_out()];
        match kind {
            _ if g.batch == 0 => {}
            ConvKind::Dense if winograd::applies(&g, winograd_policy()) => winograd::forward(&g, x, w, &mut out),
            ConvKind::Dense => dense::forward(&g, x, w, &mut out),
            ConvKind::Depthwise => depthwise::forward(&g, x, w, &mut out),
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
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (_, _, h, wd) = x.dims4()?;
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(
                w,
                &GradInput {
                    params: self.0,
                    h,
                    w: wd,
                },
            )?)
        } else {
            None
        };
        let (_, _, kh, kw) = w.dims4()?;
        let dw = x.apply_op2_no_bwd(&grad, &GradWeight { params: self.0, kh, kw })?;
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
        let mut dx = vec![0.0f32; batch * c_in * g.p_in()];
        match kind {
            _ if g.batch == 0 => {}
            ConvKind::Dense if winograd::applies(&g, winograd_policy()) => winograd::grad_input(&g, dy, w, &mut dx),
            ConvKind::Dense => dense::grad_input(&g, dy, w, &mut dx),
            ConvKind::Depthwise => depthwise::grad_input(&g, dy, w, &mut dx),
        }
        Ok((CpuStorage::F32(dx), Shape::from((batch, c_in, self.h, self.w))))
    }
}

/// `(x, dy) ↦ dw`; stores the kernel size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GradWeight {
    pub params: Conv2dParams,
    pub kh: usize,
    pub kw: usize,
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
            ConvKind::Dense => dense::grad_weight(&g, x, dy, &mut dw),
            ConvKind::Depthwise => depthwise::grad_weight(&g, x, dy, &mut dw),
        }
        Ok((CpuStorage::F32(dw), Shape::from((c_out, c_in_g, self.kh, self.kw))))
    }
}
