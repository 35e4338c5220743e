//! conv2d + evaluation-mode BatchNorm (+ activation) in one pass against the separate ops:
//! bit-identical forward on every algorithm (im2col, pointwise, Winograd, depthwise), and
//! gradients for all four inputs against candle's composed reference.

mod common;

use candle_core::{Tensor, Var};
use common::{rel_err, seeded};
use quarc_kernels::{Activation, Conv2dParams, channel_affine, conv2d, conv2d_affine_act, conv2d_affine_act_reference};

/// (batch, c_in, c_out, size, kernel, stride, groups): one shape per algorithm.
const SHAPES: [(usize, usize, usize, usize, usize, usize, usize); 6] = [
    (3, 5, 7, 9, 3, 1, 1),     // im2col
    (2, 6, 4, 7, 3, 2, 1),     // im2col, stride 2
    (3, 8, 12, 5, 1, 1, 1),    // pointwise (plain GEMM)
    (2, 256, 256, 4, 3, 1, 1), // Winograd (≥ 256 channels)
    (2, 6, 6, 9, 3, 2, 6),     // depthwise
    (2, 5, 5, 7, 3, 1, 5),     // depthwise, stride 1 on a small plane (masked loads)
];

const ACTS: [Activation; 3] = [Activation::Identity, Activation::Relu, Activation::Relu6];

fn params(k: usize, stride: usize, groups: usize) -> Conv2dParams {
    Conv2dParams {
        padding: k / 2,
        stride,
        dilation: 1,
        groups,
    }
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn the_fused_forward_is_bit_identical_to_conv_then_affine() {
    for (i, &(b, ci, co, hw, k, s, g)) in SHAPES.iter().enumerate() {
        let p = params(k, s, g);
        let x = seeded(i as u64, &[b, ci, hw, hw], 1.0);
        let w = seeded(50 + i as u64, &[co, ci / g, k, k], 0.3);
        // Scales of both signs so that ReLU6 clips on both sides.
        let scale = seeded(90 + i as u64, &[co], 4.0);
        let shift = seeded(95 + i as u64, &[co], 2.0);
        for act in ACTS {
            let fused = conv2d_affine_act(&x, &w, &scale, &shift, act, &p).unwrap();
            let separate = channel_affine(&conv2d(&x, &w, &p).unwrap(), &scale, &shift, act).unwrap();
            assert_eq!(flat(&fused), flat(&separate), "shape {i}, {act:?}");
        }
    }
}

#[test]
fn gradients_of_all_four_inputs_match_the_composed_reference() {
    for (i, &(b, ci, co, hw, k, s, g)) in SHAPES.iter().enumerate() {
        if ci >= 256 {
            continue; // the Winograd shape's forward is covered above; keep this test fast
        }
        let p = params(k, s, g);
        let vars = [
            Var::from_tensor(&seeded(i as u64, &[b, ci, hw, hw], 1.0)).unwrap(),
            Var::from_tensor(&seeded(50 + i as u64, &[co, ci / g, k, k], 0.3)).unwrap(),
            Var::from_tensor(&seeded(90 + i as u64, &[co], 2.0)).unwrap(),
            Var::from_tensor(&seeded(95 + i as u64, &[co], 1.0)).unwrap(),
        ];
        for act in ACTS {
            let grads = |fused: bool| {
                let f = if fused {
                    conv2d_affine_act
                } else {
                    conv2d_affine_act_reference
                };
                let y = f(&vars[0], &vars[1], &vars[2], &vars[3], act, &p).unwrap();
                let up = seeded(7, y.dims(), 1.0);
                let gs = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
                vars.iter().map(|v| gs.get(v).unwrap().clone()).collect::<Vec<_>>()
            };
            let (a, r) = (grads(true), grads(false));
            for (name, (ga, gr)) in ["x", "w", "scale", "shift"].iter().zip(a.iter().zip(&r)) {
                let e = rel_err(ga, gr);
                assert!(e < 1e-5, "shape {i}, {act:?}: d{name} relative error {e:e}");
            }
        }
    }
}
