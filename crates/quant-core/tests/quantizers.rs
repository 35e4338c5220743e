//! Built-in quantizers: initialisation against hand-computed values, calibration rules,
//! gradient scales, typed errors.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use quarc_quant_core::*;

fn store(varmap: &VarMap) -> ParamStore<'_> {
    ParamStore::new(varmap, DType::F32, &Device::Cpu)
}

fn t(v: &[f32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

#[test]
fn lsq_init_is_two_mean_abs_over_sqrt_qp() {
    let vm = VarMap::new();
    // unsigned 4-bit: Qp = 15; mean|x| = 1.5 → s = 3/√15
    let q = Lsq::new(
        LsqConfig::new(4, Signedness::Unsigned),
        Role::Activation,
        1,
        &store(&vm).pp("a"),
    )
    .unwrap();
    q.calibrate(&t(&[1.0, 2.0, -1.0, 2.0])).unwrap();
    let s = q.step().as_tensor().to_vec1::<f32>().unwrap()[0];
    assert!((s - 3.0 / 15f32.sqrt()).abs() < 1e-6, "{s}");
}

#[test]
fn lsq_per_channel_init_uses_each_channel() {
    let vm = VarMap::new();
    let cfg = LsqConfig {
        granularity: Granularity::PerChannel { axis: 0 },
        ..LsqConfig::new(2, Signedness::Signed)
    };
    let q = Lsq::new(cfg, Role::Weight, 2, &store(&vm).pp("w")).unwrap();
    let w = Tensor::new(&[[1f32, -1.0], [0.25, 0.75]], &Device::Cpu).unwrap();
    q.calibrate(&w).unwrap(); // Qp = 1: s = 2·mean|w_c| = [2, 1]
    assert_eq!(q.step().as_tensor().to_vec1::<f32>().unwrap(), vec![2.0, 1.0]);
}

#[test]
fn forward_before_calibration_is_a_typed_error_unless_first_batch_init() {
    let vm = VarMap::new();
    let q = Lsq::new(
        LsqConfig::new(4, Signedness::Signed),
        Role::Weight,
        1,
        &store(&vm).pp("a"),
    )
    .unwrap();
    assert!(matches!(
        q.forward_t(&t(&[1.0]), true),
        Err(Error::NotCalibrated { .. })
    ));
    let cfg = LsqConfig {
        init: InitMode::FirstTrainBatch,
        ..LsqConfig::new(4, Signedness::Signed)
    };
    let q = Lsq::new(cfg, Role::Weight, 1, &store(&vm).pp("b")).unwrap();
    // Eval mode never initialises silently.
    assert!(matches!(
        q.forward_t(&t(&[1.0]), false),
        Err(Error::NotCalibrated { .. })
    ));
    q.forward_t(&t(&[1.0, -1.0]), true).unwrap();
    assert!(q.is_calibrated());
}

#[test]
fn a_loaded_positive_step_counts_as_calibrated() {
    let vm = VarMap::new();
    let q = Lsq::new(
        LsqConfig::new(4, Signedness::Signed),
        Role::Weight,
        1,
        &store(&vm).pp("a"),
    )
    .unwrap();
    assert!(!q.is_calibrated());
    vm.data().lock().unwrap()["a.step"].set(&t(&[0.5])).unwrap();
    assert!(q.is_calibrated());
}

#[test]
fn grad_scale_counts_elements_per_sample_or_with_batch() {
    // Activations (8, 4, 3, 3), per tensor, 4-bit unsigned (Qp = 15): N = 36 per sample.
    let dev = Device::Cpu;
    let x = (Tensor::ones((8, 4, 3, 3), DType::F32, &dev).unwrap() * 100.0).unwrap(); // all clipped at qp
    let mut ds = Vec::new();
    for mode in [
        GradScaleMode::PerSample,
        GradScaleMode::IncludeBatch,
        GradScaleMode::Off,
    ] {
        let vm = VarMap::new();
        let cfg = LsqConfig {
            grad_scale: mode,
            ..LsqConfig::new(4, Signedness::Unsigned)
        };
        let q = Lsq::new(cfg, Role::Activation, 1, &store(&vm).pp("a")).unwrap();
        q.step().set(&t(&[1.0])).unwrap();
        let g = q.forward_t(&x, true).unwrap().sum_all().unwrap().backward().unwrap();
        ds.push(g.get(q.step().as_tensor()).unwrap().to_vec1::<f32>().unwrap()[0] as f64);
    }
    // every element outside at qp: raw d step = 288 · 15
    let raw = 288.0 * 15.0;
    assert!((ds[0] - raw / (36.0f64 * 15.0).sqrt()).abs() < 1e-2, "{ds:?}");
    assert!((ds[1] - raw / (288.0f64 * 15.0).sqrt()).abs() < 1e-2, "{ds:?}");
    assert!((ds[2] - raw).abs() < 1e-2, "{ds:?}");
}

#[test]
fn lsq_plus_activation_init_maps_min_to_qn() {
    let vm = VarMap::new();
    let q = LsqPlus::new(
        LsqPlusConfig {
            bits: 2,
            ..Default::default()
        },
        Role::Activation,
        1,
        &store(&vm).pp("a"),
    )
    .unwrap();
    // min −1, max 2, unsigned 2-bit [0, 3]: s = 3/3 = 1, o = −1
    let x = t(&[-1.0, 0.0, 2.0, 0.6]);
    q.calibrate(&x).unwrap();
    assert_eq!(q.step().as_tensor().to_vec1::<f32>().unwrap(), vec![1.0]);
    assert_eq!(q.offset().as_tensor().to_vec1::<f32>().unwrap(), vec![-1.0]);
    // (x+1) = [0, 1, 3, 1.6] → [0, 1, 3, 2] → −1 → [−1, 0, 2, 1]
    assert_eq!(
        q.forward_t(&x, false).unwrap().to_vec1::<f32>().unwrap(),
        vec![-1.0, 0.0, 2.0, 1.0]
    );
}

#[test]
fn lsq_plus_weight_init_uses_three_sigma() {
    let vm = VarMap::new();
    let cfg = LsqPlusConfig {
        bits: 4,
        signedness: Signedness::Signed,
        ..Default::default()
    };
    let q = LsqPlus::new(cfg, Role::Weight, 1, &store(&vm).pp("w")).unwrap();
    // μ = 0.5, σ = 0.5 (biased): max(|0.5 − 1.5|, |0.5 + 1.5|) / 2³ = 2/8
    q.calibrate(&t(&[0.0, 1.0, 0.0, 1.0])).unwrap();
    assert_eq!(q.step().as_tensor().to_vec1::<f32>().unwrap(), vec![0.25]);
    assert_eq!(q.offset().as_tensor().to_vec1::<f32>().unwrap(), vec![0.0]);
}

#[test]
fn pact_init_from_max_and_constant() {
    let vm = VarMap::new();
    let p = Pact::new(PactConfig::default(), &store(&vm).pp("p")).unwrap();
    p.calibrate(&t(&[0.5, 3.0, -2.0])).unwrap();
    assert_eq!(p.alpha().as_tensor().to_vec1::<f32>().unwrap(), vec![3.0]);
    let c = Pact::new(
        PactConfig {
            alpha_init: PactInit::Constant(10.0),
            ..Default::default()
        },
        &store(&vm).pp("c"),
    )
    .unwrap();
    c.calibrate(&t(&[0.5])).unwrap();
    assert_eq!(c.alpha().as_tensor().to_vec1::<f32>().unwrap(), vec![10.0]);
    assert!(
        Pact::new(
            PactConfig {
                alpha_init: PactInit::Constant(-1.0),
                ..Default::default()
            },
            &store(&vm).pp("d")
        )
        .is_err()
    );
}

#[test]
fn uniform_asymmetric_hand_values() {
    let vm = VarMap::new();
    let cfg = UniformConfig {
        bits: 2,
        signedness: Signedness::Unsigned,
        mode: Mode::Asymmetric,
        ..Default::default()
    };
    let q = Uniform::new(cfg, 1, &store(&vm).pp("u")).unwrap();
    // range [−1, 2] includes 0; scale = 3/3 = 1; zero point = 0 − round(−1/1) = 1; offset = −1
    q.calibrate(&t(&[-1.0, 0.4, 2.0])).unwrap();
    // eval mode: the observer does not move; 5.0 saturates at qp
    let y = q.forward_t(&t(&[-1.0, 0.4, 2.0, 5.0]), false).unwrap();
    assert_eq!(y.to_vec1::<f32>().unwrap(), vec![-1.0, 0.0, 2.0, 2.0]);
    let qp = q.qparams().unwrap().unwrap();
    assert_eq!(qp.scale.to_vec1::<f32>().unwrap(), vec![1.0]);
    assert_eq!(qp.offset.unwrap().to_vec1::<f32>().unwrap(), vec![-1.0]);
}

#[test]
fn uniform_eval_before_observation_errors_and_ema_tracks() {
    let vm = VarMap::new();
    let cfg = UniformConfig {
        observer: ObserverKind::EmaMinMax { momentum: 0.5 },
        ..Default::default()
    };
    let q = Uniform::new(cfg, 1, &store(&vm).pp("u")).unwrap();
    assert!(matches!(
        q.forward_t(&t(&[1.0]), false),
        Err(Error::NotCalibrated { .. })
    ));
    q.forward_t(&t(&[-4.0, 4.0]), true).unwrap();
    q.forward_t(&t(&[-2.0, 2.0]), true).unwrap();
    // EMA range ±3 → symmetric 8-bit scale 3/127
    let s = q.qparams().unwrap().unwrap().scale.to_vec1::<f32>().unwrap()[0];
    assert!((s - 3.0 / 127.0).abs() < 1e-7);
    // Observer state is in the VarMap (saved with the model).
    assert!(vm.data().lock().unwrap().contains_key("u.obs_min"));
}

#[test]
fn identity_has_no_grid() {
    assert!(Identity.qparams().unwrap().is_none());
}

#[test]
fn bit_widths_are_validated_everywhere() {
    let vm = VarMap::new();
    for bits in [0u32, 1, 9] {
        assert!(matches!(
            Lsq::new(
                LsqConfig::new(bits, Signedness::Signed),
                Role::Weight,
                1,
                &store(&vm).pp("x")
            ),
            Err(Error::InvalidBits { .. })
        ));
        assert!(matches!(QatConfig::lsq(bits, 4), Err(Error::InvalidBits { .. })));
        assert!(matches!(
            pact_fake_quant(&t(&[1.0]), &t(&[1.0]), bits),
            Err(Error::InvalidBits { .. })
        ));
    }
}

#[test]
fn nan_inputs_and_bad_shapes_are_typed_errors() {
    let r = QRange::signed(4).unwrap();
    let x = t(&[0.5, f32::NAN]);
    for backend in [Backend::Auto, Backend::Composed] {
        let opts = LsqOptions {
            backend,
            ..Default::default()
        };
        assert!(
            matches!(lsq_fake_quant(&x, &t(&[0.1]), r, opts), Err(Error::NonFinite { .. })),
            "{backend:?}"
        );
        assert!(
            matches!(
                lsq_fake_quant(&t(&[0.5]), &t(&[f32::NAN]), r, opts),
                Err(Error::NonFinite { .. })
            ),
            "{backend:?}"
        );
    }
    // step with the wrong number of channels
    let per_ch = LsqOptions {
        granularity: Granularity::PerChannel { axis: 0 },
        ..Default::default()
    };
    assert!(matches!(
        lsq_fake_quant(&t(&[0.5, 1.0]), &t(&[0.1]), r, per_ch),
        Err(Error::ShapeMismatch { .. })
    ));
    let bad_axis = LsqOptions {
        granularity: Granularity::PerChannel { axis: 3 },
        ..Default::default()
    };
    assert!(matches!(
        lsq_fake_quant(&t(&[0.5]), &t(&[0.1]), r, bad_axis),
        Err(Error::InvalidAxis { .. })
    ));
    // empty input, mismatched dtype
    assert!(matches!(
        lsq_fake_quant(&t(&[]), &t(&[0.1]), r, LsqOptions::default()),
        Err(Error::Empty(_))
    ));
    let step64 = Tensor::new(&[0.1f64], &Device::Cpu).unwrap();
    assert!(matches!(
        lsq_fake_quant(&t(&[0.5]), &step64, r, LsqOptions::default()),
        Err(Error::UnsupportedDType { .. })
    ));
    // calibrating on non-finite data
    let vm = VarMap::new();
    let q = Lsq::new(
        LsqConfig::new(4, Signedness::Signed),
        Role::Weight,
        1,
        &store(&vm).pp("a"),
    )
    .unwrap();
    assert!(matches!(
        q.calibrate(&t(&[f32::INFINITY])),
        Err(Error::NonFinite { .. })
    ));
}

#[test]
fn negative_or_zero_steps_are_floored_and_still_learn() {
    // A step pushed to ≤ 0 by the optimiser is replaced by STEP_EPS in the forward, and the
    // gradient still reaches it.
    let dev = Device::Cpu;
    let s = candle_core::Var::new(&[-0.5f32], &dev).unwrap();
    let y = lsq_fake_quant(
        &t(&[1.0, -1.0]),
        s.as_tensor(),
        QRange::signed(2).unwrap(),
        LsqOptions::default(),
    )
    .unwrap();
    assert_eq!(y.to_vec1::<f32>().unwrap(), vec![1e-8, -2e-8]);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(s.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![-1.0]); // qp + qn
}

#[test]
fn quantizer_config_round_trips_through_json() {
    let configs = vec![
        QuantizerConfig::Identity,
        QuantizerConfig::Lsq(LsqConfig {
            granularity: Granularity::PerChannel { axis: 0 },
            grad_scale: GradScaleMode::IncludeBatch,
            ..Default::default()
        }),
        QuantizerConfig::LsqPlus(LsqPlusConfig::default()),
        QuantizerConfig::Pact(PactConfig {
            alpha_init: PactInit::Constant(6.0),
            ..Default::default()
        }),
        QuantizerConfig::Uniform(UniformConfig {
            observer: ObserverKind::EmaMinMax { momentum: 0.01 },
            mode: Mode::Asymmetric,
            ..Default::default()
        }),
    ];
    for c in configs {
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<QuantizerConfig>(&json).unwrap(), c, "{json}");
    }
    let qat = QatConfig {
        first_layer: LayerPolicy::EightBit,
        ..QatConfig::lsq(2, 4).unwrap()
    };
    let json = serde_json::to_string_pretty(&qat).unwrap();
    assert_eq!(serde_json::from_str::<QatConfig>(&json).unwrap(), qat);
    assert!(serde_json::from_str::<QatConfig>(r#"{"bogus": 1}"#).is_err());
}

#[test]
fn layer_policies() {
    let qat = QatConfig {
        first_layer: LayerPolicy::EightBit,
        last_layer: LayerPolicy::Quantize,
        ..QatConfig::lsq(2, 3).unwrap()
    };
    let first = qat.layer(LayerPosition::First);
    assert_eq!(first.weight.bits(), Some(8));
    assert!(first.activation.is_none()); // the image stays as given
    let last = qat.layer(LayerPosition::Last);
    assert_eq!(
        (last.weight.bits(), last.activation.unwrap().bits()),
        (Some(2), Some(3))
    );
    assert_eq!(
        QatConfig::lsq(2, 2).unwrap().layer(LayerPosition::Last),
        LayerQuant::full_precision()
    );
    let pact_weights = QatConfig {
        weight: QuantizerConfig::Pact(PactConfig::default()),
        ..Default::default()
    };
    assert!(pact_weights.validate().is_err());
}
