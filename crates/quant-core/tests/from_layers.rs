//! `QConv2d::from_conv` / `QLinear::from_linear` copy the FP layer's tensors into the twin's
//! store: training the twin never writes into the FP layer, and the twin's map holds weights.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Conv2d, Linear, Optimizer, VarMap};
use quarc_quant_core::{LayerPosition, ParamStore, QConv2d, QLinear, QatConfig};

#[test]
fn quantized_copies_train_their_own_weights_and_leave_the_source_alone() {
    let dev = Device::Cpu;
    // The FP layers' tensors are variables of another map: wrapping them would alias.
    let w = Var::from_tensor(&Tensor::rand(-0.5f32, 0.5, (4, 3, 3, 3), &dev).unwrap()).unwrap();
    let lw = Var::from_tensor(&Tensor::rand(-0.5f32, 0.5, (2, 4), &dev).unwrap()).unwrap();
    let lb = Var::from_tensor(&Tensor::zeros(2, DType::F32, &dev).unwrap()).unwrap();
    let conv = Conv2d::new(w.as_tensor().clone(), None, Default::default());
    let linear = Linear::new(lw.as_tensor().clone(), Some(lb.as_tensor().clone()));
    let before: Vec<Vec<f32>> = [&w, &lw, &lb]
        .iter()
        .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();

    let varmap = VarMap::new();
    let store = ParamStore::new(&varmap, DType::F32, &dev);
    let quant = QatConfig::lsq(4, 4).unwrap().layer(LayerPosition::Middle);
    let qconv = QConv2d::from_conv(&conv, &quant, &store.pp("conv")).unwrap();
    let qfc = QLinear::from_linear(&linear, &quant, &store.pp("fc")).unwrap();
    {
        let names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
        for n in ["conv.weight", "fc.weight", "fc.bias"] {
            assert!(names.iter().any(|k| k == n), "the twin's map lacks `{n}`: {names:?}");
        }
    }
    let x = Tensor::rand(0f32, 1.0, (2, 3, 6, 6), &dev).unwrap();
    qconv.calibrate(&x).unwrap();
    let h = qconv
        .forward_t(&x, false)
        .unwrap()
        .relu()
        .unwrap()
        .mean((2, 3))
        .unwrap();
    qfc.calibrate(&h).unwrap();
    let mut sgd = candle_nn::SGD::new(varmap.all_vars(), 0.1).unwrap();
    for _ in 0..3 {
        let h = qconv.forward_t(&x, true).unwrap().relu().unwrap().mean((2, 3)).unwrap();
        let loss = qfc.forward_t(&h, true).unwrap().sqr().unwrap().sum_all().unwrap();
        sgd.backward_step(&loss).unwrap();
    }
    let after: Vec<Vec<f32>> = [&w, &lw, &lb]
        .iter()
        .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    assert_eq!(before, after, "training the quantized copy changed the FP layer");
    let trained = varmap.data().lock().unwrap()["fc.weight"]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_ne!(trained, before[1], "the copy's weight never trained");
}

/// Conv hyper-parameters that would divide by zero or overflow are typed errors, when the layer
/// is built and when a conv runs.
#[test]
fn conv_geometry_that_would_crash_is_a_typed_error() {
    use candle_nn::Conv2dConfig;
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let store = ParamStore::new(&varmap, DType::F32, &dev);
    let quant = QatConfig::lsq(4, 4).unwrap().layer(LayerPosition::Middle);
    let bad = [
        Conv2dConfig {
            stride: 0,
            ..Default::default()
        },
        Conv2dConfig {
            dilation: 0,
            ..Default::default()
        },
        Conv2dConfig {
            padding: usize::MAX / 2,
            ..Default::default()
        },
        Conv2dConfig {
            dilation: 1 << 40,
            ..Default::default()
        },
    ];
    for (i, cfg) in bad.into_iter().enumerate() {
        let e = QConv2d::new(3, 4, 3, cfg, false, &quant, &store.pp(format!("bad{i}"))).unwrap_err();
        assert!(e.to_string().contains("stride"), "{e}");
        // the same geometry handed straight to the conv op
        let conv = Conv2d::new(Tensor::zeros((4, 3, 3, 3), DType::F32, &dev).unwrap(), None, cfg);
        assert!(QConv2d::from_conv(&conv, &quant, &store.pp(format!("from{i}"))).is_err());
        let params = quarc_kernels::Conv2dParams {
            padding: cfg.padding,
            stride: cfg.stride,
            dilation: cfg.dilation,
            groups: 1,
        };
        let x = Tensor::zeros((1, 3, 8, 8), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((4, 3, 3, 3), DType::F32, &dev).unwrap();
        assert!(quarc_kernels::conv2d(&x, &w, &params).is_err(), "case {i}");
    }
    // a kernel larger than the padded input
    let p = quarc_kernels::Conv2dParams::default();
    let x = Tensor::zeros((1, 3, 2, 2), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((4, 3, 3, 3), DType::F32, &dev).unwrap();
    assert!(quarc_kernels::conv2d(&x, &w, &p).is_err());
}

/// An integer export whose conv geometry was tampered with (stride 0) is refused at load, not
/// run into a division by zero.
#[test]
fn an_export_with_a_zero_stride_is_refused_at_load() {
    use candle_nn::Conv2dConfig;
    use quarc_quant_core::export::{IntegerExport, export_conv2d};
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let store = ParamStore::new(&varmap, DType::F32, &dev);
    let quant = QatConfig::lsq(4, 4).unwrap().layer(LayerPosition::Middle);
    let cfg = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let conv = QConv2d::new(3, 4, 3, cfg, false, &quant, &store.pp("c")).unwrap();
    conv.calibrate(&Tensor::rand(0f32, 1.0, (2, 3, 6, 6), &dev).unwrap())
        .unwrap();
    let export = IntegerExport {
        layers: vec![export_conv2d("c", &conv, None).unwrap()],
        config: None,
    };
    let path = std::env::temp_dir().join(format!("quarc-stride0-{}.safetensors", std::process::id()));
    export.save(&path).unwrap();
    assert!(IntegerExport::load(&path).is_ok());
    let bytes = std::fs::read(&path).unwrap();
    let key = b"stride\\\":1"; // `stride\":1` inside the escaped layer metadata
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("stride in the header");
    let mut tampered = bytes.clone();
    tampered[at + key.len() - 1] = b'0';
    std::fs::write(&path, &tampered).unwrap();
    let e = IntegerExport::load(&path).unwrap_err();
    assert!(e.to_string().contains("stride 0"), "{e}");
    std::fs::remove_file(&path).unwrap();
}
