//! Softmax and log-softmax with temperature.

use candle_core::{D, Tensor};

use super::{check_temperature, logits_dims};
use crate::Result;

/// `log softmax(logits / T)` over the last axis, stable (max-shifted) and differentiable.
///
/// # Shapes
/// `(B, K)` → `(B, K)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let z = Tensor::new(&[[1000f32, 1000.0]], &Device::Cpu)?;
/// let lp = quarc_base::functional::log_softmax(&z, 1.0)?;
/// let v = lp.to_vec2::<f32>()?;
/// assert!((v[0][0] - (0.5f32).ln()).abs() < 1e-6 && (v[0][1] - (0.5f32).ln()).abs() < 1e-6);
/// # Ok::<(), quarc_base::Error>(())
/// ```
pub fn log_softmax(logits: &Tensor, temperature: f64) -> Result<Tensor> {
    logits_dims(logits, "log_softmax")?;
    check_temperature(temperature)?;
    let z = if temperature == 1.0 {
        logits.clone()
    } else {
        (logits / temperature)?
    };
    // The shift is detached: log-softmax is shift invariant, so its gradient is unchanged and
    // the max's own backward is skipped.
    let max = z.max_keepdim(D::Minus1)?.detach();
    let shifted = z.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// `softmax(logits / T)` over the last axis, computed as `exp(log_softmax)`.
///
/// # Shapes
/// `(B, K)` → `(B, K)`.
pub fn softmax(logits: &Tensor, temperature: f64) -> Result<Tensor> {
    Ok(log_softmax(logits, temperature)?.exp()?)
}
