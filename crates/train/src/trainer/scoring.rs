//! The scoring pass and selection of one epoch.

use candle_core::{DType, Device, Tensor};
use quarc_coreset::{Coreset, ScoreInput};
use quarc_data::BatchLoader;
use quarc_models::{Mode, Model};
use quarc_quant_core::{ModelOutput, Progress};

use super::progress::bar;
use crate::{Error, Result};

/// Logits of the frozen reference by dataset index, filled on the first scoring pass: the
/// reference is frozen and scoring preprocessing is deterministic, so its logits are the same
/// every pass.
pub struct LogitCache {
    classes: usize,
    rows: Vec<Option<Vec<f32>>>,
}

impl LogitCache {
    /// An empty cache for `n` samples of `classes` classes.
    pub fn new(n: usize, classes: usize) -> Self {
        Self {
            classes,
            rows: vec![None; n],
        }
    }

    /// The `(B, K)` logits of `indices`: from the cache when every row is there, else computed
    /// by `compute` (for the whole batch) and stored.
    pub fn get(
        &mut self,
        indices: &[usize],
        device: &Device,
        compute: impl FnOnce() -> Result<Tensor>,
    ) -> Result<Tensor> {
        let known = |i: &usize| self.rows.get(*i).is_some_and(Option::is_some);
        if indices.iter().all(known) {
            let flat: Vec<f32> = indices
                .iter()
                .flat_map(|&i| self.rows[i].iter().flatten().copied())
                .collect();
            return Ok(Tensor::from_vec(flat, (indices.len(), self.classes), device)?);
        }
        let logits = compute()?.detach();
        for (&i, row) in indices.iter().zip(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?) {
            if let Some(slot) = self.rows.get_mut(i) {
                *slot = Some(row);
            }
        }
        Ok(logits)
    }
}

/// What a selection cost and chose.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectionOutcome {
    /// The selected dataset indices.
    pub indices: Vec<usize>,
    /// Seconds of the scoring pass (0 without one).
    pub scoring_secs: f64,
    /// Seconds of the selection.
    pub selection_secs: f64,
}

/// Runs the selection due at `progress.epoch`, if one is: without a forward pass for index-only
/// selectors (random, random_resample, RS2), else after a scoring pass over `loader` (or the
/// coreset's candidate pool) in evaluation mode (reference logits from `cache` unless the
/// scorer needs features).
pub fn select_if_due(
    cs: &mut Coreset,
    student: &dyn Model,
    reference: &dyn Model,
    loader: &BatchLoader,
    cache: &mut LogitCache,
    progress: Progress,
    verbose: bool,
) -> Result<Option<SelectionOutcome>> {
    if !cs.needs_scoring(progress.epoch) {
        return Ok(None);
    }
    if cs.needs().index_only {
        cs.select_without_pass(progress)?;
    } else {
        cs.begin_scoring(progress)?;
        let needs = cs.needs();
        let pool: Option<Vec<usize>> = cs.scoring_indices().map(<[usize]>::to_vec);
        let n = pool.as_ref().map_or(loader.dataset().len(), Vec::len);
        let pb = bar(loader.num_batches(n), "scoring", verbose);
        for batch in loader.epoch(0, pool.as_deref())? {
            let b = batch?;
            let s = student.forward_mode(&b.images, Mode::Eval)?.detach();
            let r = if !needs.reference {
                None
            } else if needs.features {
                Some(reference.forward_mode(&b.images, Mode::Eval)?.detach())
            } else {
                Some(ModelOutput::logits_only(cache.get(
                    &b.indices,
                    b.images.device(),
                    || Ok(reference.forward_mode(&b.images, Mode::Eval)?.logits),
                )?))
            };
            cs.feed(&ScoreInput {
                indices: &b.indices,
                labels: &b.labels,
                student: &s,
                reference: r.as_ref(),
            })?;
            pb.inc(1);
        }
        pb.finish_and_clear();
        cs.select()?;
    }
    let indices = cs
        .current()
        .map(|s| s.indices.clone())
        .ok_or_else(|| Error::InvalidConfig("no selection".into()))?;
    let rec = cs
        .history()
        .last()
        .ok_or_else(|| Error::InvalidConfig("selection left no record".into()))?;
    Ok(Some(SelectionOutcome {
        indices,
        scoring_secs: rec.scoring_secs,
        selection_secs: rec.selection_secs,
    }))
}
