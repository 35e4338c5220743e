//! The README's main command: 2-bit QAT of `SmallCnn` on a 10 % coreset of the Fashion-MNIST
//! subset shipped in the repository, random vs ACS vs QuaRC (ACS + RES score, with Cascaded
//! Layer Correction), and a small table. No download; a few minutes on 2 CPU cores.
//!
//! `cargo run --release --example quickstart [-- OUT_DIR]` (default `runs/quickstart`). Runs are
//! resumable: stop it and run it again to continue.

use std::sync::Arc;
use std::time::Instant;

use quarc::data::{Dataset, Normalize, Split, fashion_mnist};
use quarc::train::{ClcConfig, ClcLoss, Experiment, Method, ObjectiveConfig, ReferenceConfig, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    quarc::runtime::apply_malloc_tunables();
    quarc_harness::init_logging(); // RUST_LOG=info|debug|trace prints the library's events
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "runs/quickstart".into()));
    let train = Arc::new(fashion_mnist::bundled_subset(Split::Train)?);
    let test = Arc::new(fashion_mnist::bundled_subset(Split::Test)?);
    println!(
        "Fashion-MNIST subset: {} training / {} test images; SmallCnn, LSQ W2A2 (first conv and fc in FP), 10 % coreset",
        train.len(),
        test.len()
    );
    let base = TrainConfig {
        fraction: 0.1,
        epochs: 12,
        select_every: 4,
        batch_size: 64,
        eval_batch_size: 500,
        reference: ReferenceConfig {
            checkpoint: Some(out.join("reference.safetensors")),
            epochs: 4,
            lr: 0.05,
        },
        seed: 0,
        ..TrainConfig::default()
    };
    let clc = ClcConfig {
        layers: vec!["conv2".into(), "conv3".into()],
        beta: 1.0,
        loss: ClcLoss::Mse,
        mode: Default::default(),
    };
    let runs = [
        (
            "random",
            TrainConfig {
                method: Method::Random,
                ..base.clone()
            },
        ),
        (
            "ACS",
            TrainConfig {
                method: Method::Acs,
                ..base.clone()
            },
        ),
        (
            "QuaRC (score + CLC)",
            TrainConfig {
                method: Method::Quarc,
                objective: ObjectiveConfig {
                    clc: Some(clc),
                    ..Default::default()
                },
                ..base.clone()
            },
        ),
    ];
    let t0 = Instant::now();
    let mut rows = Vec::new();
    for (label, config) in runs {
        let exp = Experiment {
            run_dir: out.join(config.method.name()),
            config,
            train: train.clone(),
            test: test.clone(),
            normalize: Some(Normalize::fashion_mnist()),
            device: candle_core::Device::Cpu,
            verbose: true,
            noise: None,
            custom: Default::default(),
        };
        rows.push((label, exp.run()?));
    }
    println!(
        "\nFP reference test accuracy: {:.2}%",
        100.0 * rows[0].1.reference_accuracy
    );
    println!(
        "{:<22} {:>10} {:>10} {:>11} {:>11} {:>11}",
        "method (10 %, W2A2)", "final acc", "best acc", "scoring s", "select s", "train s"
    );
    for (label, s) in &rows {
        println!(
            "{label:<22} {:>9.2}% {:>9.2}% {:>11.1} {:>11.3} {:>11.1}",
            100.0 * s.final_accuracy,
            100.0 * s.best_accuracy,
            s.scoring_secs,
            s.selection_secs,
            s.training_secs
        );
    }
    println!(
        "total {:.1} s; logs, selections, plots and exports under {}",
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
