//! Cascaded Layer Correction: align the quantized model's intermediate outputs with the
//! full-precision model's at several depths.

use candle_core::Tensor;
use quarc_base::{BlockwiseModule, ModelOutput, Progress};
use serde::{Deserialize, Serialize};

use crate::loss::check_pair;
use crate::{AlignmentLoss, Error, Result};

/// One aligned layer: a student feature, the reference feature it is pulled towards, a weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerPair {
    /// Feature name in the student's [`quarc_base::FeatureMap`] (and the block name in
    /// [`CascadeMode::ReferenceInputs`]).
    pub student: String,
    /// Feature name in the reference's map.
    pub reference: String,
    /// Per-layer weight (≥ 0).
    pub weight: f64,
}

impl LayerPair {
    /// A pair with the same name on both sides and weight 1.
    pub fn same(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            student: name.clone(),
            reference: name,
            weight: 1.0,
        }
    }
}

/// Which reading of "cascaded" (docs/methods.md, "Cascaded layer correction", readings A–C).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CascadeMode {
    /// (A) Both models see the same input; align at every chosen depth (default).
    #[default]
    NaturalForward,
    /// (B) Each student block is fed the reference's input to that block, isolating its own
    /// error; use [`Cascade::loss_reference_inputs`] with a [`BlockwiseModule`].
    ReferenceInputs,
    /// (C) The aligned set grows: the first `start` pairs at epoch 0, one more every `every`
    /// epochs.
    Progressive {
        /// Pairs active at epoch 0 (≥ 1).
        start: usize,
        /// Epochs between additions (≥ 1).
        every: usize,
    },
}

/// One layer's term in a cascade call.
#[derive(Clone, Debug)]
pub struct LayerLoss {
    /// The pair's student name.
    pub name: String,
    /// The raw (unweighted, batch-mean) loss, a scalar tensor with gradient.
    pub raw: Tensor,
    /// The pair's weight.
    pub weight: f64,
}

/// The result of a cascade call: the weighted total and every layer's raw value, so runs can
/// log magnitudes and choose β (QuaRC's reported β = 10⁵ only fits one normalisation).
#[derive(Clone, Debug)]
pub struct CascadeReport {
    /// `β · Σ_l w_l · L_l / Σ_l w_l` over the active pairs (scalar).
    pub total: Tensor,
    /// Per-layer raw values, in pair order.
    pub layers: Vec<LayerLoss>,
}

impl CascadeReport {
    /// `(name, raw value)` of each layer, read to the host (one sync per layer).
    pub fn values(&self) -> Result<Vec<(String, f64)>> {
        self.layers
            .iter()
            .map(|l| {
                Ok((
                    l.name.clone(),
                    l.raw.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?,
                ))
            })
            .collect()
    }
}

/// Cascaded Layer Correction (QuaRC): `β · mean_l w_l · L(h_Q^l, sg(h_F^l))` over named layer
/// pairs, with a pluggable [`AlignmentLoss`]. Reference tensors are detached: no gradient ever
/// reaches the full-precision model.
///
/// See the crate docs for the QuaRC objective `KD + β·CLC` in a training loop.
#[derive(Debug)]
pub struct Cascade {
    pairs: Vec<LayerPair>,
    loss: Box<dyn AlignmentLoss>,
    beta: f64,
    mode: CascadeMode,
}

impl Cascade {
    /// A cascade over `pairs` with divergence `loss` and global weight `beta`.
    pub fn new(pairs: Vec<LayerPair>, loss: Box<dyn AlignmentLoss>, beta: f64) -> Result<Self> {
        if pairs.is_empty() {
            return Err(Error::Empty("a cascade needs at least one layer pair".into()));
        }
        if let Some(p) = pairs.iter().find(|p| !(p.weight.is_finite() && p.weight >= 0.0)) {
            return Err(Error::InvalidConfig(format!(
                "layer `{}`: weight must be finite and ≥ 0, got {}",
                p.student, p.weight
            )));
        }
        if pairs.iter().all(|p| p.weight == 0.0) {
            return Err(Error::InvalidConfig("every layer weight is 0".into()));
        }
        if !beta.is_finite() {
            return Err(Error::InvalidConfig(format!("β must be finite, got {beta}")));
        }
        Ok(Self {
            pairs,
            loss,
            beta,
            mode: CascadeMode::NaturalForward,
        })
    }

    /// The same cascade in another mode.
    pub fn with_mode(mut self, mode: CascadeMode) -> Result<Self> {
        if let CascadeMode::Progressive { start, every } = mode
            && (start == 0 || every == 0)
        {
            return Err(Error::InvalidConfig(
                "progressive mode needs start ≥ 1 and every ≥ 1".into(),
            ));
        }
        self.mode = mode;
        Ok(self)
    }

    /// The mode.
    pub fn mode(&self) -> CascadeMode {
        self.mode
    }

    /// The global weight β.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The pairs aligned at `progress` (all of them unless progressive).
    pub fn active_pairs(&self, progress: &Progress) -> &[LayerPair] {
        match self.mode {
            CascadeMode::Progressive { start, every } => {
                &self.pairs[..(start + progress.epoch / every).min(self.pairs.len())]
            }
            _ => &self.pairs,
        }
    }

    fn report(&self, terms: Vec<LayerLoss>) -> Result<CascadeReport> {
        let wsum: f64 = terms.iter().map(|t| t.weight).sum();
        if terms.is_empty() || wsum == 0.0 {
            return Err(Error::Empty("no active layer pair with a positive weight".into()));
        }
        let mut total: Option<Tensor> = None;
        for t in &terms {
            let w = (&t.raw * (t.weight / wsum))?;
            total = Some(match total {
                None => w,
                Some(acc) => (acc + w)?,
            });
        }
        let total = (total.ok_or_else(|| Error::Empty("no terms".into()))? * self.beta)?;
        Ok(CascadeReport { total, layers: terms })
    }

    /// The cascade loss on two forward passes over the same input (modes `NaturalForward` and
    /// `Progressive`). Missing names, mismatched shapes and NaN are typed errors naming the layer.
    pub fn loss(&self, student: &ModelOutput, reference: &ModelOutput, progress: &Progress) -> Result<CascadeReport> {
        if self.mode == CascadeMode::ReferenceInputs {
            return Err(Error::InvalidConfig(
                "ReferenceInputs mode runs block by block: call `loss_reference_inputs`".into(),
            ));
        }
        let mut terms = Vec::new();
        for p in self.active_pairs(progress) {
            let s = student.features.get(&p.student).ok_or_else(|| Error::MissingFeature {
                layer: p.student.clone(),
                side: "student",
                name: p.student.clone(),
            })?;
            let r = reference
                .features
                .get(&p.reference)
                .ok_or_else(|| Error::MissingFeature {
                    layer: p.student.clone(),
                    side: "reference",
                    name: p.reference.clone(),
                })?;
            terms.push(self.term(p, s, &r.detach())?);
        }
        self.report(terms)
    }

    fn term(&self, p: &LayerPair, s: &Tensor, r: &Tensor) -> Result<LayerLoss> {
        check_pair(s, r, &p.student)?;
        Ok(LayerLoss {
            name: p.student.clone(),
            raw: self.loss.forward(s, r)?,
            weight: p.weight,
        })
    }

    /// Mode `ReferenceInputs`: runs the reference block by block on `xs` (no gradient), feeds
    /// each student block the reference's input to that block, and aligns the outputs of the
    /// paired blocks (pairs name blocks by [`BlockwiseModule::block_names`]).
    pub fn loss_reference_inputs(
        &self,
        student: &dyn BlockwiseModule,
        reference: &dyn BlockwiseModule,
        xs: &Tensor,
        train: bool,
        progress: &Progress,
    ) -> Result<CascadeReport> {
        let names = reference.block_names();
        if student.block_names() != names {
            return Err(Error::InvalidConfig(format!(
                "student blocks {:?} differ from reference blocks {names:?}",
                student.block_names()
            )));
        }
        let pairs = self.active_pairs(progress);
        for p in pairs {
            if !names.contains(&p.student) {
                return Err(Error::MissingFeature {
                    layer: p.student.clone(),
                    side: "student",
                    name: p.student.clone(),
                });
            }
        }
        let last = names
            .iter()
            .rposition(|n| pairs.iter().any(|p| &p.student == n))
            .unwrap_or(0);
        let mut input = xs.detach();
        let mut terms = Vec::new();
        for (i, name) in names.iter().enumerate().take(last + 1) {
            let r_out = reference.forward_block(i, &input, false)?.detach();
            if let Some(p) = pairs.iter().find(|p| &p.student == name) {
                let s_out = student.forward_block(i, &input, train)?;
                terms.push(self.term(p, &s_out, &r_out)?);
            }
            input = r_out;
        }
        self.report(terms)
    }
}
