//! Any run from a JSON configuration (`quarc_train::TrainConfig`), with command-line flags over it.
//!
//! ```text
//! cargo run --release --example train -- --print-default > run.json     # a complete, editable config
//! cargo run --release --example train -- --config run.json --method quarc --fraction 0.01 --out runs/mine
//! ```
//! Data: `--data fmnist-subset` (shipped, default), `--data fmnist` (full set: `--data-dir`,
//! `$QUARC_FASHION_MNIST` or Debian's location) or `--data cifar10 --data-dir DIR`. The whole
//! configuration is validated before any work starts; the run resumes if its folder exists.
//! `--device cuda` trains on the first GPU (build with `--features cuda`).

use std::sync::Arc;

use clap::Parser;
use quarc::data::{Dataset, Normalize, Split, fashion_mnist, load_cifar10};
use quarc::train::{Experiment, Method, TrainConfig};

#[derive(Parser, Debug)]
struct Args {
    /// JSON file with a TrainConfig (missing fields take their defaults).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Print the default configuration as JSON and exit.
    #[arg(long)]
    print_default: bool,
    /// fmnist-subset, fmnist or cifar10.
    #[arg(long, default_value = "fmnist-subset")]
    data: String,
    /// Folder with the data files (fmnist, cifar10).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Override: method.
    #[arg(long)]
    method: Option<String>,
    /// Override: coreset fraction.
    #[arg(long)]
    fraction: Option<f64>,
    /// Override: QAT epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override: seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory.
    #[arg(long, default_value = "runs/train")]
    out: std::path::PathBuf,
    /// cpu, cuda (build with `--features cuda`) or metal (`--features metal`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() {
    quarc::runtime::retain_freed_memory();
    quarc_harness::init_logging(); // RUST_LOG=info|debug|trace prints the library's events
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    if a.print_default {
        println!("{}", serde_json::to_string_pretty(&TrainConfig::default())?);
        return Ok(());
    }
    let mut config: TrainConfig = match &a.config {
        Some(p) => serde_json::from_str(&std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?)
            .map_err(|e| format!("{}: {e}", p.display()))?,
        None => TrainConfig::default(),
    };
    if let Some(m) = &a.method {
        config.method = Method::parse(m)?;
    }
    if let Some(f) = a.fraction {
        config.fraction = f;
    }
    if let Some(e) = a.epochs {
        config.epochs = e;
    }
    if let Some(s) = a.seed {
        config.seed = s;
    }
    config.validate()?;
    let (train, test, normalize): (Arc<dyn Dataset>, Arc<dyn Dataset>, Normalize) = match a.data.as_str() {
        "fmnist-subset" => (
            Arc::new(fashion_mnist::bundled_subset(Split::Train)?),
            Arc::new(fashion_mnist::bundled_subset(Split::Test)?),
            Normalize::fashion_mnist(),
        ),
        "fmnist" => (
            Arc::new(fashion_mnist::load(a.data_dir.as_deref(), Split::Train)?),
            Arc::new(fashion_mnist::load(a.data_dir.as_deref(), Split::Test)?),
            Normalize::fashion_mnist(),
        ),
        "cifar10" => {
            let dir = a
                .data_dir
                .clone()
                .ok_or("--data cifar10 needs --data-dir (the CIFAR-10 binary version)")?;
            (
                Arc::new(load_cifar10(&dir, Split::Train)?),
                Arc::new(load_cifar10(&dir, Split::Test)?),
                Normalize::cifar10(),
            )
        }
        other => return Err(format!("unknown data `{other}` (fmnist-subset, fmnist, cifar10)").into()),
    };
    let s = Experiment {
        config,
        train,
        test,
        normalize: Some(normalize),
        run_dir: a.out.clone(),
        device: quarc_harness::cifar::device(&a.device)?,
        verbose: true,
        noise: None,
        custom: Default::default(),
    }
    .run()?;
    println!("{}", serde_json::to_string_pretty(&s)?);
    Ok(())
}
