//! Moderate coreset (Xia et al., ICLR 2023).

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use quarc_base::Progress;

use crate::{Error, ModelSource, Needs, Result, ScoreInput, Scorer};

/// Keeps samples whose feature lies at a *moderate* distance from its class centre: the score is
/// `−|d_i − median_c(d)|`, `d_i` the Euclidean distance of the sample's feature to its class's
/// per-dimension median feature. (The ACS code keeps the farthest instead; this follows the paper.)
///
/// Feature vectors of the whole pass are kept in memory (N·D floats) until the next pass.
#[derive(Clone, Debug)]
pub struct Moderate {
    /// Which model.
    pub source: ModelSource,
    /// Name of the feature to embed samples with (flattened per sample).
    pub feature: String,
    features: BTreeMap<usize, Vec<f32>>,
    pass: Option<usize>,
}

impl Moderate {
    /// Embeds samples with the feature recorded under `feature`.
    pub fn new(feature: impl Into<String>) -> Self {
        Self {
            source: ModelSource::default(),
            feature: feature.into(),
            features: BTreeMap::new(),
            pass: None,
        }
    }
}

fn median(v: &mut [f32]) -> f32 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

impl Scorer for Moderate {
    fn name(&self) -> String {
        "moderate".into()
    }
    fn needs(&self) -> Needs {
        Needs {
            labels: true,
            features: true,
            whole_pass: true,
            ..self.source.needs()
        }
    }
    fn score(&mut self, input: &ScoreInput<'_>, p: &Progress) -> Result<Tensor> {
        if self.pass != Some(p.epoch) {
            self.features.clear();
            self.pass = Some(p.epoch);
        }
        let out = self.source.pick(input, "moderate")?;
        let h = out.features.get(&self.feature).ok_or_else(|| Error::MissingInput {
            scorer: "moderate".into(),
            what: format!("feature `{}`", self.feature),
        })?;
        let rows = h.to_dtype(DType::F32)?.flatten_from(1)?.to_vec2::<f32>()?;
        for (&i, row) in input.indices.iter().zip(rows) {
            self.features.insert(i, row);
        }
        Ok(Tensor::zeros(
            input.indices.len(),
            DType::F32,
            input.student.logits.device(),
        )?)
    }
    fn combine(&self, _columns: &[&[f32]], labels: &[u32], _p: &Progress) -> Result<Vec<f32>> {
        let n = labels.len();
        if self.features.len() != n {
            return Err(Error::MissingScores {
                count: n.saturating_sub(self.features.len()),
                first: (0..n).filter(|i| !self.features.contains_key(i)).take(5).collect(),
            });
        }
        let mut by_class: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, &y) in labels.iter().enumerate() {
            by_class.entry(y).or_default().push(i);
        }
        let mut out = vec![0f32; n];
        for members in by_class.values() {
            let dim = self.features[&members[0]].len();
            let centre: Vec<f32> = (0..dim)
                .map(|d| median(&mut members.iter().map(|i| self.features[i][d]).collect::<Vec<_>>()))
                .collect();
            let dist: Vec<f32> = members
                .iter()
                .map(|i| {
                    self.features[i]
                        .iter()
                        .zip(&centre)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f32>()
                        .sqrt()
                })
                .collect();
            let m = median(&mut dist.clone());
            for (&i, d) in members.iter().zip(dist) {
                out[i] = -(d - m).abs();
            }
        }
        Ok(out)
    }
}
