//! Per-sample functional ops (hand values, finite differences) and the no-gradient guard.

mod common;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var};
use candle_nn::VarMap;
use quarc_quant_core::functional::*;
use quarc_quant_core::*;

fn logits() -> Tensor {
    Tensor::new(&[[1.0f64, 2.0, 0.5], [-1.0, 0.0, 3.0]], &Device::Cpu).unwrap()
}

#[test]
fn hand_values() {
    // numpy: p = softmax([[1,2,.5],[-1,0,3]]); q = softmax([[0,0,0],[1,1,1]]) = 1/3
    // kl(p‖q) = Σ p (log p − log ⅓); entropy = −Σ p log p
    let z = logits();
    let u = Tensor::new(&[[0f64, 0.0, 0.0], [1.0, 1.0, 1.0]], &Device::Cpu).unwrap();
    let p = softmax(&z, 1.0).unwrap().to_vec2::<f64>().unwrap();
    let expect_p0 = [
        0.231_223_897_622_149_07,
        0.628_531_719_211_762_4,
        0.140_244_383_166_088_48,
    ];
    for (a, b) in p[0].iter().zip(expect_p0) {
        assert!((a - b).abs() < 1e-12);
    }
    let h = entropy_per_sample(&z, 1.0).unwrap().to_vec1::<f64>().unwrap();
    let kl = kl_per_sample(&z, &u, 1.0).unwrap().to_vec1::<f64>().unwrap();
    for i in 0..2 {
        let hi: f64 = -p[i].iter().map(|v| v * v.ln()).sum::<f64>();
        assert!((h[i] - hi).abs() < 1e-12);
        assert!((kl[i] - (3f64.ln() - hi)).abs() < 1e-12); // KL to uniform = ln K − H
    }
    // soft CE = KL + H(target)
    let ce = soft_cross_entropy_per_sample(&u, &z, 1.0)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let kl_rev = kl_per_sample(&u, &z, 1.0).unwrap().to_vec1::<f64>().unwrap();
    for i in 0..2 {
        assert!((ce[i] - (kl_rev[i] + 3f64.ln())).abs() < 1e-12);
    }
    // error vector and disagreement
    let y = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
    let e = error_vector_norm(&z, &y).unwrap().to_vec1::<f64>().unwrap();
    let e0 = (p[0][0].powi(2) + (p[0][1] - 1.0).powi(2) + p[0][2].powi(2)).sqrt();
    assert!((e[0] - e0).abs() < 1e-12);
    let d = probability_distance(&z, &u).unwrap().to_vec1::<f64>().unwrap();
    let d0 = p[0].iter().map(|v| (v - 1.0 / 3.0).powi(2)).sum::<f64>().sqrt();
    assert!((d[0] - d0).abs() < 1e-12);
}

#[test]
fn temperature_and_stability() {
    let z = Tensor::new(&[[1000f32, 0.0]], &Device::Cpu).unwrap();
    let lp = log_softmax(&z, 1.0).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(lp[0][0], 0.0);
    assert_eq!(lp[0][1], -1000.0);
    // T = 2 halves the logits
    let a = softmax(&Tensor::new(&[[2f64, 0.0]], &Device::Cpu).unwrap(), 2.0).unwrap();
    let b = softmax(&Tensor::new(&[[1f64, 0.0]], &Device::Cpu).unwrap(), 1.0).unwrap();
    assert_eq!(a.to_vec2::<f64>().unwrap(), b.to_vec2::<f64>().unwrap());
    assert!(softmax(&z, 0.0).is_err());
}

#[test]
fn kl_gradient_matches_finite_differences() {
    let z = logits();
    let t = Tensor::new(&[[0.3f64, -0.2, 0.9], [2.0, 1.0, -1.0]], &Device::Cpu).unwrap();
    let v = Var::from_tensor(&z).unwrap();
    let g = kl_per_sample(&t, v.as_tensor(), 2.0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = g.get(v.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
    let base = z.to_vec2::<f64>().unwrap();
    let h = 1e-6;
    for i in 0..2 {
        for j in 0..3 {
            let f = |d: f64| {
                let mut m = base.clone();
                m[i][j] += d;
                let zt = Tensor::new(m, &Device::Cpu).unwrap();
                kl_per_sample(&t, &zt, 2.0)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let fd = (f(h) - f(-h)) / (2.0 * h);
            assert!((fd - g[i][j]).abs() < 1e-8, "({i},{j}) {fd} vs {}", g[i][j]);
        }
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let z = logits();
    let short = Tensor::new(&[[1f64, 2.0]], &Device::Cpu).unwrap();
    assert!(matches!(
        kl_per_sample(&z, &short, 1.0),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        error_vector_norm(&z, &Tensor::new(&[0u32, 3], &Device::Cpu).unwrap()),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        error_vector_norm(&z, &Tensor::new(&[0u32], &Device::Cpu).unwrap()),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        error_vector_norm(&z, &Tensor::new(&[0f32, 1.0], &Device::Cpu).unwrap()),
        Err(Error::UnsupportedDType { .. })
    ));
    assert!(log_softmax(&Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(), 1.0).is_err());
}

/// An op applied without backward: candle silently cuts the graph through it.
struct Double;
impl CustomOp1 for Double {
    fn name(&self) -> &'static str {
        "double"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(v) = s else {
            candle_core::bail!("f32 only")
        };
        let (a, b) = l.contiguous_offsets().unwrap();
        Ok((
            CpuStorage::F32(v[a..b].iter().map(|x| 2.0 * x).collect()),
            l.shape().clone(),
        ))
    }
}

#[test]
fn guard_names_variables_cut_from_the_graph() {
    let varmap = VarMap::new();
    let store = ParamStore::new(&varmap, DType::F32, &Device::Cpu);
    let a = store.var("a", 2, 1.0).unwrap();
    let b = store.var("b", 2, 1.0).unwrap();
    let _stats = store.var("bn.running_mean", 2, 0.0).unwrap(); // a buffer: ignored
    let loss = (a.as_tensor() + b.as_tensor().apply_op1_no_bwd(&Double).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let report = GradientReport::from_varmap(&varmap, &grads).unwrap();
    assert_eq!(report.missing, vec!["b".to_string()]);
    assert_eq!(report.checked, 2);
    match check_gradients(&varmap, &grads) {
        Err(Error::NoGradient { names }) => assert_eq!(names, vec!["b"]),
        other => panic!("expected NoGradient, got {other:?}"),
    }
    // all-zero gradients are reported separately: relu of negative values passes none
    let neg = store.var("neg", 2, -1.0).unwrap();
    let loss = (neg.as_tensor().relu().unwrap() + a.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let report = GradientReport::from_varmap(&varmap, &grads).unwrap();
    assert_eq!(report.all_zero, vec!["neg".to_string()]);
    assert_eq!(report.missing, vec!["b".to_string()]);
}

#[test]
fn quantized_layers_give_every_parameter_a_gradient() {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let store = ParamStore::new(&varmap, DType::F32, &dev);
    for (i, q) in [
        QatConfig::lsq(2, 2).unwrap(),
        QatConfig {
            activation: QuantizerConfig::Pact(PactConfig::default()),
            ..QatConfig::lsq(4, 4).unwrap()
        },
        QatConfig {
            weight: QuantizerConfig::LsqPlus(LsqPlusConfig {
                signedness: Signedness::Signed,
                ..Default::default()
            }),
            activation: QuantizerConfig::LsqPlus(LsqPlusConfig::default()),
            ..Default::default()
        },
    ]
    .iter()
    .enumerate()
    {
        let conv = QConv2d::new(
            2,
            3,
            3,
            Default::default(),
            true,
            &q.layer(LayerPosition::Middle),
            &store.pp(format!("c{i}")),
        )
        .unwrap();
        let x = common::rand_tensor(i as u64, &[2, 2, 5, 5], -1.0, 2.0, DType::F32);
        conv.calibrate(&x).unwrap();
        let loss = conv.forward_t(&x, true).unwrap().sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let names = [format!("c{i}.weight"), format!("c{i}.bias"), format!("c{i}.wq.step")];
        let data = varmap.data().lock().unwrap();
        for n in names {
            assert!(grads.get(data[&n].as_tensor()).is_some(), "{n} has no gradient");
        }
    }
}

#[test]
fn feature_map_keeps_order_and_replaces_in_place() {
    let dev = Device::Cpu;
    let mut f = FeatureMap::new();
    f.insert("b", Tensor::new(&[1f32], &dev).unwrap());
    f.insert("a", Tensor::new(&[2f32], &dev).unwrap());
    f.insert("b", Tensor::new(&[3f32], &dev).unwrap());
    assert_eq!(f.names().collect::<Vec<_>>(), vec!["b", "a"]);
    assert_eq!(f.get("b").unwrap().to_vec1::<f32>().unwrap(), vec![3.0]);
    assert!(f.get("c").is_none());
    assert_eq!(Progress::new(5, 20).fraction(), 0.25);
}

/// `QConv2d` applies its per-tensor LSQ input quantizer while packing the conv's operand: the
/// same output and the same gradients (input, weight, bias, both steps) as fake-quantizing the
/// input first and convolving, bit for bit; a NaN input is still a typed error.
#[test]
fn qconv2d_input_quant_fused_into_packing_matches_the_separate_passes() {
    use quarc_quant_core::conv2d_with_bias;
    let varmap = VarMap::new();
    let store = ParamStore::new(&varmap, DType::F32, &Device::Cpu);
    let quant = QatConfig::lsq(2, 2).unwrap().layer(LayerPosition::Middle);
    for (i, (k, stride)) in [(3usize, 1usize), (3, 2), (1, 1)].into_iter().enumerate() {
        let cfg = candle_nn::Conv2dConfig {
            padding: k / 2,
            stride,
            ..Default::default()
        };
        let conv = QConv2d::new(6, 5, k, cfg, true, &quant, &store.pp(format!("f{i}"))).unwrap();
        let x = Var::from_tensor(&common::rand_tensor(
            10 + i as u64,
            &[3, 6, 7, 7],
            -0.5,
            2.0,
            DType::F32,
        ))
        .unwrap();
        conv.calibrate(&x).unwrap();
        // The fused path really runs for this layer.
        let f = conv
            .activation_quantizer()
            .unwrap()
            .fusable_lsq(&x, true)
            .unwrap()
            .expect("fusable");
        let c = conv.conv().config();
        let p = quarc_kernels::Conv2dParams {
            padding: c.padding,
            stride: c.stride,
            dilation: c.dilation,
            groups: c.groups,
        };
        let w = conv.quantized_weight(true).unwrap();
        assert!(
            quarc_kernels::conv2d_lsq_input(&x, &w, &f.step, f.spec, &p)
                .unwrap()
                .is_some()
        );
        let run = |fused: bool| {
            let y = if fused {
                conv.forward_t(&x, true).unwrap()
            } else {
                let xq = conv.activation_quantizer().unwrap().forward_t(&x, true).unwrap();
                let w = conv.quantized_weight(true).unwrap();
                conv2d_with_bias(&xq, &w, conv.conv().bias(), &p).unwrap()
            };
            let up = common::rand_tensor(50, y.dims(), -1.0, 1.0, DType::F32);
            let grads = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let data = varmap.data().lock().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut out = vec![flat(&y), flat(grads.get(&x).unwrap())];
            for n in ["weight", "bias", "wq.step", "aq.step"] {
                out.push(flat(grads.get(data[&format!("f{i}.{n}")].as_tensor()).unwrap()));
            }
            out
        };
        let (fused, separate) = (run(true), run(false));
        for (j, name) in ["y", "dx", "dw", "dbias", "d weight step", "d input step"]
            .iter()
            .enumerate()
        {
            assert_eq!(fused[j], separate[j], "k{k} s{stride}: {name}");
        }
        assert!(fused[5][0].abs() > 0.0, "the input step gets a gradient");
        let mut bad = common::rand_tensor(3, &[1, 6, 7, 7], -0.5, 2.0, DType::F32)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        bad[5] = f32::NAN;
        let bad = Tensor::from_vec(bad, (1, 6, 7, 7), &Device::Cpu).unwrap();
        assert!(matches!(
            conv.forward_t(&bad, true),
            Err(quarc_quant_core::Error::NonFinite { .. })
        ));
    }
}
