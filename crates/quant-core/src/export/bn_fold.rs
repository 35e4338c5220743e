//! Folding BatchNorm into the preceding convolution (eval mode), for export.

use candle_core::Tensor;
use candle_nn::{BatchNorm, Conv2d};

use crate::{Error, Result};

/// Returns a conv equivalent to `conv` followed by `bn` in eval mode:
/// `w' = w · γ/√(σ² + ε)` per output channel, `b' = (b − μ) · γ/√(σ² + ε) + β`
/// (γ = 1, β = 0 for a BatchNorm without affine parameters).
///
/// ```
/// use candle_core::{DType, Device, Module, ModuleT, Tensor};
/// let dev = Device::Cpu;
/// let conv = candle_nn::Conv2d::new(Tensor::ones((2, 1, 1, 1), DType::F32, &dev)?, None, Default::default());
/// // running mean, running var, γ, β
/// let bn = candle_nn::BatchNorm::new(2, Tensor::new(&[1f32, -1.0], &dev)?, Tensor::new(&[4f32, 0.25], &dev)?,
///     Tensor::new(&[2f32, 0.5], &dev)?, Tensor::new(&[0.5f32, 0.0], &dev)?, 0.0)?;
/// let folded = quarc_quant_core::fold_batch_norm(&conv, &bn)?;
/// let x = Tensor::new(&[[[[2f32]]]], &dev)?;
/// let reference = bn.forward_t(&conv.forward(&x)?, false)?;
/// // channel 0: (2 − 1)/2 · 2 + 0.5 = 1.5; channel 1: (2 + 1)/0.5 · 0.5 = 3
/// assert_eq!(reference.flatten_all()?.to_vec1::<f32>()?, vec![1.5, 3.0]);
/// assert_eq!(folded.forward(&x)?.flatten_all()?.to_vec1::<f32>()?, vec![1.5, 3.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn fold_batch_norm(conv: &Conv2d, bn: &BatchNorm) -> Result<Conv2d> {
    let w = conv.weight();
    let (out_c, _, _, _) = w.dims4()?;
    let mean = bn.running_mean();
    if mean.dims() != [out_c] {
        return Err(Error::ShapeMismatch {
            context: "BatchNorm channels against the conv's output channels".into(),
            expected: vec![out_c],
            got: mean.dims().to_vec(),
        });
    }
    let (k, bias) = batch_norm_affine(conv.bias(), bn)?;
    let weight = w.broadcast_mul(&k.reshape((out_c, 1, 1, 1))?)?;
    Ok(Conv2d::new(weight, Some(bias), *conv.config()))
}

/// The per-output-channel multiplier `k = γ/√(σ² + ε)` and bias `(b − μ)·k + β` that BatchNorm
/// (eval mode) applies after a conv with bias `b`: used by the integer export, which keeps the
/// weight codes on their own grid and stores the BatchNorm as an output affine.
pub(crate) fn batch_norm_affine(conv_bias: Option<&Tensor>, bn: &BatchNorm) -> Result<(Tensor, Tensor)> {
    let inv_std = (bn.running_var() + bn.eps())?.sqrt()?.recip()?;
    let (k, beta) = match bn.weight_and_bias() {
        Some((gamma, beta)) => ((gamma * &inv_std)?, Some(beta.clone())),
        None => (inv_std, None),
    };
    let centred = match conv_bias {
        Some(b) => (b - bn.running_mean())?,
        None => bn.running_mean().neg()?,
    };
    let mut bias = (centred * &k)?;
    if let Some(beta) = beta {
        bias = (bias + beta)?;
    }
    Ok((k, bias))
}
