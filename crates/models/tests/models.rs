//! Shapes, feature names, parameter counts, seeded init, checkpoints, FP→quantized transfer,
//! block-wise forwards, and that one training step updates every trainable parameter.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Optimizer, VarMap};
use quarc_models::*;
use quarc_quant_core::{BlockwiseModule, FeatureModule, QatConfig, SplitMix64, check_gradients, is_buffer};

fn input(seed: u64, shape: (usize, usize, usize, usize)) -> Tensor {
    let mut r = SplitMix64::new(seed);
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    Tensor::from_vec(
        (0..n).map(|_| r.next_f64() as f32).collect::<Vec<_>>(),
        shape,
        &Device::Cpu,
    )
    .unwrap()
}

type Build = fn(&VarMap, Option<QatConfig>, u64) -> Box<dyn TestModel>;

trait TestModel: Model + FeatureModule {}
impl<T: Model + FeatureModule> TestModel for T {}

fn small(v: &VarMap, q: Option<QatConfig>, seed: u64) -> Box<dyn TestModel> {
    Box::new(SmallCnn::new(v, q, 10, seed, &Device::Cpu).unwrap())
}
fn r20(v: &VarMap, q: Option<QatConfig>, seed: u64) -> Box<dyn TestModel> {
    Box::new(ResNet::resnet20(v, q, 10, seed, &Device::Cpu).unwrap())
}
fn r18(v: &VarMap, q: Option<QatConfig>, seed: u64) -> Box<dyn TestModel> {
    Box::new(ResNet::resnet18(v, q, 10, seed, &Device::Cpu).unwrap())
}
fn mnv2(v: &VarMap, q: Option<QatConfig>, seed: u64) -> Box<dyn TestModel> {
    Box::new(MobileNetV2::new(v, q, 0.5, 100, seed, &Device::Cpu).unwrap())
}

/// (name, builder, input shape, classes)
type Case = (&'static str, Build, (usize, usize, usize, usize), usize);

const MODELS: [Case; 4] = [
    ("small_cnn", small, (2, 1, 28, 28), 10),
    ("resnet20", r20, (2, 3, 32, 32), 10),
    ("resnet18", r18, (2, 3, 32, 32), 10),
    ("mobilenet_v2_0.5", mnv2, (2, 3, 32, 32), 100),
];

#[test]
fn parameter_counts_match_the_known_figures() {
    let count = |f: &dyn Fn(&VarMap)| {
        let v = VarMap::new();
        f(&v);
        checkpoint::count_parameters(&v)
    };
    // 288 + 64 + 18 432 + 128 + 73 728 + 256 + 1 290
    assert_eq!(
        count(&|v| drop(SmallCnn::new(v, None, 10, 0, &Device::Cpu).unwrap())),
        94_186
    );
    // Option-A shortcuts: 432 + 32 (stem) + 14 016 + 51 072 + 203 520 (stages) + 650 (fc) = 269 722,
    // the "0.27 M" of He et al.; projection shortcuts would add 2 752 (272 474).
    assert_eq!(
        count(&|v| drop(ResNet::resnet20(v, None, 10, 0, &Device::Cpu).unwrap())),
        269_722
    );
    assert_eq!(
        count(&|v| drop(ResNet::resnet18(v, None, 10, 0, &Device::Cpu).unwrap())),
        11_173_962
    );
    // torchvision's 3 504 872 for 1000 classes, with a 10-class classifier: 2 236 682
    assert_eq!(
        count(&|v| drop(MobileNetV2::new(v, None, 1.0, 10, 0, &Device::Cpu).unwrap())),
        2_236_682
    );
}

#[test]
fn shapes_features_and_blockwise_forward() {
    for (name, build, shape, classes) in MODELS {
        let v = VarMap::new();
        let m = build(&v, None, 0);
        let x = input(1, shape);
        let out = m.forward_mode(&x, Mode::Eval).unwrap();
        assert_eq!(out.logits.dims(), &[shape.0, classes], "{name}");
        let names: Vec<_> = out.features.names().collect();
        assert_eq!(names.last(), Some(&"pool"), "{name}");
        assert!(names.len() >= 4, "{name}: {names:?}");
    }
    let v = VarMap::new();
    let r = ResNet::resnet20(&v, None, 10, 3, &Device::Cpu).unwrap();
    let names = r.block_names();
    assert_eq!(
        (names.len(), names[0].as_str(), names[1].as_str(), names[10].as_str()),
        (11, "stem", "layer1.0", "head")
    );
    let x = input(2, (2, 3, 32, 32));
    let mut h = x.clone();
    for i in 0..names.len() {
        h = r.forward_block(i, &h, false).unwrap();
    }
    let direct = r.forward_mode(&x, Mode::Eval).unwrap().logits;
    assert_eq!(h.to_vec2::<f32>().unwrap(), direct.to_vec2::<f32>().unwrap());
    let feats = r.forward_mode(&x, Mode::Eval).unwrap().features;
    assert_eq!(feats.get("layer2.0").unwrap().dims(), &[2, 32, 16, 16]);
    assert_eq!(feats.get("layer3.2").unwrap().dims(), &[2, 64, 8, 8]);
}

#[test]
fn seeded_init_is_deterministic() {
    let weights = |seed| {
        let v = VarMap::new();
        ResNet::resnet20(&v, None, 10, seed, &Device::Cpu).unwrap();
        let d = v.data().lock().unwrap();
        d["layer2.0.conv1.conv.weight"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(weights(5), weights(5));
    assert_ne!(weights(5), weights(6));
    // Kaiming normal, fan_out: std = √(2 / (32·9)) ≈ 0.0833
    let w = weights(5);
    let std = (w.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    assert!((std - (2.0f64 / 288.0).sqrt()).abs() < 0.005, "{std}");
}

#[test]
fn fp_checkpoint_loads_into_the_quantized_twin_and_round_trips() {
    let dir = std::env::temp_dir().join(format!("quarc-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (fv, qv) = (VarMap::new(), VarMap::new());
    let fp = SmallCnn::new(&fv, None, 10, 1, &Device::Cpu).unwrap();
    let q = SmallCnn::new(&qv, Some(QatConfig::lsq(4, 4).unwrap()), 10, 2, &Device::Cpu).unwrap();
    let x = input(3, (4, 1, 28, 28));
    fp.forward_mode(&x, Mode::Train).unwrap(); // move BN statistics away from their init
    checkpoint::save(&fv, dir.join("fp.safetensors")).unwrap();
    let report = checkpoint::load(&qv, dir.join("fp.safetensors")).unwrap();
    assert!(report.unexpected.is_empty());
    assert_eq!(report.loaded.len(), fv.data().lock().unwrap().len());
    assert!(
        !report.missing.is_empty() && report.missing.iter().all(|n| n.contains(".wq.") || n.contains(".aq.")),
        "{:?}",
        report.missing
    );
    let (fd, qd) = (fv.data().lock().unwrap(), qv.data().lock().unwrap());
    for name in ["conv2.conv.weight", "conv2.bn.running_mean", "fc.bias"] {
        assert_eq!(
            fd[name].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            qd[name].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{name}"
        );
    }
    drop((fd, qd));
    // Calibrate the twin, save, reload into a fresh twin: identical outputs.
    q.calibrate(&x).unwrap();
    checkpoint::save(&qv, dir.join("q.safetensors")).unwrap();
    let v2 = VarMap::new();
    let q2 = SmallCnn::new(&v2, Some(QatConfig::lsq(4, 4).unwrap()), 10, 99, &Device::Cpu).unwrap();
    let r = checkpoint::load(&v2, dir.join("q.safetensors")).unwrap();
    assert!(r.missing.is_empty() && r.unexpected.is_empty());
    let (a, b) = (
        q.forward_mode(&x, Mode::Eval).unwrap().logits,
        q2.forward_mode(&x, Mode::Eval).unwrap().logits,
    );
    assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
    // A checkpoint of another shape is a typed error, and nothing is half-loaded.
    let v5 = VarMap::new();
    SmallCnn::new(&v5, None, 5, 0, &Device::Cpu).unwrap();
    assert!(matches!(
        checkpoint::load(&v5, dir.join("fp.safetensors")),
        Err(Error::CheckpointShape { .. })
    ));
    assert!(matches!(
        checkpoint::load(&v5, dir.join("missing.safetensors")),
        Err(Error::Checkpoint { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_training_step_updates_every_trainable_parameter() {
    for (name, build, shape, classes) in MODELS {
        for qat in [None, Some(QatConfig::lsq(4, 4).unwrap())] {
            let v = VarMap::new();
            let m = build(&v, qat.clone(), 0);
            let x = input(4, shape);
            m.calibrate(&x).unwrap();
            let y = Tensor::from_vec(
                (0..shape.0 as u32).map(|i| i % classes as u32).collect::<Vec<_>>(),
                shape.0,
                &Device::Cpu,
            )
            .unwrap();
            let before: Vec<(String, Vec<f32>)> = {
                let d = v.data().lock().unwrap();
                d.iter()
                    .filter(|(n, _)| !is_buffer(n))
                    .map(|(n, t)| {
                        (
                            n.clone(),
                            t.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                        )
                    })
                    .collect()
            };
            let logits = m.forward_mode(&x, Mode::Train).unwrap().logits;
            let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
            let grads = loss.backward().unwrap();
            check_gradients(&v, &grads).unwrap_or_else(|e| panic!("{name} {}: {e}", qat.is_some()));
            let report = quarc_quant_core::GradientReport::from_varmap(&v, &grads).unwrap();
            assert!(
                report.all_zero.is_empty(),
                "{name} (quantized: {}): zero gradients for {:?}",
                qat.is_some(),
                report.all_zero
            );
            // A large step makes every update visible in f32.
            let mut opt = candle_nn::SGD::new(v.all_vars(), 1e3).unwrap();
            opt.step(&grads).unwrap();
            let d = v.data().lock().unwrap();
            for (n, old) in before {
                let new = d[&n].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_ne!(new, old, "{name} (quantized: {}): `{n}` did not change", qat.is_some());
            }
        }
    }
}

#[test]
fn invalid_architectures_are_typed_errors() {
    let v = VarMap::new();
    assert!(matches!(
        SmallCnn::new(&v, None, 1, 0, &Device::Cpu),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        MobileNetV2::new(&v, None, 0.0, 10, 0, &Device::Cpu),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        ResNet::new(
            &v,
            None,
            &ResNetSpec {
                widths: vec![16],
                depths: vec![0],
                shortcut: ShortcutKind::OptionA
            },
            10,
            0,
            &Device::Cpu
        ),
        Err(Error::InvalidConfig(_))
    ));
    let _ = DType::F32;
}
