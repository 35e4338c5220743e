//! The parameters shared by the fused and composed fake-quant paths.

use candle_core::{Shape, Tensor};

use super::kernel::{ChannelLayout, StepGrad};
use crate::{Error, QRange, Result};

/// Smallest step size the fake-quant ops use: a step below it is replaced by it in the
/// forward pass (and the gradient still flows to the raw step, straight through), so a step
/// that an optimiser pushed to zero or below can recover and never divides by zero.
pub const STEP_EPS: f64 = 1e-8;

/// Which elements share a step size (and offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Granularity {
    /// One step for the whole tensor.
    #[default]
    PerTensor,
    /// One step per index along `axis` (axis 0 for conv/linear weights: output channels).
    PerChannel {
        /// The channel axis.
        axis: usize,
    },
}

/// Everything a fake-quant call needs besides its tensors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FakeQuantSpec {
    pub qn: f64,
    pub qp: f64,
    pub grad_scale: f64,
    pub step_grad: StepGrad,
    pub granularity: Granularity,
}

impl FakeQuantSpec {
    pub fn new(range: QRange, grad_scale: f64, step_grad: StepGrad, granularity: Granularity) -> Self {
        Self {
            qn: range.qn() as f64,
            qp: range.qp() as f64,
            grad_scale,
            step_grad,
            granularity,
        }
    }

    /// Number of channels the step of `x` must have.
    pub fn channels(&self, x: &Shape) -> Result<usize> {
        match self.granularity {
            Granularity::PerTensor => Ok(1),
            Granularity::PerChannel { axis } => {
                let dims = x.dims();
                dims.get(axis)
                    .copied()
                    .ok_or(Error::InvalidAxis { axis, rank: dims.len() })
            }
        }
    }

    /// How the flat elements of `x` map to channels.
    pub fn layout(&self, x: &Shape) -> Result<ChannelLayout> {
        match self.granularity {
            Granularity::PerTensor => Ok(ChannelLayout::per_tensor(x.elem_count())),
            Granularity::PerChannel { axis } => {
                let channels = self.channels(x)?;
                let inner = x.dims()[axis + 1..].iter().product::<usize>().max(1);
                Ok(ChannelLayout { channels, inner })
            }
        }
    }

    /// The shape that broadcasts a `(C,)` parameter against `x`.
    pub fn broadcast_shape(&self, x: &Shape) -> Result<Vec<usize>> {
        let rank = x.rank();
        let mut shape = vec![1usize; rank.max(1)];
        if let Granularity::PerChannel { axis } = self.granularity {
            shape[axis] = self.channels(x)?;
        }
        Ok(shape)
    }

    /// Checks that a step/offset tensor has one element per channel.
    pub fn check_param(&self, x: &Tensor, param: &Tensor, what: &str) -> Result<()> {
        let channels = self.channels(x.shape())?;
        if param.elem_count() != channels {
            return Err(Error::ShapeMismatch {
                context: format!("{what} for an input of shape {:?}", x.dims()),
                expected: vec![channels],
                got: param.dims().to_vec(),
            });
        }
        if param.dtype() != x.dtype() {
            return Err(Error::UnsupportedDType {
                dtype: param.dtype(),
                context: format!("{what}: must match the input dtype {:?}", x.dtype()),
            });
        }
        Ok(())
    }
}
