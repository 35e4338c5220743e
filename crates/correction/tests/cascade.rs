//! The cascade: gradient flow, modes, validation, and that a few CLC steps close the gap.

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{Optimizer, VarMap};
use quarc_correction::*;
use quarc_quant_core::{
    BlockwiseModule, FeatureMap, LayerPosition, ModelOutput, ParamStore, Progress, QLinear, QatConfig, QuantizerConfig,
    SplitMix64,
};

fn rand(seed: u64, shape: (usize, usize), scale: f32) -> Tensor {
    let mut r = SplitMix64::new(seed);
    let v: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| (r.next_f64() as f32 * 2.0 - 1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A two-block MLP whose weights are `Var`s, usable as student or reference.
struct TwoBlock {
    w1: Var,
    w2: Var,
}

impl TwoBlock {
    fn new(seed: u64) -> Self {
        Self {
            w1: Var::from_tensor(&rand(seed, (8, 5), 0.5)).unwrap(),
            w2: Var::from_tensor(&rand(seed + 1, (3, 8), 0.5)).unwrap(),
        }
    }
    fn forward(&self, x: &Tensor) -> ModelOutput {
        let h1 = self.forward_block(0, x, true).unwrap();
        let h2 = self.forward_block(1, &h1, true).unwrap();
        let mut features = FeatureMap::new();
        features.insert("block0", h1);
        features.insert("block1", h2.clone());
        ModelOutput { logits: h2, features }
    }
}

impl BlockwiseModule for TwoBlock {
    fn block_names(&self) -> Vec<String> {
        vec!["block0".into(), "block1".into()]
    }
    fn forward_block(&self, i: usize, x: &Tensor, _train: bool) -> candle_core::Result<Tensor> {
        match i {
            0 => x.matmul(&self.w1.as_tensor().t()?)?.tanh(),
            _ => x.matmul(&self.w2.as_tensor().t()?),
        }
    }
}

fn cascade(loss: Box<dyn AlignmentLoss>) -> Cascade {
    Cascade::new(
        vec![
            LayerPair::same("block0"),
            LayerPair {
                weight: 3.0,
                ..LayerPair::same("block1")
            },
        ],
        loss,
        2.0,
    )
    .unwrap()
}

#[test]
fn gradients_reach_every_student_parameter_and_no_reference_parameter() {
    let (student, reference) = (TwoBlock::new(1), TwoBlock::new(10));
    let x = rand(5, (4, 5), 1.0);
    let p = Progress::new(0, 1);
    let r = cascade(Box::new(Mse))
        .loss(&student.forward(&x), &reference.forward(&x), &p)
        .unwrap();
    let g = r.total.backward().unwrap();
    for v in [&student.w1, &student.w2] {
        assert!(g.get(v.as_tensor()).is_some());
    }
    for v in [&reference.w1, &reference.w2] {
        assert!(g.get(v.as_tensor()).is_none(), "gradient leaked into the reference");
    }
    // total = β · (1·L0 + 3·L1) / 4
    let vals = r.values().unwrap();
    let want = 2.0 * (vals[0].1 + 3.0 * vals[1].1) / 4.0;
    assert!((r.total.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-5);
    assert_eq!(
        vals.iter().map(|v| v.0.as_str()).collect::<Vec<_>>(),
        vec!["block0", "block1"]
    );
}

#[test]
fn progressive_mode_grows_the_aligned_set() {
    let c = cascade(Box::new(Mse))
        .with_mode(CascadeMode::Progressive { start: 1, every: 3 })
        .unwrap();
    assert_eq!(c.active_pairs(&Progress::new(0, 10)).len(), 1);
    assert_eq!(c.active_pairs(&Progress::new(2, 10)).len(), 1);
    assert_eq!(c.active_pairs(&Progress::new(3, 10)).len(), 2);
    assert_eq!(c.active_pairs(&Progress::new(9, 10)).len(), 2);
    let (student, reference) = (TwoBlock::new(1), TwoBlock::new(10));
    let x = rand(5, (4, 5), 1.0);
    let r = c
        .loss(&student.forward(&x), &reference.forward(&x), &Progress::new(0, 10))
        .unwrap();
    assert_eq!(r.layers.len(), 1);
    assert!(
        cascade(Box::new(Mse))
            .with_mode(CascadeMode::Progressive { start: 0, every: 3 })
            .is_err()
    );
}

#[test]
fn reference_inputs_mode_feeds_each_student_block_the_reference_input() {
    let (student, reference) = (TwoBlock::new(1), TwoBlock::new(10));
    let x = rand(5, (4, 5), 1.0);
    let c = cascade(Box::new(Mse)).with_mode(CascadeMode::ReferenceInputs).unwrap();
    let r = c
        .loss_reference_inputs(&student, &reference, &x, true, &Progress::new(0, 1))
        .unwrap();
    // Block 1 of the student sees the reference's block-0 output.
    let r0 = reference.forward_block(0, &x, false).unwrap();
    let want1 = Mse
        .forward(
            &student.forward_block(1, &r0, true).unwrap(),
            &reference.forward_block(1, &r0, false).unwrap(),
        )
        .unwrap();
    let got1 = r.layers[1].raw.to_scalar::<f32>().unwrap();
    assert!((got1 - want1.to_scalar::<f32>().unwrap()).abs() < 1e-7);
    // Block 1's loss sends no gradient to the student's block 0 (its input is the reference's).
    let g = r.layers[1].raw.backward().unwrap();
    assert!(g.get(student.w1.as_tensor()).is_none() && g.get(student.w2.as_tensor()).is_some());
    assert!(g.get(reference.w1.as_tensor()).is_none());
    // The natural-forward entry point refuses this mode.
    assert!(
        c.loss(&student.forward(&x), &reference.forward(&x), &Progress::new(0, 1))
            .is_err()
    );
}

#[test]
fn validation_names_the_layer() {
    let (student, reference) = (TwoBlock::new(1), TwoBlock::new(10));
    let x = rand(5, (4, 5), 1.0);
    let p = Progress::new(0, 1);
    let c = Cascade::new(
        vec![LayerPair {
            student: "block0".into(),
            reference: "nope".into(),
            weight: 1.0,
        }],
        Box::new(Mse),
        1.0,
    )
    .unwrap();
    match c.loss(&student.forward(&x), &reference.forward(&x), &p) {
        Err(Error::MissingFeature { layer, side, name }) => {
            assert_eq!((layer.as_str(), side, name.as_str()), ("block0", "reference", "nope"))
        }
        other => panic!("{other:?}"),
    }
    let c = Cascade::new(
        vec![LayerPair {
            student: "block0".into(),
            reference: "block1".into(),
            weight: 1.0,
        }],
        Box::new(Mse),
        1.0,
    )
    .unwrap();
    assert!(
        matches!(c.loss(&student.forward(&x), &reference.forward(&x), &p), Err(Error::ShapeMismatch { layer, .. }) if layer == "block0")
    );
    let mut nan_out = student.forward(&x);
    nan_out
        .features
        .insert("block0", (nan_out.features.get("block0").unwrap() * f64::NAN).unwrap());
    assert!(matches!(
        cascade(Box::new(Mse)).loss(&nan_out, &reference.forward(&x), &p),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(Cascade::new(vec![], Box::new(Mse), 1.0), Err(Error::Empty(_))));
    assert!(
        Cascade::new(
            vec![LayerPair {
                weight: -1.0,
                ..LayerPair::same("a")
            }],
            Box::new(Mse),
            1.0
        )
        .is_err()
    );
    assert!(Cascade::new(vec![LayerPair::same("a")], Box::new(Mse), f64::INFINITY).is_err());
}

#[test]
fn a_few_clc_steps_reduce_the_per_layer_gap_of_a_quantized_model() {
    // Reference: FP two-layer MLP. Student: its W2 twin (LSQ, weights only), trained on CLC alone.
    let dev = Device::Cpu;
    let x = rand(3, (64, 6), 1.0);
    let (w1, w2) = (rand(4, (16, 6), 0.6), rand(5, (8, 16), 0.4));
    let (f1, f2) = (
        candle_nn::Linear::new(w1.clone(), None),
        candle_nn::Linear::new(w2.clone(), None),
    );
    let varmap = VarMap::new();
    varmap
        .data()
        .lock()
        .unwrap()
        .insert("l1.weight".into(), Var::from_tensor(&w1).unwrap());
    varmap
        .data()
        .lock()
        .unwrap()
        .insert("l2.weight".into(), Var::from_tensor(&w2).unwrap());
    let store = ParamStore::new(&varmap, DType::F32, &dev);
    let qat = QatConfig {
        activation: QuantizerConfig::Identity,
        ..QatConfig::lsq(2, 2).unwrap()
    };
    let l1 = QLinear::new(6, 16, false, &qat.layer(LayerPosition::Middle), &store.pp("l1")).unwrap();
    let l2 = QLinear::new(16, 8, false, &qat.layer(LayerPosition::Middle), &store.pp("l2")).unwrap();
    l1.calibrate(&x).unwrap();
    l2.calibrate(&f1.forward(&x).unwrap().tanh().unwrap()).unwrap();
    let fp = {
        let h = f1.forward(&x).unwrap().tanh().unwrap();
        let mut features = FeatureMap::new();
        features.insert("l1", h.clone());
        features.insert("l2", f2.forward(&h).unwrap());
        ModelOutput {
            logits: f2.forward(&h).unwrap(),
            features,
        }
    };
    let student = || {
        let h = l1.forward_t(&x, true).unwrap().tanh().unwrap();
        let out = l2.forward_t(&h, true).unwrap();
        let mut features = FeatureMap::new();
        features.insert("l1", h);
        features.insert("l2", out.clone());
        ModelOutput { logits: out, features }
    };
    let clc = Cascade::new(vec![LayerPair::same("l1"), LayerPair::same("l2")], Box::new(Mse), 1.0).unwrap();
    let p = Progress::new(0, 1);
    let before = clc.loss(&student(), &fp, &p).unwrap().values().unwrap();
    let mut opt = candle_nn::SGD::new(varmap.all_vars(), 0.2).unwrap();
    for _ in 0..40 {
        let r = clc.loss(&student(), &fp, &p).unwrap();
        opt.backward_step(&r.total).unwrap();
    }
    let after = clc.loss(&student(), &fp, &p).unwrap().values().unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert!(a.1 < 0.8 * b.1, "layer {}: gap {} → {} did not shrink", b.0, b.1, a.1);
    }
}
