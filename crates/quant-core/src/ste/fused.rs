//! candle custom ops around the fused CPU kernels (f32 and f64).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};

use super::kernel::{self, Params};
use super::spec::{FakeQuantSpec, STEP_EPS};
use crate::rounding::num_like::Float;
use crate::{Error, Result};

fn contiguous<'a, T>(data: &'a [T], layout: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("fused fake-quant: {what} must be contiguous"),
    }
}

/// Forward op: `(x, step)` or `(x, step, offset)`.
#[derive(Clone)]
struct Forward {
    spec: FakeQuantSpec,
    nan: Arc<AtomicBool>,
}

impl Forward {
    fn run<T: Float + candle_core::WithDType>(
        &self,
        x: &[T],
        shape: &Shape,
        steps: &[T],
        offsets: Option<&[T]>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let params = Params {
            steps,
            offsets,
            qn: T::cast_from(self.spec.qn),
            qp: T::cast_from(self.spec.qp),
            eps: T::cast_from(STEP_EPS),
            layout: self.spec.layout(shape)?,
        };
        let mut out = vec![T::cast_from(0.0); x.len()];
        if kernel::forward(x, &params, &mut out) {
            self.nan.store(true, Ordering::Relaxed);
        }
        Ok((T::to_cpu_storage_owned(out), shape.clone()))
    }

    fn dispatch(
        &self,
        x: (&CpuStorage, &Layout),
        s: (&CpuStorage, &Layout),
        o: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = x.1.shape();
        match (x.0, s.0, o) {
            (CpuStorage::F32(xd), CpuStorage::F32(sd), None) => {
                self.run(contiguous(xd, x.1, "x")?, shape, contiguous(sd, s.1, "step")?, None)
            }
            (CpuStorage::F32(xd), CpuStorage::F32(sd), Some((CpuStorage::F32(od), ol))) => {
                let o = contiguous(od, ol, "offset")?;
                self.run(contiguous(xd, x.1, "x")?, shape, contiguous(sd, s.1, "step")?, Some(o))
            }
            (CpuStorage::F64(xd), CpuStorage::F64(sd), None) => {
                self.run(contiguous(xd, x.1, "x")?, shape, contiguous(sd, s.1, "step")?, None)
            }
            (CpuStorage::F64(xd), CpuStorage::F64(sd), Some((CpuStorage::F64(od), ol))) => {
                let o = contiguous(od, ol, "offset")?;
                self.run(contiguous(xd, x.1, "x")?, shape, contiguous(sd, s.1, "step")?, Some(o))
            }
            _ => candle_core::bail!("fused fake-quant supports f32 and f64 with matching dtypes"),
        }
    }

    /// Gradients for `(x, step, offset)` through the fused backward kernel.
    fn gradients(
        &self,
        x: &Tensor,
        step: &Tensor,
        offset: Option<&Tensor>,
        grad: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Option<Tensor>)> {
        let to_f64 = |t: &Tensor| -> candle_core::Result<Vec<f64>> { t.flatten_all()?.to_dtype(DType::F64)?.to_vec1() };
        let op = Backward {
            spec: self.spec,
            steps: to_f64(step)?,
            offsets: offset.map(to_f64).transpose()?,
        };
        let numel = x.elem_count();
        let channels = op.steps.len();
        let packed = x.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &op)?;
        let gx = packed.narrow(0, 0, numel)?.reshape(x.shape())?;
        // the step's and offset's gradients copied out: views would keep `packed` (the input's size)
        // alive in the gradient store until the optimizer step
        let gs = packed
            .narrow(0, numel, channels)?
            .force_contiguous()?
            .reshape(step.shape())?;
        let go = match offset {
            Some(o) => Some(
                packed
                    .narrow(0, numel + channels, channels)?
                    .force_contiguous()?
                    .reshape(o.shape())?,
            ),
            None => None,
        };
        Ok((gx, gs, go))
    }
}

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "quarc-fake-quant"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.dispatch((s1, l1), (s2, l2), None)
    }
    fn bwd(
        &self,
        x: &Tensor,
        s: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gs, _) = self.gradients(x, s, None, grad)?;
        Ok((Some(gx), Some(gs)))
    }
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "quarc-fake-quant-affine"
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
        self.dispatch((s1, l1), (s2, l2), Some((s3, l3)))
    }
    #[allow(clippy::type_complexity)]
    fn bwd(
        &self,
        x: &Tensor,
        s: &Tensor,
        o: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gs, go) = self.gradients(x, s, Some(o), grad)?;
        Ok((Some(gx), Some(gs), go))
    }
}

/// Backward op on `(x, grad)`; the small step/offset vectors travel inside the op.
/// Output: `[d x (numel) | d step (C) | d offset (C, only with offsets)]`, flat.
struct Backward {
    spec: FakeQuantSpec,
    steps: Vec<f64>,
    offsets: Option<Vec<f64>>,
}

impl Backward {
    fn run<T: Float + candle_core::WithDType>(
        &self,
        x: &[T],
        shape: &Shape,
        grad: &[T],
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let steps: Vec<T> = self.steps.iter().map(|&v| T::cast_from(v)).collect();
        let offsets: Option<Vec<T>> = self
            .offsets
            .as_ref()
            .map(|o| o.iter().map(|&v| T::cast_from(v)).collect());
        let params = Params {
            steps: &steps,
            offsets: offsets.as_deref(),
            qn: T::cast_from(self.spec.qn),
            qp: T::cast_from(self.spec.qp),
            eps: T::cast_from(STEP_EPS),
            layout: self.spec.layout(shape)?,
        };
        let numel = x.len();
        let channels = steps.len();
        let extra = if offsets.is_some() { 2 * channels } else { channels };
        let mut out = vec![T::cast_from(0.0); numel + extra];
        let (d_step, d_offset) = kernel::backward(x, grad, &params, self.spec.step_grad, &mut out[..numel]);
        let g = self.spec.grad_scale;
        for (dst, v) in out[numel..numel + channels].iter_mut().zip(&d_step) {
            *dst = T::cast_from(v * g);
        }
        if offsets.is_some() {
            for (dst, v) in out[numel + channels..].iter_mut().zip(&d_offset) {
                *dst = T::cast_from(v * g);
            }
        }
        let len = out.len();
        Ok((T::to_cpu_storage_owned(out), Shape::from(len)))
    }
}

impl CustomOp2 for Backward {
    fn name(&self) -> &'static str {
        "quarc-fake-quant-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = l1.shape();
        match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => {
                self.run(contiguous(x, l1, "x")?, shape, contiguous(g, l2, "grad")?)
            }
            (CpuStorage::F64(x), CpuStorage::F64(g)) => {
                self.run(contiguous(x, l1, "x")?, shape, contiguous(g, l2, "grad")?)
            }
            _ => candle_core::bail!("fused fake-quant backward supports f32 and f64 with matching dtypes"),
        }
    }
}

/// Fused fake-quant on CPU. The caller has validated shapes and dtypes.
pub(crate) fn fake_quant_fused(
    x: &Tensor,
    step: &Tensor,
    offset: Option<&Tensor>,
    spec: FakeQuantSpec,
) -> Result<Tensor> {
    let nan = Arc::new(AtomicBool::new(false));
    let op = Forward { spec, nan: nan.clone() };
    let x = x.contiguous()?;
    let step = step.contiguous()?;
    let out = match offset {
        None => x.apply_op2(&step, op)?,
        Some(o) => x.apply_op3(&step, &o.contiguous()?, op)?,
    };
    if nan.load(Ordering::Relaxed) {
        return Err(Error::NonFinite {
            what: "fake-quant input, step or offset (NaN)".into(),
        });
    }
    Ok(out)
}
