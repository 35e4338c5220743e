//! The label-noise robustness table (docs/results-robustness.md): the FMNIST-W2A2 protocol of
//! `fmnist_table` with noisy training labels — symmetric 0 / 20 / 40 % and pair 20 % (class c →
//! c + 1) — at a 10 % coreset; the FP reference is trained on the noisy labels too, test labels
//! are clean. Reports clean test accuracy and the noisy share of the final coreset.
//!
//! ```text
//! cargo run --release --example robustness_table -- [--seeds 0,1,2] [--noise sym0,sym20,sym40,pair20] [--methods ...]
//! ```
//! Resumable like `fmnist_table` (one JSON line per finished run in `<out>/results.jsonl`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use quarc::data::{Dataset, NoiseKind, NoisyLabels, Normalize, Split, fashion_mnist};
use quarc::train::report::{EpochRecord, append_jsonl, mean_std_cell, read_jsonl};
use quarc::train::{Experiment, ReferenceConfig, protocol};
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug)]
struct Args {
    /// Folder with the Fashion-MNIST IDX files (default: $QUARC_FASHION_MNIST, then Debian's location).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seeds.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    seeds: Vec<u64>,
    /// Noise settings: symN (symmetric N %) or pairN (pair noise N %).
    #[arg(long, value_delimiter = ',', default_value = "sym0,sym20,sym40,pair20")]
    noise: Vec<String>,
    /// Methods; `X+ccs` selects with coverage-centric stratification over X's score, `quarc+clc` adds CLC.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "random,el2n,evs,ds,acs,res,quarc,quarc+clc,ds+ccs,full"
    )]
    methods: Vec<String>,
    /// Coreset fraction.
    #[arg(long, default_value_t = 0.1)]
    fraction: f64,
    /// QAT epochs.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// FP reference epochs.
    #[arg(long, default_value_t = 5)]
    fp_epochs: usize,
    /// Use the Fashion-MNIST subset shipped in the repository (smoke runs).
    #[arg(long)]
    subset: bool,
    /// Output folder.
    #[arg(long, default_value = "runs/robustness_table")]
    out: PathBuf,
    /// Where to write the Markdown table.
    #[arg(long, default_value = "docs")]
    docs: PathBuf,
    /// Take the `sym0` rows from the FMNIST-W2A2 table's finished runs at this fraction (its
    /// `results.jsonl`): with no label noise the protocol, data and seeds are the same, so the
    /// runs would repeat them exactly. Pass `none` to train them here instead.
    #[arg(long, default_value = "runs/fmnist_table/results.jsonl")]
    clean_results: PathBuf,
    /// Only import the clean rows and rewrite the table from the finished runs; train nothing.
    #[arg(long)]
    report_only: bool,
}

/// The fields of an `fmnist_table` result row that the robustness table reuses.
#[derive(Clone, Debug, Deserialize)]
struct CleanRow {
    method: String,
    fraction: f64,
    seed: u64,
    final_accuracy: f64,
    wall_secs: f64,
}

/// Appends a `sym0` row for every finished clean run that the robustness table asks for and
/// does not have yet.
fn import_clean_rows(a: &Args, results: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    if !a.noise.iter().any(|n| n == "sym0") || a.clean_results.as_os_str() == "none" || !a.clean_results.exists() {
        return Ok(());
    }
    let clean: Vec<CleanRow> = read_jsonl(&a.clean_results)?;
    for c in clean {
        let wanted = a.methods.contains(&c.method)
            && a.seeds.contains(&c.seed)
            && (c.method == "full" || (c.fraction - a.fraction).abs() < 1e-12);
        let done: Vec<Row> = read_jsonl(results)?;
        if !wanted
            || done
                .iter()
                .any(|r| r.noise == "sym0" && r.method == c.method && r.seed == c.seed)
        {
            continue;
        }
        append_jsonl(
            results,
            &Row {
                noise: "sym0".into(),
                method: c.method,
                seed: c.seed,
                final_accuracy: c.final_accuracy,
                noisy_share_final_coreset: Some(0.0),
                dataset_noise_rate: 0.0,
                wall_secs: c.wall_secs,
                imported_from: Some(a.clean_results.display().to_string()),
            },
        )?;
    }
    Ok(())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    noise: String,
    method: String,
    seed: u64,
    final_accuracy: f64,
    noisy_share_final_coreset: Option<f64>,
    dataset_noise_rate: f64,
    wall_secs: f64,
    /// Set when the row is a clean run of the results table (see `--clean-results`).
    #[serde(default)]
    imported_from: Option<String>,
}

fn noise_kind(spec: &str) -> Result<(NoiseKind, f64), String> {
    let (kind, pct) = if let Some(p) = spec.strip_prefix("sym") {
        (NoiseKind::Symmetric, p)
    } else if let Some(p) = spec.strip_prefix("pair") {
        (
            NoiseKind::Pair {
                map: NoisyLabels::next_class_map(10),
            },
            p,
        )
    } else {
        return Err(format!("noise `{spec}`: use symN or pairN"));
    };
    let pct: f64 = pct.parse().map_err(|_| format!("noise `{spec}`: bad percentage"))?;
    Ok((kind, pct / 100.0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    quarc::runtime::apply_malloc_tunables();
    let a = Args::parse();
    std::fs::create_dir_all(&a.out)?;
    let results = a.out.join("results.jsonl");
    import_clean_rows(&a, &results)?;
    if a.report_only {
        return write_table(&a, &read_jsonl(&results)?);
    }
    let load = |split| {
        if a.subset {
            fashion_mnist::bundled_subset(split)
        } else {
            fashion_mnist::load(a.data_dir.as_deref(), split)
        }
    };
    let clean_train: Arc<dyn Dataset> = Arc::new(load(Split::Train)?);
    let test: Arc<dyn Dataset> = Arc::new(load(Split::Test)?);
    for &seed in &a.seeds {
        for spec in &a.noise {
            let (kind, rate) = noise_kind(spec)?;
            let noisy = NoisyLabels::new(clean_train.clone(), kind, rate, 1000 + seed)?;
            let flags = noisy.corrupted().to_vec();
            let train: Arc<dyn Dataset> = Arc::new(noisy);
            for m in &a.methods {
                let done: Vec<Row> = read_jsonl(&results)?;
                if done
                    .iter()
                    .any(|r| r.noise == *spec && r.method == *m && r.seed == seed)
                {
                    continue;
                }
                let reference = ReferenceConfig {
                    checkpoint: Some(a.out.join(format!("reference-{spec}-seed{seed}.safetensors"))),
                    epochs: a.fp_epochs,
                    lr: 0.05,
                };
                let config = protocol::fmnist_w2a2(m, a.fraction, a.epochs, seed, reference)?;
                let run_dir = a.out.join(format!("{spec}-{m}-seed{seed}"));
                let t0 = Instant::now();
                let s = Experiment {
                    config,
                    train: train.clone(),
                    test: test.clone(),
                    normalize: Some(Normalize::fashion_mnist()),
                    run_dir: run_dir.clone(),
                    device: candle_core::Device::Cpu,
                    verbose: true,
                    noise: Some(flags.clone()),
                }
                .run()?;
                let log: Vec<EpochRecord> = read_jsonl(&run_dir.join("log.jsonl"))?;
                append_jsonl(
                    &results,
                    &Row {
                        noise: spec.clone(),
                        method: m.clone(),
                        seed,
                        final_accuracy: s.final_accuracy,
                        noisy_share_final_coreset: log.last().and_then(|r| r.noise.map(|n| n.selected_noisy_share)),
                        dataset_noise_rate: rate,
                        wall_secs: t0.elapsed().as_secs_f64(),
                        imported_from: None,
                    },
                )?;
                write_table(&a, &read_jsonl(&results)?)?;
            }
        }
    }
    Ok(())
}

fn write_table(a: &Args, rows: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
    let mut groups: BTreeMap<(String, String), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups.entry((r.noise.clone(), r.method.clone())).or_default().push(r);
    }
    let mut md = String::from("# Label-noise robustness (FMNIST-W2A2, 10 % coreset)\n\n");
    md += "Command: `cargo run --release --example robustness_table` (seeds 0, 1, 2; noise sym0, sym20, sym40, pair20; \
         methods random, el2n, evs, ds, acs, res, quarc, quarc+clc, ds+ccs, full); each row appears when its run \
         finishes (`seeds` says how many). Clean test labels; the FP reference is trained on the noisy labels. \
         `noisy share` is the share of mislabelled samples in the final coreset (against the data set's rate). \
         The sym0 rows (*) are the 10 % runs of the FMNIST-W2A2 table (docs/results.md): with no noise the protocol, \
         data and seeds are identical.\n\n| noise | method | seeds | test accuracy (%) | noisy share of coreset (%) | wall s |\n|---|---|---|---|---|---|\n";
    for ((noise, method), rs) in &groups {
        let acc: Vec<f64> = rs.iter().map(|r| 100.0 * r.final_accuracy).collect();
        let share: Vec<f64> = rs.iter().filter_map(|r| r.noisy_share_final_coreset).collect();
        let share = if share.is_empty() {
            "—".to_string()
        } else {
            format!("{:.1}", 100.0 * share.iter().sum::<f64>() / share.len() as f64)
        };
        let wall = rs.iter().map(|r| r.wall_secs).sum::<f64>() / rs.len() as f64;
        let acc = mean_std_cell(&acc);
        let star = if rs.iter().any(|r| r.imported_from.is_some()) {
            "*"
        } else {
            ""
        };
        md += &format!(
            "| {noise}{star} | {method} | {} | {acc} | {share} | {wall:.0} |\n",
            rs.len()
        );
    }
    std::fs::create_dir_all(&a.docs)?;
    // Hand-written status notes survive every rewrite of the table.
    if let Ok(notes) = std::fs::read_to_string(a.docs.join("results-robustness-status.md")) {
        md += "\n";
        md += &notes;
    }
    quarc::quant_core::atomic_write(&a.docs.join("results-robustness.md"), md.as_bytes())?;
    // Per noise setting: the mislabelled share of each method's coreset per epoch (seed 0).
    let noises: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.noise.as_str()).collect();
    for noise in noises.into_iter().filter(|n| *n != "sym0") {
        let mut series = Vec::new();
        for r in rows
            .iter()
            .filter(|r| r.noise == noise && r.seed == 0 && r.imported_from.is_none())
        {
            let log: Vec<EpochRecord> =
                read_jsonl(&a.out.join(format!("{noise}-{}-seed0", r.method)).join("log.jsonl"))?;
            let s: Vec<(usize, f64)> = log
                .iter()
                .filter_map(|e| e.noise.map(|n| (e.epoch + 1, n.selected_noisy_share)))
                .collect();
            if !s.is_empty() {
                series.push((r.method.clone(), s));
            }
        }
        if let (Some(rate), Some(epochs)) = (
            rows.iter().find(|r| r.noise == noise).map(|r| r.dataset_noise_rate),
            series.iter().map(|s| s.1.len()).max(),
        ) {
            series.push(("data set".to_string(), (1..=epochs).map(|e| (e, rate)).collect()));
        }
        if series.len() > 1 {
            quarc::train::report::plot_percent(
                &a.docs.join(format!("results-robustness-{noise}.svg")),
                &format!("{noise}: mislabelled share of the coreset per epoch (seed 0)"),
                "mislabelled (%)",
                &series,
            )?;
        }
    }
    Ok(())
}
