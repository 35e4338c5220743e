//! CUDA against CPU: the composed ops that run on a GPU give what the fused CPU kernels give.
//!
//! Built only with `--features cuda`. Each test asks for CUDA device 0 and, when there is none,
//! prints `skipped: no CUDA device (…)` and passes — unless `QUARC_REQUIRE_GPU=1` is set (the GPU
//! check script sets it), where a missing device is a failure.
//!
//! What is compared, and how closely:
//! - fake-quant forward: bit for bit (element-wise IEEE ops on both sides, no fast math);
//! - gradients, convolutions, losses: to float rounding (reductions run in another order on a GPU);
//! - scoring on the same model outputs: scores to 1e-5 of the largest (plus 5e-6 absolute: KL of f32
//!   log-probabilities) and the same coreset, except for samples tied with the boundary to that tolerance;
//! - a whole scoring pass (models on each device): scores to 1e-2 relative — a 2-bit activation
//!   quantizer can turn a last-bit difference of its input into a whole step — and at least 80 % of
//!   the same picks;
//! - training steps: the same losses, step by step, to a tolerance that grows with the steps;
//! - a checkpoint written from GPU tensors and read on CPU: bit for bit.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Conv2dConfig, VarMap};
use quarc::coreset::{Budget, ClassBalanced, Coreset, RelativeEntropy, ScoreInput, SelectionSchedule, TopK};
use quarc::models::{Mode, Model, SmallCnn, checkpoint};
use quarc::quant_core::functional::kl_per_sample;
use quarc::quant_core::{
    Backend, Granularity, LayerPosition, LsqOptions, ModelOutput, ParamStore, Progress, QConv2d, QLinear, QRange,
    QatConfig, SplitMix64, fake_quant, lsq_fake_quant, lsq_plus_fake_quant, pact_fake_quant,
};
use quarc::train::{GroupPolicy, Optimizer, OptimizerConfig};

type Res = Result<(), Box<dyn std::error::Error>>;

/// CUDA device 0, or `None` (test skipped) when there is none and the GPU is not required.
fn gpu(test: &str) -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            let required = std::env::var("QUARC_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "{test}: QUARC_REQUIRE_GPU=1 but no CUDA device: {e}");
            eprintln!("{test}: skipped: no CUDA device ({e})");
            None
        }
    }
}

fn seeded(seed: u64, dims: &[usize], lo: f64, hi: f64) -> candle_core::Result<Tensor> {
    let mut r = SplitMix64::new(seed);
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (lo + (hi - lo) * r.next_f64()) as f32).collect();
    Tensor::from_vec(v, dims, &Device::Cpu)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_device(&Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("tensor to host")
}

/// max |a − b| / max(max |a|, floor).
fn rel_err(a: &Tensor, b: &Tensor, floor: f32) -> f32 {
    let (a, b) = (values(a), values(b));
    assert_eq!(a.len(), b.len(), "shapes differ");
    let scale = a.iter().fold(floor, |m, v| m.max(v.abs()));
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn assert_bitwise(a: &Tensor, b: &Tensor, what: &str) {
    let (a, b) = (values(a), values(b));
    let differ: Vec<usize> = (0..a.len()).filter(|&i| a[i].to_bits() != b[i].to_bits()).collect();
    assert!(
        differ.is_empty(),
        "{what}: {} of {} elements differ; first: {:?}",
        differ.len(),
        a.len(),
        differ.iter().take(5).map(|&i| (i, a[i], b[i])).collect::<Vec<_>>()
    );
}

/// A fake-quant op under test: output for (x, step, offset) on whatever device they are on.
type FakeQuant = dyn Fn(&Tensor, &Tensor, &Tensor) -> quarc::quant_core::Result<Tensor>;

/// Runs `op` with x, step and offset as variables on `dev`; returns y and the three gradients of Σ w·y.
fn run_op(op: &FakeQuant, inputs: [&Tensor; 4], dev: &Device) -> Result<[Tensor; 4], Box<dyn std::error::Error>> {
    let [x, s, o, w] = inputs;
    let (x, s, o) = (
        Var::from_tensor(&x.to_device(dev)?)?,
        Var::from_tensor(&s.to_device(dev)?)?,
        Var::from_tensor(&o.to_device(dev)?)?,
    );
    let y = op(x.as_tensor(), s.as_tensor(), o.as_tensor())?;
    let grads = (&y * w.to_device(dev)?)?.sum_all()?.backward()?;
    let grad = |v: &Var| {
        grads
            .get(v.as_tensor())
            .cloned()
            .unwrap_or_else(|| v.as_tensor().zeros_like().expect("zeros"))
    };
    Ok([y, grad(&x), grad(&s), grad(&o)])
}

#[test]
fn every_quantizer_on_cuda_matches_the_fused_cpu_kernel() -> Res {
    let Some(cuda) = gpu("quantizers") else { return Ok(()) };
    let shape = [8usize, 16, 9, 9];
    let per_channel = Granularity::PerChannel { axis: 0 };
    let cases: Vec<(&str, Box<FakeQuant>, usize)> = vec![
        (
            "lsq 2-bit unsigned per-tensor",
            Box::new(|x, s, _| lsq_fake_quant(x, s, QRange::unsigned(2)?, opts(Granularity::PerTensor))),
            1,
        ),
        (
            "lsq 4-bit signed per-channel",
            Box::new(move |x, s, _| lsq_fake_quant(x, s, QRange::signed(4)?, opts(per_channel))),
            shape[0],
        ),
        (
            "lsq+ 3-bit signed per-tensor",
            Box::new(|x, s, o| lsq_plus_fake_quant(x, s, o, QRange::signed(3)?, opts(Granularity::PerTensor))),
            1,
        ),
        (
            "lsq+ 2-bit unsigned per-channel",
            Box::new(move |x, s, o| lsq_plus_fake_quant(x, s, o, QRange::unsigned(2)?, opts(per_channel))),
            shape[0],
        ),
        ("pact 4-bit", Box::new(|x, s, _| pact_fake_quant(x, &(s * 8.0)?, 4)), 1),
        (
            "uniform 8-bit signed per-channel",
            Box::new(move |x, s, o| fake_quant(x, s, Some(o), QRange::signed(8)?, per_channel)),
            shape[0],
        ),
    ];
    for (i, (name, op, channels)) in cases.iter().enumerate() {
        let x = seeded(10 + i as u64, &shape, -2.0, 2.0)?;
        let s = seeded(20 + i as u64, &[*channels], 0.1, 0.4)?;
        let o = seeded(30 + i as u64, &[*channels], -0.2, 0.2)?;
        let w = seeded(40 + i as u64, &shape, -1.0, 1.0)?;
        let cpu = run_op(op.as_ref(), [&x, &s, &o, &w], &Device::Cpu)?;
        let gpu = run_op(op.as_ref(), [&x, &s, &o, &w], &cuda)?;
        assert!(gpu[0].device().is_cuda(), "{name}: output left the GPU");
        assert_bitwise(&cpu[0], &gpu[0], &format!("{name}: forward"));
        // The composed input gradient is (w·s)/s where the fused kernel passes w: 1 ulp apart at most.
        let e = rel_err(&cpu[1], &gpu[1], 1.0);
        assert!(e < 1e-6, "{name}: input gradient differs by {e} (relative)");
        // Step and offset gradients are sums over all elements, added in another order on the GPU:
        // compared against the sum of the magnitudes of their terms (≤ |w|·8 each), as in ste_parity.
        let l1 = values(&w).iter().map(|v| 8.0 * v.abs()).sum::<f32>();
        for (k, what) in [(2, "step"), (3, "offset")] {
            let (a, b) = (values(&cpu[k]), values(&gpu[k]));
            let e = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / l1;
            assert!(
                e < 1e-6,
                "{name}: {what} gradient differs by {e} of Σ|terms| ({a:?} vs {b:?})"
            );
        }
    }
    Ok(())
}

fn opts(granularity: Granularity) -> LsqOptions {
    LsqOptions {
        grad_scale: 0.05,
        granularity,
        backend: Backend::Auto,
    }
}

/// Copies every variable of `from` into the variable of the same name in `to` (on `to`'s device).
fn copy_vars(from: &VarMap, to: &VarMap) -> Res {
    let src = from.data().lock().map_err(|_| "lock")?;
    let dst = to.data().lock().map_err(|_| "lock")?;
    assert_eq!(src.len(), dst.len(), "the two maps hold different variables");
    for (name, v) in src.iter() {
        let target = dst.get(name).ok_or_else(|| format!("{name} missing"))?;
        target.set(&v.as_tensor().to_device(target.device())?)?;
    }
    Ok(())
}

/// A quantized conv and linear built on `dev`, calibrated on `x`; their map.
fn qlayers(dev: &Device, x: &Tensor) -> Result<(VarMap, QConv2d, QLinear), Box<dyn std::error::Error>> {
    let vm = VarMap::new();
    let store = ParamStore::new(&vm, DType::F32, dev);
    let qat = QatConfig::lsq(2, 2)?;
    let cfg = Conv2dConfig {
        padding: 1,
        stride: 2,
        ..Default::default()
    };
    let conv = QConv2d::new(
        16,
        32,
        3,
        cfg,
        true,
        &qat.layer(LayerPosition::Middle),
        &store.pp("conv"),
    )?;
    let lin = QLinear::new(32, 10, true, &qat.layer(LayerPosition::Middle), &store.pp("fc"))?;
    let x = x.to_device(dev)?;
    conv.calibrate(&x)?;
    lin.calibrate(&conv.forward_t(&x, false)?.relu()?.mean((2, 3))?)?;
    Ok((vm, conv, lin))
}

#[test]
fn qconv2d_and_qlinear_forward_and_backward_match_cpu() -> Res {
    let Some(cuda) = gpu("qlayers") else { return Ok(()) };
    let x = seeded(1, &[4, 16, 12, 12], 0.0, 1.5)?;
    let (vm_cpu, conv_c, lin_c) = qlayers(&Device::Cpu, &x)?;
    let (vm_gpu, conv_g, lin_g) = qlayers(&cuda, &x)?;
    copy_vars(&vm_cpu, &vm_gpu)?; // the same weights and steps on both devices
    let forward = |dev: &Device, conv: &QConv2d, lin: &QLinear, vm: &VarMap| -> candle_core::Result<_> {
        let xs = x.to_device(dev)?;
        let h = conv.forward_t(&xs, true)?.relu()?;
        let y = lin
            .forward_t(&h.mean((2, 3))?, true)
            .map_err(candle_core::Error::wrap)?;
        let grads = y.sqr()?.sum_all()?.backward()?;
        let named: Vec<(String, Tensor)> = vm
            .data()
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|(n, v)| grads.get(v.as_tensor()).map(|g| (n.clone(), g.clone())))
            .collect();
        Ok((h, y, named))
    };
    let (h_c, y_c, g_c) = forward(&Device::Cpu, &conv_c, &lin_c, &vm_cpu)?;
    let (h_g, y_g, g_g) = forward(&cuda, &conv_g, &lin_g, &vm_gpu)?;
    assert!(
        rel_err(&h_c, &h_g, 1e-3) < 1e-5,
        "conv output {}",
        rel_err(&h_c, &h_g, 1e-3)
    );
    assert!(
        rel_err(&y_c, &y_g, 1e-3) < 1e-4,
        "linear output {}",
        rel_err(&y_c, &y_g, 1e-3)
    );
    let mut g_g: std::collections::HashMap<_, _> = g_g.into_iter().collect();
    assert!(
        g_c.len() >= 6,
        "expected gradients for weights, biases and steps, got {}",
        g_c.len()
    );
    for (name, gc) in &g_c {
        let gg = g_g.remove(name).ok_or_else(|| format!("no CUDA gradient for {name}"))?;
        let e = rel_err(gc, &gg, 1e-6);
        assert!(e < 1e-3, "gradient of {name} differs by {e} (relative)");
    }
    Ok(())
}

/// A W2A2 student and its FP reference (SmallCnn, seeded) on `dev`, calibrated on `x`.
fn models(dev: &Device, x: &Tensor) -> Result<[(VarMap, Box<dyn Model>); 2], Box<dyn std::error::Error>> {
    let (vf, vq) = (VarMap::new(), VarMap::new());
    // Another seed than the student's: RES scores (KL) well away from 0, where f32 cancellation rules.
    let reference: Box<dyn Model> = Box::new(SmallCnn::new(&vf, None, 10, 8, dev)?);
    let student: Box<dyn Model> = Box::new(SmallCnn::new(&vq, Some(QatConfig::lsq(2, 2)?), 10, 7, dev)?);
    reference.calibrate(&x.to_device(dev)?)?;
    student.calibrate(&x.to_device(dev)?)?;
    Ok([(vf, reference), (vq, student)])
}

/// Scores 256 samples with RES (KL of student from reference) on `dev` and selects a class-balanced top 10 %.
fn score_and_select(
    dev: &Device,
    outputs: impl Fn(&Tensor) -> candle_core::Result<(ModelOutput, ModelOutput)>,
    x: &Tensor,
    labels: &[u32],
) -> Result<(Vec<f32>, Vec<usize>), Box<dyn std::error::Error>> {
    let mut coreset = Coreset::new(
        Box::new(RelativeEntropy::default()),
        Box::new(ClassBalanced::new(TopK::highest())),
        SelectionSchedule::one_shot(),
        Budget::Fraction(0.1),
        labels.to_vec(),
        10,
        3,
    )?;
    coreset.begin_scoring(Progress::new(0, 1))?;
    for start in (0..labels.len()).step_by(64) {
        let idx: Vec<usize> = (start..start + 64).collect();
        let yb = Tensor::from_slice(&labels[start..start + 64], 64, dev)?;
        let (reference, student) = outputs(&x.narrow(0, start, 64)?)?;
        assert!(
            student.logits.device().same_device(dev),
            "scores must be computed on {dev:?}"
        );
        coreset.feed(&ScoreInput {
            indices: &idx,
            labels: &yb,
            student: &student,
            reference: Some(&reference),
        })?;
    }
    let selected = coreset.select()?.indices.clone();
    let table = coreset.table().ok_or("no score table")?;
    Ok((table.column(0).to_vec(), selected))
}

/// The logits of both models (reference, student) computed on `on`, handed over on `to`.
fn outputs_of<'a>(
    pair: &'a [(VarMap, Box<dyn Model>); 2],
    on: &'a Device,
    to: &'a Device,
) -> impl Fn(&Tensor) -> candle_core::Result<(ModelOutput, ModelOutput)> + 'a {
    move |xb: &Tensor| {
        let xb = xb.to_device(on)?;
        let run = |m: &dyn Model| -> candle_core::Result<ModelOutput> {
            let logits = m
                .forward_mode(&xb, Mode::Eval)
                .map_err(candle_core::Error::wrap)?
                .logits;
            Ok(ModelOutput::logits_only(logits.to_device(to)?))
        };
        Ok((run(pair[0].1.as_ref())?, run(pair[1].1.as_ref())?))
    }
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Every sample picked by one side only is tied, to `tol`, with the weakest pick of its class.
fn assert_same_coreset_up_to_ties(sel_a: &[usize], sel_b: &[usize], scores: &[f32], labels: &[u32], tol: f32) {
    assert_eq!(sel_a.len(), sel_b.len());
    let only_one = sel_a
        .iter()
        .filter(|i| !sel_b.contains(i))
        .chain(sel_b.iter().filter(|i| !sel_a.contains(i)));
    for &i in only_one {
        let weakest = sel_a
            .iter()
            .filter(|&&j| labels[j] == labels[i])
            .map(|&j| scores[j])
            .fold(f32::INFINITY, f32::min);
        assert!(
            (scores[i] - weakest).abs() <= tol,
            "sample {i} differs between the coresets but is no tie"
        );
    }
}

#[test]
fn scoring_and_selection_on_cuda_pick_the_cpu_coreset() -> Res {
    let Some(cuda) = gpu("scoring") else { return Ok(()) };
    let n = 256;
    let x = seeded(2, &[n, 1, 28, 28], 0.0, 1.0)?;
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 7) % 10).collect();
    let cpu_models = models(&Device::Cpu, &x)?;
    let gpu_models = models(&cuda, &x)?;
    for (c, g) in cpu_models.iter().zip(&gpu_models) {
        copy_vars(&c.0, &g.0)?;
    }
    let cpu = Device::Cpu;
    let (s_cpu, sel_cpu) = score_and_select(&cpu, outputs_of(&cpu_models, &cpu, &cpu), &x, &labels)?;
    // Same scores → same coreset: the CPU models' logits, scored and selected on the GPU.
    let (s_same, sel_same) = score_and_select(&cuda, outputs_of(&cpu_models, &cpu, &cuda), &x, &labels)?;
    // KL from f32 log-probabilities carries ≈ 1e-7·|log p| of absolute error per class: an absolute floor.
    let scale = s_cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
    let tol = 1e-5 * scale + 5e-6;
    let worst = s_cpu.iter().zip(&s_same).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("same logits: largest score {scale}, largest difference {worst}");
    assert!(
        worst <= tol,
        "the same logits scored on CUDA differ by {worst} (largest score {scale})"
    );
    assert_same_coreset_up_to_ties(&sel_cpu, &sel_same, &s_cpu, &labels, tol);
    // The whole pass on the GPU: the models' forward there too.
    let (s_gpu, sel_gpu) = score_and_select(&cuda, outputs_of(&gpu_models, &cuda, &cuda), &x, &labels)?;
    let e = max_rel(&s_cpu, &s_gpu);
    eprintln!("whole scoring pass: max relative score difference {e}");
    assert!(
        e < 1e-2,
        "scores of the whole pass differ by {e} (relative to the largest)"
    );
    let common = sel_cpu.iter().filter(|i| sel_gpu.contains(i)).count();
    assert!(
        common * 10 >= sel_cpu.len() * 8,
        "only {common} of {} picks agree between the CPU and the CUDA pass",
        sel_cpu.len()
    );
    Ok(())
}

/// `steps` SGD steps of the W2A2 SmallCnn under KD against the FP reference; the loss of each step.
fn train_losses(
    dev: &Device,
    pair: &[(VarMap, Box<dyn Model>); 2],
    steps: usize,
) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let mut opt = Optimizer::new(
        OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        GroupPolicy::default().groups(&pair[1].0),
    )?;
    let mut losses = Vec::new();
    for step in 0..steps {
        let xb = seeded(100 + step as u64, &[32, 1, 28, 28], 0.0, 1.0)?.to_device(dev)?;
        let teacher = pair[0].1.forward_mode(&xb, Mode::Eval)?.logits.detach();
        let logits = pair[1].1.forward_mode(&xb, Mode::Train)?.logits;
        let loss = kl_per_sample(&teacher, &logits, 1.0)?.mean_all()?;
        losses.push(loss.to_device(&Device::Cpu)?.to_scalar::<f32>()?);
        opt.step(&loss.backward()?, 0.05)?;
    }
    Ok(losses)
}

#[test]
fn smallcnn_w2a2_training_steps_on_cuda_follow_cpu() -> Res {
    let Some(cuda) = gpu("training") else { return Ok(()) };
    let x = seeded(3, &[64, 1, 28, 28], 0.0, 1.0)?;
    let cpu_models = models(&Device::Cpu, &x)?;
    let gpu_models = models(&cuda, &x)?;
    for (c, g) in cpu_models.iter().zip(&gpu_models) {
        copy_vars(&c.0, &g.0)?;
    }
    let steps = 6;
    let l_cpu = train_losses(&Device::Cpu, &cpu_models, steps)?;
    let l_gpu = train_losses(&cuda, &gpu_models, steps)?;
    eprintln!("losses cpu {l_cpu:?}\nlosses gpu {l_gpu:?}");
    assert!(l_cpu.iter().chain(&l_gpu).all(|l| l.is_finite()), "non-finite loss");
    // Step 0 sees identical weights; later steps drift by float rounding that a 2-bit grid can amplify.
    let first = (l_cpu[0] - l_gpu[0]).abs() / l_cpu[0].abs().max(1e-3);
    assert!(first < 1e-4, "first loss differs by {first} (relative)");
    for (k, (a, b)) in l_cpu.iter().zip(&l_gpu).enumerate() {
        let rel = (a - b).abs() / a.abs().max(1e-3);
        assert!(rel < 2e-2, "loss of step {k}: cpu {a} vs cuda {b}");
    }
    // Training moved the weights on the GPU (and they stayed there).
    let w = gpu_models[1].0.data().lock().map_err(|_| "lock")?["conv2.conv.weight"]
        .as_tensor()
        .clone();
    assert!(w.device().is_cuda());
    Ok(())
}

#[test]
fn a_checkpoint_saved_from_cuda_loads_on_cpu_bit_for_bit() -> Res {
    let Some(cuda) = gpu("checkpoint") else { return Ok(()) };
    let x = seeded(4, &[16, 1, 28, 28], 0.0, 1.0)?;
    let gpu_models = models(&cuda, &x)?;
    let dir = std::env::temp_dir().join(format!("quarc-cuda-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("student.safetensors");
    checkpoint::save(&gpu_models[1].0, &path)?;
    let vm_cpu = VarMap::new();
    let _student = SmallCnn::new(&vm_cpu, Some(QatConfig::lsq(2, 2)?), 10, 99, &Device::Cpu)?;
    let report = checkpoint::load(&vm_cpu, &path)?;
    assert!(report.missing.is_empty() && report.unexpected.is_empty(), "{report:?}");
    let gpu_vars = gpu_models[1].0.data().lock().map_err(|_| "lock")?;
    let cpu_vars = vm_cpu.data().lock().map_err(|_| "lock")?;
    for (name, v) in gpu_vars.iter() {
        assert_bitwise(v.as_tensor(), cpu_vars[name].as_tensor(), name);
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
