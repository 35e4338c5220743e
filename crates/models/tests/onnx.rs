//! The ONNX export run in a real runtime (tract, pure Rust): every built-in model and a user's
//! model, per-tensor and per-channel weights, 2 and 4 bits, against quarc's own evaluation-mode
//! fake-quant forward on the same batch.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use quarc_models::onnx::{OnnxSpec, ToOnnx, to_onnx_bytes};
use quarc_models::{
    Activation, ConvBn, ConvSpec, Layers, LinearSpec, MobileNetV2, Mode, Model, ModelBuilder, ResNet, SmallCnn,
    checkpoint,
};
use quarc_quant_core::{Granularity, LsqConfig, ModelOutput, QLinear, QatConfig, QuantizerConfig, Signedness};
use tract_onnx::prelude::*;

/// Runs the ONNX bytes in tract on `x` (N×C×H×W, values in [0, 1]) and returns the logits.
fn run_tract(bytes: &[u8], x: &Tensor) -> Vec<Vec<f32>> {
    let dims = x.dims().to_vec();
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .unwrap()
        .with_input_fact(0, f32::fact(&dims).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let data = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let input = tract_ndarray::ArrayD::from_shape_vec(dims, data).unwrap();
    let out = model.run(tvec!(input.into_tensor().into())).unwrap();
    let view = out[0].to_plain_array_view::<f32>().unwrap();
    view.outer_iter().map(|row| row.iter().copied().collect()).collect()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// Seeded images in [0, 1].
fn images(seed: u64, dims: &[usize]) -> Tensor {
    let mut rng = quarc_quant_core::SplitMix64::new(seed);
    let n = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.next_f64() as f32).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// Normalises like the data loader (`(x − mean) / std` per channel).
fn normalize(x: &Tensor, mean: &[f32], std: &[f32]) -> Tensor {
    let c = mean.len();
    let m = Tensor::from_slice(mean, (1, c, 1, 1), &Device::Cpu).unwrap();
    let s = Tensor::from_slice(std, (1, c, 1, 1), &Device::Cpu).unwrap();
    x.broadcast_sub(&m).unwrap().broadcast_div(&s).unwrap()
}

/// quarc's eval forward vs tract on the exported file: the logits agree within `tol` of the
/// logits' scale, and the predicted classes are the same.
fn check(model: &(impl Model + ToOnnx), x: &Tensor, mean: &[f32], std: &[f32], qat: &QatConfig, what: &str) -> f32 {
    check_per_image(model, x, mean, std, qat, what).0
}

/// [`check`]'s assertions, and every image's largest logit difference.
fn check_per_image(
    model: &(impl Model + ToOnnx),
    x: &Tensor,
    mean: &[f32],
    std: &[f32],
    qat: &QatConfig,
    what: &str,
) -> (f32, Vec<f32>) {
    let (worst, same, per_image) = compare(model, x, mean, std, qat, what);
    assert_eq!(
        same,
        x.dims()[0],
        "{what}: {same} of {} images predicted alike",
        x.dims()[0]
    );
    (worst, per_image)
}

/// The largest logit difference relative to the largest logit, and how many images got the same
/// class from quarc's eval forward and from tract on the exported file.
fn compare(
    model: &(impl Model + ToOnnx),
    x: &Tensor,
    mean: &[f32],
    std: &[f32],
    qat: &QatConfig,
    what: &str,
) -> (f32, usize, Vec<f32>) {
    let calib = normalize(&images(99, x.dims()), mean, std);
    model.calibrate(&calib).unwrap();
    let (_, c, h, w) = x.dims4().unwrap();
    let spec = OnnxSpec {
        input: [c, h, w],
        normalize: Some((mean.to_vec(), std.to_vec())),
        qat: Some(qat.clone()),
    };
    let (bytes, layers) = to_onnx_bytes(model, &spec).unwrap();
    assert!(
        layers.iter().any(|l| l.weight.is_some()),
        "{what}: no quantized layer exported"
    );
    let ours = model
        .forward_mode(&normalize(x, mean, std), Mode::Eval)
        .unwrap()
        .logits
        .to_vec2::<f32>()
        .unwrap();
    let theirs = run_tract(&bytes, x);
    let scale = ours.iter().flatten().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    let (mut per_image, mut same) = (Vec::new(), 0);
    for (a, b) in ours.iter().zip(&theirs) {
        same += usize::from(argmax(a) == argmax(b));
        per_image.push(a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs() / scale)));
    }
    let worst = per_image.iter().fold(0f32, |m, v| m.max(*v));
    println!(
        "{what}: {same} of {} alike, max |Δ logit| / max |logit| = {worst:.2e} (per image {per_image:?})",
        ours.len()
    );
    (worst, same, per_image)
}

fn w_a(bits: (u32, u32), per_channel: bool) -> QatConfig {
    let mut q = QatConfig::lsq(bits.0, bits.1).unwrap();
    if per_channel {
        let mut w = LsqConfig::new(bits.0, Signedness::Signed);
        w.granularity = Granularity::PerChannel { axis: 0 };
        q.weight = QuantizerConfig::Lsq(w);
    }
    q
}

/// A twin with the FP model's weights (seeded) and non-trivial BatchNorm statistics.
fn twin<M: Model>(build: impl Fn(&VarMap, Option<QatConfig>) -> M, qat: &QatConfig, x: &Tensor) -> M {
    let (fp_vars, q_vars) = (VarMap::new(), VarMap::new());
    let fp = build(&fp_vars, None);
    for _ in 0..30 {
        fp.forward_mode(x, Mode::Train).unwrap(); // running statistics of this data, as after training
    }
    let q = build(&q_vars, Some(qat.clone()));
    checkpoint::transfer(&fp_vars, &q_vars).unwrap();
    q
}

/// Largest |Δ logit| relative to the largest |logit|. The two sides differ in float summation order
/// (the conv's BatchNorm is folded into the dequantization scale in the file, applied after the
/// conv in quarc) and in how the quantizer divides: tract multiplies by 1/scale, quarc divides by
/// the scale. Both move a value by a few ulps; an activation within that distance of a rounding
/// boundary can land one code (±1 LSB) apart, which shifts the logits by more. Measured on these
/// batches: 1.2e-7 to 3.5e-7, no code flipped; the bound leaves room for a rare ±1 LSB.
const TOLERANCE: f32 = 1e-4;

const FMNIST: ([f32; 1], [f32; 1]) = ([0.2860], [0.3530]);
const CIFAR: ([f32; 3], [f32; 3]) = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]);

#[test]
fn small_cnn_w2a2_and_w4a4_run_in_tract_like_in_quarc() {
    let dev = Device::Cpu;
    let data = fmnist_images();
    for (bits, per_channel) in [((2, 2), false), ((4, 4), false), ((2, 2), true), ((4, 4), true)] {
        let qat = w_a(bits, per_channel);
        let x = normalize(&data, &FMNIST.0, &FMNIST.1);
        let m = twin(|v, q| SmallCnn::new(v, q, 10, 1, &dev).unwrap(), &qat, &x);
        let worst = check(
            &m,
            &data,
            &FMNIST.0,
            &FMNIST.1,
            &qat,
            &format!("SmallCnn {bits:?} pc={per_channel}"),
        );
        println!(
            "SmallCnn W{}A{} per-channel {per_channel}: max |Δ logit| / max |logit| = {worst:.2e}",
            bits.0, bits.1
        );
        assert!(worst < TOLERANCE, "{worst}");
    }
}

/// 64 real Fashion-MNIST test images (the bundled subset), in [0, 1].
fn fmnist_images() -> Tensor {
    use quarc_data::{BatchLoader, LoaderConfig, Split, fashion_mnist};
    let test = std::sync::Arc::new(fashion_mnist::bundled_subset(Split::Test).unwrap());
    let loader = BatchLoader::new(test, LoaderConfig::eval(64, None), &Device::Cpu).unwrap();
    loader.epoch(0, None).unwrap().next().unwrap().unwrap().images
}

#[test]
fn resnet20_w4a4_runs_in_tract_like_in_quarc() {
    let dev = Device::Cpu;
    let data = images(6, &[8, 3, 32, 32]);
    let qat = w_a((4, 4), true);
    let x = normalize(&data, &CIFAR.0, &CIFAR.1);
    let m = twin(|v, q| ResNet::resnet20(v, q, 10, 2, &dev).unwrap(), &qat, &x);
    let worst = check(&m, &data, &CIFAR.0, &CIFAR.1, &qat, "ResNet-20 W4A4");
    println!("ResNet-20 W4A4: {worst:.2e}");
    assert!(worst < TOLERANCE, "{worst}");
}

/// ResNet-18: projection shortcuts (1×1 conv + BatchNorm) and 11 M parameters.
#[test]
fn resnet18_w4a4_runs_in_tract_like_in_quarc() {
    let dev = Device::Cpu;
    let data = images(8, &[8, 3, 32, 32]);
    let qat = w_a((4, 4), false);
    let x = normalize(&data, &CIFAR.0, &CIFAR.1);
    let m = twin(|v, q| ResNet::resnet18(v, q, 10, 4, &dev).unwrap(), &qat, &x);
    let (worst, per_image) = check_per_image(&m, &data, &CIFAR.0, &CIFAR.1, &qat, "ResNet-18 W4A4");
    let close = per_image.iter().filter(|d| **d < TOLERANCE).count();
    assert!(4 * close >= per_image.len(), "{per_image:?}");
    assert!(worst < FLIPS, "{per_image:?}");
}

/// ResNet-18's 4-bit activation quantizers, over planes from 32² down to 4², make a ±1 LSB flip (see
/// [`TOLERANCE`]) likely somewhere in an image. Which images flip depends on each layer's
/// summation order: im2col or Winograd, and AVX-512, AVX2 or baseline vectors. On Zen 1, one to
/// four of these eight images flipped under every policy and vector width, each moving its logits
/// by 7e-3 to 4.6e-2 of the largest. So a quarter of the images must agree within
/// [`TOLERANCE`], every class must agree, and no image may move by more than a few flips. A
/// wrong scale, a missing BatchNorm or a shifted padding moves every image.
const FLIPS: f32 = 0.5;

/// 8-bit grids are 16–64 times finer than 4- and 2-bit ones, so the ±1 LSB flips described at
/// [`TOLERANCE`] happen that much more often (measured on these 64 images, per tensor: 1.7e-4 of
/// the largest logit); the export is the same QCDQ form, so the bound is looser here and nearly
/// every class must agree.
#[test]
fn small_cnn_w8a8_runs_in_tract_within_a_few_lsb() {
    let dev = Device::Cpu;
    let data = fmnist_images();
    for per_channel in [false, true] {
        let qat = w_a((8, 8), per_channel);
        let x = normalize(&data, &FMNIST.0, &FMNIST.1);
        let m = twin(|v, q| SmallCnn::new(v, q, 10, 1, &dev).unwrap(), &qat, &x);
        let what = format!("SmallCnn W8A8 per-channel {per_channel}");
        let (worst, same, _) = compare(&m, &data, &FMNIST.0, &FMNIST.1, &qat, &what);
        assert!(worst < 1e-2, "{what}: {worst}");
        assert!(same >= 62, "{what}: {same} of 64");
    }
}

#[test]
fn mobilenet_v2_w4a4_runs_in_tract_like_in_quarc() {
    let dev = Device::Cpu;
    let data = images(7, &[4, 3, 32, 32]);
    let qat = w_a((4, 4), false);
    let x = normalize(&data, &CIFAR.0, &CIFAR.1);
    let m = twin(|v, q| MobileNetV2::new(v, q, 0.5, 10, 3, &dev).unwrap(), &qat, &x);
    let worst = check(&m, &data, &CIFAR.0, &CIFAR.1, &qat, "MobileNetV2 W4A4");
    println!("MobileNetV2 W4A4: {worst:.2e}");
    assert!(worst < TOLERANCE, "{worst}");
}

/// A user's model (with a residual add) built with the model builder.
struct Net {
    stem: ConvBn,
    block: ConvBn,
    fc: QLinear,
}

impl Net {
    fn new(b: &Layers) -> quarc_models::Result<Self> {
        Ok(Self {
            stem: ConvBn::new(b, "stem", ConvSpec::new(1, 8, 3).stride(2).signed_input())?,
            block: ConvBn::new(b, "block", ConvSpec::new(8, 8, 3))?,
            fc: b.linear("fc", LinearSpec::new(8, 10))?,
        })
    }
}

impl Model for Net {
    fn forward_mode(&self, x: &Tensor, mode: Mode) -> quarc_models::Result<ModelOutput> {
        let h = self.stem.forward_act(x, mode, Activation::Relu)?;
        let h = (self.block.forward_act(&h, mode, Activation::Relu)? + h)?;
        Ok(ModelOutput::logits_only(
            self.fc.forward_t(&h.mean((2, 3))?, mode.train())?,
        ))
    }
}

impl ToOnnx for Net {
    fn to_onnx(
        &self,
        g: &mut quarc_models::OnnxGraph,
        x: &quarc_models::onnx::Value,
    ) -> quarc_models::Result<quarc_models::onnx::Value> {
        let h = g.conv_bn(&self.stem, x, Activation::Relu)?;
        let y = g.conv_bn(&self.block, &h, Activation::Relu)?;
        let h = g.add(&y, &h);
        let pooled = g.global_avg_pool(&h);
        g.linear(&self.fc, &pooled)
    }
}

#[test]
fn a_user_model_built_with_the_builder_runs_in_tract_like_in_quarc() {
    let dev = Device::Cpu;
    let data = fmnist_images();
    let qat = QatConfig::lsq(2, 2).unwrap();
    let x = normalize(&data, &FMNIST.0, &FMNIST.1);
    let build = |v: &VarMap, q: Option<QatConfig>| {
        ModelBuilder::new(v, &dev)
            .qat(q)
            .override_layers(
                "fc",
                quarc_models::LayerOverride::Bits {
                    weight: 8,
                    activation: 8,
                },
            )
            .build(Net::new)
            .unwrap()
    };
    let m = twin(build, &qat, &x);
    let worst = check(&m, &data, &FMNIST.0, &FMNIST.1, &qat, "user model");
    assert!(worst < TOLERANCE, "{worst}");
    // metadata: per-layer bits and quantizer, the QAT configuration, quarc's version
    let spec = OnnxSpec {
        input: [1, 28, 28],
        normalize: None,
        qat: Some(qat.clone()),
    };
    let (bytes, layers) = to_onnx_bytes(&m, &spec).unwrap();
    assert_eq!(
        layers.iter().map(|l| l.weight).collect::<Vec<_>>(),
        [None, Some(("lsq", 2)), Some(("lsq", 8))]
    );
    let text = String::from_utf8_lossy(&bytes);
    for needle in [
        "quarc_version",
        "qat_config",
        "layer.block.conv",
        "weight: lsq 2-bit; input: lsq 2-bit",
    ] {
        assert!(text.contains(needle), "metadata lacks `{needle}`");
    }
    let _ = DType::F32;
}

#[test]
fn an_uncalibrated_model_is_a_typed_error() {
    let dev = Device::Cpu;
    let m = SmallCnn::new(&VarMap::new(), Some(QatConfig::lsq(2, 2).unwrap()), 10, 0, &dev).unwrap();
    let spec = OnnxSpec {
        input: [1, 28, 28],
        normalize: None,
        qat: None,
    };
    let e = to_onnx_bytes(&m, &spec).err().unwrap();
    assert!(e.to_string().contains("not calibrated"), "{e}");
    let bad = OnnxSpec {
        input: [0, 28, 28],
        ..spec
    };
    assert!(to_onnx_bytes(&m, &bad).is_err());
}
