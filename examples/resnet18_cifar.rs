//! The flagship: ResNet-18 QAT on CIFAR-10 with a coreset.
//!
//! ```text
//! cargo run --release --example resnet18_cifar -- --data-dir /path/to/cifar-10-batches-bin --method quarc --fraction 0.1
//! cargo run --release --example resnet18_cifar -- --synthetic        # tiny CIFAR-format data, one short epoch
//! ```
//! CIFAR-10 cannot be downloaded by quarc: fetch the binary version yourself and pass its folder.

use clap::Parser;
use quarc::coreset::BetaSchedule;
use quarc::correction::CascadeMode;
use quarc::train::Method;
use quarc_harness::cifar::{CifarRun, run};

#[derive(Parser, Debug)]
#[command(about = "ResNet-18 quantization-aware training on a CIFAR-10 coreset")]
struct Args {
    /// Folder with data_batch_1.bin … data_batch_5.bin and test_batch.bin (CIFAR-10 binary version).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Write a tiny synthetic CIFAR-format data set and run one short epoch (smoke test).
    #[arg(long)]
    synthetic: bool,
    /// random, el2n, entropy, forgetting, evs, ds, acs, res, quarc or full.
    #[arg(long, default_value = "acs")]
    method: String,
    /// Coreset fraction in (0, 1].
    #[arg(long, default_value_t = 0.1)]
    fraction: f64,
    /// Weight bits.
    #[arg(long, default_value_t = 2)]
    w_bits: u32,
    /// Activation bits (32 = full-precision activations).
    #[arg(long, default_value_t = 32)]
    a_bits: u32,
    /// QAT epochs.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Re-select every R epochs (adaptive methods).
    #[arg(long, default_value_t = 10)]
    select_every: usize,
    /// β(t): paper-cosine, code-cosine, linear, quadratic, sqrt.
    #[arg(long, default_value = "paper-cosine")]
    beta: String,
    /// Cascaded Layer Correction mode: none, natural, progressive.
    #[arg(long, default_value = "none")]
    clc: String,
    /// CLC weight β.
    #[arg(long, default_value_t = 1.0)]
    clc_beta: f64,
    /// Full-precision teacher checkpoint (trained and written there when absent).
    #[arg(long)]
    teacher: Option<std::path::PathBuf>,
    /// FP training epochs when the teacher is trained here.
    #[arg(long, default_value_t = 30)]
    fp_epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Learning rate (SGD momentum 0.9, cosine).
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "runs/resnet18_cifar")]
    out: std::path::PathBuf,
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
    let beta_schedule = match a.beta.as_str() {
        "paper-cosine" => BetaSchedule::PaperCosine,
        "code-cosine" => BetaSchedule::CodeCosine,
        "linear" => BetaSchedule::Linear,
        "quadratic" => BetaSchedule::Quadratic,
        "sqrt" => BetaSchedule::Sqrt,
        other => return Err(format!("unknown β schedule `{other}`").into()),
    };
    let clc = match a.clc.as_str() {
        "none" => None,
        "natural" => Some((CascadeMode::NaturalForward, a.clc_beta)),
        "progressive" => Some((
            CascadeMode::Progressive {
                start: 1,
                every: (a.epochs / 4).max(1),
            },
            a.clc_beta,
        )),
        other => return Err(format!("unknown CLC mode `{other}`").into()),
    };
    let args = CifarRun {
        data_dir: a.data_dir,
        synthetic: a.synthetic,
        method: Method::parse(&a.method)?,
        fraction: a.fraction,
        w_bits: a.w_bits,
        a_bits: if a.a_bits >= 32 { None } else { Some(a.a_bits) },
        epochs: a.epochs,
        select_every: a.select_every,
        beta_schedule,
        clc,
        teacher: a.teacher,
        fp_epochs: a.fp_epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        device: a.device,
        seed: a.seed,
        out: a.out,
    };
    let s = run(&args)?;
    println!(
        "{} f={} seed={}: FP reference {:.2}%, quantized final {:.2}% (best {:.2}%); scoring {:.1} s, selection {:.3} s, training {:.1} s",
        s.method,
        s.fraction,
        s.seed,
        100.0 * s.reference_accuracy,
        100.0 * s.final_accuracy,
        100.0 * s.best_accuracy,
        s.scoring_secs,
        s.selection_secs,
        s.training_secs
    );
    Ok(())
}
