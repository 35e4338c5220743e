//! The model builder with a user's own model: one definition for FP and twin, weight transfer
//! that cannot alias, one-call calibration with its report, the signed-input check.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Optimizer, VarMap};
use quarc_models::{
    Activation, ConvBn, ConvSpec, LayerOverride, Layers, LinearSpec, Mode, Model, ModelBuilder, checkpoint,
};
use quarc_quant_core::{LayerPosition, ModelOutput, QLinear, QatConfig, is_buffer};

/// A user's model: two conv-BN-ReLU layers with a residual add, global pooling, a classifier.
struct Net {
    conv1: ConvBn,
    conv2: ConvBn,
    fc: QLinear,
}

impl Net {
    fn new(b: &Layers) -> quarc_models::Result<Self> {
        Ok(Self {
            conv1: ConvBn::new(b, "conv1", ConvSpec::new(1, 8, 3).signed_input())?,
            conv2: ConvBn::new(&b.pp("block"), "conv", ConvSpec::new(8, 8, 3))?,
            fc: b.linear("fc", LinearSpec::new(8, 4))?,
        })
    }
}

impl Model for Net {
    fn forward_mode(&self, x: &Tensor, mode: Mode) -> quarc_models::Result<ModelOutput> {
        let h = self.conv1.forward_act(x, mode, Activation::Relu)?;
        let h = (self.conv2.forward_act(&h, mode, Activation::Relu)? + h)?;
        let logits = self.fc.forward_t(&h.mean((2, 3))?, mode.train())?;
        Ok(ModelOutput::logits_only(logits))
    }
}

fn images(seed: u64, n: usize) -> Tensor {
    let mut rng = quarc_quant_core::SplitMix64::new(seed);
    let v: Vec<f32> = (0..n * 64).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect();
    Tensor::from_vec(v, (n, 1, 8, 8), &Device::Cpu).unwrap()
}

fn snapshot(vars: &VarMap) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<(String, Vec<f32>)> = vars
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn one_definition_gives_the_fp_model_and_a_twin_with_the_same_names() {
    let dev = Device::Cpu;
    let (fp_vars, q_vars) = (VarMap::new(), VarMap::new());
    let fp = ModelBuilder::new(&fp_vars, &dev).seed(1).build(Net::new).unwrap();
    let q = ModelBuilder::new(&q_vars, &dev)
        .seed(1)
        .qat(QatConfig::lsq(2, 2).unwrap())
        .build(Net::new)
        .unwrap();
    let fp_names: Vec<String> = snapshot(&fp_vars).into_iter().map(|(n, _)| n).collect();
    let q_names: Vec<String> = snapshot(&q_vars).into_iter().map(|(n, _)| n).collect();
    for n in &fp_names {
        assert!(q_names.contains(n), "the twin lacks `{n}`");
    }
    for n in q_names.iter().filter(|n| !fp_names.contains(n)) {
        assert!(
            n.contains(".wq.") || n.contains(".aq."),
            "unexpected twin variable `{n}`"
        );
    }
    // the same seed gives the same weights in both
    assert_eq!(
        snapshot(&fp_vars),
        snapshot(&q_vars)
            .into_iter()
            .filter(|(n, _)| fp_names.contains(n))
            .collect::<Vec<_>>()
    );
    // first/last-layer policy from the build order, no bookkeeping in the model
    let info: Vec<(&str, LayerPosition, Option<u32>, bool)> = q
        .layers
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.position,
                l.quant.weight.bits(),
                l.quant.activation.is_some(),
            )
        })
        .collect();
    assert_eq!(
        info,
        [
            ("conv1.conv", LayerPosition::First, None, false),
            ("block.conv.conv", LayerPosition::Middle, Some(2), true),
            ("fc", LayerPosition::Last, None, false),
        ]
    );
    assert!(fp.layers.iter().all(|l| l.quant.weight.bits().is_none()));
    assert_eq!(q.calibration.layers(), ["block.conv.conv"]);
}

#[test]
fn overrides_by_name_pattern_change_single_layers_and_must_match() {
    let dev = Device::Cpu;
    let q = ModelBuilder::new(&VarMap::new(), &dev)
        .qat(QatConfig::lsq(2, 2).unwrap())
        .override_layers(
            "fc",
            LayerOverride::Bits {
                weight: 4,
                activation: 4,
            },
        )
        .override_layers("block.*", LayerOverride::KeepFp)
        .build(Net::new)
        .unwrap();
    let bits: Vec<(Option<u32>, Option<u32>)> = q
        .layers
        .iter()
        .map(|l| {
            (
                l.quant.weight.bits(),
                l.quant.activation.as_ref().and_then(|a| a.bits()),
            )
        })
        .collect();
    assert_eq!(bits, [(None, None), (None, None), (Some(4), Some(4))]);
    let e = ModelBuilder::new(&VarMap::new(), &dev)
        .qat(QatConfig::lsq(2, 2).unwrap())
        .override_layers("blocks.*", LayerOverride::KeepFp)
        .build(Net::new)
        .err()
        .unwrap();
    assert!(e.to_string().contains("`blocks.*` matches no layer"), "{e}");
    let dup = ModelBuilder::new(&VarMap::new(), &dev)
        .qat(QatConfig::lsq(2, 2).unwrap())
        .build(|b| {
            Ok((
                b.linear("fc", LinearSpec::new(2, 2))?,
                b.linear("fc", LinearSpec::new(2, 2))?,
            ))
        })
        .err()
        .unwrap();
    assert!(dup.to_string().contains("two layers are named `fc`"), "{dup}");
}

/// The aliasing test: the twin trains, the FP reference (the teacher) stays bit for bit.
#[test]
fn training_the_twin_never_changes_the_reference_and_changes_every_twin_weight() {
    let dev = Device::Cpu;
    let (fp_vars, q_vars) = (VarMap::new(), VarMap::new());
    let fp = ModelBuilder::new(&fp_vars, &dev).seed(2).build(Net::new).unwrap();
    let q = ModelBuilder::new(&q_vars, &dev)
        .seed(99) // other initial weights: the transfer must overwrite them
        .qat(QatConfig::lsq(2, 2).unwrap())
        .build(Net::new)
        .unwrap();
    let report = checkpoint::transfer(&fp_vars, &q_vars).unwrap();
    assert!(report.unexpected.is_empty());
    assert!(report.missing.iter().all(|n| n.contains(".wq.") || n.contains(".aq.")));
    assert_eq!(report.loaded.len(), snapshot(&fp_vars).len());
    let fp_before = snapshot(&fp_vars);
    let x = images(3, 16);
    let labels = Tensor::from_vec((0..16u32).map(|i| i % 4).collect::<Vec<_>>(), 16, &dev).unwrap();
    let calibrated = q.calibrate(&x).unwrap();
    assert_eq!(calibrated.layers.len(), 1);
    let twin_before = snapshot(&q_vars);
    let trainable: Vec<candle_core::Var> = q_vars
        .data()
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| !is_buffer(n))
        .map(|(_, v)| v.clone())
        .collect();
    let mut sgd = candle_nn::SGD::new(trainable, 0.05).unwrap();
    for _ in 0..5 {
        let s = q.forward_mode(&x, Mode::Train).unwrap();
        let t = fp.forward_mode(&x, Mode::Eval).unwrap().logits.detach();
        let kd = (s.logits.clone() - t).unwrap().sqr().unwrap().mean_all().unwrap();
        let ce = candle_nn::loss::cross_entropy(&s.logits, &labels).unwrap();
        sgd.backward_step(&(kd + ce).unwrap()).unwrap();
    }
    assert_eq!(
        snapshot(&fp_vars),
        fp_before,
        "training the twin changed the FP reference"
    );
    let after = snapshot(&q_vars);
    for ((name, before), (_, now)) in twin_before.iter().zip(&after) {
        if fp_before.iter().any(|(n, _)| n == name) && !is_buffer(name) {
            assert_ne!(before, now, "twin weight `{name}` never trained");
        }
    }
    // a shape mismatch is a typed error, and so is a transfer with no name in common
    let other = VarMap::new();
    ModelBuilder::new(&other, &dev)
        .build(|b| b.linear("fc", LinearSpec::new(8, 5)))
        .unwrap();
    let e = checkpoint::transfer(&other, &q_vars).unwrap_err();
    assert!(
        matches!(e, quarc_models::Error::TransferShape { ref name, .. } if name == "fc.bias"), // sorted names: the first mismatch
        "{e}"
    );
    let unrelated = VarMap::new();
    ModelBuilder::new(&unrelated, &dev)
        .build(|b| b.linear("head", LinearSpec::new(8, 5)))
        .unwrap();
    assert!(checkpoint::transfer(&unrelated, &q_vars).is_err());
}

/// One forward pass calibrates every quantizer and reports it; a layer the pass did not reach is
/// named in the error.
#[test]
fn calibration_reports_every_layer_and_names_the_ones_left_out() {
    let dev = Device::Cpu;
    let q = ModelBuilder::new(&VarMap::new(), &dev)
        .qat(QatConfig::lsq(4, 4).unwrap())
        .override_layers(
            "*",
            LayerOverride::Bits {
                weight: 4,
                activation: 4,
            },
        )
        .build(Net::new)
        .unwrap();
    let x = images(5, 8);
    // before calibration the quantized forward is an error, not garbage
    assert!(q.forward_mode(&x, Mode::Eval).is_err());
    let report = q.calibrate(&x).unwrap();
    let names: Vec<&str> = report.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["conv1.conv", "block.conv.conv", "fc"]);
    let conv1 = report.layer("conv1.conv").unwrap();
    assert_eq!((conv1.weight, conv1.activation), ("lsq", None)); // the image stays as given
    assert_eq!(conv1.input_shape, [8, 1, 8, 8]);
    let lo = x.min_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(conv1.input_range.0, lo);
    let block = report.layer("block.conv.conv").unwrap();
    assert_eq!(block.activation, Some("lsq"));
    assert!(block.input_range.0 >= 0.0); // after a ReLU
    assert!(q.forward_mode(&x, Mode::Eval).is_ok());
    // a forward that never reaches the classifier
    let partial = q
        .calibration
        .run(|| q.model.conv1.forward_act(&x, Mode::Calibrate, Activation::Relu));
    let e = partial.unwrap_err();
    assert!(
        matches!(&e, quarc_models::Error::Quant(quarc_quant_core::Error::Uncalibrated { layers })
            if layers == &["block.conv.conv".to_string(), "fc".to_string()]),
        "{e}"
    );
}

/// A middle layer fed signed values with the default (unsigned) input quantizer is an error
/// naming the layer; declared signed, it calibrates and its codes are signed.
#[test]
fn unsigned_input_quantizer_on_negative_inputs_is_an_error_naming_the_layer() {
    struct NoRelu {
        a: QLinear,
        b: QLinear,
        c: QLinear,
    }
    fn build(signed: bool) -> impl Fn(&Layers) -> quarc_models::Result<NoRelu> {
        move |l: &Layers| {
            let spec = LinearSpec::new(6, 6);
            Ok(NoRelu {
                a: l.linear("a", spec)?,
                b: l.linear(
                    "b",
                    LinearSpec {
                        signed_input: signed,
                        ..spec
                    },
                )?,
                c: l.linear("c", spec)?,
            })
        }
    }
    let x = Tensor::rand(-1f32, 1.0, (4, 6), &Device::Cpu).unwrap();
    for signed in [false, true] {
        let q = ModelBuilder::new(&VarMap::new(), &Device::Cpu)
            .qat(QatConfig::lsq(2, 2).unwrap())
            .build(build(signed))
            .unwrap();
        let m = &q.model;
        let r = q
            .calibration
            .run(|| m.c.forward_t(&m.b.forward_t(&m.a.forward_t(&x, false)?, false)?, false));
        if signed {
            let r = r.unwrap();
            assert_eq!(r.layers.len(), 1);
            let range = m.b.activation_quantizer().unwrap().qparams().unwrap().unwrap().range;
            assert_eq!((range.qn(), range.qp()), (-2, 1));
        } else {
            let e = r.unwrap_err();
            assert!(
                matches!(&e, quarc_quant_core::Error::NegativeInput { layer, min } if layer == "b" && *min < 0.0),
                "{e}"
            );
            assert!(e.to_string().contains("layer `b`"));
        }
    }
    let _ = DType::F32;
}

/// Strict checkpoint loading refuses what would silently corrupt a model; the lenient mode
/// reports it instead.
#[test]
fn strict_loading_refuses_other_dtypes_non_finite_values_bad_statistics_and_unrelated_files() {
    use quarc_models::checkpoint::{LoadMode, load, load_with, save_tensors};
    use std::collections::HashMap;
    let dev = Device::Cpu;
    let vars = VarMap::new();
    ModelBuilder::new(&vars, &dev).build(Net::new).unwrap();
    let dir = std::env::temp_dir().join(format!("quarc-strict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good: HashMap<String, Tensor> = vars
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect();
    type Corrupt = Box<dyn Fn(&mut HashMap<String, Tensor>)>;
    let cases: Vec<(&str, Corrupt)> = vec![
        (
            "dtype",
            Box::new(|m| {
                let t = m["fc.weight"].to_dtype(DType::F64).unwrap();
                m.insert("fc.weight".into(), t);
            }),
        ),
        (
            "non-finite",
            Box::new(|m| {
                let t = (m["fc.bias"].clone() / 0.0).unwrap(); // ±inf, NaN
                m.insert("fc.bias".into(), t);
            }),
        ),
        (
            "negative BatchNorm running variance",
            Box::new(|m| {
                let t = m["conv1.bn.running_var"].neg().unwrap();
                m.insert("conv1.bn.running_var".into(), t);
            }),
        ),
        (
            "none of its",
            Box::new(|m| {
                let renamed: HashMap<String, Tensor> = m.drain().map(|(k, v)| (format!("other.{k}"), v)).collect();
                *m = renamed;
            }),
        ),
    ];
    for (what, corrupt) in cases {
        let mut tensors = good.clone();
        corrupt(&mut tensors);
        let path = dir.join("bad.safetensors");
        save_tensors(&tensors, &path).unwrap();
        let before = snapshot(&vars);
        let e = load(&vars, &path).unwrap_err();
        assert!(e.to_string().contains(what), "{what}: {e}");
        assert_eq!(snapshot(&vars), before, "{what}: a refused load changed the model");
        let lenient = load_with(&vars, &path, LoadMode::Lenient).unwrap();
        match what {
            "dtype" => assert!(lenient.loaded.contains(&"fc.weight".to_string())),
            "none of its" => assert!(lenient.loaded.is_empty() && !lenient.unexpected.is_empty()),
            _ => assert_eq!(lenient.rejected.len(), 1, "{what}: {:?}", lenient.rejected),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
