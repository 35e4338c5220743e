//! The label-noise robustness table (section `robustness` of docs/results.md): the FMNIST-W2A2 protocol of
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
use quarc::train::report::{EpochRecord, append_jsonl, read_jsonl};
use quarc::train::{Experiment, ReferenceConfig};
use quarc_harness::protocol;
use quarc_harness::report::{cpu_model, mean_std, mean_std_cell};
use serde::{Deserialize, Serialize};

/// The issue's method list plus two CCS variants: over ACS (the score picked on the clean
/// validation split, docs/tuning.md) and over DS (the one score that reads no labels).
const DEFAULT_METHODS: &str = "random,el2n,evs,ds,acs,res,quarc,quarc+clc,ds+ccs,acs+ccs,full";

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
        default_value = DEFAULT_METHODS
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
    reference_accuracy: f64,
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
                reference_accuracy: Some(c.reference_accuracy),
                imported_from: Some(a.clean_results.display().to_string()),
                threads: None,
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
    /// Test accuracy of the FP reference the run distilled from (trained on the same noisy labels).
    #[serde(default)]
    reference_accuracy: Option<f64>,
    /// Set when the row is a clean run of the results table (see `--clean-results`).
    #[serde(default)]
    imported_from: Option<String>,
    /// Compute threads the run used (candle's `RAYON_NUM_THREADS`); `None` for rows written before
    /// this field existed, all of them single runs using every core.
    #[serde(default)]
    threads: Option<usize>,
}

impl Row {
    /// Whether the run used `most` threads, the most any run used, so that its wall time compares
    /// with the others (runs made as 1-thread processes side by side take ≈ 1.4× longer each).
    /// Rows written before `threads` existed were single runs on every core and always count.
    fn used_all_cores(&self, most: Option<usize>) -> bool {
        match (self.threads, most) {
            (Some(t), Some(m)) => t >= m,
            _ => true,
        }
    }
}

/// Cores of this machine.
fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
    quarc::runtime::retain_freed_memory();
    quarc_harness::init_logging(); // RUST_LOG=info|debug|trace prints the library's events
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
    let mut jobs: Vec<(u64, String, String)> = Vec::new();
    for &seed in &a.seeds {
        for spec in &a.noise {
            jobs.extend(a.methods.iter().map(|m| (seed, spec.clone(), m.clone())));
        }
    }
    let done = |rows: &[Row], (seed, spec, m): &(u64, String, String)| {
        rows.iter()
            .any(|r| r.noise == *spec && r.method == *m && r.seed == *seed)
    };
    quarc_harness::sweep(
        &results,
        jobs,
        done,
        |(seed, spec, m)| run_one(&a, &clean_train, &test, *seed, spec, m),
        |rows| write_table(&a, rows),
    )?;
    Ok(())
}

/// One run: `method` on the training set with the labels of noise setting `spec`.
fn run_one(
    a: &Args,
    clean_train: &Arc<dyn Dataset>,
    test: &Arc<dyn Dataset>,
    seed: u64,
    spec: &str,
    m: &str,
) -> Result<Row, Box<dyn std::error::Error>> {
    let (kind, rate) = noise_kind(spec)?;
    let noisy = NoisyLabels::new(clean_train.clone(), kind, rate, 1000 + seed)?;
    let flags = noisy.corrupted().to_vec();
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
        train: Arc::new(noisy),
        test: test.clone(),
        normalize: Some(Normalize::fashion_mnist()),
        run_dir: run_dir.clone(),
        device: candle_core::Device::Cpu,
        verbose: true,
        noise: Some(flags),
        custom: Default::default(),
    }
    .run()?;
    let log: Vec<EpochRecord> = read_jsonl(&run_dir.join("log.jsonl"))?;
    Ok(Row {
        noise: spec.to_string(),
        method: m.to_string(),
        seed,
        final_accuracy: s.final_accuracy,
        noisy_share_final_coreset: log.last().and_then(|r| r.noise.map(|n| n.selected_noisy_share)),
        dataset_noise_rate: rate,
        wall_secs: t0.elapsed().as_secs_f64(),
        reference_accuracy: Some(s.reference_accuracy),
        imported_from: None,
        threads: Some(candle_core::utils::get_num_threads()),
    })
}

/// Display order of the methods; any other method follows in alphabetical order.
const METHOD_ORDER: [&str; 11] = [
    "random",
    "el2n",
    "evs",
    "ds",
    "acs",
    "res",
    "quarc",
    "quarc+clc",
    "ds+ccs",
    "acs+ccs",
    "full",
];

/// Display order of the noise settings: the issue's four first, any other after them.
const NOISE_ORDER: [&str; 4] = ["sym0", "sym20", "sym40", "pair20"];

fn ordered(mut names: Vec<String>, order: &[&str]) -> Vec<String> {
    names.sort();
    names.dedup();
    names.sort_by_key(|n| order.iter().position(|o| o == n).unwrap_or(order.len()));
    names
}

/// A table cell with the mean of `v` at `decimals` places, or — when nothing was run.
fn mean_cell(v: &[f64], decimals: usize) -> String {
    if v.is_empty() {
        " — |".to_string()
    } else {
        format!(" {:.*} |", decimals, mean_std(v).0)
    }
}

/// The robustness section of docs/results.md: accuracy, noisy share and wall time, one row per
/// method and one column per noise setting.
fn robustness_markdown(rows: &[Row]) -> Result<String, Box<dyn std::error::Error>> {
    let noises = ordered(rows.iter().map(|r| r.noise.clone()).collect(), &NOISE_ORDER);
    let methods = ordered(rows.iter().map(|r| r.method.clone()).collect(), &METHOD_ORDER);
    let cell = |noise: &str, method: &str| -> Vec<&Row> {
        rows.iter().filter(|r| r.noise == noise && r.method == method).collect()
    };
    let header = |first: &str, labels: &[String]| {
        format!(
            "| {first} | {} |\n|---|{}\n",
            labels.join(" | "),
            "---|".repeat(labels.len())
        )
    };
    let mut md = String::from("## Label-noise robustness (FMNIST-W2A2, 10 % coreset)\n\n");
    md += "Protocol: the FMNIST-W2A2 protocol above at a 10 % coreset, with the training labels corrupted by \
           `quarc_data::NoisyLabels` (noise seed 1000 + run seed): `symN` replaces N % of the labels by a uniformly drawn \
           other class, `pair20` relabels 20 % of each class c as c + 1 (mod 10). The FP reference is trained on the noisy \
           labels (as a user's would be); test labels are clean. Nothing was tuned on the noisy data: every setting is the \
           clean table's, and the CCS variants use the selector picked on the clean validation split (docs/tuning.md: \
           50 strata, hardest 10 % pruned). The `sym0` cells (*) are the 10 % runs of the table above (same protocol, \
           data and seeds). Cells give mean ± std over the seeds run, with their number in brackets; — = not run.\n\n";
    md += &format!(
        "Command: `cargo run --release --example robustness_table` (defaults: seeds 0,1,2; noise {}; methods {}; \
         finished runs are skipped, `--report-only` rewrites this section). CPU: {}, {} cores.\n\n",
        NOISE_ORDER.join(","),
        DEFAULT_METHODS,
        cpu_model(),
        all_cores()
    );
    md += "**Clean test accuracy (%)**\n\n";
    md += &header("method", &noises);
    let mut reference_row = String::from("| FP reference (trained on the same labels) |");
    for noise in &noises {
        // one reference per seed
        let refs: BTreeMap<u64, f64> = rows
            .iter()
            .filter(|r| r.noise == *noise)
            .filter_map(|r| r.reference_accuracy.map(|acc| (r.seed, 100.0 * acc)))
            .collect();
        let refs: Vec<f64> = refs.into_values().collect();
        reference_row += &if refs.is_empty() {
            " — |".to_string()
        } else {
            format!(" {} ({}) |", mean_std_cell(&refs), refs.len())
        };
    }
    for method in &methods {
        md += &format!("| {method} |");
        for noise in &noises {
            let rs = cell(noise, method);
            md += &if rs.is_empty() {
                " — |".to_string()
            } else {
                let acc: Vec<f64> = rs.iter().map(|r| 100.0 * r.final_accuracy).collect();
                let star = if rs.iter().any(|r| r.imported_from.is_some()) {
                    "*"
                } else {
                    ""
                };
                format!(" {} ({}){star} |", mean_std_cell(&acc), rs.len())
            };
        }
        md += "\n";
    }
    md += &reference_row;
    md += "\n\n";
    let noisy: Vec<String> = noises.iter().filter(|n| *n != "sym0").cloned().collect();
    if !noisy.is_empty() {
        md += "**Mislabelled share of the final coreset (%)**, mean over seeds (the data set's share in the header; \
               below it = the selection drops mislabelled samples, above = it enriches them)\n\n";
        let labels: Vec<String> = noisy
            .iter()
            .map(|n| {
                let rate = rows
                    .iter()
                    .find(|r| r.noise == *n)
                    .map_or(0.0, |r| r.dataset_noise_rate);
                format!("{n} ({:.0} %)", 100.0 * rate)
            })
            .collect();
        md += &header("method", &labels);
        for method in methods.iter().filter(|m| *m != "full") {
            md += &format!("| {method} |");
            for noise in &noisy {
                let share: Vec<f64> = cell(noise, method)
                    .iter()
                    .filter_map(|r| r.noisy_share_final_coreset.map(|s| 100.0 * s))
                    .collect();
                md += &mean_cell(&share, 1);
            }
            md += "\n";
        }
        md += "\n";
    }
    md += "**Wall time per run (s)**, mean over the seeds run with every core to itself (runs made as 1-thread \
           processes side by side are left out; a count in brackets = the seeds left in); the first run of each noise \
           setting and seed includes training its FP reference (≈ 3.5 min)\n\n";
    md += &header("method", &noises);
    let most_threads = rows.iter().filter_map(|r| r.threads).max();
    for method in &methods {
        md += &format!("| {method} |");
        for noise in &noises {
            let all = cell(noise, method);
            let wall: Vec<f64> = all
                .iter()
                .filter(|r| r.used_all_cores(most_threads))
                .map(|r| r.wall_secs)
                .collect();
            md += &mean_cell(&wall, 0);
            if wall.len() < all.len() {
                md.pop();
                md += &format!("({}) |", wall.len());
            }
        }
        md += "\n";
    }
    md += "\nPer epoch, the mislabelled share of each method's coreset (seed 0): ";
    md += &noisy
        .iter()
        .map(|n| format!("[{n}](results-robustness-{n}.svg)"))
        .collect::<Vec<_>>()
        .join(", ");
    md += ".\n";
    Ok(md)
}

fn write_table(a: &Args, rows: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
    let mut body = robustness_markdown(rows)?;
    // Hand-written status notes survive every rewrite of the table.
    if let Ok(notes) = std::fs::read_to_string(a.docs.join("results-robustness-status.md")) {
        body += "\n";
        body += &notes;
    }
    quarc_harness::doc_section::write_section(&a.docs.join("results.md"), "# Results\n\n", "robustness", &body)?;
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
