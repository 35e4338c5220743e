//! The FMNIST-W2A2 results table (docs/results.md): full Fashion-MNIST, SmallCnn, LSQ W2A2 on
//! the middle layers (first conv and fc in FP), KD (T = 1) + CE, SGD momentum 0.9, cosine LR,
//! 20 epochs over the current coreset, batch 128, R = 5; fractions 1 % and 10 %; methods
//! random, EL2N, EVS, DS, ACS, RES, QuaRC score, QuaRC score + CLC, and full-data QAT.
//!
//! ```text
//! cargo run --release --example fmnist_table -- [--seeds 0,1,2] [--fractions 0.01,0.1] [--methods random,acs,...]
//! ```
//! Every finished run appends one line to `<out>/results.jsonl`; runs already there are skipped
//! and unfinished ones resume from their last epoch, so the command can be stopped and re-run.
//! `docs/results.md` and `docs/results.svg` are rewritten from whatever has finished.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use quarc::data::{Normalize, Split, fashion_mnist};
use quarc::train::report::{plot_accuracy, read_jsonl};
use quarc::train::{Experiment, ReferenceConfig};
use quarc_harness::protocol;
use quarc_harness::report::{mean_std, mean_std_cell};
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug)]
struct Args {
    /// Folder with the Fashion-MNIST IDX files (default: $QUARC_FASHION_MNIST, then Debian's location).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seeds.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    seeds: Vec<u64>,
    /// Coreset fractions.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1")]
    fractions: Vec<f64>,
    /// Methods (`X+clc` adds Cascaded Layer Correction, `X+ccs` selects by CCS over X's score;
    /// `random_resample` is the "new random subset every R" control).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "random,el2n,evs,ds,acs,res,quarc,quarc+clc,acs+ccs,full"
    )]
    methods: Vec<String>,
    /// QAT epochs.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// FP reference epochs (once per seed).
    #[arg(long, default_value_t = 5)]
    fp_epochs: usize,
    /// Output folder.
    #[arg(long, default_value = "runs/fmnist_table")]
    out: PathBuf,
    /// Only rewrite the table and the plot from the finished runs; train nothing.
    #[arg(long)]
    report_only: bool,
    /// Where to write the Markdown table and the plot.
    #[arg(long, default_value = "docs")]
    docs: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ResultRow {
    method: String,
    fraction: f64,
    seed: u64,
    reference_accuracy: f64,
    final_accuracy: f64,
    best_accuracy: f64,
    scoring_secs: f64,
    selection_secs: f64,
    training_secs: f64,
    wall_secs: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    quarc::runtime::retain_freed_memory();
    quarc_harness::init_logging(); // RUST_LOG=info|debug|trace prints the library's events
    let a = Args::parse();
    std::fs::create_dir_all(&a.out)?;
    if a.report_only {
        return write_table(&a, &read_jsonl(&a.out.join("results.jsonl"))?);
    }
    let train = Arc::new(fashion_mnist::load(a.data_dir.as_deref(), Split::Train)?);
    let test = Arc::new(fashion_mnist::load(a.data_dir.as_deref(), Split::Test)?);
    let results_path = a.out.join("results.jsonl");
    // Full-data QAT does not depend on the fraction: one run per seed.
    let mut jobs: Vec<(u64, f64, String)> = Vec::new();
    for &seed in &a.seeds {
        for &fraction in &a.fractions {
            for spec in &a.methods {
                if spec != "full" || fraction == a.fractions[0] {
                    jobs.push((seed, fraction, spec.clone()));
                }
            }
        }
    }
    let done = |rows: &[ResultRow], (seed, fraction, spec): &(u64, f64, String)| {
        rows.iter()
            .any(|r| r.method == *spec && r.seed == *seed && (spec == "full" || r.fraction == *fraction))
    };
    let rows = quarc_harness::sweep(
        &results_path,
        jobs,
        done,
        |(seed, fraction, spec)| run_one(&a, &train, &test, *seed, *fraction, spec),
        |rows| write_table(&a, rows),
    )?;
    write_table(&a, &rows)
}

type Data = Arc<quarc::data::InMemoryDataset>;

fn run_one(
    a: &Args,
    train: &Data,
    test: &Data,
    seed: u64,
    fraction: f64,
    spec: &str,
) -> Result<ResultRow, Box<dyn std::error::Error>> {
    let reference = ReferenceConfig {
        checkpoint: Some(a.out.join(format!("reference-seed{seed}.safetensors"))),
        epochs: a.fp_epochs,
        lr: 0.05,
    };
    let config = protocol::fmnist_w2a2(spec, fraction, a.epochs, seed, reference)?;
    let t0 = Instant::now();
    let run_dir = a.out.join(format!("{spec}-f{}-seed{seed}", config.fraction));
    let mut exp = Experiment {
        config,
        train: train.clone(),
        test: test.clone(),
        normalize: Some(Normalize::fashion_mnist()),
        run_dir,
        device: candle_core::Device::Cpu,
        verbose: true,
        noise: None,
        custom: Default::default(),
    };
    let proxy_secs = if quarc_harness::proxy::wants_proxy(spec) {
        quarc_harness::proxy::attach_proxy(&mut exp, &a.out.join(format!("proxy-seed{seed}.safetensors")))?
    } else {
        0.0
    };
    let s = exp.run()?;
    Ok(ResultRow {
        method: spec.to_string(),
        fraction: s.fraction,
        seed,
        reference_accuracy: s.reference_accuracy,
        final_accuracy: s.final_accuracy,
        best_accuracy: s.best_accuracy,
        scoring_secs: s.scoring_secs + proxy_secs,
        selection_secs: s.selection_secs,
        training_secs: s.training_secs,
        wall_secs: t0.elapsed().as_secs_f64(),
    })
}

fn write_table(a: &Args, rows: &[ResultRow]) -> Result<(), Box<dyn std::error::Error>> {
    let cpu = quarc_harness::report::cpu_model();
    let mut groups: BTreeMap<(String, String), Vec<&ResultRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((format!("{:>5.1}%", 100.0 * r.fraction), r.method.clone()))
            .or_default()
            .push(r);
    }
    // one reference per seed
    let refs: Vec<f64> = rows
        .iter()
        .map(|r| (r.seed, r.reference_accuracy))
        .collect::<BTreeMap<u64, f64>>()
        .into_values()
        .collect();
    let mut md = String::from("## FMNIST-W2A2\n\n");
    md += "Protocol: full Fashion-MNIST (60 000 train / 10 000 test); `SmallCnn`; FP reference trained on all data (SGD 0.9, cosine, \
           lr 0.05) once per seed; quantized twin with LSQ W2A2 on the middle layers (first conv and fc in FP), calibrated before the \
           first scoring pass; loss KD (T = 1) + CE; SGD momentum 0.9, lr 0.01, cosine, 20 epochs over the current coreset, batch 128; \
           re-selection every R = 5 epochs for adaptive methods (one-shot for random and EL2N); class-balanced top-k; test accuracy after \
           the last epoch (no model selection on the test set).\n\n";
    md += &format!(
        "Command: `cargo run --release --example fmnist_table -- --seeds {} --fractions {} --methods {}`. CPU: {cpu}, 2 threads.\n\n",
        a.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
        a.fractions.iter().map(f64::to_string).collect::<Vec<_>>().join(","),
        a.methods.join(",")
    );
    if !refs.is_empty() {
        let (m, s) = mean_std(&refs);
        md += &format!(
            "FP reference test accuracy: {:.2} ± {:.2} % over {} seeds.\n\n",
            100.0 * m,
            100.0 * s,
            refs.len()
        );
    }
    md += "The wall time of the first run of each seed includes training the FP reference.\n\n";
    md += "| fraction | method | seeds | test accuracy (%) | scoring s | selection s | training s | wall s |\n|---|---|---|---|---|---|---|---|\n";
    for ((f, m), rs) in &groups {
        let acc: Vec<f64> = rs.iter().map(|r| 100.0 * r.final_accuracy).collect();
        let avg = |g: fn(&ResultRow) -> f64| rs.iter().map(|r| g(r)).sum::<f64>() / rs.len() as f64;
        let acc_cell = mean_std_cell(&acc);
        md += &format!(
            "| {f} | {m} | {} | {acc_cell} | {:.0} | {:.2} | {:.0} | {:.0} |\n",
            rs.len(),
            avg(|r| r.scoring_secs),
            avg(|r| r.selection_secs),
            avg(|r| r.training_secs),
            avg(|r| r.wall_secs)
        );
    }
    // Hand-written status notes (what is missing, caveats) survive every rewrite of the table.
    if let Ok(notes) = std::fs::read_to_string(a.docs.join("results-status.md")) {
        md += "\n";
        md += &notes;
    }
    quarc_harness::doc_section::write_section(&a.docs.join("results.md"), "# Results\n\n", "fmnist-w2a2", &md)?;
    // Plot: test accuracy per epoch of every finished run of the first seed.
    let mut series = Vec::new();
    for r in rows.iter().filter(|r| r.seed == a.seeds[0]) {
        let dir = a.out.join(format!("{}-f{}-seed{}", r.method, r.fraction, r.seed));
        let log: Vec<quarc::train::report::EpochRecord> = read_jsonl(&dir.join("log.jsonl"))?;
        series.push((
            format!("{} {}%", r.method, 100.0 * r.fraction),
            log.iter().map(|e| (e.epoch + 1, e.test_accuracy)).collect(),
        ));
    }
    if !series.is_empty() {
        plot_accuracy(
            &a.docs.join("results.svg"),
            "FMNIST-W2A2: test accuracy per epoch (seed 0)",
            &series,
        )?;
    }
    Ok(())
}
