//! The identity quantizer: leaves a tensor in full precision.

use candle_core::Tensor;

use super::{QParams, Quantizer};
use crate::Result;

/// Passes tensors through unchanged: a layer kept in full precision by policy.
///
/// ```
/// use quarc_quant_core::{Identity, Quantizer};
/// let x = candle_core::Tensor::new(&[0.123f32], &candle_core::Device::Cpu)?;
/// assert_eq!(Identity.forward_t(&x, true)?.to_vec1::<f32>()?, vec![0.123]);
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl Quantizer for Identity {
    fn kind(&self) -> &'static str {
        "identity"
    }
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(x.clone())
    }
    fn calibrate(&self, _x: &Tensor) -> Result<()> {
        Ok(())
    }
    fn is_calibrated(&self) -> bool {
        true
    }
    fn qparams(&self) -> Result<Option<QParams>> {
        Ok(None)
    }
}
