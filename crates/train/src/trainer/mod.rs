//! The reference QAT loop, composed from parts a user's own loop can reuse: a [`RunDir`]
//! (configuration check, resume, checkpoints, log, plots, export), [`select_if_due`] (the
//! scoring pass and selection), [`train_epoch`] (one epoch over the coreset) and the
//! [`ModelFactory`] that builds the reference and its quantized twin — quarc's models or yours.

mod epoch;
mod factory;
mod progress;
mod proxy;
mod reference;
mod run_dir;
mod scoring;

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use candle_nn::VarMap;
use quarc_coreset::{Coreset, NoiseDiagnostics};
use quarc_correction::{AlignmentLoss, Cascade, Distillation, FeatureKl, KdForm, KlDirection, LayerPair, Mse};
use quarc_data::{Augment, BatchLoader, Dataset, LoaderConfig, Normalize};
use quarc_models::{Model, checkpoint};
use quarc_quant_core::Progress;
use serde::{Deserialize, Serialize};

pub use epoch::{EpochLosses, EpochParts, train_epoch};
pub use factory::{BuiltIn, ModelFactory};
pub use progress::accuracy;
pub use proxy::{MAX_PROXY_RUNS, ProxyConfig, ProxyScores};
pub use run_dir::RunDir;
pub use scoring::{LogitCache, SelectionOutcome, select_if_due};

use crate::report::EpochRecord;
use crate::{ClcLoss, Error, Optimizer, Result, TrainConfig, build_coreset};

/// Builds a run's coreset from the training labels.
pub type CoresetFactory = dyn Fn(Vec<u32>) -> Result<Coreset> + Send + Sync;

/// What a run takes from the user instead of the configuration: a model, a coreset, a layer
/// correction. `None` everywhere (the default) uses the configuration's.
#[derive(Clone, Default)]
pub struct Custom {
    /// Builds the reference and the twin instead of `config.model`.
    pub model: Option<Arc<dyn ModelFactory>>,
    /// Builds the coreset instead of `config.coreset` / `config.method` (called with the
    /// training labels; the same coreset must be built on a resume).
    pub coreset: Option<Arc<CoresetFactory>>,
    /// The layer correction instead of `config.objective.clc`.
    pub cascade: Option<Arc<Cascade>>,
}

/// A run: configuration, data, where its files go, the device.
pub struct Experiment {
    /// The configuration.
    pub config: TrainConfig,
    /// Training data (scored in full, trained on the coreset).
    pub train: Arc<dyn Dataset>,
    /// Test data.
    pub test: Arc<dyn Dataset>,
    /// Per-channel normalisation of inputs.
    pub normalize: Option<Normalize>,
    /// The run directory (log, selections, checkpoints, plot, exports).
    pub run_dir: PathBuf,
    /// Device.
    pub device: Device,
    /// Print a line per epoch (and show progress bars on a terminal).
    pub verbose: bool,
    /// Which training labels are known to be corrupted (diagnostics only; see
    /// `quarc_data::NoisyLabels`). The training never reads it.
    pub noise: Option<Vec<bool>>,
    /// A user's model, coreset or layer correction.
    pub custom: Custom,
}

/// The outcome of [`Experiment::run`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Method name.
    pub method: String,
    /// Coreset fraction.
    pub fraction: f64,
    /// Seed.
    pub seed: u64,
    /// Test accuracy of the full-precision reference.
    pub reference_accuracy: f64,
    /// Test accuracy after the last epoch.
    pub final_accuracy: f64,
    /// Best test accuracy over the epochs (reported, never used for selection).
    pub best_accuracy: f64,
    /// Seconds in scoring passes.
    pub scoring_secs: f64,
    /// Seconds selecting.
    pub selection_secs: f64,
    /// Seconds training.
    pub training_secs: f64,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Whether all epochs ran (false after `stop_after`).
    pub finished: bool,
}

/// The models, optimiser and coreset of a run while it trains.
struct State {
    reference: Box<dyn Model>,
    student: Box<dyn Model>,
    vars: VarMap,
    opt: Optimizer,
    coreset: Option<Coreset>,
}

impl Experiment {
    fn loader(&self, data: &Arc<dyn Dataset>, train: bool) -> Result<BatchLoader> {
        let c = &self.config;
        let cfg = if train {
            let augment = if c.augment { Augment::cifar() } else { Augment::none() };
            LoaderConfig::train(c.batch_size, augment, self.normalize.clone(), c.seed)
        } else {
            LoaderConfig::eval(c.eval_batch_size, self.normalize.clone())
        };
        Ok(BatchLoader::new(data.clone(), cfg, &self.device)?)
    }

    /// A progress line: printed when `verbose`, and always a `tracing` event (silent unless the
    /// application installs a subscriber).
    fn say(&self, line: String) {
        tracing::debug!(run = %self.run_dir.display(), "{line}");
        if self.verbose {
            println!("{line}");
        }
    }

    fn factory(&self) -> Arc<dyn ModelFactory> {
        self.custom.model.clone().unwrap_or_else(|| {
            let c = &self.config;
            Arc::new(BuiltIn {
                kind: c.model,
                classes: c.num_classes,
                seed: c.seed,
            })
        })
    }

    fn cascade(&self) -> Result<Option<Arc<Cascade>>> {
        if let Some(c) = &self.custom.cascade {
            return Ok(Some(c.clone()));
        }
        let Some(clc) = &self.config.objective.clc else {
            return Ok(None);
        };
        let loss: Box<dyn AlignmentLoss> = match clc.loss {
            ClcLoss::FeatureKl { axis } => Box::new(FeatureKl::new(axis, 1.0, KlDirection::StudentToReference)?),
            ClcLoss::Mse => Box::new(Mse),
        };
        let pairs = clc.layers.iter().map(LayerPair::same).collect();
        Ok(Some(Arc::new(
            Cascade::new(pairs, loss, clc.beta)?.with_mode(clc.mode)?,
        )))
    }

    /// Checks the configuration against the data before any work starts.
    fn check(&self) -> Result<()> {
        let c = &self.config;
        c.validate()?;
        if self.train.num_classes() != c.num_classes || self.test.num_classes() != c.num_classes {
            return Err(Error::InvalidConfig(format!(
                "the data has {} classes, the config {}",
                self.train.num_classes(),
                c.num_classes
            )));
        }
        match &self.noise {
            Some(noisy) if noisy.len() != self.train.len() => Err(Error::InvalidConfig(format!(
                "noise flags: {} for {} training samples",
                noisy.len(),
                self.train.len()
            ))),
            _ => Ok(()),
        }
    }

    /// Reference, twin (a deep copy of the reference's weights), optimiser and coreset.
    fn prepare(&self) -> Result<(State, f64)> {
        let c = &self.config;
        let factory = self.factory();
        let (ref_vars, reference, reference_accuracy) = self.reference(factory.as_ref())?;
        let vars = VarMap::new();
        let student = factory.build(&vars, Some(&c.qat), &self.device)?;
        checkpoint::transfer(&ref_vars, &vars)?;
        let coreset = match &self.custom.coreset {
            Some(make) => Some(make(self.train.labels())?),
            None => build_coreset(c, self.train.labels())?,
        };
        let opt = Optimizer::new(c.optimizer, c.groups.groups(&vars))?;
        let state = State {
            reference,
            student,
            vars,
            opt,
            coreset,
        };
        Ok((state, reference_accuracy))
    }

    /// Resumes after the last checkpointed epoch, or calibrates the twin on the first batch of
    /// the training data (docs/methods.md, "Selection and schedule"); returns the first epoch
    /// to run.
    fn resume_or_calibrate(&self, dir: &RunDir, st: &mut State, train_eval: &BatchLoader) -> Result<usize> {
        if let Some(e) = dir.resume_point()? {
            dir.restore(e, &st.vars, &mut st.opt, st.coreset.as_mut(), &self.device)?;
            self.say(format!("resuming after epoch {e}"));
            return Ok(e + 1);
        }
        let first = train_eval
            .epoch(0, None)?
            .next()
            .ok_or_else(|| Error::InvalidConfig("empty training set".into()))??;
        let report = st.student.calibrate(&first.images)?;
        tracing::debug!(layers = report.layers.len(), "twin calibrated");
        Ok(0)
    }

    /// Runs (or resumes) the experiment.
    pub fn run(&self) -> Result<RunSummary> {
        let c = &self.config;
        self.check()?;
        let dir = RunDir::open(&self.run_dir, c)?;
        let (mut st, reference_accuracy) = self.prepare()?;
        let (train_eval, test_eval, train_loader) = (
            self.loader(&self.train, false)?,
            self.loader(&self.test, false)?,
            self.loader(&self.train, true)?,
        );
        let start = self.resume_or_calibrate(&dir, &mut st, &train_eval)?;
        let mut records = dir.log_before(start)?;
        let mut cache = LogitCache::new(self.train.len(), c.num_classes);
        let kd = Distillation::new(c.objective.temperature, KdForm::Kl)?;
        let cascade = self.cascade()?;
        let mut epochs_done = start;
        for epoch in start..c.epochs {
            if c.stop_after.is_some_and(|n| epoch >= start + n) {
                break;
            }
            let loaders = [&train_eval, &test_eval, &train_loader];
            let record = self.epoch(&dir, &mut st, loaders, &mut cache, &kd, cascade.as_deref(), epoch)?;
            records.push(record);
            let last = records.last().ok_or_else(|| Error::InvalidConfig("no record".into()))?;
            let title = format!("{} W/A QAT, {}", c.method.name(), c.fraction);
            dir.log(last, &records, c.method.name(), &title)?;
            dir.checkpoint(epoch, &st.vars, &st.opt, st.coreset.as_ref())?;
            epochs_done = epoch + 1;
        }
        let finished = epochs_done == c.epochs;
        if finished {
            dir.export(&st.vars, st.student.as_ref(), c)?;
        }
        let summary = self.summary(&records, reference_accuracy, epochs_done, finished);
        dir.write_summary(&summary)?;
        Ok(summary)
    }

    /// Selection (when due), one epoch of training, test accuracy: the epoch's log record.
    #[allow(clippy::too_many_arguments)]
    fn epoch(
        &self,
        dir: &RunDir,
        st: &mut State,
        [train_eval, test_eval, train_loader]: [&BatchLoader; 3],
        cache: &mut LogitCache,
        kd: &Distillation,
        cascade: Option<&Cascade>,
        epoch: usize,
    ) -> Result<EpochRecord> {
        let c = &self.config;
        let progress = Progress::new(epoch, c.epochs);
        let lr = c.lr.lr(epoch, c.epochs);
        let (student, reference) = (st.student.as_ref(), st.reference.as_ref());
        let selection = match st.coreset.as_mut() {
            Some(cs) => select_if_due(cs, student, reference, train_eval, cache, progress, self.verbose)?,
            None => None,
        };
        if let Some(s) = &selection {
            dir.write_selection(epoch, &s.indices)?;
        }
        let subset: Option<Vec<usize>> = st
            .coreset
            .as_ref()
            .and_then(|cs| cs.current().map(|s| s.indices.clone()));
        let n = subset.as_ref().map_or(self.train.len(), Vec::len);
        let parts = EpochParts {
            student,
            reference,
            objective: &c.objective,
            kd,
            cascade,
            verbose: self.verbose,
        };
        let losses = train_epoch(
            &parts,
            train_loader,
            subset.as_deref(),
            n,
            &mut st.opt,
            lr,
            progress,
            st.coreset.as_mut(),
        )?;
        let test_accuracy = accuracy(student, test_eval)?;
        let record = self.record(
            epoch,
            lr,
            n,
            losses,
            test_accuracy,
            selection.as_ref(),
            st.coreset.as_ref(),
        )?;
        self.say(format!(
            "[{} f={} seed={}] epoch {}/{}: loss {:.4}, test {:.2}%, coreset {n}{}, lr {lr:.5}, train {:.1} s, scoring {:.1} s",
            c.method.name(),
            c.fraction,
            c.seed,
            epoch + 1,
            c.epochs,
            record.loss,
            100.0 * test_accuracy,
            if record.selected { " (new)" } else { "" },
            record.training_secs,
            record.scoring_secs
        ));
        Ok(record)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        epoch: usize,
        lr: f64,
        n: usize,
        losses: EpochLosses,
        test_accuracy: f64,
        selection: Option<&SelectionOutcome>,
        coreset: Option<&Coreset>,
    ) -> Result<EpochRecord> {
        Ok(EpochRecord {
            epoch,
            lr,
            loss: losses.loss,
            kd: losses.kd,
            ce: losses.ce,
            clc: losses.clc,
            test_accuracy,
            coreset_size: n,
            selected: selection.is_some(),
            mixing_weights: coreset
                .and_then(|cs| cs.history().last().map(|h| h.mixing_weights.clone()))
                .unwrap_or_default(),
            scoring_secs: selection.map_or(0.0, |s| s.scoring_secs),
            selection_secs: selection.map_or(0.0, |s| s.selection_secs),
            training_secs: losses.secs,
            images_per_s: n as f64 / losses.secs.max(1e-9),
            // Diagnostics of the selection in force, computed here: the coreset never sees them.
            noise: match (&self.noise, coreset.and_then(|cs| cs.current())) {
                (Some(flags), Some(sel)) => Some(NoiseDiagnostics::compute(&sel.indices, flags)?),
                _ => None,
            },
        })
    }

    fn summary(
        &self,
        records: &[EpochRecord],
        reference_accuracy: f64,
        epochs_done: usize,
        finished: bool,
    ) -> RunSummary {
        let c = &self.config;
        RunSummary {
            method: c.method.name().into(),
            fraction: c.fraction,
            seed: c.seed,
            reference_accuracy,
            final_accuracy: records.last().map_or(0.0, |r| r.test_accuracy),
            best_accuracy: records.iter().map(|r| r.test_accuracy).fold(0.0, f64::max),
            scoring_secs: records.iter().map(|r| r.scoring_secs).sum(),
            selection_secs: records.iter().map(|r| r.selection_secs).sum(),
            training_secs: records.iter().map(|r| r.training_secs).sum(),
            epochs_done,
            finished,
        }
    }
}
