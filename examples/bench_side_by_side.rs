//! quarc's half of the side-by-side benchmark against PyTorch (`bench/torch_side_by_side.py` is
//! the other half with identical workloads; `bench/run.sh` runs both interleaved and prints the
//! ratio table). One JSON line per workload is appended to `--out`:
//! `{"side":"quarc","workload":…,"unit":…,"value":…,"higher_is_better":…,"median_s":…,"runs_s":[…]}`.
//!
//! `cargo run --release --example bench_side_by_side -- --group conv --reps 5 --out bench/results/x.jsonl`
//!
//! `--device cuda` (build with `--features cuda`) runs the gemm, conv (candle's convolution and the
//! gradients its autograd computes; dense layers), fake_quant, step and scoring groups on the first GPU
//! and waits for it after every timed run; `scripts/gpu-check.sh` pairs it with
//! `bench/torch_side_by_side.py --device cuda` on the same GPU.
//!
//! Groups: `gemm`, `conv` (forward, input gradient, weight gradient per layer), `norm` (training-mode
//! BatchNorm + ReLU forward, and forward + backward), `fake_quant` (LSQ
//! forward+backward), `step` (QAT training steps), `scoring` (scoring passes, like for like and with
//! cached reference logits), `selection`, and `memory-<model>-<quant>` (peak RSS of a training
//! step; run one per process).

use std::io::Write;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use clap::Parser;
use quarc::coreset::{Budget, ClassBalanced, SelectContext, Selector, TopK};
use quarc::kernels::{Activation, Conv2dParams, batch_norm_train, conv2d, conv2d_grad_input, conv2d_grad_weight};
use quarc::models::{MobileNetV2, Mode, Model, ResNet, SmallCnn};
use quarc::quant_core::functional::{error_vector_norm, kl_per_sample, probability_distance};
use quarc::quant_core::{
    Backend, Granularity, LsqOptions, QRange, QatConfig, SplitMix64, lsq_fake_quant, lsq_grad_scale,
};
use quarc::train::{GroupPolicy, Optimizer, OptimizerConfig};

#[derive(Parser)]
#[command(about = "quarc's half of the side-by-side benchmark against PyTorch")]
struct Args {
    /// Workload group (gemm, conv, norm, fake_quant, step, scoring, selection, memory-<model>-<quant>, all)
    #[arg(long, default_value = "all")]
    group: String,
    /// Timed repetitions per workload (after one warm-up); the median is reported
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// JSONL file the results are appended to
    #[arg(long, default_value = "bench/results/latest.jsonl")]
    out: String,
    /// Only workloads whose name contains this
    #[arg(long)]
    filter: Option<String>,
    /// Device of the gemm, fake_quant, step and scoring groups: cpu or cuda (needs `--features cuda`)
    #[arg(long, default_value = "cpu")]
    device: String,
}

struct Recorder {
    out: std::fs::File,
    reps: usize,
    filter: Option<String>,
    /// Where the timed work runs; waited for after each run so that GPU time is counted.
    device: Device,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

impl Recorder {
    fn wants(&self, name: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| name.contains(f.as_str()))
    }

    /// Times `f` (one warm-up, then `reps` runs) and records `work / median` in `unit`
    /// (`work = 0` records the median time in ms instead, lower is better).
    fn measure(&mut self, name: &str, unit: &str, work: f64, mut f: impl FnMut() -> Res<()>) -> Res<()> {
        if !self.wants(name) {
            return Ok(());
        }
        f()?;
        self.device.synchronize()?;
        let mut runs = Vec::with_capacity(self.reps);
        for _ in 0..self.reps {
            let t0 = Instant::now();
            f()?;
            self.device.synchronize()?;
            runs.push(t0.elapsed().as_secs_f64());
        }
        let mut sorted = runs.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let median = sorted[sorted.len() / 2];
        let (value, higher) = if work > 0.0 {
            (work / median, true)
        } else {
            (median * 1e3, false)
        };
        println!("{name:<44} {value:>10.2} {unit}");
        let runs_s: Vec<String> = runs.iter().map(|r| format!("{r:.5}")).collect();
        let device = device_name(&self.device);
        writeln!(
            self.out,
            "{{\"side\":\"quarc\",\"device\":\"{device}\",\"workload\":\"{name}\",\"unit\":\"{unit}\",\"value\":{value:.4},\"higher_is_better\":{higher},\"median_s\":{median:.6},\"runs_s\":[{}]}}",
            runs_s.join(",")
        )?;
        self.out.flush()?;
        Ok(())
    }
}

fn device_name(device: &Device) -> &'static str {
    if device.is_cuda() {
        "cuda"
    } else if device.is_metal() {
        "metal"
    } else {
        "cpu"
    }
}

fn seeded(seed: u64, dims: &[usize], scale: f64) -> Res<Tensor> {
    let mut r = SplitMix64::new(seed);
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| ((r.next_f64() * 2.0 - 1.0) * scale) as f32).collect();
    Ok(Tensor::from_vec(v, dims, &Device::Cpu)?)
}

fn labels(n: usize, classes: usize) -> Res<Tensor> {
    Ok(Tensor::from_vec(
        (0..n as u32).map(|i| i % classes as u32).collect::<Vec<_>>(),
        n,
        &Device::Cpu,
    )?)
}

fn gemm(rec: &mut Recorder) -> Res<()> {
    let n = 2048;
    let a = seeded(1, &[n, n], 1.0)?.to_device(&rec.device)?;
    let b = seeded(2, &[n, n], 1.0)?.to_device(&rec.device)?;
    let flop = 2.0 * (n * n * n) as f64 / 1e9;
    rec.measure("gemm/2048", "GFLOP/s", flop, || {
        quarc::kernels::matmul(&a, &b)?;
        Ok(())
    })?;
    // candle's own `matmul` (the `gemm` crate), which quarc's conv layers still use in places
    rec.measure("gemm/2048-candle", "GFLOP/s", flop, || {
        a.matmul(&b)?;
        Ok(())
    })
}

/// (name, batch, c_in, c_out, hw, k, stride, groups, input gradient needed)
type ConvLayer = (&'static str, usize, usize, usize, usize, usize, usize, usize, bool);

/// The conv workloads; `bench/torch_side_by_side.py` holds the same list.
const CONV_LAYERS: [ConvLayer; 16] = [
    ("r18-64x64@32-s1", 64, 64, 64, 32, 3, 1, 1, true),
    ("r18-128x128@16-s1", 64, 128, 128, 16, 3, 1, 1, true),
    ("r18-256x256@8-s1", 64, 256, 256, 8, 3, 1, 1, true),
    ("r18-512x512@4-s1", 64, 512, 512, 4, 3, 1, 1, true),
    ("r18-64x128@32-s2", 64, 64, 128, 32, 3, 2, 1, true),
    ("r18-128x256@16-s2", 64, 128, 256, 16, 3, 2, 1, true),
    ("r18-1x1-64x128@32-s2", 64, 64, 128, 32, 1, 2, 1, true),
    ("r18-1x1-128x256@16-s2", 64, 128, 256, 16, 1, 2, 1, true),
    ("r18-1x1-256x512@8-s2", 64, 256, 512, 8, 1, 2, 1, true),
    ("smallcnn-1x32@28-s1", 128, 1, 32, 28, 3, 1, 1, false),
    ("smallcnn-32x64@28-s2", 128, 32, 64, 28, 3, 2, 1, true),
    ("smallcnn-64x128@14-s2", 128, 64, 128, 14, 3, 2, 1, true),
    ("mbv2-pw-16x96@32", 64, 16, 96, 32, 1, 1, 1, true),
    ("mbv2-dw-96@32-s2", 64, 96, 96, 32, 3, 2, 96, true),
    ("mbv2-pw-96x16@16", 64, 96, 16, 16, 1, 1, 1, true),
    ("mbv2-dw-192@8-s1", 64, 192, 192, 8, 3, 1, 192, true),
];

fn conv(rec: &mut Recorder) -> Res<()> {
    for (i, &(name, batch, c_in, c_out, hw, k, stride, groups, needs_dx)) in CONV_LAYERS.iter().enumerate() {
        let p = Conv2dParams {
            padding: k / 2,
            stride,
            dilation: 1,
            groups,
        };
        let dev = rec.device.clone();
        let x = seeded(10 + i as u64, &[batch, c_in, hw, hw], 1.0)?.to_device(&dev)?;
        let w = seeded(100 + i as u64, &[c_out, c_in / groups, k, k], 0.1)?.to_device(&dev)?;
        let y = conv2d(&x, &w, &p)?;
        let dy = seeded(200 + i as u64, y.dims(), 1.0)?.to_device(&dev)?;
        let gflop = 2.0 * (y.elem_count() * c_in / groups * k * k) as f64 / 1e9;
        rec.measure(&format!("conv/{name}/fwd"), "GFLOP/s", gflop, || {
            conv2d(&x, &w, &p)?;
            Ok(())
        })?;
        // Off the CPU the gradients are candle's own (what its autograd runs), dense layers only.
        let on_cpu = dev.is_cpu();
        if !on_cpu && groups != 1 {
            continue;
        }
        if needs_dx {
            rec.measure(&format!("conv/{name}/grad_input"), "GFLOP/s", gflop, || {
                if on_cpu {
                    conv2d_grad_input(&dy, &w, (hw, hw), &p)?;
                } else {
                    let out_padding = hw - ((dy.dim(2)? - 1) * stride + k - 2 * p.padding);
                    dy.conv_transpose2d(&w, p.padding, out_padding, stride, 1)?;
                }
                Ok(())
            })?;
        }
        rec.measure(&format!("conv/{name}/grad_weight"), "GFLOP/s", gflop, || {
            if on_cpu {
                conv2d_grad_weight(&x, &dy, (k, k), &p)?;
            } else {
                let g = x
                    .transpose(0, 1)?
                    .conv2d(&dy.transpose(0, 1)?, p.padding, 1, stride, 1)?;
                g.transpose(0, 1)?.narrow(2, 0, k)?.narrow(3, 0, k)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Training-mode BatchNorm + activation layers of the step models: name, batch, channels, side, ReLU6.
const NORM_LAYERS: [(&str, usize, usize, usize, bool); 4] = [
    ("r18-64@32", 64, 64, 32, false),
    ("r18-128@16", 64, 128, 16, false),
    ("r18-512@4", 64, 512, 4, false),
    ("mbv2-144@16", 64, 144, 16, true),
];

/// BatchNorm + ReLU(6) in training mode: the forward alone, then forward and backward of the loss
/// `Σ y·dy` (the same graph on the PyTorch side).
fn norm(rec: &mut Recorder) -> Res<()> {
    for (i, &(name, batch, c, hw, relu6)) in NORM_LAYERS.iter().enumerate() {
        let dev = rec.device.clone();
        let act = if relu6 { Activation::Relu6 } else { Activation::Relu };
        let x = Var::from_tensor(&seeded(300 + i as u64, &[batch, c, hw, hw], 1.0)?.to_device(&dev)?)?;
        let gamma = Var::from_tensor(&(seeded(400 + i as u64, &[c], 0.5)? + 1.0)?.to_device(&dev)?)?;
        let beta = Var::from_tensor(&seeded(500 + i as u64, &[c], 0.5)?.to_device(&dev)?)?;
        let dy = seeded(600 + i as u64, x.dims(), 1.0)?.to_device(&dev)?;
        let melem = x.elem_count() as f64 / 1e6;
        rec.measure(&format!("norm/{name}/fwd"), "Melem/s", melem, || {
            batch_norm_train(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-5, act)?;
            Ok(())
        })?;
        rec.measure(&format!("norm/{name}/fwd+bwd"), "Melem/s", melem, || {
            let (y, _) = batch_norm_train(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-5, act)?;
            (y * &dy)?.sum_all()?.backward()?;
            Ok(())
        })?;
    }
    Ok(())
}

fn fake_quant(rec: &mut Recorder) -> Res<()> {
    let shapes: [(&str, [usize; 4], bool); 2] = [
        ("act-64x256x16x16", [64, 256, 16, 16], false),
        ("weight-512x512x3x3", [512, 512, 3, 3], true),
    ];
    for (name, shape, per_channel) in shapes {
        let numel: usize = shape.iter().product();
        for bits in [2u32, 4] {
            let x = Var::from_tensor(&seeded(7, &shape, 1.0)?.to_device(&rec.device)?)?;
            let (range, granularity, channels) = if per_channel {
                (QRange::signed(bits)?, Granularity::PerChannel { axis: 0 }, shape[0])
            } else {
                (QRange::unsigned(bits)?, Granularity::PerTensor, 1)
            };
            let step = Var::from_tensor(&(Tensor::ones(channels, DType::F32, &rec.device)? * 0.1)?)?;
            let opts = LsqOptions {
                grad_scale: lsq_grad_scale(numel / channels, range),
                granularity,
                backend: Backend::Auto,
            };
            rec.measure(
                &format!("fake_quant/{name}/{bits}bit"),
                "Melem/s",
                numel as f64 / 1e6,
                || {
                    let y = lsq_fake_quant(x.as_tensor(), step.as_tensor(), range, opts)?;
                    let grads = y.sum_all()?.backward()?;
                    drop(grads);
                    Ok(())
                },
            )?;
        }
    }
    Ok(())
}

fn build(model: &str, qat: Option<QatConfig>, v: &VarMap, dev: &Device) -> Res<Box<dyn Model>> {
    Ok(match model {
        "resnet18" => Box::new(ResNet::resnet18(v, qat, 10, 0, dev)?),
        "smallcnn" => Box::new(SmallCnn::new(v, qat, 10, 0, dev)?),
        "mobilenetv2" => Box::new(MobileNetV2::new(v, qat, 1.0, 10, 0, dev)?),
        other => return Err(format!("unknown model {other}").into()),
    })
}

fn qat(quant: &str) -> Res<Option<QatConfig>> {
    Ok(match quant {
        "fp32" => None,
        "w4a4" => Some(QatConfig::lsq(4, 4)?),
        "w2a2" => Some(QatConfig::lsq(2, 2)?),
        other => return Err(format!("unknown quantization {other}").into()),
    })
}

fn input_shape(model: &str, batch: usize) -> [usize; 4] {
    if model == "smallcnn" {
        [batch, 1, 28, 28]
    } else {
        [batch, 3, 32, 32]
    }
}

/// One QAT step: forward (train mode), KD loss (KL, T = 1) against fixed teacher logits,
/// backward, SGD with momentum 0.9 and weight decay 5e-4 on conv/linear weights.
fn train_step_runner(model: &str, quant: &str, batch: usize, dev: &Device) -> Res<impl FnMut() -> Res<()> + use<>> {
    let v = VarMap::new();
    let m = build(model, qat(quant)?, &v, dev)?;
    let x = seeded(3, &input_shape(model, batch), 1.0)?.to_device(dev)?;
    let teacher = seeded(4, &[batch, 10], 2.0)?.to_device(dev)?;
    m.calibrate(&x)?;
    let mut opt = Optimizer::new(
        OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        GroupPolicy::default().groups(&v),
    )?;
    Ok(move || -> Res<()> {
        // as the trainer's step: the Winograd layers keep their tiles for the weight gradient
        let logits = quarc_kernels::keeping_winograd_tiles(|| m.forward_mode(&x, Mode::Train))?.logits;
        let loss = kl_per_sample(&teacher, &logits, 1.0)?.mean_all()?;
        let grads = loss.backward()?;
        opt.step(&grads, 0.01)?;
        Ok(())
    })
}

fn step(rec: &mut Recorder) -> Res<()> {
    for (model, quant, batch) in [
        ("resnet18", "fp32", 64),
        ("resnet18", "w4a4", 64),
        ("resnet18", "w2a2", 64),
        ("smallcnn", "w2a2", 128),
        ("mobilenetv2", "w4a4", 64),
    ] {
        let name = format!("step/{model}-{quant}-b{batch}");
        if !rec.wants(&name) {
            continue;
        }
        let mut run = train_step_runner(model, quant, batch, &rec.device.clone())?;
        rec.measure(&name, "images/s", batch as f64, &mut run)?;
    }
    Ok(())
}

fn scoring(rec: &mut Recorder) -> Res<()> {
    for model in ["resnet18", "smallcnn"] {
        let batch = 256;
        let (vf, vq) = (VarMap::new(), VarMap::new());
        let dev = rec.device.clone();
        let reference = build(model, None, &vf, &dev)?;
        let student = build(model, qat("w2a2")?, &vq, &dev)?;
        let x = seeded(5, &input_shape(model, batch), 1.0)?.to_device(&dev)?;
        let y = labels(batch, 10)?.to_device(&dev)?;
        reference.calibrate(&x)?;
        student.calibrate(&x)?;
        let scores = |q: &Tensor, f: &Tensor| -> Res<()> {
            let evs = error_vector_norm(q, &y)?.to_vec1::<f32>()?;
            let ds = probability_distance(q, f)?.to_vec1::<f32>()?;
            let res = kl_per_sample(q, f, 1.0)?.to_vec1::<f32>()?;
            assert_eq!(evs.len() + ds.len() + res.len(), 3 * batch);
            Ok(())
        };
        rec.measure(
            &format!("scoring/{model}-w2a2-b{batch}"),
            "images/s",
            batch as f64,
            || {
                let f = reference.forward_mode(&x, Mode::Eval)?.logits.detach();
                let q = student.forward_mode(&x, Mode::Eval)?.logits.detach();
                scores(&q, &f)
            },
        )?;
        let cached = reference.forward_mode(&x, Mode::Eval)?.logits.detach();
        rec.measure(
            &format!("scoring/{model}-w2a2-b{batch}-cached-reference"),
            "images/s",
            batch as f64,
            || {
                let q = student.forward_mode(&x, Mode::Eval)?.logits.detach();
                scores(&q, &cached)
            },
        )?;
    }
    Ok(())
}

fn selection(rec: &mut Recorder) -> Res<()> {
    let n = 1_280_000;
    let mut rng = SplitMix64::new(1);
    let scores: Vec<f32> = (0..n).map(|_| rng.next_f64() as f32).collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.below(1000) as u32).collect();
    let ctx = SelectContext { seed: 0, epoch: 0 };
    let balanced = ClassBalanced::new(TopK::highest());
    rec.measure("selection/class-balanced-top10pct-1.28M-1000", "ms", 0.0, || {
        let s = balanced.select(&scores, &labels, Budget::Fraction(0.1), &ctx)?;
        // Σ_c round(0.1·n_c), close to 128 000 (the PyTorch side uses the same per-class rule)
        assert!(s.indices.len().abs_diff(128_000) < 1_000);
        Ok(())
    })
}

/// Peak resident memory (VmHWM) of a process that builds the model and runs training steps.
fn memory(rec: &mut Recorder, spec: &str) -> Res<()> {
    let mut parts = spec.splitn(2, '-');
    let (model, quant) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let batch = if model == "smallcnn" { 128 } else { 64 };
    let mut run = train_step_runner(model, quant, batch, &Device::Cpu)?;
    for _ in 0..3 {
        run()?;
    }
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or("no VmHWM in /proc/self/status")?;
    let mib = kb / 1024.0;
    let name = format!("memory/{model}-{quant}-b{batch}-peak-rss");
    println!("{name:<44} {mib:>10.1} MiB");
    writeln!(
        rec.out,
        "{{\"side\":\"quarc\",\"workload\":\"{name}\",\"unit\":\"MiB\",\"value\":{mib:.1},\"higher_is_better\":false,\"median_s\":0,\"runs_s\":[]}}"
    )?;
    Ok(())
}

fn main() -> Res<()> {
    quarc::runtime::retain_freed_memory();
    let args = Args::parse();
    if let Some(dir) = std::path::Path::new(&args.out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = std::fs::OpenOptions::new().create(true).append(true).open(&args.out)?;
    let mut rec = Recorder {
        out,
        reps: args.reps.max(1),
        filter: args.filter,
        device: quarc_harness::cifar::device(&args.device)?,
    };
    eprintln!(
        "quarc side: device {}, rayon threads {}, quarc kernels' vectors {}",
        args.device,
        rayon::current_num_threads(),
        quarc::kernels::vector_isa()
    );
    let g = args.group.as_str();
    if let Some(spec) = g.strip_prefix("memory-") {
        return memory(&mut rec, spec);
    }
    let all = g == "all";
    if !rec.device.is_cpu() && g == "selection" {
        return Err("the selection group runs on the CPU only (selection is host-side)".into());
    }
    let on_cpu = rec.device.is_cpu();
    if all || g == "gemm" {
        gemm(&mut rec)?;
    }
    if all || g == "conv" {
        conv(&mut rec)?;
    }
    if all || g == "norm" {
        norm(&mut rec)?;
    }
    if all || g == "fake_quant" {
        fake_quant(&mut rec)?;
    }
    if all || g == "step" {
        step(&mut rec)?;
    }
    if all || g == "scoring" {
        scoring(&mut rec)?;
    }
    if (all && on_cpu) || g == "selection" {
        selection(&mut rec)?;
    }
    Ok(())
}
