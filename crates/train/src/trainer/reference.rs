//! The full-precision reference of a run: loaded from its checkpoint, or trained and written.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;
use candle_nn::VarMap;
use quarc_data::{Batch, BatchLoader};
use quarc_kernels::keeping_winograd_tiles;
use quarc_models::{Mode, Model, checkpoint};

use super::progress::{accuracy, bar};
use super::{Experiment, ModelFactory};
use crate::{Error, LrPlan, LrSchedule, Optimizer, OptimizerConfig, Result};

impl Experiment {
    pub(crate) fn reference_path(&self) -> PathBuf {
        self.config
            .reference
            .checkpoint
            .clone()
            .unwrap_or_else(|| self.run_dir.join("reference.safetensors"))
    }

    /// The full-precision reference: loaded from its checkpoint, or trained on all the training
    /// data (SGD momentum 0.9, cosine, CE) and written there. Returns its variables, the model
    /// and its test accuracy.
    pub(crate) fn reference(&self, factory: &dyn ModelFactory) -> Result<(VarMap, Box<dyn Model>, f64)> {
        let vars = VarMap::new();
        let model = factory.build(&vars, None, &self.device)?;
        let path = self.reference_path();
        let test = self.loader(&self.test, false)?;
        if path.is_file() {
            let r = checkpoint::load(&vars, &path)?;
            if !r.missing.is_empty() {
                return Err(Error::Run {
                    path,
                    reason: format!("reference checkpoint lacks {:?}", r.missing),
                });
            }
            let acc = accuracy(model.as_ref(), &test)?;
            self.say(format!(
                "reference loaded from {}: test accuracy {:.2}%",
                path.display(),
                100.0 * acc
            ));
            return Ok((vars, model, acc));
        }
        self.train_reference(&vars, model.as_ref())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        checkpoint::save(&vars, &path)?;
        let acc = accuracy(model.as_ref(), &test)?;
        Ok((vars, model, acc))
    }

    fn train_reference(&self, vars: &VarMap, model: &dyn Model) -> Result<()> {
        let loader = self.loader(&self.train, true)?;
        self.train_fp(vars, model, &loader, "reference", &mut |_| Ok(()))
    }

    /// Trains `model` on all the training data with the reference's recipe (SGD momentum 0.9,
    /// cosine, CE, `config.reference` epochs and learning rate) over `loader`'s batch order,
    /// handing `hook` every batch's train-mode logits (before the update) and every epoch's end.
    pub(crate) fn train_fp(
        &self,
        vars: &VarMap,
        model: &dyn Model,
        loader: &BatchLoader,
        label: &str,
        hook: &mut dyn FnMut(FpEvent<'_>) -> Result<()>,
    ) -> Result<()> {
        let c = &self.config;
        let plan = LrPlan {
            base: c.reference.lr,
            schedule: LrSchedule::Cosine { eta_min: 0.0 },
            warmup_epochs: 0,
        };
        let sgd = OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: false,
        };
        let mut opt = Optimizer::new(sgd, c.groups.groups(vars))?;
        let test = self.loader(&self.test, false)?;
        let batches = loader.num_batches(self.train.len());
        for epoch in 0..c.reference.epochs {
            let t0 = Instant::now();
            let pb = bar(batches, label, self.verbose);
            let mut loss_sum = 0.0;
            for batch in loader.epoch(epoch, None)? {
                let b = batch?;
                let logits = keeping_winograd_tiles(|| model.forward_mode(&b.images, Mode::Train))?.logits;
                hook(FpEvent::Batch {
                    batch: &b,
                    logits: &logits.detach(),
                })?;
                let loss = candle_nn::loss::cross_entropy(&logits, &b.labels)?;
                loss_sum += loss.to_scalar::<f32>()? as f64;
                opt.step(&loss.backward()?, plan.lr(epoch, c.reference.epochs))?;
                pb.inc(1);
            }
            pb.finish_and_clear();
            let acc = accuracy(model, &test)?;
            self.say(format!(
                "{label} epoch {}/{}: loss {:.4}, test accuracy {:.2}% ({:.1} s)",
                epoch + 1,
                c.reference.epochs,
                loss_sum / batches as f64,
                100.0 * acc,
                t0.elapsed().as_secs_f64()
            ));
            hook(FpEvent::EpochEnd { epochs_done: epoch + 1 })?;
        }
        Ok(())
    }
}

/// What [`Experiment::train_fp`] hands its hook.
pub(crate) enum FpEvent<'a> {
    /// A training batch and the model's train-mode logits for it, before the update.
    Batch {
        /// The batch.
        batch: &'a Batch,
        /// Its logits (detached).
        logits: &'a Tensor,
    },
    /// `epochs_done` epochs are complete.
    EpochEnd {
        /// Epochs completed so far.
        epochs_done: usize,
    },
}
