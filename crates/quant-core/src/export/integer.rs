//! Integer tensors: codes plus scale and offset, exactly what fake quantization computes.

use candle_core::{DType, Device, Tensor};

use crate::rounding::num_like::Float;
use crate::{Error, Granularity, QParams, QRange, Result};

/// A quantized tensor: `value = scale[c] · code + offset[c]`, codes in `[qn, qp]`.
#[derive(Clone, Debug, PartialEq)]
pub struct IntegerTensor {
    /// Shape of the original tensor.
    pub shape: Vec<usize>,
    /// Integer range (bits and signedness).
    pub range: QRange,
    /// Which elements share a scale.
    pub granularity: Granularity,
    /// Signed integer codes, row-major.
    pub codes: Vec<i32>,
    /// Scales, one per channel (or one).
    pub scale: Vec<f32>,
    /// Offsets, same length as `scale`; `None` means zero.
    pub offset: Option<Vec<f32>>,
}

/// A tensor's values as a flat f32 vector.
pub(crate) fn f32_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

impl IntegerTensor {
    /// Quantizes `x` with the grid `qp`, computing exactly what the fake-quant kernels compute
    /// (f32 arithmetic, round half to even). `x` must be f32.
    pub fn quantize(x: &Tensor, qp: &QParams) -> Result<Self> {
        if x.dtype() != DType::F32 {
            return Err(Error::UnsupportedDType {
                dtype: x.dtype(),
                context: "integer export (f32 tensors only)".into(),
            });
        }
        let scale = f32_vec(&qp.scale)?;
        let offset = qp.offset.as_ref().map(f32_vec).transpose()?;
        let shape = x.dims().to_vec();
        let (channels, inner) = channel_layout(&shape, qp.granularity)?;
        if scale.len() != channels || offset.as_ref().is_some_and(|o| o.len() != channels) {
            return Err(Error::ShapeMismatch {
                context: "integer export: scale/offset per channel".into(),
                expected: vec![channels],
                got: vec![scale.len()],
            });
        }
        let data = f32_vec(x)?;
        let (qn, qp_) = (qp.range.qn() as f32, qp.range.qp() as f32);
        let mut codes = Vec::with_capacity(data.len());
        for (i, &v) in data.iter().enumerate() {
            if v.is_nan() {
                return Err(Error::NonFinite {
                    what: "integer export input".into(),
                });
            }
            let c = (i / inner) % channels;
            let s = scale[c].max(crate::STEP_EPS as f32);
            let v = match &offset {
                Some(o) => (v - o[c]) / s,
                None => v / s,
            };
            let v = if v > qp_ {
                qp_
            } else if v < qn {
                qn
            } else {
                v
            };
            codes.push(v.round_even_small() as i32);
        }
        Ok(Self {
            shape,
            range: qp.range,
            granularity: qp.granularity,
            codes,
            scale,
            offset,
        })
    }

    /// The dequantized tensor, `scale · code + offset`, as f32 on `device`.
    pub fn dequantize(&self, device: &Device) -> Result<Tensor> {
        let (channels, inner) = channel_layout(&self.shape, self.granularity)?;
        let numel: usize = self.shape.iter().product();
        if self.codes.len() != numel
            || self.scale.len() != channels
            || self.offset.as_ref().is_some_and(|o| o.len() != channels)
        {
            return Err(Error::ShapeMismatch {
                context: "integer tensor: codes per element, scale and offset per channel".into(),
                expected: vec![numel, channels],
                got: vec![self.codes.len(), self.scale.len()],
            });
        }
        let values: Vec<f32> = self
            .codes
            .iter()
            .enumerate()
            .map(|(i, &q)| {
                let c = (i / inner) % channels;
                let s = self.scale[c].max(crate::STEP_EPS as f32);
                match &self.offset {
                    Some(o) => q as f32 * s + o[c],
                    None => q as f32 * s,
                }
            })
            .collect();
        Ok(Tensor::from_vec(values, self.shape.as_slice(), device)?)
    }

    /// Codes shifted to `[0, 2^bits − 1]` (what is packed on disk).
    pub fn unsigned_codes(&self) -> Vec<u8> {
        let qn = self.range.qn();
        self.codes.iter().map(|&q| (q - qn) as u8).collect()
    }
}

/// `(channels, inner)` for a shape and granularity.
pub(crate) fn channel_layout(shape: &[usize], g: Granularity) -> Result<(usize, usize)> {
    Ok(match g {
        Granularity::PerTensor => (1, shape.iter().product::<usize>().max(1)),
        Granularity::PerChannel { axis } => {
            let c = *shape.get(axis).ok_or(Error::InvalidAxis {
                axis,
                rank: shape.len(),
            })?;
            (c, shape[axis + 1..].iter().product::<usize>().max(1))
        }
    })
}
