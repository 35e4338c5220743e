//! Deploy what you trained: export a trained run to ONNX (QCDQ), run the file in tract (a pure
//! Rust ONNX runtime) over a test set, and compare it with quarc's own evaluation forward.
//!
//! ```text
//! cargo run --release --example deploy -- --out FILE.onnx [--run DIR] [--data fmnist-subset|fmnist]
//! ```
//! Without `--run` it deploys the quickstart's run of the recommended method
//! (`runs/quickstart/acs+ccs`), training it first if it is absent. Prints `quarc accuracy: X %`,
//! `onnx accuracy: Y %`, the latency per image of both at batch 1 and 64, and the file sizes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use quarc::data::{BatchLoader, Dataset, LoaderConfig, Normalize, Split, fashion_mnist};
use quarc::models::candle_core::{Device, Tensor};
use quarc::models::candle_nn::VarMap;
use quarc::models::{Mode, Model, ToOnnx, checkpoint, export_onnx, onnx::OnnxSpec};
use quarc::train::{TrainConfig, accuracy};
use tract_onnx::prelude::*;

#[derive(Parser, Debug)]
struct Args {
    /// Where to write the ONNX file.
    #[arg(long)]
    out: PathBuf,
    /// A finished run directory (default: the quickstart's recommended run, trained if absent).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Test set: `fmnist-subset` (bundled, 1 000 images) or `fmnist` (10 000, Debian's files).
    #[arg(long, default_value = "fmnist-subset")]
    data: String,
    /// Folder with the Fashion-MNIST IDX files for `--data fmnist`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// A model quarc can both run and export.
trait Deployable: Model + ToOnnx {}
impl<T: Model + ToOnnx> Deployable for T {}

/// The trained twin of a run directory (its config.json and model.safetensors).
fn load_run(dir: &Path) -> Result<(TrainConfig, Box<dyn Deployable>), Box<dyn std::error::Error>> {
    let config: TrainConfig = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    let (vars, dev) = (VarMap::new(), Device::Cpu);
    let (qat, classes, seed) = (Some(config.qat.clone()), config.num_classes, config.seed);
    let model: Box<dyn Deployable> = match config.model {
        quarc::train::ModelKind::SmallCnn => Box::new(quarc::models::SmallCnn::new(&vars, qat, classes, seed, &dev)?),
        quarc::train::ModelKind::ResNet20 => {
            Box::new(quarc::models::ResNet::resnet20(&vars, qat, classes, seed, &dev)?)
        }
        quarc::train::ModelKind::ResNet18 => {
            Box::new(quarc::models::ResNet::resnet18(&vars, qat, classes, seed, &dev)?)
        }
        quarc::train::ModelKind::MobileNetV2 { width } => {
            Box::new(quarc::models::MobileNetV2::new(&vars, qat, width, classes, seed, &dev)?)
        }
    };
    let report = checkpoint::load(&vars, dir.join("model.safetensors"))?;
    if !report.missing.is_empty() {
        return Err(format!("{}: the checkpoint lacks {:?}", dir.display(), report.missing).into());
    }
    Ok((config, model))
}

/// The run to deploy: `--run`, or the quickstart's recommended run (trained when absent).
fn run_dir(a: &Args) -> Result<PathBuf, Box<dyn std::error::Error>> {
    if let Some(d) = &a.run {
        return Ok(d.clone());
    }
    let out = PathBuf::from("runs/quickstart");
    let spec = quarc_harness::quickstart::RECOMMENDED;
    let dir = quarc_harness::quickstart::run_dir(spec, &out);
    if !dir.join("model.safetensors").is_file() {
        println!(
            "no finished run in {}: training the quickstart's {spec} run first",
            dir.display()
        );
        let train: Arc<dyn Dataset> = Arc::new(fashion_mnist::bundled_subset(Split::Train)?);
        let test: Arc<dyn Dataset> = Arc::new(fashion_mnist::bundled_subset(Split::Test)?);
        quarc_harness::quickstart::experiment(spec, &out, train, test)?.run()?;
    }
    Ok(dir)
}

type Plan = Arc<TypedRunnableModel>;

/// tract plans of the ONNX file, one per batch size.
struct Tract {
    bytes: Vec<u8>,
    plans: HashMap<usize, Plan>,
}

impl Tract {
    fn plan(&mut self, n: usize) -> TractResult<Plan> {
        if let Some(p) = self.plans.get(&n) {
            return Ok(p.clone());
        }
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &self.bytes[..])?
            .with_input_fact(0, f32::fact([n, 1, 28, 28]).into())?
            .into_optimized()?
            .into_runnable()?;
        self.plans.insert(n, plan.clone());
        Ok(plan)
    }

    /// Logits of images `x` (N×1×28×28 in [0, 1]).
    fn logits(&mut self, x: &Tensor) -> Result<Vec<Vec<f32>>, Box<dyn std::error::Error>> {
        let dims = x.dims().to_vec();
        let input = tract_ndarray::ArrayD::from_shape_vec(dims.clone(), x.flatten_all()?.to_vec1::<f32>()?)?;
        let out = self.plan(dims[0])?.run(tvec!(input.into_tensor().into()))?;
        let view = out[0].to_plain_array_view::<f32>()?;
        Ok(view.outer_iter().map(|r| r.iter().copied().collect()).collect())
    }
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// Accuracy of the ONNX file in tract over `test` (raw images in [0, 1], the graph normalises).
fn onnx_accuracy(tract: &mut Tract, test: &Arc<dyn Dataset>) -> Result<f64, Box<dyn std::error::Error>> {
    let loader = BatchLoader::new(test.clone(), LoaderConfig::eval(500, None), &Device::Cpu)?;
    let (mut correct, mut total) = (0usize, 0usize);
    for batch in loader.epoch(0, None)? {
        let b = batch?;
        let labels = b.labels.to_vec1::<u32>()?;
        for (row, &y) in tract.logits(&b.images)?.iter().zip(&labels) {
            correct += usize::from(argmax(row) == y as usize);
        }
        total += labels.len();
    }
    Ok(correct as f64 / total.max(1) as f64)
}

/// Milliseconds per image of `f` on a batch of `n`, after warm-up.
fn per_image_ms(
    n: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<f64, Box<dyn std::error::Error>> {
    for _ in 0..3 {
        f()?;
    }
    let reps = if n == 1 { 200 } else { 10 };
    let t0 = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    Ok(1e3 * t0.elapsed().as_secs_f64() / (reps * n) as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    quarc::runtime::retain_freed_memory();
    quarc_harness::init_logging();
    let a = Args::parse();
    let dir = run_dir(&a)?;
    let (config, model) = load_run(&dir)?;
    let norm = Normalize::fashion_mnist();
    let spec = OnnxSpec {
        input: [1, 28, 28],
        normalize: Some((norm.mean().to_vec(), norm.std().to_vec())),
        qat: Some(config.qat.clone()),
    };
    let layers = export_onnx(model.as_ref(), &spec, &a.out)?;
    println!(
        "wrote {} ({} layers, {} quantized) from {}",
        a.out.display(),
        layers.len(),
        layers.iter().filter(|l| l.weight.is_some()).count(),
        dir.display()
    );
    let test: Arc<dyn Dataset> = match a.data.as_str() {
        "fmnist-subset" => Arc::new(fashion_mnist::bundled_subset(Split::Test)?),
        "fmnist" => Arc::new(fashion_mnist::load(a.data_dir.as_deref(), Split::Test)?),
        other => return Err(format!("--data {other}: use fmnist-subset or fmnist").into()),
    };
    let eval = BatchLoader::new(test.clone(), LoaderConfig::eval(500, Some(norm.clone())), &Device::Cpu)?;
    let quarc_acc = accuracy(model.as_ref(), &eval)?;
    let mut tract = Tract {
        bytes: std::fs::read(&a.out)?,
        plans: HashMap::new(),
    };
    let onnx_acc = onnx_accuracy(&mut tract, &test)?;
    println!("test set: {} ({} images)", a.data, test.len());
    println!("quarc accuracy: {:.2} %", 100.0 * quarc_acc);
    println!("onnx accuracy: {:.2} %", 100.0 * onnx_acc);
    for n in [1usize, 64] {
        let raw = BatchLoader::new(test.clone(), LoaderConfig::eval(n, None), &Device::Cpu)?
            .epoch(0, None)?
            .next()
            .ok_or("empty test set")??
            .images;
        let normed = BatchLoader::new(test.clone(), LoaderConfig::eval(n, Some(norm.clone())), &Device::Cpu)?
            .epoch(0, None)?
            .next()
            .ok_or("empty test set")??
            .images;
        let t = per_image_ms(n, || {
            tract.logits(&raw)?;
            Ok(())
        })?;
        let q = per_image_ms(n, || {
            model.forward_mode(&normed, Mode::Eval)?;
            Ok(())
        })?;
        println!("latency per image at batch {n}: tract {t:.3} ms, quarc eval forward {q:.3} ms");
    }
    let fp = config
        .reference
        .checkpoint
        .clone()
        .unwrap_or_else(|| dir.join("reference.safetensors"));
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "ONNX file {} bytes; FP checkpoint {} {} bytes; quarc checkpoint of the twin {} bytes",
        size(&a.out),
        fp.display(),
        size(&fp),
        size(&dir.join("model.safetensors"))
    );
    Ok(())
}
