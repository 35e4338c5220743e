//! Bring your own candle model: a small residual CNN defined **here** (not in quarc-models),
//! written once against quarc's model builder, trained as a W2A2 twin on a 10 % coreset (the
//! default, RS2: a fresh class-balanced random subset every epoch — chosen on a validation split,
//! docs/tuning.md) of the bundled Fashion-MNIST subset through quarc's trainer — logs, plots,
//! checkpoints and resume included.
//!
//! `cargo run --release --example custom_model [-- OUT_DIR]` (default `runs/custom_model`); a few
//! minutes on 2 CPU cores, resumable.

use std::sync::Arc;
use std::time::Instant;

use quarc::data::{BatchLoader, LoaderConfig, Normalize, Split, fashion_mnist};
use quarc::models::candle_core::{Device, Tensor};
use quarc::models::candle_nn::VarMap;
use quarc::models::{Activation, ConvBn, ConvSpec, Layers, LinearSpec, Mode, Model, ModelBuilder, checkpoint};
use quarc::quant_core::{FeatureMap, ModelOutput, QLinear, QatConfig};
use quarc::train::{Custom, Experiment, ReferenceConfig, TrainConfig, accuracy};

/// The user's model: conv-BN-ReLU, two residual conv-BN-ReLU blocks, global pooling, classifier.
struct ResidualCnn {
    stem: ConvBn,
    down: ConvBn,
    block: ConvBn,
    fc: QLinear,
}

impl ResidualCnn {
    /// One definition for both precisions: the builder decides FP or quantized twin.
    fn new(b: &Layers) -> quarc::models::Result<Self> {
        Ok(Self {
            stem: ConvBn::new(b, "stem", ConvSpec::new(1, 32, 3).signed_input())?,
            down: ConvBn::new(b, "down", ConvSpec::new(32, 64, 3).stride(2))?,
            block: ConvBn::new(b, "block", ConvSpec::new(64, 64, 3))?,
            fc: b.linear("fc", LinearSpec::new(64, 10))?,
        })
    }
}

impl Model for ResidualCnn {
    fn forward_mode(&self, x: &Tensor, mode: Mode) -> quarc::models::Result<ModelOutput> {
        let h = self.stem.forward_act(x, mode, Activation::Relu)?;
        let h = self.down.forward_act(&h, mode, Activation::Relu)?;
        let h = (self.block.forward_act(&h, mode, Activation::Relu)? + h)?; // residual add
        let mut features = FeatureMap::new();
        features.insert("block", h.clone());
        let logits = self.fc.forward_t(&h.mean((2, 3))?, mode.train())?;
        Ok(ModelOutput { logits, features })
    }
}

/// How the trainer builds the reference (`qat = None`) and the twin.
fn build(vars: &VarMap, qat: Option<&QatConfig>, dev: &Device) -> quarc::models::Result<Box<dyn Model>> {
    let b = ModelBuilder::new(vars, dev).seed(0).qat(qat.cloned());
    Ok(Box::new(b.build(ResidualCnn::new)?))
}

/// The run directory under the output folder.
const RUN: &str = "rs2";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    quarc::runtime::retain_freed_memory();
    quarc_harness::init_logging();
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "runs/custom_model".into()));
    let (train, test) = (
        Arc::new(fashion_mnist::bundled_subset(Split::Train)?),
        Arc::new(fashion_mnist::bundled_subset(Split::Test)?),
    );
    // The default coreset (RS2); `method: Method::Acs` would give the best scored one.
    let config = TrainConfig {
        fraction: 0.1,
        epochs: 12,
        select_every: 4,
        batch_size: 64,
        eval_batch_size: 500,
        qat: QatConfig::lsq(2, 2)?,
        reference: ReferenceConfig {
            checkpoint: Some(out.join("reference.safetensors")),
            epochs: 4,
            lr: 0.05,
        },
        ..TrainConfig::default()
    };
    let experiment = Experiment {
        config: config.clone(),
        train: train.clone(),
        test: test.clone(),
        normalize: Some(Normalize::fashion_mnist()),
        run_dir: out.join(RUN),
        device: Device::Cpu,
        verbose: true,
        noise: None,
        custom: Custom {
            model: Some(Arc::new(build)),
            ..Default::default()
        },
    };
    let t0 = Instant::now();
    let summary = experiment.run()?;
    let secs = t0.elapsed().as_secs_f64();

    // What the twin scored right after calibration, before any QAT step: the trainer's first
    // step, repeated here (FP weights copied into a fresh twin, one calibration forward pass).
    let dev = Device::Cpu;
    let (fp_vars, q_vars) = (VarMap::new(), VarMap::new());
    let _fp = build(&fp_vars, None, &dev)?;
    checkpoint::load(&fp_vars, out.join("reference.safetensors"))?;
    let twin = build(&q_vars, Some(&config.qat), &dev)?;
    checkpoint::transfer(&fp_vars, &q_vars)?;
    let norm = Some(Normalize::fashion_mnist());
    let first = BatchLoader::new(
        train.clone(),
        LoaderConfig::eval(config.eval_batch_size, norm.clone()),
        &dev,
    )?
    .epoch(0, None)?
    .next()
    .ok_or("empty training set")??;
    let report = twin.calibrate(&first.images)?;
    let test_loader = BatchLoader::new(test.clone(), LoaderConfig::eval(500, norm), &dev)?;
    let calibrated = accuracy(twin.as_ref(), &test_loader)?;

    println!(
        "\nResidualCnn (defined in this example), LSQ W2A2, RS2 (default) 10 % coreset, bundled Fashion-MNIST subset"
    );
    println!(
        "calibrated layers: {:?}",
        report.layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>()
    );
    println!(
        "FP reference accuracy:          {:.2} %",
        100.0 * summary.reference_accuracy
    );
    println!("W2A2 right after calibration:   {:.2} %", 100.0 * calibrated);
    println!(
        "W2A2 after QAT ({} epochs):     {:.2} %",
        summary.epochs_done,
        100.0 * summary.final_accuracy
    );
    println!(
        "time: {secs:.0} s (scoring {:.0} s, training {:.0} s); run directory {}",
        summary.scoring_secs,
        summary.training_secs,
        out.join(RUN).display()
    );
    Ok(())
}
