//! Run output: one JSON line per epoch, and an SVG plot of test accuracy.

use std::io::Write;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What one QAT epoch did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch.
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean total loss.
    pub loss: f64,
    /// Mean KD term.
    pub kd: f64,
    /// Mean CE term.
    pub ce: f64,
    /// Mean raw CLC value per aligned layer.
    pub clc: Vec<(String, f64)>,
    /// Test accuracy after the epoch.
    pub test_accuracy: f64,
    /// Samples trained on this epoch.
    pub coreset_size: usize,
    /// Whether this epoch started with a new selection.
    pub selected: bool,
    /// Mixing weights of the selection in force (β).
    pub mixing_weights: Vec<(String, f64)>,
    /// Seconds of the scoring pass (0 when none).
    pub scoring_secs: f64,
    /// Seconds of selection.
    pub selection_secs: f64,
    /// Seconds of training.
    pub training_secs: f64,
    /// Training throughput.
    pub images_per_s: f64,
    /// Label-noise diagnostics of the selection in force, when ground truth is known.
    #[serde(default)]
    pub noise: Option<quarc_coreset::NoiseDiagnostics>,
}

/// Appends one JSON line to `path` and flushes it.
pub fn append_jsonl<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let line = serde_json::to_string(value).map_err(|e| Error::InvalidConfig(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::io(path))?;
    writeln!(f, "{line}").map_err(Error::io(path))?;
    f.flush().map_err(Error::io(path))
}

/// Reads the JSON lines of `path` (missing file: empty), skipping none.
pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    match std::fs::read_to_string(path) {
        Ok(s) => s
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| Error::Run {
                    path: path.to_path_buf(),
                    reason: format!("bad JSON line: {e}"),
                })
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Reads the JSON lines of `path` like [`read_jsonl`], except that a last line without its
/// newline that does not parse (an append cut short by a kill) is dropped; the flag says so.
pub fn read_jsonl_repairing<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<(Vec<T>, bool)> {
    let text = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    let (complete, tail) = match text.rfind('\n') {
        Some(i) => (&text[..=i], &text[i + 1..]),
        None => ("", text.as_str()),
    };
    let mut rows = Vec::new();
    for line in complete.lines().filter(|l| !l.trim().is_empty()) {
        rows.push(serde_json::from_str(line).map_err(|e| Error::Run {
            path: path.to_path_buf(),
            reason: format!("bad JSON line: {e}"),
        })?);
    }
    let torn = !tail.trim().is_empty();
    if torn {
        match serde_json::from_str(tail) {
            Ok(row) => rows.push(row),
            Err(e) => tracing::warn!(path = %path.display(), "dropping a torn last log line ({e})"),
        }
    }
    Ok((rows, torn))
}

/// Draws accuracy (%) per epoch for one or more named series into an SVG file.
pub fn plot_accuracy(path: &Path, title: &str, series: &[(String, Vec<(usize, f64)>)]) -> Result<()> {
    plot_percent(path, title, "test accuracy (%)", series)
}

/// Draws fractions in [0, 1] (shown in %) per epoch for named series into an SVG file.
pub fn plot_percent(path: &Path, title: &str, y_label: &str, series: &[(String, Vec<(usize, f64)>)]) -> Result<()> {
    let mut svg = String::new();
    let draw = |svg: &mut String| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_epoch = series
            .iter()
            .flat_map(|(_, s)| s.iter().map(|p| p.0))
            .max()
            .unwrap_or(1)
            .max(1);
        let (lo, hi) = series
            .iter()
            .flat_map(|(_, s)| s.iter().map(|p| p.1 * 100.0))
            .fold((100.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo < hi {
            ((lo - 2.0).max(0.0), (hi + 2.0).min(100.0))
        } else {
            (0.0, 100.0)
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0..max_epoch, lo..hi)?;
        chart.configure_mesh().x_desc("epoch").y_desc(y_label).draw()?;
        for (k, (name, s)) in series.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    s.iter().map(|&(e, a)| (e, a * 100.0)),
                    color.stroke_width(2),
                ))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw(&mut svg).map_err(|e| Error::Run {
        path: path.to_path_buf(),
        reason: format!("plot: {e}"),
    })?;
    Ok(quarc_quant_core::atomic_write(path, svg.as_bytes())?)
}
