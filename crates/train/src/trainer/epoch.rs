//! One training epoch over the coreset: `kd·KD + ce·CE + CLC`, an optimiser step per batch.

use std::time::Instant;

use quarc_coreset::{Coreset, ScoreInput};
use quarc_correction::{AlignmentLoss, Cascade, Distillation};
use quarc_data::BatchLoader;
use quarc_kernels::keeping_winograd_tiles;
use quarc_models::{Mode, Model};
use quarc_quant_core::Progress;

use super::progress::bar;
use crate::{ObjectiveConfig, Optimizer, Result};

/// What a training epoch needs besides the data and the optimiser.
pub struct EpochParts<'a> {
    /// The quantized model being trained.
    pub student: &'a dyn Model,
    /// The frozen full-precision reference (the teacher).
    pub reference: &'a dyn Model,
    /// Loss weights and KD temperature.
    pub objective: &'a ObjectiveConfig,
    /// The KD loss.
    pub kd: &'a Distillation,
    /// Layer correction, if any.
    pub cascade: Option<&'a Cascade>,
    /// Show a progress bar.
    pub verbose: bool,
}

/// Mean losses and the time of one epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochLosses {
    /// Mean total loss.
    pub loss: f64,
    /// Mean KD term (unweighted).
    pub kd: f64,
    /// Mean CE term (unweighted).
    pub ce: f64,
    /// Mean raw CLC value per aligned layer.
    pub clc: Vec<(String, f64)>,
    /// Seconds.
    pub secs: f64,
}

/// Trains one epoch over `subset` (all of the loader's data when `None`; `n` samples) at `lr`.
/// When the coreset observes training (e.g. forgetting counts), it sees each batch's outputs.
#[allow(clippy::too_many_arguments)]
pub fn train_epoch(
    parts: &EpochParts<'_>,
    loader: &BatchLoader,
    subset: Option<&[usize]>,
    n: usize,
    opt: &mut Optimizer,
    lr: f64,
    progress: Progress,
    mut coreset: Option<&mut Coreset>,
) -> Result<EpochLosses> {
    let (o, t0) = (parts.objective, Instant::now());
    let need_reference = o.kd_weight > 0.0 || parts.cascade.is_some();
    let pb = bar(loader.num_batches(n), "train", parts.verbose);
    let (mut loss_sum, mut kd_sum, mut ce_sum, mut batches) = (0.0, 0.0, 0.0, 0usize);
    let mut clc_sum: Vec<(String, f64)> = Vec::new();
    for batch in loader.epoch(progress.epoch, subset)? {
        let b = batch?;
        // the Winograd layers keep their transformed input for the weight gradient
        let s = keeping_winograd_tiles(|| parts.student.forward_mode(&b.images, Mode::Train))?;
        let r = match need_reference {
            true => Some(parts.reference.forward_mode(&b.images, Mode::Eval)?.detach()),
            false => None,
        };
        let ce = candle_nn::loss::cross_entropy(&s.logits, &b.labels)?;
        let mut loss = (&ce * o.ce_weight)?;
        if let Some(r) = &r {
            if o.kd_weight > 0.0 {
                let k = parts.kd.forward(&s.logits, &r.logits)?;
                kd_sum += k.to_scalar::<f32>()? as f64;
                loss = (loss + (k * o.kd_weight)?)?;
            }
            if let Some(cas) = parts.cascade {
                let report = cas.loss(&s, r, &progress)?;
                for (k, (name, v)) in report.values()?.into_iter().enumerate() {
                    match clc_sum.get_mut(k) {
                        Some(slot) => slot.1 += v,
                        None => clc_sum.push((name, v)),
                    }
                }
                loss = (loss + report.total)?;
            }
        }
        ce_sum += ce.to_scalar::<f32>()? as f64;
        loss_sum += loss.to_scalar::<f32>()? as f64;
        opt.step(&loss.backward()?, lr)?;
        if let Some(cs) = coreset.as_deref_mut()
            && cs.needs().observe_training
        {
            let sd = s.detach();
            let input = ScoreInput {
                indices: &b.indices,
                labels: &b.labels,
                student: &sd,
                reference: None,
            };
            cs.observe(&input, &progress)?;
        }
        batches += 1;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let nb = batches.max(1) as f64;
    Ok(EpochLosses {
        loss: loss_sum / nb,
        kd: kd_sum / nb,
        ce: ce_sum / nb,
        clc: clc_sum.into_iter().map(|(k, v)| (k, v / nb)).collect(),
        secs: t0.elapsed().as_secs_f64(),
    })
}
