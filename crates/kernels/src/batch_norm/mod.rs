//! Training-mode BatchNorm over NCHW with a fused activation (identity, ReLU, ReLU6): one
//! statistics pass pair and one normalising pass forward; two passes backward, closed form,
//! without the temporaries of a composed BatchNorm. Eval-mode BatchNorm is a per-channel affine
//! and stays composed.

use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};

pub mod kernel;
mod planes;

use kernel::BnShape;

use crate::storage::f32_slice;

/// The activation applied after the normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// None.
    Identity,
    /// `max(0, y)`.
    Relu,
    /// `min(max(0, y), 6)` (MobileNetV2).
    Relu6,
}

impl Activation {
    /// Applies the activation with candle ops (the composed reference).
    pub fn apply(self, y: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Identity => Ok(y.clone()),
            Activation::Relu => y.relu(),
            Activation::Relu6 => y.relu()?.minimum(6.0),
        }
    }
}

/// Batch statistics of one training-mode forward, for the running-statistics update.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStats {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel biased variance (divide by `count`; PyTorch's running variance uses
    /// `var · count / (count − 1)`).
    pub var: Vec<f32>,
    /// Elements per channel (`N · H · W`).
    pub count: usize,
}

/// What the forward keeps for the backward.
#[derive(Clone, Debug)]
struct Saved {
    mean: Vec<f32>,
    var: Vec<f32>,
    invstd: Vec<f32>,
    /// The forward's `y = act(x · scale + shift)`, `scale = γ · invstd`.
    scale: Vec<f32>,
    shift: Vec<f32>,
}

/// Training-mode BatchNorm `act(γ · (x − μ_B) / √(σ²_B + ε) + β)` over `x` of shape
/// `(N, C, H, W)`, differentiable in `x`, `γ` and `β`; returns the batch statistics too.
/// Runs the fused CPU kernels for f32 on CPU and the composed reference elsewhere.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: Activation,
) -> candle_core::Result<(Tensor, BatchStats)> {
    let fast = x.device().is_cpu()
        && crate::cpu_engine() == crate::CpuConvEngine::Quarc
        && [x.dtype(), gamma.dtype(), beta.dtype()]
            .iter()
            .all(|d| *d == DType::F32)
        && x.rank() == 4;
    if !fast {
        return batch_norm_train_reference(x, gamma, beta, eps, act);
    }
    let (n, c, h, w) = x.dims4()?;
    if gamma.dims() != [c] || beta.dims() != [c] {
        candle_core::bail!(
            "batch_norm: γ {:?} and β {:?} must have {c} elements",
            gamma.dims(),
            beta.dims()
        );
    }
    let saved = Arc::new(Mutex::new(None));
    let op = Forward {
        eps,
        act,
        saved: saved.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let s = saved
        .lock()
        .map_err(|_| candle_core::Error::msg("batch_norm: poisoned lock"))?;
    let s = s
        .as_ref()
        .ok_or_else(|| candle_core::Error::msg("batch_norm: forward kept no statistics"))?;
    Ok((
        y,
        BatchStats {
            mean: s.mean.clone(),
            var: s.var.clone(),
            count: n * h * w,
        },
    ))
}

/// The composed candle version of [`batch_norm_train`] (the reference; CUDA, Metal, other
/// dtypes).
pub fn batch_norm_train_reference(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: Activation,
) -> candle_core::Result<(Tensor, BatchStats)> {
    let (n, c, h, w) = x.dims4()?;
    let mean = x.mean_keepdim((0, 2, 3))?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
    let y = centred.broadcast_div(&(&var + eps)?.sqrt()?)?;
    let y = y
        .broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?
        .broadcast_add(&beta.reshape((1, c, 1, 1))?)?;
    let stats = BatchStats {
        mean: mean.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
        var: var.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
        count: n * h * w,
    };
    Ok((act.apply(&y)?, stats))
}

fn shape_of(l: &Layout) -> candle_core::Result<BnShape> {
    match *l.shape().dims() {
        [n, c, h, w] if n * h * w > 0 => Ok(BnShape { n, c, hw: h * w }),
        [n, c, h, w] => candle_core::bail!("batch_norm: empty input {n}×{c}×{h}×{w}: no values per channel"),
        ref d => candle_core::bail!("batch_norm: expected (N, C, H, W), got {d:?}"),
    }
}

struct Forward {
    eps: f64,
    act: Activation,
    saved: Arc<Mutex<Option<Saved>>>,
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "quarc-batch-norm"
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
        let sh = shape_of(l1)?;
        let (x, gamma, beta) = (
            f32_slice(s1, l1, "batch_norm", "x")?,
            f32_slice(s2, l2, "batch_norm", "γ")?,
            f32_slice(s3, l3, "batch_norm", "β")?,
        );
        let (mean, var) = kernel::channel_stats(x, sh);
        let invstd: Vec<f32> = var
            .iter()
            .map(|v| (1.0 / ((*v as f64) + self.eps).sqrt()) as f32)
            .collect();
        let scale: Vec<f32> = gamma.iter().zip(&invstd).map(|(g, i)| g * i).collect();
        let shift: Vec<f32> = beta
            .iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        let y = kernel::normalized(x, sh, &scale, &shift, self.act);
        if let Ok(mut s) = self.saved.lock() {
            *s = Some(Saved {
                mean,
                var,
                invstd,
                scale,
                shift,
            });
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::msg("batch_norm: poisoned lock"))?
            .clone()
            .ok_or_else(|| candle_core::Error::msg("batch_norm: backward before forward"))?;
        let c = saved.mean.len();
        let numel = x.elem_count();
        let flat = x.apply_op2_no_bwd(&grad.contiguous()?, &Backward { saved, act: self.act })?;
        let dx = if x.track_op() {
            Some(flat.narrow(0, 0, numel)?.reshape(x.shape())?)
        } else {
            None
        };
        // dγ and dβ copied out: a view would keep the whole `flat` (an activation's size) alive in the
        // gradient store until the optimizer step.
        Ok((
            dx,
            Some(flat.narrow(0, numel, c)?.force_contiguous()?),
            Some(flat.narrow(0, numel + c, c)?.force_contiguous()?),
        ))
    }
}

/// `(x, dy) ↦ [dx | dγ | dβ]` flattened into one tensor. Where the activation passed the
/// gradient is recomputed from `x` and the forward's affine, so `y` is not read.
struct Backward {
    saved: Saved,
    act: Activation,
}

impl CustomOp2 for Backward {
    fn name(&self) -> &'static str {
        "quarc-batch-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let sh = shape_of(l1)?;
        let (x, dy) = (
            f32_slice(s1, l1, "batch_norm", "x")?,
            f32_slice(s2, l2, "batch_norm", "dy")?,
        );
        if dy.len() != x.len() {
            candle_core::bail!(
                "batch_norm: gradient of {} values for an input of {}",
                dy.len(),
                x.len()
            );
        }
        let s = &self.saved;
        let f = kernel::ForwardAffine {
            scale: &s.scale,
            shift: &s.shift,
            act: self.act,
        };
        let (sg, sgx) = kernel::backward_sums(x, dy, sh, &s.mean, f);
        let write = |out: &mut [MaybeUninit<f32>]| {
            let (dx, rest) = out.split_at_mut(x.len());
            kernel::backward_input_into(x, dy, sh, &s.mean, &s.invstd, (&sg, &sgx), f, dx);
            for c in 0..sh.c {
                rest[c].write((sgx[c] * s.invstd[c] as f64) as f32);
                rest[sh.c + c].write(sg[c] as f32);
            }
        };
        // SAFETY: `dx` has the length of `x` and `dy` (checked above), so the kernel writes it
        // whole; the loop writes the `2c` values after it.
        #[allow(unsafe_code)]
        let out = unsafe { crate::fresh::written_by(x.len() + 2 * sh.c, write) };
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * sh.c)))
    }
}

/// `act(x · scale[c] + shift[c])` over `x` of shape `(N, C, H, W)` in one pass: evaluation-mode
/// BatchNorm with its activation. Differentiable in all three arguments; the fused CPU kernel
/// for f32, composed candle ops elsewhere.
pub fn channel_affine(x: &Tensor, scale: &Tensor, shift: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    let fast = x.device().is_cpu()
        && crate::cpu_engine() == crate::CpuConvEngine::Quarc
        && [x.dtype(), scale.dtype(), shift.dtype()]
            .iter()
            .all(|d| *d == DType::F32)
        && x.rank() == 4;
    if !fast {
        return channel_affine_reference(x, scale, shift, act);
    }
    let c = x.dim(1)?;
    if scale.dims() != [c] || shift.dims() != [c] {
        candle_core::bail!(
            "channel_affine: scale {:?} and shift {:?} must have {c} elements",
            scale.dims(),
            shift.dims()
        );
    }
    x.contiguous()?
        .apply_op3(&scale.contiguous()?, &shift.contiguous()?, Affine { act })
}

/// The composed candle version of [`channel_affine`].
pub fn channel_affine_reference(
    x: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    act: Activation,
) -> candle_core::Result<Tensor> {
    let c = x.dim(1)?;
    let y = x
        .broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
        .broadcast_add(&shift.reshape((1, c, 1, 1))?)?;
    act.apply(&y)
}

struct Affine {
    act: Activation,
}

impl CustomOp3 for Affine {
    fn name(&self) -> &'static str {
        "quarc-channel-affine"
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
        let sh = shape_of(l1)?;
        let (x, scale, shift) = (
            f32_slice(s1, l1, "batch_norm", "x")?,
            f32_slice(s2, l2, "batch_norm", "scale")?,
            f32_slice(s3, l3, "batch_norm", "shift")?,
        );
        let y = kernel::normalized(x, sh, scale, shift, self.act);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _shift: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // g = grad · act'(y): dx = g · scale[c], dscale = Σ g·x, dshift = Σ g (composed; rare path)
        let c = x.dim(1)?;
        let g = match self.act {
            Activation::Identity => grad.clone(),
            Activation::Relu => (grad * res.gt(0.0)?.to_dtype(grad.dtype())?)?,
            Activation::Relu6 => {
                (grad * (res.gt(0.0)?.to_dtype(grad.dtype())? * res.lt(6.0)?.to_dtype(grad.dtype())?)?)?
            }
        };
        let dx = if x.track_op() {
            Some(g.broadcast_mul(&scale.reshape((1, c, 1, 1))?)?)
        } else {
            None
        };
        let dscale = (&g * x)?.sum((0, 2, 3))?;
        let dshift = g.sum((0, 2, 3))?;
        Ok((dx, Some(dscale), Some(dshift)))
    }
}
