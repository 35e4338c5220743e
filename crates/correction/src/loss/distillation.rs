//! Knowledge distillation on logits, optionally mixed with hard-label cross-entropy.

use candle_core::{D, DType, Tensor};
use quarc_base::functional::{kl_per_sample, log_softmax, soft_cross_entropy_per_sample};
use serde::{Deserialize, Serialize};

use super::base::{AlignmentLoss, check_pair};
use crate::{Error, Result};

/// KL or soft cross-entropy (they differ by the teacher's entropy, a constant: same gradients).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KdForm {
    /// `KL(p_T ‖ p_S)`: zero when the student matches.
    #[default]
    Kl,
    /// `−Σ p_T log p_S` (ACS's `DistributionLoss`).
    SoftCrossEntropy,
}

/// Knowledge distillation (Hinton et al. 2015): `T² · KL(softmax(z_T/T) ‖ softmax(z_S/T))`
/// per sample, the reference (teacher) first. `T = 1` with no label term is ACS's ImageNet loss.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use quarc_correction::{AlignmentLoss, Distillation};
/// let s = Tensor::new(&[[0f32, 0.0]], &Device::Cpu)?;
/// let t = Tensor::new(&[[0f32, 3f32.ln()]], &Device::Cpu)?; // p_T = [0.25, 0.75]
/// // KL([.25, .75] ‖ [.5, .5]) = 0.25 ln 0.5 + 0.75 ln 1.5
/// let kl = Distillation::default().per_sample(&s, &t)?.to_vec1::<f32>()?;
/// assert!((kl[0] - 0.130_812_04).abs() < 1e-6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Distillation {
    /// Temperature `T` (> 0).
    pub temperature: f64,
    /// KL or soft cross-entropy.
    pub form: KdForm,
    /// Multiply by `T²` so gradient magnitudes do not shrink with `T` (default true).
    pub scale_by_t2: bool,
}

impl Default for Distillation {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            form: KdForm::Kl,
            scale_by_t2: true,
        }
    }
}

impl Distillation {
    /// KD at temperature `t`.
    pub fn new(t: f64, form: KdForm) -> Result<Self> {
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::InvalidConfig(format!(
                "distillation temperature must be > 0, got {t}"
            )));
        }
        Ok(Self {
            temperature: t,
            form,
            scale_by_t2: true,
        })
    }

    /// `kd_weight · KD + ce_weight · CE(z_S, y)` per sample: distillation mixed with the
    /// hard-label cross-entropy (QuaRC's possible `L_CE + L_KD`; ACS uses KD alone).
    ///
    /// # Shapes
    /// Logits `(B, K)`, labels `(B,)` integer → `(B,)`.
    pub fn with_labels(
        &self,
        student: &Tensor,
        reference: &Tensor,
        labels: &Tensor,
        kd_weight: f64,
        ce_weight: f64,
    ) -> Result<Tensor> {
        let kd = (self.per_sample(student, reference)? * kd_weight)?;
        if ce_weight == 0.0 {
            return Ok(kd);
        }
        let (b, k) = student.dims2()?;
        if labels.dims() != [b] {
            return Err(Error::InvalidConfig(format!(
                "labels of shape {:?} for {b} samples",
                labels.dims()
            )));
        }
        let y = labels.to_dtype(DType::U32)?;
        let max = y.max(0)?.to_scalar::<u32>()?;
        if max as usize >= k {
            return Err(Error::InvalidConfig(format!(
                "label {max} is out of range for {k} classes"
            )));
        }
        let ce = log_softmax(student, 1.0)?
            .gather(&y.unsqueeze(1)?, D::Minus1)?
            .squeeze(1)?
            .neg()?;
        Ok((kd + (ce * ce_weight)?)?)
    }
}

impl AlignmentLoss for Distillation {
    fn name(&self) -> String {
        "kd".into()
    }
    fn per_sample(&self, student: &Tensor, reference: &Tensor) -> Result<Tensor> {
        check_pair(student, reference, "kd")?;
        let t = self.temperature;
        let l = match self.form {
            KdForm::Kl => kl_per_sample(reference, student, t)?,
            KdForm::SoftCrossEntropy => soft_cross_entropy_per_sample(reference, student, t)?,
        };
        Ok(if self.scale_by_t2 { (l * (t * t))? } else { l })
    }
}
