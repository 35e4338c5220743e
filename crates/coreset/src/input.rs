//! What a scorer sees for one batch.

use candle_core::{DType, Tensor};
use quarc_base::ModelOutput;

use crate::{Error, Result};

/// One batch of a scoring pass (or a training batch, for observing scorers).
///
/// `indices[i]` is the dataset index of row `i`: every score is keyed by it, so batches may
/// come in any order and from any worker.
#[derive(Clone, Copy, Debug)]
pub struct ScoreInput<'a> {
    /// Dataset indices of the batch's samples, length `B`.
    pub indices: &'a [usize],
    /// Labels `(B,)`, u32.
    pub labels: &'a Tensor,
    /// The model being trained (the quantized student), in eval mode for scoring.
    pub student: &'a ModelOutput,
    /// The frozen full-precision reference, when a scorer needs it.
    pub reference: Option<&'a ModelOutput>,
}

impl<'a> ScoreInput<'a> {
    /// The reference outputs, or [`Error::MissingInput`] naming `scorer`.
    pub fn reference(&self, scorer: &str) -> Result<&'a ModelOutput> {
        self.reference.ok_or_else(|| Error::MissingInput {
            scorer: scorer.to_string(),
            what: "the full-precision reference outputs".into(),
        })
    }

    /// Batch size.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Labels as host `u32`s.
    pub fn labels_vec(&self) -> Result<Vec<u32>> {
        Ok(self.labels.to_dtype(DType::U32)?.to_vec1::<u32>()?)
    }

    /// Checks shapes and values against a data set of `num_samples` samples and `num_classes`
    /// classes: indices in range, labels `(B,)` in range, logits `(B, K)` finite.
    pub fn validate(&self, num_samples: usize, num_classes: usize) -> Result<()> {
        let b = self.indices.len();
        if b == 0 {
            return Err(Error::Empty("a score batch has no samples".into()));
        }
        if let Some(&index) = self.indices.iter().find(|&&i| i >= num_samples) {
            return Err(Error::IndexOutOfRange { index, num_samples });
        }
        if self.labels.dims() != [b] {
            return Err(Error::ShapeMismatch {
                context: "labels of a score batch".into(),
                expected: vec![b],
                got: self.labels.dims().to_vec(),
            });
        }
        let labels = self.labels_vec()?;
        if let Some((i, &label)) = labels.iter().enumerate().find(|(_, l)| **l as usize >= num_classes) {
            return Err(Error::LabelOutOfRange {
                label,
                index: self.indices[i],
                num_classes,
            });
        }
        check_logits(&self.student.logits, b, num_classes, "student logits")?;
        if let Some(r) = self.reference {
            check_logits(&r.logits, b, num_classes, "reference logits")?;
        }
        Ok(())
    }
}

fn check_logits(logits: &Tensor, b: usize, k: usize, what: &str) -> Result<()> {
    if logits.dims() != [b, k] {
        return Err(Error::ShapeMismatch {
            context: what.into(),
            expected: vec![b, k],
            got: logits.dims().to_vec(),
        });
    }
    let s = logits.to_dtype(DType::F32)?.abs()?.sum_all()?.to_scalar::<f32>()?;
    if !s.is_finite() {
        return Err(Error::NonFinite { what: what.into() });
    }
    Ok(())
}

/// What a scorer needs from the training loop, so that it can skip work nobody needs and
/// fail early when something is missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Needs {
    /// Outputs of the full-precision reference model.
    pub reference: bool,
    /// Intermediate features (of the model the scorer reads).
    pub features: bool,
    /// Labels (scores such as DS do not read them).
    pub labels: bool,
    /// A call of [`crate::Scorer::observe`] on every training batch.
    pub observe_training: bool,
    /// The scores depend on the dataset index and the progress alone (no model output), so a
    /// selection needs no scoring pass: [`crate::Coreset::select_without_pass`].
    pub index_only: bool,
    /// The combination reads every sample of a pass by dataset index (moderate's class
    /// medians), so the scorer cannot score a candidate pool.
    pub whole_pass: bool,
}

impl Needs {
    /// The union of two needs.
    pub fn union(self, other: Needs) -> Needs {
        Needs {
            reference: self.reference || other.reference,
            features: self.features || other.features,
            labels: self.labels || other.labels,
            observe_training: self.observe_training || other.observe_training,
            index_only: self.index_only && other.index_only,
            whole_pass: self.whole_pass || other.whole_pass,
        }
    }
}
