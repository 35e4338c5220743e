//! KL divergence, soft cross-entropy and entropy per sample.

use candle_core::{D, Tensor};

use super::{log_softmax, logits_dims, same_logits};
use crate::Result;

/// `KL(P ‖ Q) = Σ_k p_k (log p_k − log q_k)` per sample, with `P = softmax(p_logits / T)` and
/// `Q = softmax(q_logits / T)`. Pass the quantized model first for QuaRC's RES direction
/// `KL(p_Q ‖ p_F)`, the reference first for the usual distillation direction.
///
/// # Shapes
/// `(B, K)`, `(B, K)` → `(B,)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use quarc_base::functional::kl_per_sample;
/// // p = softmax([0, ln 3]) = [0.25, 0.75], q = [0.5, 0.5]:
/// // KL = 0.25 ln 0.5 + 0.75 ln 1.5 = 0.130812...
/// let p = Tensor::new(&[[0f32, 3f32.ln()]], &Device::Cpu)?;
/// let q = Tensor::new(&[[0f32, 0.0]], &Device::Cpu)?;
/// let kl = kl_per_sample(&p, &q, 1.0)?.to_vec1::<f32>()?;
/// assert!((kl[0] - 0.130_812_04).abs() < 1e-6);
/// # Ok::<(), quarc_base::Error>(())
/// ```
pub fn kl_per_sample(p_logits: &Tensor, q_logits: &Tensor, temperature: f64) -> Result<Tensor> {
    same_logits(p_logits, q_logits, "kl_per_sample")?;
    let lp = log_softmax(p_logits, temperature)?;
    let lq = log_softmax(q_logits, temperature)?;
    Ok((lp.exp()? * (&lp - lq)?)?.sum(D::Minus1)?)
}

/// Soft cross-entropy `−Σ_k p_k log q_k` per sample, `P = softmax(target / T)`,
/// `Q = softmax(logits / T)`. Equals `KL(P ‖ Q) + H(P)`; the gradient with respect to `logits`
/// is the same as KL's.
///
/// # Shapes
/// `(B, K)`, `(B, K)` → `(B,)`.
pub fn soft_cross_entropy_per_sample(target_logits: &Tensor, logits: &Tensor, temperature: f64) -> Result<Tensor> {
    same_logits(target_logits, logits, "soft_cross_entropy_per_sample")?;
    let p = log_softmax(target_logits, temperature)?.exp()?;
    let lq = log_softmax(logits, temperature)?;
    Ok((p * lq)?.sum(D::Minus1)?.neg()?)
}

/// Shannon entropy `−Σ_k p_k log p_k` (nats) of `softmax(logits / T)` per sample.
///
/// # Shapes
/// `(B, K)` → `(B,)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let z = Tensor::new(&[[0f32, 0.0, 0.0, 0.0]], &Device::Cpu)?;
/// let h = quarc_base::functional::entropy_per_sample(&z, 1.0)?.to_vec1::<f32>()?;
/// assert!((h[0] - 4f32.ln()).abs() < 1e-6);
/// # Ok::<(), quarc_base::Error>(())
/// ```
pub fn entropy_per_sample(logits: &Tensor, temperature: f64) -> Result<Tensor> {
    logits_dims(logits, "entropy_per_sample")?;
    let lp = log_softmax(logits, temperature)?;
    Ok((lp.exp()? * lp)?.sum(D::Minus1)?.neg()?)
}
