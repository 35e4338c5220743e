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
