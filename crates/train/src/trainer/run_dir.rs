//! The run directory: configuration check, resume point, checkpoints, log, plots, export.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_nn::VarMap;
use quarc_coreset::Coreset;
use quarc_models::{Model, checkpoint};
use serde::{Deserialize, Serialize};

use super::progress::write_json;
use crate::report::{EpochRecord, append_jsonl, plot_accuracy, plot_percent, read_jsonl_repairing};
use crate::{Error, Optimizer, Result, TrainConfig};

#[derive(Serialize, Deserialize)]
struct RunState {
    epoch_done: usize,
}

/// A run's directory: `config.json`, `log.jsonl`, `selections/`, per-epoch checkpoints
/// (weights, optimiser, coreset, then `state.json` pointing at them), `accuracy.svg`, and at the
/// end `model.safetensors`, `model.int.safetensors` and `summary.json`.
///
/// While a `RunDir` is open its process holds an advisory lock on `<dir>/.lock` (released when
/// the process ends, however it ends): a second process opening the same directory gets
/// [`Error::Locked`] naming the holder instead of writing the same files concurrently.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
    _lock: std::sync::Arc<std::fs::File>,
}

/// Takes the run directory's lock, or names the process that holds it.
fn lock(dir: &Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(".lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(Error::io(&path))?;
    if let Err(e) = f.try_lock() {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        return Err(Error::Locked {
            path: dir.to_path_buf(),
            holder: format!("{} ({e})", holder.trim()),
        });
    }
    let me = format!("pid {}", std::process::id());
    f.set_len(0).map_err(Error::io(&path))?;
    f.rewind().map_err(Error::io(&path))?;
    f.write_all(me.as_bytes()).map_err(Error::io(&path))?;
    Ok(f)
}

/// Removes the temporary files of writes that a killed run left behind.
fn remove_stale_temp_files(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))?.flatten() {
        let name = entry.file_name();
        if quarc_quant_core::is_temp_file_name(&name.to_string_lossy()) {
            std::fs::remove_file(entry.path()).map_err(Error::io(&entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl RunDir {
    /// Opens (creating) `path` for a run of `config`: a directory holding a run of another
    /// configuration (`stop_after` aside) is an error; a new one gets `config.json`.
    /// Takes the directory's lock first, then removes temporary files a killed run left.
    pub fn open(path: impl Into<PathBuf>, config: &TrainConfig) -> Result<Self> {
        let path = path.into();
        std::fs::create_dir_all(path.join("selections")).map_err(Error::io(&path))?;
        let dir = Self {
            _lock: std::sync::Arc::new(lock(&path)?),
            path,
        };
        let removed = remove_stale_temp_files(&dir.path)?;
        if removed > 0 {
            tracing::info!(dir = %dir.path.display(), removed, "removed temporary files of an interrupted run");
        }
        let config_path = dir.path.join("config.json");
        let comparable = TrainConfig {
            stop_after: None,
            ..config.clone()
        };
        match std::fs::read_to_string(&config_path) {
            Ok(old) => {
                let old: TrainConfig = serde_json::from_str(&old).map_err(|e| Error::Run {
                    path: config_path.clone(),
                    reason: e.to_string(),
                })?;
                if old != comparable {
                    return Err(Error::Run {
                        path: dir.path.clone(),
                        reason: "the run directory holds a run with another configuration".into(),
                    });
                }
            }
            Err(_) => write_json(&config_path, &comparable)?,
        }
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, what: &str, epoch: usize) -> PathBuf {
        self.path.join(format!("{what}-{epoch}.safetensors"))
    }

    /// The last epoch with a complete checkpoint, if any.
    pub fn resume_point(&self) -> Result<Option<usize>> {
        let state_path = self.path.join("state.json");
        let Ok(s) = std::fs::read_to_string(&state_path) else {
            return Ok(None);
        };
        let st: RunState = serde_json::from_str(&s).map_err(|e| Error::Run {
            path: state_path,
            reason: e.to_string(),
        })?;
        Ok(Some(st.epoch_done))
    }

    /// Restores weights, optimiser and coreset state as they were after `epoch`.
    pub fn restore(
        &self,
        epoch: usize,
        vars: &VarMap,
        opt: &mut Optimizer,
        coreset: Option<&mut Coreset>,
        device: &Device,
    ) -> Result<()> {
        checkpoint::load(vars, self.file("checkpoint", epoch))?;
        let optim = candle_core::safetensors::load(self.file("optimizer", epoch), device)?;
        opt.load_state(&optim.into_iter().collect::<BTreeMap<_, _>>())?;
        if let Some(cs) = coreset {
            cs.load_state(self.file("coreset", epoch))?;
        }
        Ok(())
    }

    /// The logged epochs before `start`; lines of later epochs (logged by a run killed before
    /// their checkpoint, so they run again) are dropped from the file, and so is a last line
    /// that a kill cut short.
    pub fn log_before(&self, start: usize) -> Result<Vec<EpochRecord>> {
        let log_path = self.path.join("log.jsonl");
        let (mut records, torn): (Vec<EpochRecord>, bool) = read_jsonl_repairing(&log_path)?;
        let logged = records.len();
        records.retain(|r| r.epoch < start);
        if records.len() != logged || torn {
            let mut text = String::new();
            for r in &records {
                text += &serde_json::to_string(r).map_err(|e| Error::InvalidConfig(e.to_string()))?;
                text.push('\n');
            }
            quarc_quant_core::atomic_write(&log_path, text.as_bytes())?;
        }
        Ok(records)
    }

    /// Writes the indices selected at `epoch`.
    pub fn write_selection(&self, epoch: usize, indices: &[usize]) -> Result<()> {
        write_json(
            &self.path.join("selections").join(format!("epoch_{epoch}.json")),
            &indices,
        )
    }

    /// Appends `record` to the log and redraws the plots from `records` (which end with it).
    pub fn log(&self, record: &EpochRecord, records: &[EpochRecord], label: &str, title: &str) -> Result<()> {
        append_jsonl(&self.path.join("log.jsonl"), record)?;
        let series = vec![(
            label.to_string(),
            records.iter().map(|r| (r.epoch + 1, r.test_accuracy)).collect(),
        )];
        plot_accuracy(&self.path.join("accuracy.svg"), title, &series)?;
        // Selection diagnostics against known label noise: the coreset's mislabelled share per
        // epoch, next to the data set's.
        let noisy: Vec<(usize, f64, f64)> = records
            .iter()
            .filter_map(|r| {
                r.noise
                    .map(|n| (r.epoch + 1, n.selected_noisy_share, n.dataset_noise_rate))
            })
            .collect();
        if !noisy.is_empty() {
            plot_percent(
                &self.path.join("noise.svg"),
                &format!("{label}: mislabelled share"),
                "mislabelled (%)",
                &[
                    ("coreset".to_string(), noisy.iter().map(|&(e, s, _)| (e, s)).collect()),
                    ("data set".to_string(), noisy.iter().map(|&(e, _, d)| (e, d)).collect()),
                ],
            )?;
        }
        Ok(())
    }

    /// Checkpoints epoch `epoch` (weights, optimiser, coreset, then the state file pointing at
    /// them) and removes the previous epoch's files.
    pub fn checkpoint(&self, epoch: usize, vars: &VarMap, opt: &Optimizer, coreset: Option<&Coreset>) -> Result<()> {
        checkpoint::save(vars, self.file("checkpoint", epoch))?;
        checkpoint::save_tensors(&opt.state()?.into_iter().collect(), self.file("optimizer", epoch))?;
        if let Some(cs) = coreset {
            cs.save_state(self.file("coreset", epoch))?;
        }
        write_json(&self.path.join("state.json"), &RunState { epoch_done: epoch })?;
        if epoch > 0 {
            for f in ["checkpoint", "optimizer", "coreset"] {
                let _ = std::fs::remove_file(self.file(f, epoch - 1));
            }
        }
        Ok(())
    }

    /// The export step: the final weights (`model.safetensors`) and, when the model has
    /// quantized layers, their integer export with the QAT configuration.
    pub fn export(&self, vars: &VarMap, model: &dyn Model, config: &TrainConfig) -> Result<()> {
        checkpoint::save(vars, self.path.join("model.safetensors"))?;
        let mut export = model.export()?;
        if !export.layers.is_empty() {
            export.config = Some(config.qat.clone());
            export.save(self.path.join("model.int.safetensors"))?;
        }
        Ok(())
    }

    /// Writes `summary.json`.
    pub fn write_summary<T: Serialize>(&self, summary: &T) -> Result<()> {
        write_json(&self.path.join("summary.json"), summary)
    }
}
