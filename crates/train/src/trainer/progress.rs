//! Accuracy over a loader, progress bars, and the JSON writer the run's parts share.

use std::path::Path;

use candle_core::DType;
use indicatif::{ProgressBar, ProgressStyle};
use quarc_data::BatchLoader;
use quarc_models::{Mode, Model};
use serde::Serialize;

use crate::{Error, Result};

/// Top-1 accuracy of `model` (evaluation mode) over every batch of `loader`.
pub fn accuracy(model: &dyn Model, loader: &BatchLoader) -> Result<f64> {
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

/// A progress bar of `n` steps labelled `what`; hidden unless `verbose` (and indicatif draws
/// only on a terminal: in logs it stays silent and the per-epoch lines remain).
pub(crate) fn bar(n: usize, what: &str, verbose: bool) -> ProgressBar {
    if !verbose {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// Writes `value` as pretty JSON, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(value).map_err(|e| Error::InvalidConfig(e.to_string()))?;
    Ok(quarc_quant_core::atomic_write(path, s.as_bytes())?)
}
