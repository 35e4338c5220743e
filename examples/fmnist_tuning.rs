//! What was tried to make score-based selection beat random at 1 % on FMNIST-W2A2, measured on a
//! **validation split** (5 000 training images held out, class-stratified, seeded), never on the
//! test set. The FP reference is trained on the remaining 55 000 images only.
//!
//! ```text
//! cargo run --release --example fmnist_tuning -- [--seeds 0] [--fraction 0.01] [--variants acs,acs-r10,...]
//! ```
//! Variants change one knob of the docs/results.md protocol each: the β schedule, the re-selection
//! period R, the normalisation of EVS and DS before mixing, CCS selection and its strata and pruned
//! share, and the CLC layers and β. Every finished run appends one line to `<out>/results.jsonl` and is skipped on a re-run;
//! `docs/tuning.md` is rewritten after each.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use quarc::coreset::{BetaSchedule, CandidatePool, Normalization};
use quarc::data::{Dataset, Normalize, Split, fashion_mnist, holdout_split};
use quarc::train::report::{EpochRecord, read_jsonl};
use quarc::train::{Experiment, ReferenceConfig, SelectorKind, TrainConfig};
use quarc_harness::protocol;
use quarc_harness::report::mean_std_cell;
use serde::{Deserialize, Serialize};

/// Images held out of the 60 000 training images for validation.
const VALIDATION_SIZE: usize = 5_000;
/// Seed of the hold-out split (fixed across run seeds, so every run sees the same validation set).
const SPLIT_SEED: u64 = 5_000;

#[derive(Parser, Debug)]
struct Args {
    /// Folder with the Fashion-MNIST IDX files (default: $QUARC_FASHION_MNIST, then Debian's location).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seeds.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    seeds: Vec<u64>,
    /// Coreset fraction.
    #[arg(long, default_value_t = 0.01)]
    fraction: f64,
    /// Variants (see `VARIANTS`); all by default.
    #[arg(long, value_delimiter = ',')]
    variants: Vec<String>,
    /// QAT epochs.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// FP reference epochs.
    #[arg(long, default_value_t = 5)]
    fp_epochs: usize,
    /// Output folder.
    #[arg(long, default_value = "runs/fmnist_tuning")]
    out: PathBuf,
    /// Only rewrite docs/tuning.md from the finished runs.
    #[arg(long)]
    report_only: bool,
    /// Where to write tuning.md.
    #[arg(long, default_value = "docs")]
    docs: PathBuf,
}

/// A knob turned on the protocol's configuration.
type Tweak = fn(&mut TrainConfig);

/// Every variant: name, method spec, what changes, and the change.
const VARIANTS: &[Variant] = &[
    (
        "random",
        "random",
        "class-balanced random subset (the bar to beat)",
        |_| {},
    ),
    (
        "acs",
        "acs",
        "protocol as in docs/results.md (β = cos(πt/2E), R = 5, raw scores)",
        |_| {},
    ),
    (
        "acs-beta-linear",
        "acs",
        "β(t) = 1 − t/E (the ACS code's default)",
        |c| c.beta_schedule = BetaSchedule::Linear,
    ),
    ("acs-beta-code-cosine", "acs", "β(t) = ½(1 + cos(πt/E))", |c| {
        c.beta_schedule = BetaSchedule::CodeCosine
    }),
    ("acs-r2", "acs", "re-select every R = 2 epochs", |c| c.select_every = 2),
    ("acs-r10", "acs", "re-select every R = 10 epochs", |c| {
        c.select_every = 10
    }),
    ("acs-rank", "acs", "EVS and DS rank-normalised before mixing", |c| {
        c.score_normalization = Normalization::Rank
    }),
    (
        "acs+ccs",
        "acs+ccs",
        "CCS selection (50 strata, hardest 10 % pruned)",
        |_| {},
    ),
    ("ds+ccs", "ds+ccs", "DS with CCS selection", |_| {}),
    ("quarc", "quarc", "QuaRC score (ACS + RES), no CLC", |_| {}),
    ("quarc+ccs", "quarc+ccs", "QuaRC score with CCS selection", |_| {}),
    ("quarc+clc", "quarc+clc", "QuaRC + CLC on conv2, conv3 (β = 1)", |_| {}),
    ("quarc+clc-beta0.1", "quarc+clc", "CLC β = 0.1", |c| {
        set_clc_beta(c, 0.1)
    }),
    ("quarc+clc-conv3", "quarc+clc", "CLC on conv3 only", |c| {
        if let Some(clc) = c.objective.clc.as_mut() {
            clc.layers = vec!["conv3".into()]
        }
    }),
    ("random-kd", "random", "random, KD only (CE weight 0)", kd_only),
    (
        "rs2",
        "rs2",
        "RS2: a fresh class-balanced random subset every epoch",
        |_| {},
    ),
    ("rs2-kd", "rs2", "RS2, KD only (CE weight 0)", kd_only),
    ("acs-kd", "acs", "ACS top-k, KD only (CE weight 0)", kd_only),
    ("acs+ccs-kd", "acs+ccs", "ACS + CCS, KD only (CE weight 0)", kd_only),
    ("evs+ccs-kd", "evs+ccs", "EVS + CCS, KD only (CE weight 0)", kd_only),
    ("ds+ccs-kd", "ds+ccs", "DS + CCS, KD only (CE weight 0)", kd_only),
    ("res+ccs-kd", "res+ccs", "RES + CCS, KD only (CE weight 0)", kd_only),
    (
        "quarc+ccs-kd",
        "quarc+ccs",
        "QuaRC score + CCS, KD only (CE weight 0)",
        kd_only,
    ),
    ("evs", "evs", "EVS top-k", |_| {}),
    ("evs+ccs", "evs+ccs", "EVS with CCS selection", |_| {}),
    ("ds", "ds", "DS top-k", |_| {}),
    ("res", "res", "RES top-k", |_| {}),
    ("res+ccs", "res+ccs", "RES with CCS selection", |_| {}),
    (
        "acs+ccs-once",
        "acs+ccs",
        "ACS + CCS selected once, before epoch 0",
        |c| c.select_every = c.epochs,
    ),
    (
        "quarc+clc-beta0",
        "quarc+clc",
        "CLC β = 0 (logged, not trained on)",
        |c| set_clc_beta(c, 0.0),
    ),
    ("quarc+clc-beta10", "quarc+clc", "CLC β = 10", |c| {
        set_clc_beta(c, 10.0)
    }),
    ("quarc+clc-beta30", "quarc+clc", "CLC β = 30", |c| {
        set_clc_beta(c, 30.0)
    }),
    (
        "acs+ccs-pool10",
        "acs+ccs",
        "ACS + CCS scoring a fresh random pool of 10× the budget",
        |c| c.candidate_pool = Some(CandidatePool { multiple: 10.0 }),
    ),
    (
        "acs+ccs-pool5",
        "acs+ccs",
        "ACS + CCS scoring a fresh random pool of 5× the budget",
        |c| c.candidate_pool = Some(CandidatePool { multiple: 5.0 }),
    ),
    (
        "acs-pool10",
        "acs",
        "ACS top-k from a fresh random pool of 10× the budget",
        |c| c.candidate_pool = Some(CandidatePool { multiple: 10.0 }),
    ),
    ("acs+ccs-prune0", "acs+ccs", "CCS pruning nothing (50 strata)", |c| {
        set_ccs(c, 50, 0.0)
    }),
    (
        "acs+ccs-prune0.3",
        "acs+ccs",
        "CCS pruning the hardest 30 % (50 strata)",
        |c| set_ccs(c, 50, 0.3),
    ),
    (
        "acs+ccs-bins10",
        "acs+ccs",
        "CCS with 10 strata (hardest 10 % pruned)",
        |c| set_ccs(c, 10, 0.1),
    ),
    (
        "acs+ccs-bins200",
        "acs+ccs",
        "CCS with 200 strata (hardest 10 % pruned)",
        |c| set_ccs(c, 200, 0.1),
    ),
    (
        "rs2+clc-beta10",
        "rs2+clc",
        "RS2 + CLC on conv2, conv3 (β = 10)",
        |c| set_clc_beta(c, 10.0),
    ),
    (
        "quarc+ccs+clc-beta10",
        "quarc+ccs+clc",
        "QuaRC score, CCS, CLC on conv2, conv3 (β = 10)",
        |c| set_clc_beta(c, 10.0),
    ),
];

/// Sets the CCS selector's strata and pruned share.
fn set_ccs(c: &mut TrainConfig, bins: usize, prune_fraction: f64) {
    c.selector = SelectorKind::Stratified { bins, prune_fraction };
}

/// Sets the CLC weight β (a no-op without CLC).
fn set_clc_beta(c: &mut TrainConfig, beta: f64) {
    if let Some(clc) = c.objective.clc.as_mut() {
        clc.beta = beta
    }
}

/// The objective without hard-label cross-entropy: distillation from the FP reference only.
fn kd_only(c: &mut TrainConfig) {
    c.objective.ce_weight = 0.0;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    variant: String,
    fraction: f64,
    seed: u64,
    reference_val_accuracy: f64,
    val_accuracy: f64,
    best_val_accuracy: f64,
    wall_secs: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    quarc::runtime::retain_freed_memory();
    quarc_harness::init_logging(); // RUST_LOG=info|debug|trace prints the library's events
    let a = Args::parse();
    std::fs::create_dir_all(&a.out)?;
    let results = a.out.join("results.jsonl");
    if a.report_only {
        return write_table(&a, &read_jsonl(&results)?);
    }
    let wanted: Vec<&Variant> = if a.variants.is_empty() {
        VARIANTS.iter().collect()
    } else {
        let mut v = Vec::new();
        for name in &a.variants {
            v.push(VARIANTS.iter().find(|x| x.0 == name).ok_or_else(|| {
                format!(
                    "unknown variant `{name}`; one of {:?}",
                    VARIANTS.iter().map(|x| x.0).collect::<Vec<_>>()
                )
            })?);
        }
        v
    };
    let full = fashion_mnist::load(a.data_dir.as_deref(), Split::Train)?;
    let (train, val) = holdout_split(&full, VALIDATION_SIZE, SPLIT_SEED)?;
    drop(full);
    let (train, val): (Arc<dyn Dataset>, Arc<dyn Dataset>) = (Arc::new(train), Arc::new(val));
    let jobs: Vec<(u64, &Variant)> = a
        .seeds
        .iter()
        .flat_map(|&seed| wanted.iter().map(move |v| (seed, *v)))
        .collect();
    let done = |rows: &[Row], (seed, v): &(u64, &Variant)| {
        rows.iter()
            .any(|r| r.variant == v.0 && r.seed == *seed && r.fraction == a.fraction)
    };
    let rows = quarc_harness::sweep(
        &results,
        jobs,
        done,
        |(seed, v)| run_one(&a, &train, &val, *seed, v),
        |rows| write_table(&a, rows),
    )?;
    write_table(&a, &rows)
}

/// A variant: name, method spec, what changes, and the change.
type Variant = (&'static str, &'static str, &'static str, Tweak);

fn run_one(
    a: &Args,
    train: &Arc<dyn Dataset>,
    val: &Arc<dyn Dataset>,
    seed: u64,
    (name, spec, _, tweak): &Variant,
) -> Result<Row, Box<dyn std::error::Error>> {
    let reference = ReferenceConfig {
        checkpoint: Some(a.out.join(format!("reference-train55k-seed{seed}.safetensors"))),
        epochs: a.fp_epochs,
        lr: 0.05,
    };
    let mut config = protocol::fmnist_w2a2(spec, a.fraction, a.epochs, seed, reference)?;
    tweak(&mut config);
    config.validate()?;
    let t0 = Instant::now();
    let s = Experiment {
        config,
        train: train.clone(),
        test: val.clone(),
        normalize: Some(Normalize::fashion_mnist()),
        run_dir: a.out.join(format!("{name}-f{}-seed{seed}", a.fraction)),
        device: candle_core::Device::Cpu,
        verbose: true,
        noise: None,
        custom: Default::default(),
    }
    .run()?;
    Ok(Row {
        variant: name.to_string(),
        fraction: a.fraction,
        seed,
        reference_val_accuracy: s.reference_accuracy,
        val_accuracy: s.final_accuracy,
        best_val_accuracy: s.best_accuracy,
        wall_secs: t0.elapsed().as_secs_f64(),
    })
}

fn write_table(a: &Args, rows: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
    let mut groups: BTreeMap<(String, usize), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        let order = VARIANTS.iter().position(|v| v.0 == r.variant).unwrap_or(usize::MAX);
        groups
            .entry((format!("{:.1}%", 100.0 * r.fraction), order))
            .or_default()
            .push(r);
    }
    let mut md = String::from("# Tuning on a validation split (FMNIST-W2A2)\n\n");
    md += &format!(
        "Command: `cargo run --release --example fmnist_tuning -- --seeds {} --fraction F --variants NAMES` for each \
         fraction and the variants of its rows (finished runs are skipped; `--report-only` rewrites this file). \
         {VALIDATION_SIZE} of the 60 000 training images are held out (class-stratified, split seed {SPLIT_SEED}); the \
         FP reference and QAT train on the other 55 000 and every accuracy below is on the held-out images, never on \
         the test set. Each variant changes one knob of the docs/results.md protocol. Wall s: mean per run, on a \
         2-core machine shared by up to four runs at a time (compare accuracies, not times, across rows).\n\n| fraction | variant | what changes | seeds | validation accuracy (%) | FP reference (%) | wall s |\n|---|---|---|---|---|---|---|\n",
        a.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    );
    for ((f, order), rs) in &groups {
        let (name, what) = VARIANTS
            .get(*order)
            .map(|v| (v.0, v.2))
            .unwrap_or((rs[0].variant.as_str(), "?"));
        let n = rs.len() as f64;
        let acc: Vec<f64> = rs.iter().map(|r| 100.0 * r.val_accuracy).collect();
        let cell = mean_std_cell(&acc);
        md += &format!(
            "| {f} | {name} | {what} | {} | {cell} | {:.2} | {:.0} |\n",
            rs.len(),
            100.0 * rs.iter().map(|r| r.reference_val_accuracy).sum::<f64>() / n,
            rs.iter().map(|r| r.wall_secs).sum::<f64>() / n
        );
    }
    md += &clc_magnitudes(a, rows, &[0, 9, 19]);
    let every: Vec<usize> = (0..a.epochs).collect();
    let per_epoch = format!(
        "# CLC magnitudes per epoch (FMNIST-W2A2 validation split)\n\nEvery epoch of the table in tuning.md, written by \
         `fmnist_tuning` with it.\n{}",
        clc_magnitudes(a, rows, &every)
    );
    if let Ok(notes) = std::fs::read_to_string(a.docs.join("tuning-status.md")) {
        md += "\n";
        md += &notes;
    }
    std::fs::create_dir_all(&a.docs)?;
    quarc::quant_core::atomic_write(&a.docs.join("tuning.md"), md.as_bytes())?;
    quarc::quant_core::atomic_write(&a.docs.join("tuning-clc.md"), per_epoch.as_bytes())?;
    Ok(())
}

/// The raw per-epoch loss terms of the CLC variants (mean over the seeds run): KD, CE and each
/// layer's CLC before β, and β times their mean (what the objective adds), at the given epochs
/// (0-based; printed 1-based).
fn clc_magnitudes(a: &Args, rows: &[Row], epochs: &[usize]) -> String {
    let mut runs: BTreeMap<(String, String), Vec<Vec<EpochRecord>>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.variant.contains("clc")) {
        let dir = a.out.join(format!("{}-f{}-seed{}", r.variant, r.fraction, r.seed));
        if let Ok(log) = read_jsonl::<EpochRecord>(&dir.join("log.jsonl")) {
            let key = (format!("{:.1}%", 100.0 * r.fraction), r.variant.clone());
            runs.entry(key).or_default().push(log);
        }
    }
    if runs.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n## CLC magnitudes\n\nRaw per-epoch loss terms of the CLC runs (each run's `log.jsonl`, mean over its seeds): KD and \
         CE as trained on, each layer's feature KL before β, and β × their mean (the term the objective adds); tuning.md \
         shows epochs 1, 10 and 20, tuning-clc.md every epoch.\n\n\
         | fraction | variant | β | seeds | epoch | KD | CE | CLC conv2 | CLC conv3 | β · CLC |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for ((f, variant), logs) in &runs {
        let beta: f64 = variant
            .rsplit_once("-beta")
            .map_or(Ok(1.0), |(_, b)| b.parse())
            .unwrap_or(f64::NAN);
        for &epoch in epochs {
            let at: Vec<&EpochRecord> = logs
                .iter()
                .filter_map(|l| l.iter().find(|e| e.epoch == epoch))
                .collect();
            if at.is_empty() {
                continue;
            }
            let mean = |f: &dyn Fn(&EpochRecord) -> f64| at.iter().map(|e| f(e)).sum::<f64>() / at.len() as f64;
            let layer = |i: usize| mean(&|e: &EpochRecord| e.clc.get(i).map_or(f64::NAN, |c| c.1));
            let (c2, c3) = (layer(0), layer(1));
            md += &format!(
                "| {f} | {variant} | {beta} | {} | {} | {:.4} | {:.4} | {c2:.4} | {c3:.4} | {:.4} |\n",
                at.len(),
                epoch + 1,
                mean(&|e: &EpochRecord| e.kd),
                mean(&|e: &EpochRecord| e.ce),
                beta * (c2 + c3) / 2.0
            );
        }
    }
    md
}
