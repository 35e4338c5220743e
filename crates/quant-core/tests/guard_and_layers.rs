//! The no-gradient guard, gradients of the quantized layers, and the fused input quantization of QConv2d.
//! (The per-sample functional ops are tested in quarc-base.)

mod common;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var};
use candle_nn::VarMap;
use quarc_quant_core::*;

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
        // Calibrated on non-negative inputs (an unsigned input quantizer refuses negative ones),
        // then run on inputs that reach below 0, so the clipped region's gradients are covered.
        conv.calibrate(&x.abs().unwrap()).unwrap();
        let loss = conv.forward_t(&x, true).unwrap().sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let names = [format!("c{i}.weight"), format!("c{i}.bias"), format!("c{i}.wq.step")];
        let data = varmap.data().lock().unwrap();
        for n in names {
            assert!(grads.get(data[&n].as_tensor()).is_some(), "{n} has no gradient");
        }
    }
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
        conv.calibrate(&x.abs().unwrap()).unwrap(); // unsigned input codes: calibrated on |x|
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

/// The shared ops report their errors in quarc-base's type; in quant-core they become the
/// variant of the same name, so `?` keeps the kind of error.
#[test]
fn shared_op_errors_keep_their_kind_in_quant_core() {
    let z = Tensor::new(&[[1f32, 2.0, 0.5]], &Device::Cpu).unwrap();
    let short = Tensor::new(&[[1f32, 2.0]], &Device::Cpu).unwrap();
    let e = functional::kl_per_sample(&z, &short, 1.0).unwrap_err();
    match Error::from(e) {
        Error::ShapeMismatch { expected, got, .. } => assert_eq!((expected, got), (vec![1, 3], vec![1, 2])),
        other => panic!("expected a shape mismatch, got {other:?}"),
    }
    let e = functional::softmax(&z, 0.0).unwrap_err();
    assert!(matches!(Error::from(e), Error::InvalidConfig(_)));
}
