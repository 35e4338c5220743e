//! The README's main command: 2-bit QAT of `SmallCnn` on a 10 % coreset of the Fashion-MNIST
//! subset shipped in the repository — random, RS2 (the default), ACS, QuaRC (ACS + RES score
//! with Cascaded Layer Correction) and the best scored selection, ACS + CCS — and a small table.
//! No download; about a minute on 2 CPU cores.
//!
//! `cargo run --release --example quickstart [-- OUT_DIR]` (default `runs/quickstart`). Runs are
//! resumable: stop it and run it again to continue.

use std::sync::Arc;
use std::time::Instant;

use quarc::data::{Dataset, Split, fashion_mnist};
use quarc_harness::quickstart::{RECOMMENDED, RUNS, experiment};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    quarc::runtime::retain_freed_memory();
    quarc_harness::init_logging(); // RUST_LOG=info|debug|trace prints the library's events
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "runs/quickstart".into()));
    let train: Arc<dyn Dataset> = Arc::new(fashion_mnist::bundled_subset(Split::Train)?);
    let test: Arc<dyn Dataset> = Arc::new(fashion_mnist::bundled_subset(Split::Test)?);
    println!(
        "Fashion-MNIST subset: {} training / {} test images; SmallCnn, LSQ W2A2 (first conv and fc in FP), 10 % coreset",
        train.len(),
        test.len()
    );
    let t0 = Instant::now();
    let mut rows = Vec::new();
    for (label, spec) in RUNS {
        let summary = experiment(spec, &out, train.clone(), test.clone())?.run()?;
        rows.push((label, spec, summary));
    }
    println!(
        "\nFP reference test accuracy: {:.2}%",
        100.0 * rows[0].2.reference_accuracy
    );
    println!(
        "{:<26} {:>10} {:>10} {:>11} {:>11} {:>11}",
        "method (10 %, W2A2)", "final acc", "best acc", "scoring s", "select s", "train s"
    );
    for (label, _, s) in &rows {
        println!(
            "{label:<26} {:>9.2}% {:>9.2}% {:>11.1} {:>11.3} {:>11.1}",
            100.0 * s.final_accuracy,
            100.0 * s.best_accuracy,
            s.scoring_secs,
            s.selection_secs,
            s.training_secs
        );
    }
    let best = rows
        .iter()
        .max_by(|a, b| a.2.final_accuracy.total_cmp(&b.2.final_accuracy))
        .ok_or("no runs")?;
    let default = rows
        .iter()
        .find(|r| r.1 == RECOMMENDED)
        .ok_or("no run of the default")?;
    let verdict = if best.1 == default.1 {
        format!("the default, {}, has the best final accuracy", default.0)
    } else {
        format!(
            "{} has the best final accuracy ({:.2}%); the default, {}, reached {:.2}%",
            best.0,
            100.0 * best.2.final_accuracy,
            default.0,
            100.0 * default.2.final_accuracy
        )
    };
    println!(
        "on this subset run {verdict} (one seed: differences under about a point are noise here; docs/results.md \
         has 3-seed tables)"
    );
    println!(
        "total {:.1} s; logs, selections, plots and exports under {}",
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
