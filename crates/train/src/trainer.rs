//! The reference QAT loop: the ACS/QuaRC procedure composed from quarc's crates exactly as a
//! user's own loop would compose them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};
use quarc_coreset::{Coreset, NoiseDiagnostics, ScoreInput};
use quarc_correction::{AlignmentLoss, Cascade, Distillation, FeatureKl, KdForm, KlDirection, LayerPair, Mse};
use quarc_data::{Augment, BatchLoader, Dataset, LoaderConfig, Normalize};
use quarc_models::{MobileNetV2, Mode, Model, ResNet, SmallCnn, checkpoint};
use quarc_quant_core::{ModelOutput, Progress, QatConfig};
use serde::{Deserialize, Serialize};

use crate::report::{EpochRecord, append_jsonl, plot_accuracy, plot_percent, read_jsonl};
use crate::{
    ClcLoss, Error, LrPlan, LrSchedule, ModelKind, Optimizer, OptimizerConfig, Result, TrainConfig, build_coreset,
};

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

/// Logits of the frozen reference by dataset index, filled on the first scoring pass.
struct LogitCache {
    classes: usize,
    rows: Vec<Option<Vec<f32>>>,
}

impl LogitCache {
    fn new(n: usize, classes: usize) -> Self {
        Self {
            classes,
            rows: vec![None; n],
        }
    }

    /// The `(B, K)` logits of `indices`: from the cache when every row is there, else computed
    /// by `compute` (for the whole batch) and stored.
    fn get(&mut self, indices: &[usize], device: &Device, compute: impl FnOnce() -> Result<Tensor>) -> Result<Tensor> {
        if indices.iter().all(|&i| self.rows[i].is_some()) {
            let flat: Vec<f32> = indices
                .iter()
                .flat_map(|&i| self.rows[i].iter().flatten().copied())
                .collect();
            return Ok(Tensor::from_vec(flat, (indices.len(), self.classes), device)?);
        }
        let logits = compute()?.detach();
        for (&i, row) in indices.iter().zip(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?) {
            self.rows[i] = Some(row);
        }
        Ok(logits)
    }
}

#[derive(Serialize, Deserialize)]
struct RunState {
    epoch_done: usize,
}

fn build(
    kind: ModelKind,
    varmap: &VarMap,
    qat: Option<QatConfig>,
    classes: usize,
    seed: u64,
    device: &Device,
) -> Result<Box<dyn Model>> {
    Ok(match kind {
        ModelKind::SmallCnn => Box::new(SmallCnn::new(varmap, qat, classes, seed, device)?),
        ModelKind::ResNet20 => Box::new(ResNet::resnet20(varmap, qat, classes, seed, device)?),
        ModelKind::ResNet18 => Box::new(ResNet::resnet18(varmap, qat, classes, seed, device)?),
        ModelKind::MobileNetV2 { width } => Box::new(MobileNetV2::new(varmap, qat, width, classes, seed, device)?),
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(value).map_err(|e| Error::InvalidConfig(e.to_string()))?;
    Ok(quarc_quant_core::atomic_write(path, s.as_bytes())?)
}

fn accuracy(model: &dyn Model, loader: &BatchLoader) -> Result<f64> {
    let (mut correct, mut total) = (0usize, 0usize);
    for batch in loader.epoch(0, None)? {
        let b = batch?;
        let pred = model.forward_mode(&b.images, Mode::Eval)?.logits.argmax(1)?;
        correct += pred
            .eq(&b.labels)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()? as usize;
        total += b.indices.len();
    }
    Ok(correct as f64 / total.max(1) as f64)
}

fn bar(n: usize, what: &str, verbose: bool) -> ProgressBar {
    if !verbose {
        return ProgressBar::hidden();
    }
    // indicatif draws only on a terminal; in logs this stays silent and the per-epoch lines remain.
    let pb = ProgressBar::new(n as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

impl Experiment {
    fn loader(&self, data: &Arc<dyn Dataset>, train: bool) -> Result<BatchLoader> {
        let c = &self.config;
        let cfg = if train {
            LoaderConfig::train(
                c.batch_size,
                if c.augment { Augment::cifar() } else { Augment::none() },
                self.normalize.clone(),
                c.seed,
            )
        } else {
            LoaderConfig::eval(c.eval_batch_size, self.normalize.clone())
        };
        Ok(BatchLoader::new(data.clone(), cfg, &self.device)?)
    }

    fn reference_path(&self) -> PathBuf {
        self.config
            .reference
            .checkpoint
            .clone()
            .unwrap_or_else(|| self.run_dir.join("reference.safetensors"))
    }

    /// The full-precision reference: loaded from its checkpoint, or trained on all the training
    /// data (SGD momentum 0.9, cosine, CE) and written there.
    fn reference(&self) -> Result<(VarMap, Box<dyn Model>, f64)> {
        let c = &self.config;
        let vars = VarMap::new();
        let model = build(c.model, &vars, None, c.num_classes, c.seed, &self.device)?;
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
        let plan = LrPlan {
            base: c.reference.lr,
            schedule: LrSchedule::Cosine { eta_min: 0.0 },
            warmup_epochs: 0,
        };
        let mut opt = Optimizer::new(
            OptimizerConfig::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
            c.groups.groups(&vars),
        )?;
        let loader = self.loader(&self.train, true)?;
        for epoch in 0..c.reference.epochs {
            let t0 = Instant::now();
            let pb = bar(loader.num_batches(self.train.len()), "reference", self.verbose);
            let mut loss_sum = 0.0;
            for batch in loader.epoch(epoch, None)? {
                let b = batch?;
                let logits = model.forward_mode(&b.images, Mode::Train)?.logits;
                let loss = candle_nn::loss::cross_entropy(&logits, &b.labels)?;
                loss_sum += loss.to_scalar::<f32>()? as f64;
                opt.step(&loss.backward()?, plan.lr(epoch, c.reference.epochs))?;
                pb.inc(1);
            }
            pb.finish_and_clear();
            let acc = accuracy(model.as_ref(), &test)?;
            self.say(format!(
                "reference epoch {}/{}: loss {:.4}, test accuracy {:.2}% ({:.1} s)",
                epoch + 1,
                c.reference.epochs,
                loss_sum / loader.num_batches(self.train.len()) as f64,
                100.0 * acc,
                t0.elapsed().as_secs_f64()
            ));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        checkpoint::save(&vars, &path)?;
        let acc = accuracy(model.as_ref(), &test)?;
        Ok((vars, model, acc))
    }

    /// A progress line: printed when `verbose`, and always a `tracing` event (silent unless the
    /// application installs a subscriber).
    fn say(&self, line: String) {
        tracing::debug!(run = %self.run_dir.display(), "{line}");
        if self.verbose {
            println!("{line}");
        }
    }

    fn cascade(&self) -> Result<Option<Cascade>> {
        let Some(clc) = &self.config.objective.clc else {
            return Ok(None);
        };
        let loss: Box<dyn AlignmentLoss> = match clc.loss {
            ClcLoss::FeatureKl { axis } => Box::new(FeatureKl::new(axis, 1.0, KlDirection::StudentToReference)?),
            ClcLoss::Mse => Box::new(Mse),
        };
        let pairs = clc.layers.iter().map(LayerPair::same).collect();
        Ok(Some(Cascade::new(pairs, loss, clc.beta)?.with_mode(clc.mode)?))
    }

    /// Runs (or resumes) the experiment.
    pub fn run(&self) -> Result<RunSummary> {
        let c = &self.config;
        c.validate()?;
        if self.train.num_classes() != c.num_classes || self.test.num_classes() != c.num_classes {
            return Err(Error::InvalidConfig(format!(
                "the data has {} classes, the config {}",
                self.train.num_classes(),
                c.num_classes
            )));
        }
        std::fs::create_dir_all(self.run_dir.join("selections")).map_err(Error::io(&self.run_dir))?;
        let config_path = self.run_dir.join("config.json");
        let comparable = TrainConfig {
            stop_after: None,
            ..c.clone()
        };
        if let Ok(old) = std::fs::read_to_string(&config_path) {
            let old: TrainConfig = serde_json::from_str(&old).map_err(|e| Error::Run {
                path: config_path.clone(),
                reason: e.to_string(),
            })?;
            if old != comparable {
                return Err(Error::Run {
                    path: self.run_dir.clone(),
                    reason: "the run directory holds a run with another configuration".into(),
                });
            }
        } else {
            write_json(&config_path, &comparable)?;
        }

        let (_ref_vars, reference, reference_accuracy) = self.reference()?;
        let q_vars = VarMap::new();
        let student = build(
            c.model,
            &q_vars,
            Some(c.qat.clone()),
            c.num_classes,
            c.seed,
            &self.device,
        )?;
        checkpoint::load(&q_vars, self.reference_path())?;
        let mut coreset: Option<Coreset> = build_coreset(c, self.train.labels())?;
        if let Some(noisy) = &self.noise
            && noisy.len() != self.train.len()
        {
            return Err(Error::InvalidConfig(format!(
                "noise flags: {} for {} training samples",
                noisy.len(),
                self.train.len()
            )));
        }
        let mut opt = Optimizer::new(c.optimizer, c.groups.groups(&q_vars))?;
        let (train_eval, test_eval, train_loader) = (
            self.loader(&self.train, false)?,
            self.loader(&self.test, false)?,
            self.loader(&self.train, true)?,
        );

        // Resume, or calibrate before the first scoring pass (docs/methods.md, "Selection and schedule").
        let state_path = self.run_dir.join("state.json");
        let log_path = self.run_dir.join("log.jsonl");
        let mut start = 0;
        if let Ok(s) = std::fs::read_to_string(&state_path) {
            let st: RunState = serde_json::from_str(&s).map_err(|e| Error::Run {
                path: state_path.clone(),
                reason: e.to_string(),
            })?;
            let e = st.epoch_done;
            checkpoint::load(&q_vars, self.run_dir.join(format!("checkpoint-{e}.safetensors")))?;
            let optim =
                candle_core::safetensors::load(self.run_dir.join(format!("optimizer-{e}.safetensors")), &self.device)?;
            opt.load_state(&optim.into_iter().collect::<BTreeMap<_, _>>())?;
            if let Some(cs) = coreset.as_mut() {
                cs.load_state(self.run_dir.join(format!("coreset-{e}.safetensors")))?;
            }
            start = e + 1;
            self.say(format!("resuming after epoch {e}"));
        } else {
            let first = train_eval
                .epoch(0, None)?
                .next()
                .ok_or_else(|| Error::InvalidConfig("empty training set".into()))??;
            student.calibrate(&first.images)?;
        }
        let mut records: Vec<EpochRecord> = read_jsonl(&log_path)?;
        let logged = records.len();
        records.retain(|r| r.epoch < start);
        if records.len() != logged {
            // A run killed after logging an epoch but before its checkpoint: that epoch runs
            // again, so its old line goes.
            let mut text = String::new();
            for r in &records {
                text += &serde_json::to_string(r).map_err(|e| Error::InvalidConfig(e.to_string()))?;
                text.push('\n');
            }
            quarc_quant_core::atomic_write(&log_path, text.as_bytes())?;
        }

        let mut reference_logits = LogitCache::new(self.train.len(), c.num_classes);
        let kd = Distillation::new(c.objective.temperature, KdForm::Kl)?;
        let cascade = self.cascade()?;
        let need_reference_forward = c.objective.kd_weight > 0.0 || cascade.is_some();
        let mut epochs_done = start;
        for epoch in start..c.epochs {
            if c.stop_after.is_some_and(|n| epoch >= start + n) {
                break;
            }
            let progress = Progress::new(epoch, c.epochs);
            let lr = c.lr.lr(epoch, c.epochs);
            // Scoring pass and selection.
            let (mut scoring_secs, mut selection_secs, mut selected) = (0.0, 0.0, false);
            if let Some(cs) = coreset.as_mut() {
                let due = cs.needs_scoring(epoch);
                if due && cs.needs().index_only {
                    cs.select_without_pass(progress)?; // random, random_resample, rs2: no forward pass
                } else if due {
                    cs.begin_scoring(progress)?;
                    let needs = cs.needs();
                    let pb = bar(train_eval.num_batches(self.train.len()), "scoring", self.verbose);
                    for batch in train_eval.epoch(0, None)? {
                        let b = batch?;
                        let s = student.forward_mode(&b.images, Mode::Eval)?.detach();
                        let r = if !needs.reference {
                            None
                        } else if needs.features {
                            Some(reference.forward_mode(&b.images, Mode::Eval)?.detach())
                        } else {
                            // The reference is frozen and scoring preprocessing is deterministic, so
                            // its logits are the same every pass: compute them once, then reuse.
                            Some(ModelOutput::logits_only(reference_logits.get(
                                &b.indices,
                                &self.device,
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
                if due {
                    let sel = cs
                        .current()
                        .cloned()
                        .ok_or_else(|| Error::InvalidConfig("no selection".into()))?;
                    let rec = cs
                        .history()
                        .last()
                        .cloned()
                        .ok_or_else(|| Error::InvalidConfig("selection left no record".into()))?;
                    scoring_secs = rec.scoring_secs;
                    selection_secs = rec.selection_secs;
                    selected = true;
                    write_json(
                        &self.run_dir.join("selections").join(format!("epoch_{epoch}.json")),
                        &sel.indices,
                    )?;
                }
            }
            let subset: Option<Vec<usize>> = coreset.as_ref().and_then(|cs| cs.current().map(|s| s.indices.clone()));
            let n = subset.as_ref().map_or(self.train.len(), Vec::len);
            // One epoch over the coreset.
            let t0 = Instant::now();
            let pb = bar(train_loader.num_batches(n), "train", self.verbose);
            let (mut loss_sum, mut kd_sum, mut ce_sum, mut batches) = (0.0, 0.0, 0.0, 0usize);
            let mut clc_sum: Vec<(String, f64)> = Vec::new();
            for batch in train_loader.epoch(epoch, subset.as_deref())? {
                let b = batch?;
                let s = student.forward_mode(&b.images, Mode::Train)?;
                let r = if need_reference_forward {
                    Some(reference.forward_mode(&b.images, Mode::Eval)?.detach())
                } else {
                    None
                };
                let ce = candle_nn::loss::cross_entropy(&s.logits, &b.labels)?;
                let mut loss = (&ce * c.objective.ce_weight)?;
                if let Some(r) = &r {
                    if c.objective.kd_weight > 0.0 {
                        let k = kd.forward(&s.logits, &r.logits)?;
                        kd_sum += k.to_scalar::<f32>()? as f64;
                        loss = (loss + (k * c.objective.kd_weight)?)?;
                    }
                    if let Some(cas) = &cascade {
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
                if let Some(cs) = coreset.as_mut()
                    && cs.needs().observe_training
                {
                    let sd = s.detach();
                    cs.observe(
                        &ScoreInput {
                            indices: &b.indices,
                            labels: &b.labels,
                            student: &sd,
                            reference: None,
                        },
                        &progress,
                    )?;
                }
                batches += 1;
                pb.inc(1);
            }
            pb.finish_and_clear();
            let training_secs = t0.elapsed().as_secs_f64();
            let test_accuracy = accuracy(student.as_ref(), &test_eval)?;
            let nb = batches.max(1) as f64;
            let record = EpochRecord {
                epoch,
                lr,
                loss: loss_sum / nb,
                kd: kd_sum / nb,
                ce: ce_sum / nb,
                clc: clc_sum.into_iter().map(|(k, v)| (k, v / nb)).collect(),
                test_accuracy,
                coreset_size: n,
                selected,
                mixing_weights: coreset
                    .as_ref()
                    .and_then(|cs| cs.history().last().map(|h| h.mixing_weights.clone()))
                    .unwrap_or_default(),
                scoring_secs,
                selection_secs,
                training_secs,
                images_per_s: n as f64 / training_secs.max(1e-9),
                // Diagnostics of the selection in force, computed here: the coreset never sees them.
                noise: match (&self.noise, coreset.as_ref().and_then(|cs| cs.current())) {
                    (Some(flags), Some(sel)) => Some(NoiseDiagnostics::compute(&sel.indices, flags)?),
                    _ => None,
                },
            };
            self.say(format!(
                "[{} f={} seed={}] epoch {}/{}: loss {:.4}, test {:.2}%, coreset {n}{}, lr {lr:.5}, train {:.1} s, scoring {:.1} s",
                c.method.name(),
                c.fraction,
                c.seed,
                epoch + 1,
                c.epochs,
                record.loss,
                100.0 * test_accuracy,
                if selected { " (new)" } else { "" },
                training_secs,
                scoring_secs
            ));
            append_jsonl(&log_path, &record)?;
            records.push(record);
            let series = vec![(
                c.method.name().to_string(),
                records.iter().map(|r| (r.epoch + 1, r.test_accuracy)).collect(),
            )];
            plot_accuracy(
                &self.run_dir.join("accuracy.svg"),
                &format!("{} W/A QAT, {}", c.method.name(), c.fraction),
                &series,
            )?;
            // Selection diagnostics against known label noise: the coreset's mislabelled share
            // per epoch, next to the data set's.
            let noisy: Vec<(usize, f64, f64)> = records
                .iter()
                .filter_map(|r| {
                    r.noise
                        .map(|n| (r.epoch + 1, n.selected_noisy_share, n.dataset_noise_rate))
                })
                .collect();
            if !noisy.is_empty() {
                plot_percent(
                    &self.run_dir.join("noise.svg"),
                    &format!("{}: mislabelled share", c.method.name()),
                    "mislabelled (%)",
                    &[
                        ("coreset".to_string(), noisy.iter().map(|&(e, s, _)| (e, s)).collect()),
                        ("data set".to_string(), noisy.iter().map(|&(e, _, d)| (e, d)).collect()),
                    ],
                )?;
            }
            // Checkpoint: weights, optimiser, coreset, then the state file that points at them.
            checkpoint::save(&q_vars, self.run_dir.join(format!("checkpoint-{epoch}.safetensors")))?;
            checkpoint::save_tensors(
                &opt.state()?.into_iter().collect(),
                self.run_dir.join(format!("optimizer-{epoch}.safetensors")),
            )?;
            if let Some(cs) = &coreset {
                cs.save_state(self.run_dir.join(format!("coreset-{epoch}.safetensors")))?;
            }
            write_json(&state_path, &RunState { epoch_done: epoch })?;
            if epoch > 0 {
                for f in ["checkpoint", "optimizer", "coreset"] {
                    let _ = std::fs::remove_file(self.run_dir.join(format!("{f}-{}.safetensors", epoch - 1)));
                }
            }
            epochs_done = epoch + 1;
        }
        let finished = epochs_done == c.epochs;
        if finished {
            checkpoint::save(&q_vars, self.run_dir.join("model.safetensors"))?;
            let mut export = student.export()?;
            if !export.layers.is_empty() {
                export.config = Some(c.qat.clone());
                export.save(self.run_dir.join("model.int.safetensors"))?;
            }
        }
        let summary = RunSummary {
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
        };
        write_json(&self.run_dir.join("summary.json"), &summary)?;
        Ok(summary)
    }
}
