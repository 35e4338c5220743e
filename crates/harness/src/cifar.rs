//! The flagship CIFAR-10 run behind `examples/resnet18_cifar.rs`, and a synthetic CIFAR-format
//! data set for smoke runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use quarc_coreset::BetaSchedule;
use quarc_correction::{CascadeMode, SoftmaxAxis};
use quarc_data::{Dataset, ImageShape, InMemoryDataset, Normalize, Split, load_cifar10, write_cifar10_bin};
use quarc_quant_core::{QatConfig, SplitMix64};

use quarc_train::{
    ClcConfig, ClcLoss, Error, Experiment, LrPlan, LrSchedule, Method, ModelKind, ObjectiveConfig, ReferenceConfig,
    Result, RunSummary, TrainConfig,
};

/// Settings of a CIFAR-10 run (the example's command-line flags).
#[derive(Clone, Debug)]
pub struct CifarRun {
    /// Folder with the CIFAR-10 binary files (`data_batch_1.bin` … `test_batch.bin`).
    pub data_dir: Option<PathBuf>,
    /// Write a tiny synthetic CIFAR-format data set under `out` and run one short epoch.
    pub synthetic: bool,
    /// Coreset method.
    pub method: Method,
    /// Coreset fraction.
    pub fraction: f64,
    /// Weight bits.
    pub w_bits: u32,
    /// Activation bits; `None` keeps activations in full precision (e.g. ACS's W2A32).
    pub a_bits: Option<u32>,
    /// QAT epochs.
    pub epochs: usize,
    /// Re-selection period R.
    pub select_every: usize,
    /// β(t) of ACS/QuaRC.
    pub beta_schedule: BetaSchedule,
    /// Cascade mode and β; `None` for no CLC.
    pub clc: Option<(CascadeMode, f64)>,
    /// Full-precision teacher/reference checkpoint (trained and cached when absent).
    pub teacher: Option<PathBuf>,
    /// FP training epochs when no teacher checkpoint exists.
    pub fp_epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// `cpu`, `cuda` or `metal`.
    pub device: String,
    /// Seed.
    pub seed: u64,
    /// Output folder.
    pub out: PathBuf,
}

/// A device by name.
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::new_cuda(0)?),
        "metal" => Ok(Device::new_metal(0)?),
        other => Err(Error::InvalidConfig(format!(
            "device must be cpu, cuda or metal, got `{other}`"
        ))),
    }
}

/// Writes a small, learnable CIFAR-10-format data set (class-dependent bright squares on noise)
/// to `dir` as the five training files and the test file, and returns the folder.
pub fn write_synthetic_cifar10(
    dir: &Path,
    per_class_train: usize,
    per_class_test: usize,
    seed: u64,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let make = |per_class: usize, stream: u64| -> Result<InMemoryDataset> {
        let mut rng = SplitMix64::derive(seed, stream);
        let (mut pixels, mut labels) = (Vec::new(), Vec::new());
        for i in 0..per_class * 10 {
            let c = i % 10;
            let (cy, cx) = (4 + (c / 5) * 14, 2 + (c % 5) * 6);
            for ch in 0..3 {
                for y in 0..32 {
                    for x in 0..32 {
                        let inside = y >= cy && y < cy + 10 && x >= cx && x < cx + 6;
                        let base = if inside { 200 } else { 40 };
                        pixels.push((base + rng.below(40) as i32 - 20 + ch * 5).clamp(0, 255) as u8);
                    }
                }
            }
            labels.push(c as u32);
        }
        Ok(InMemoryDataset::new(
            pixels,
            labels,
            ImageShape {
                channels: 3,
                height: 32,
                width: 32,
            },
            10,
        )?)
    };
    let train = make(per_class_train, 1)?;
    let n = train.len();
    for k in 0..5 {
        let idx: Vec<usize> = (0..n).filter(|i| i % 5 == k).collect();
        write_cifar10_bin(&train.take(&idx)?, &dir.join(format!("data_batch_{}.bin", k + 1)))?;
    }
    write_cifar10_bin(&make(per_class_test, 2)?, &dir.join("test_batch.bin"))?;
    Ok(dir.to_path_buf())
}

/// Runs ResNet-18 QAT on CIFAR-10 as configured.
pub fn run(args: &CifarRun) -> Result<RunSummary> {
    let data_dir = if args.synthetic {
        write_synthetic_cifar10(&args.out.join("synthetic-cifar10"), 8, 3, args.seed)?
    } else {
        args.data_dir.clone().ok_or_else(|| {
            Error::InvalidConfig(
                "no CIFAR-10 folder: pass --data-dir DIR holding data_batch_1.bin … test_batch.bin (the binary version, \
                 cifar-10-binary.tar.gz from the CIFAR page, extracted), or --synthetic for a smoke run"
                    .into(),
            )
        })?
    };
    let train: Arc<dyn Dataset> = Arc::new(load_cifar10(&data_dir, Split::Train)?);
    let test: Arc<dyn Dataset> = Arc::new(load_cifar10(&data_dir, Split::Test)?);
    let (epochs, fp_epochs) = if args.synthetic {
        (1, 1)
    } else {
        (args.epochs, args.fp_epochs)
    };
    let objective = ObjectiveConfig {
        clc: args.clc.map(|(mode, beta)| ClcConfig {
            layers: vec![
                "layer1.1".into(),
                "layer2.1".into(),
                "layer3.1".into(),
                "layer4.1".into(),
            ],
            beta,
            loss: ClcLoss::FeatureKl {
                axis: SoftmaxAxis::ChannelAfterGap,
            },
            mode,
        }),
        ..Default::default()
    };
    let config = TrainConfig {
        model: ModelKind::ResNet18,
        num_classes: 10,
        qat: match args.a_bits {
            Some(a) => QatConfig::lsq(args.w_bits, a)?,
            None => QatConfig {
                activation: quarc_quant_core::QuantizerConfig::Identity,
                ..QatConfig::lsq(args.w_bits, 8)?
            },
        },
        method: args.method,
        fraction: args.fraction,
        select_every: args.select_every,
        beta_schedule: args.beta_schedule,
        epochs,
        batch_size: args.batch_size,
        eval_batch_size: 256,
        lr: LrPlan {
            base: args.lr,
            schedule: LrSchedule::Cosine { eta_min: 0.0 },
            warmup_epochs: 0,
        },
        objective,
        augment: true,
        reference: ReferenceConfig {
            checkpoint: Some(
                args.teacher
                    .clone()
                    .unwrap_or_else(|| args.out.join("reference.safetensors")),
            ),
            epochs: fp_epochs,
            lr: 0.05,
        },
        seed: args.seed,
        ..TrainConfig::default()
    };
    let a = args.a_bits.map_or("32".to_string(), |a| a.to_string());
    let run_dir = args.out.join(format!(
        "{}-f{}-w{}a{a}-seed{}",
        args.method.name(),
        args.fraction,
        args.w_bits,
        args.seed
    ));
    Experiment {
        config,
        train,
        test,
        normalize: Some(Normalize::cifar10()),
        run_dir,
        device: device(&args.device)?,
        verbose: true,
        noise: None,
        custom: Default::default(),
    }
    .run()
}
