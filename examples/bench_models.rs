//! Forward+backward throughput (images/s) of every model at batch 64 on CPU, full precision and
//! quantized (LSQ W4A4, W2A2), with quarc's CPU conv engine and candle's side by side, plus the load time of the full Fashion-MNIST.
//!
//! `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=68719476736 \
//!  cargo run --release --example bench_models [-- OUT.jsonl [REPS]]`
//!
//! One JSON line per finished measurement is appended to OUT.jsonl (default
//! `runs/bench_models.jsonl`); measurements already in the file are skipped, so a stopped run
//! resumes where it was.

use std::io::Write;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use quarc::kernels::{CpuConvEngine, set_cpu_engine};
use quarc::models::{MobileNetV2, Mode, Model, ResNet, SmallCnn};
use quarc::quant_core::{QatConfig, SplitMix64};

type Build = fn(&VarMap, Option<QatConfig>) -> quarc::models::Result<Box<dyn Model>>;

fn small(v: &VarMap, q: Option<QatConfig>) -> quarc::models::Result<Box<dyn Model>> {
    Ok(Box::new(SmallCnn::new(v, q, 10, 0, &Device::Cpu)?))
}
fn r20(v: &VarMap, q: Option<QatConfig>) -> quarc::models::Result<Box<dyn Model>> {
    Ok(Box::new(ResNet::resnet20(v, q, 10, 0, &Device::Cpu)?))
}
fn r18(v: &VarMap, q: Option<QatConfig>) -> quarc::models::Result<Box<dyn Model>> {
    Ok(Box::new(ResNet::resnet18(v, q, 10, 0, &Device::Cpu)?))
}
fn mnv2(v: &VarMap, q: Option<QatConfig>) -> quarc::models::Result<Box<dyn Model>> {
    Ok(Box::new(MobileNetV2::new(v, q, 0.5, 100, 0, &Device::Cpu)?))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    quarc::runtime::retain_freed_memory();
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "runs/bench_models.jsonl".into());
    let reps: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    if let Some(d) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(d)?;
    }
    let done = std::fs::read_to_string(&out).unwrap_or_default();
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&out)?;
    let cpu = quarc_harness::report::cpu_model();
    println!("CPU: {cpu}, threads: {}", rayon::current_num_threads());

    if !done.contains("\"fashion_mnist_load\"") {
        let t0 = Instant::now();
        match (
            quarc::data::fashion_mnist::load(None, quarc::data::Split::Train),
            quarc::data::fashion_mnist::load(None, quarc::data::Split::Test),
        ) {
            (Ok(a), Ok(b)) => {
                let secs = t0.elapsed().as_secs_f64();
                println!(
                    "full Fashion-MNIST ({} + {} images) loaded in {secs:.3} s",
                    quarc::data::Dataset::len(&a),
                    quarc::data::Dataset::len(&b)
                );
                writeln!(
                    log,
                    "{{\"bench\":\"fashion_mnist_load\",\"seconds\":{secs:.4},\"cpu\":\"{cpu}\"}}"
                )?;
            }
            (Err(e), _) | (_, Err(e)) => println!("full Fashion-MNIST not available: {e}"),
        }
    }

    let models: [(&str, Build, [usize; 4], usize); 4] = [
        ("small_cnn", small, [64, 1, 28, 28], 10),
        ("resnet20", r20, [64, 3, 32, 32], 10),
        ("mobilenet_v2_0.5", mnv2, [64, 3, 32, 32], 100),
        ("resnet18", r18, [64, 3, 32, 32], 10),
    ];
    let configs: [(&str, Option<QatConfig>); 3] = [
        ("fp32", None),
        ("w4a4", Some(QatConfig::lsq(4, 4)?)),
        ("w2a2", Some(QatConfig::lsq(2, 2)?)),
    ];
    println!(
        "{:<18} {:<6} {:<7} {:>12} {:>14} {:>12}",
        "model", "quant", "conv", "params", "fwd+bwd ms", "images/s"
    );
    let engines = [("quarc", CpuConvEngine::Quarc), ("candle", CpuConvEngine::Candle)];
    for (name, build, shape, classes) in models {
        for (qname, qat) in &configs {
            for (ename, engine) in engines {
                set_cpu_engine(engine);
                let key = format!("\"model\":\"{name}\",\"quant\":\"{qname}\",\"conv\":\"{ename}\"");
                if done.contains(&key) {
                    continue;
                }
                let v = VarMap::new();
                let m = build(&v, qat.clone())?;
                let params = quarc::models::checkpoint::count_parameters(&v);
                let mut r = SplitMix64::new(1);
                let n: usize = shape.iter().product();
                let x = Tensor::from_vec(
                    (0..n).map(|_| r.next_f64() as f32).collect::<Vec<_>>(),
                    &shape,
                    &Device::Cpu,
                )?;
                let y = Tensor::from_vec(
                    (0..shape[0] as u32).map(|i| i % classes as u32).collect::<Vec<_>>(),
                    shape[0],
                    &Device::Cpu,
                )?;
                m.calibrate(&x)?;
                let step = || -> Result<f64, Box<dyn std::error::Error>> {
                    let t0 = Instant::now();
                    // as the trainer's step: Winograd layers keep their tiles for the weight gradient
                    let logits = quarc::kernels::keeping_winograd_tiles(|| m.forward_mode(&x, Mode::Train))?.logits;
                    let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
                    let grads = loss.backward()?;
                    drop(grads);
                    Ok(t0.elapsed().as_secs_f64())
                };
                step()?; // warm-up
                let mut times: Vec<f64> = (0..reps).map(|_| step()).collect::<Result<_, _>>()?;
                times.sort_by(|a, b| a.total_cmp(b));
                let median = times[times.len() / 2];
                let ips = shape[0] as f64 / median;
                println!(
                    "{name:<18} {qname:<6} {ename:<7} {params:>12} {:>14.1} {ips:>12.1}",
                    median * 1e3
                );
                writeln!(
                    log,
                    "{{\"bench\":\"fwd_bwd\",{key},\"batch\":{},\"params\":{params},\"median_ms\":{:.2},\"images_per_s\":{ips:.2},\"reps\":{reps},\"dtype\":\"{:?}\",\"cpu\":\"{cpu}\"}}",
                    shape[0],
                    median * 1e3,
                    DType::F32
                )?;
                log.flush()?;
            }
        }
    }
    Ok(())
}
