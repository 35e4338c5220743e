//! The input fake-quant fused into the conv's operand packing against the separate passes
//! (fake-quant kernel, then the conv; the fake-quant backward after the conv's input gradient):
//! forward and all three gradients bit for bit (im2col and Winograd), the shapes where it does
//! not apply, and NaN.

mod common;

use candle_core::{Device, Tensor, Var};
use common::seeded;
use quarc_kernels::fake_quant::{self, ChannelLayout, Params, StepGrad};
use quarc_kernels::{Conv2dParams, LsqInput, conv2d, conv2d_grad_input, conv2d_grad_weight, conv2d_lsq_input};

/// Unsigned 2-bit grid with LSQ's per-sample gradient scale for a made-up N.
const SPEC: LsqInput = LsqInput {
    qn: 0.0,
    qp: 3.0,
    eps: 1e-8,
    grad_scale: 0.05,
};

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn fused_packing_matches_the_separate_passes_bit_for_bit() {
    // (batch, c_in, c_out, size, kernel, stride, padding)
    for (i, &(b, ci, co, hw, k, s, p)) in [
        (2, 5, 7, 9, 3, 1, 1),      // 3×3, the phase-split packing
        (3, 4, 6, 8, 3, 2, 1),      // stride 2
        (2, 6, 5, 7, 1, 1, 0),      // pointwise: fused packing instead of the direct GEMM operand
        (2, 6, 5, 8, 1, 2, 0),      // strided 1×1: the direct gather
        (1, 3, 4, 6, 5, 1, 2),      // 5×5
        (17, 128, 128, 4, 3, 1, 1), // Winograd (default policy): a block of 16 images and one more
    ]
    .iter()
    .enumerate()
    {
        let cp = Conv2dParams {
            padding: p,
            stride: s,
            ..Default::default()
        };
        let step = 0.3f32;
        // Inputs over (−1, 2): below, inside and above the grid [0, 0.9].
        let x0 = (seeded(i as u64, &[b, ci, hw, hw], 1.5) + 0.5).unwrap();
        let w0 = seeded(20 + i as u64, &[co, ci, k, k], 0.5);
        let (x, w, sv) = (
            Var::from_tensor(&x0).unwrap(),
            Var::from_tensor(&w0).unwrap(),
            Var::new(&[step], &Device::Cpu).unwrap(),
        );
        let (y, nan) = conv2d_lsq_input(&x, &w, &sv, SPEC, &cp)
            .unwrap()
            .expect("the fusion applies");
        assert!(!nan);
        let up = seeded(40 + i as u64, y.dims(), 1.0);
        let grads = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();

        // The separate passes.
        let xs = flat(&x0);
        let fq = Params {
            steps: &[step],
            offsets: None,
            qn: SPEC.qn,
            qp: SPEC.qp,
            eps: SPEC.eps,
            layout: ChannelLayout::per_tensor(xs.len()),
        };
        let mut xq = vec![0.0f32; xs.len()];
        assert!(!fake_quant::forward(&xs, &fq, &mut xq));
        let xq = Tensor::from_vec(xq, x0.dims(), &Device::Cpu).unwrap();
        let y_ref = conv2d(&xq, &w0, &cp).unwrap();
        let dxq = conv2d_grad_input(&up, &w0, (hw, hw), &cp).unwrap();
        let mut dx_ref = vec![0.0f32; xs.len()];
        let (ds, _) = fake_quant::backward(&xs, &flat(&dxq), &fq, StepGrad::Lsq, &mut dx_ref);
        let dw_ref = conv2d_grad_weight(&xq, &up, (k, k), &cp).unwrap();

        assert_eq!(flat(&y), flat(&y_ref), "forward, shape {i}");
        assert_eq!(flat(grads.get(&w).unwrap()), flat(&dw_ref), "d w, shape {i}");
        assert_eq!(flat(grads.get(&x).unwrap()), dx_ref, "d x, shape {i}");
        assert_eq!(
            flat(grads.get(&sv).unwrap()),
            vec![(ds[0] * SPEC.grad_scale) as f32],
            "d step, shape {i}"
        );
        // The step gradient is not trivially zero here.
        assert!(ds[0].abs() > 1e-3, "shape {i}: d step {}", ds[0]);
    }
}

#[test]
fn shapes_outside_the_dense_paths_are_left_to_the_caller() {
    let step = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
    let x = Tensor::ones((1, 4, 6, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
    let depthwise = Conv2dParams {
        padding: 1,
        groups: 4,
        ..Default::default()
    };
    let wd = Tensor::ones((4, 1, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(conv2d_lsq_input(&x, &wd, &step, SPEC, &depthwise).unwrap().is_none());
    let pad1 = Conv2dParams {
        padding: 1,
        ..Default::default()
    };
    // Per-channel steps are not fused.
    let w = Tensor::ones((2, 4, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let steps = Tensor::new(&[0.5f32, 0.5], &Device::Cpu).unwrap();
    assert!(conv2d_lsq_input(&x, &w, &steps, SPEC, &pad1).unwrap().is_none());
}

#[test]
fn a_nan_input_is_reported() {
    let mut v = vec![0.25f32; 2 * 3 * 5 * 5];
    v[17] = f32::NAN;
    let x = Tensor::from_vec(v, (2, 3, 5, 5), &Device::Cpu).unwrap();
    let w = Tensor::ones((4, 3, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let step = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
    let p = Conv2dParams {
        padding: 1,
        ..Default::default()
    };
    let (_, nan) = conv2d_lsq_input(&x, &w, &step, SPEC, &p).unwrap().unwrap();
    assert!(nan);
}
