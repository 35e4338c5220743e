//! Fused training-mode BatchNorm (+ReLU/ReLU6) against the composed candle reference:
//! outputs, batch statistics and all three gradients; a hand-computed case.

use candle_core::{DType, Device, Tensor, Var};
use proptest::prelude::*;
use quarc_kernels::{Activation, batch_norm_train, batch_norm_train_reference};

mod common;

/// Values uniform in (shift − scale, shift + scale), seeded.
fn seeded(seed: u64, dims: &[usize], scale: f32, shift: f32) -> Tensor {
    (common::seeded(seed, dims, scale) + shift as f64).unwrap()
}

use common::rel_err as max_rel;

fn check(n: usize, c: usize, h: usize, w: usize, act: Activation, seed: u64) {
    let x = seeded(seed, &[n, c, h, w], 2.0, 0.5);
    let gamma = seeded(seed + 1, &[c], 1.0, 1.0);
    let beta = seeded(seed + 2, &[c], 0.5, 0.0);
    let up = seeded(seed + 3, &[n, c, h, w], 1.0, 0.0);
    let run = |fast: bool| {
        let (xv, gv, bv) = (
            Var::from_tensor(&x).unwrap(),
            Var::from_tensor(&gamma).unwrap(),
            Var::from_tensor(&beta).unwrap(),
        );
        let f = if fast {
            batch_norm_train
        } else {
            batch_norm_train_reference
        };
        let (y, stats) = f(&xv, &gv, &bv, 1e-5, act).unwrap();
        let g = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
        (
            y,
            stats,
            g.get(&xv).unwrap().clone(),
            g.get(&gv).unwrap().clone(),
            g.get(&bv).unwrap().clone(),
        )
    };
    let (a, b) = (run(true), run(false));
    let ctx = format!("{n}×{c}×{h}×{w} {act:?}");
    // y is normalised (O(1) before γ, β); after a ReLU the largest output can be much smaller
    // than the pre-activation scale the rounding error follows, so the scale is at least 1.
    let y_err = common::rel_err_floor(&a.0, &b.0, 1.0);
    assert!(y_err <= 1e-5, "y {ctx}: {y_err} (relative to max(|y|, 1))");
    assert_eq!(a.1.count, b.1.count);
    for (p, q) in a.1.mean.iter().zip(&b.1.mean).chain(a.1.var.iter().zip(&b.1.var)) {
        assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "stats {ctx}: {p} vs {q}");
    }
    // dx cancels three terms of the size γ·σ⁻¹·|dy| (exactly for two elements per channel), so
    // its error is measured against that scale.
    let natural =
        b.1.var
            .iter()
            .zip(gamma.to_vec1::<f32>().unwrap())
            .map(|(v, g)| g.abs() / (v + 1e-5).sqrt())
            .fold(0.0f32, f32::max)
            * up.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let dx_err = common::max_abs_diff(&a.2, &b.2);
    assert!(
        dx_err <= 1e-5 * natural,
        "dx {ctx}: {dx_err} against a scale of {natural}"
    );
    // dγ = Σ dy·x̂ over a channel also cancels (x̂ has mean zero: with three elements per channel
    // it can be far smaller than its terms), so its error is measured against Σ |dy·x̂|.
    let (mean, var) = (
        Tensor::new(b.1.mean.as_slice(), &Device::Cpu)
            .unwrap()
            .reshape((1, c, 1, 1))
            .unwrap(),
        Tensor::new(b.1.var.as_slice(), &Device::Cpu)
            .unwrap()
            .reshape((1, c, 1, 1))
            .unwrap(),
    );
    let x_hat = x
        .broadcast_sub(&mean)
        .unwrap()
        .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
        .unwrap();
    let dgamma_scale = (&up * &x_hat)
        .unwrap()
        .abs()
        .unwrap()
        .sum_keepdim((0, 2, 3))
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let dgamma_err = common::max_abs_diff(&a.3, &b.3);
    assert!(
        dgamma_err <= 1e-5 * dgamma_scale.max(1e-3),
        "dγ {ctx}: {dgamma_err} against a scale of {dgamma_scale}"
    );
    assert!(max_rel(&a.4, &b.4) < 1e-4, "dβ {ctx}: {}", max_rel(&a.4, &b.4));
}

#[test]
fn planes_of_256_values_and_more_agree_too() {
    // the input gradient runs plane by plane from 256 values (image by image below)
    check(2, 3, 16, 16, Activation::Relu, 31);
    check(3, 2, 17, 19, Activation::Relu6, 32);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn fused_batch_norm_agrees_with_the_composed_one(
        n in 1usize..=6, c in 1usize..=20, h in 1usize..=9, w in 1usize..=9,
        act in prop::sample::select(vec![Activation::Identity, Activation::Relu, Activation::Relu6]),
        seed in 0u64..1000,
    ) {
        prop_assume!(n * h * w > 1);
        check(n, c, h, w, act, seed);
    }
}

#[test]
fn model_sized_inputs_agree() {
    check(16, 32, 28, 28, Activation::Relu, 1);
    check(8, 64, 8, 8, Activation::Identity, 2);
    check(8, 48, 16, 16, Activation::Relu6, 3);
}

#[test]
fn hand_computed_channel() {
    // one channel [1, 2, 3, 4]: μ = 2.5, σ² = 1.25; γ = 2, β = 1 → y = 2·(x − 2.5)/√1.25 + 1
    let x = Var::from_tensor(
        &Tensor::new(&[1f32, 2.0, 3.0, 4.0], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 2, 2))
            .unwrap(),
    )
    .unwrap();
    let g = Var::from_tensor(&Tensor::new(&[2f32], &Device::Cpu).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::new(&[1f32], &Device::Cpu).unwrap()).unwrap();
    let (y, stats) = batch_norm_train(&x, &g, &b, 0.0, Activation::Identity).unwrap();
    assert_eq!(stats.mean, vec![2.5]);
    assert_eq!(stats.var, vec![1.25]);
    assert_eq!(stats.count, 4);
    let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let s = 1.25f32.sqrt();
    for (v, xi) in got.iter().zip([1f32, 2.0, 3.0, 4.0]) {
        assert!((v - (2.0 * (xi - 2.5) / s + 1.0)).abs() < 1e-6);
    }
    // d/dβ Σy = 4; d/dγ Σy = Σ x̂ = 0; d/dx Σy = 0 (the mean removes a constant shift)
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(grads.get(&b).unwrap().to_vec1::<f32>().unwrap(), vec![4.0]);
    assert!(grads.get(&g).unwrap().to_vec1::<f32>().unwrap()[0].abs() < 1e-6);
    let dx = grads.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(dx.iter().all(|v| v.abs() < 1e-6), "{dx:?}");
}

#[test]
fn other_dtypes_use_the_reference() {
    let x = seeded(1, &[2, 3, 4, 4], 1.0, 0.0).to_dtype(DType::F64).unwrap();
    let g = Tensor::ones(3, DType::F64, &Device::Cpu).unwrap();
    let b = Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap();
    let (y, stats) = batch_norm_train(&x, &g, &b, 1e-5, Activation::Relu).unwrap();
    assert_eq!(y.dtype(), DType::F64);
    assert_eq!(stats.mean.len(), 3);
    assert!(
        batch_norm_train(
            &seeded(1, &[2, 3, 4, 4], 1.0, 0.0),
            &Tensor::ones(4, DType::F32, &Device::Cpu).unwrap(),
            &Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
            1e-5,
            Activation::Relu
        )
        .is_err()
    );
}

#[test]
fn channel_affine_agrees_with_the_composed_one() {
    use quarc_kernels::{channel_affine, channel_affine_reference};
    for act in [Activation::Identity, Activation::Relu, Activation::Relu6] {
        let x = seeded(5, &[3, 4, 5, 6], 4.0, 1.0);
        let scale = seeded(6, &[4], 1.0, 0.5);
        let shift = seeded(7, &[4], 1.0, 0.0);
        let up = seeded(8, &[3, 4, 5, 6], 1.0, 0.0);
        let run = |fast: bool| {
            let (xv, sv, tv) = (
                Var::from_tensor(&x).unwrap(),
                Var::from_tensor(&scale).unwrap(),
                Var::from_tensor(&shift).unwrap(),
            );
            let f = if fast { channel_affine } else { channel_affine_reference };
            let y = f(&xv, &sv, &tv, act).unwrap();
            let g = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
            (
                y,
                g.get(&xv).unwrap().clone(),
                g.get(&sv).unwrap().clone(),
                g.get(&tv).unwrap().clone(),
            )
        };
        let (a, b) = (run(true), run(false));
        assert!(max_rel(&a.0, &b.0) < 1e-6, "{act:?}");
        assert!(max_rel(&a.1, &b.1) < 1e-6, "{act:?}");
        assert!(max_rel(&a.2, &b.2) < 1e-5, "{act:?}");
        assert!(max_rel(&a.3, &b.3) < 1e-5, "{act:?}");
    }
}

#[test]
fn an_empty_plane_is_an_error_not_a_panic() {
    let x = Tensor::zeros((2, 3, 0, 4), DType::F32, &Device::Cpu).unwrap();
    let g = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    let err = batch_norm_train(&x, &g, &b, 1e-5, Activation::Relu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
}

/// The bits of the fused BatchNorm's output, statistics and gradients on a few shapes (planes
/// whose size is and is not a multiple of the vector width), every activation, folded into one
/// FNV-1a hash.
fn fused_bits_hash() -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |values: Vec<f32>| {
        for v in values {
            hash = (hash ^ v.to_bits() as u64).wrapping_mul(0x0100_0000_01b3);
        }
    };
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (i, (dims, act)) in [
        ([3usize, 5, 7, 9], Activation::Relu),
        ([2, 4, 8, 8], Activation::Relu6),
        ([2, 3, 4, 5], Activation::Identity),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 70 + 4 * i as u64;
        let x = Var::from_tensor(&seeded(seed, &dims, 2.0, 0.5)).unwrap();
        let gamma = Var::from_tensor(&seeded(seed + 1, &[dims[1]], 1.0, 1.0)).unwrap();
        let beta = Var::from_tensor(&seeded(seed + 2, &[dims[1]], 0.5, 0.0)).unwrap();
        let up = seeded(seed + 3, &dims, 1.0, 0.0);
        let (y, stats) = batch_norm_train(&x, &gamma, &beta, 1e-5, act).unwrap();
        let g = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
        eat(flat(&y));
        eat(stats.mean.clone());
        eat(stats.var.clone());
        for v in [&x, &gamma, &beta] {
            eat(flat(g.get(v).unwrap()));
        }
    }
    hash
}

/// The child of [`every_vector_width_gives_the_same_bits`]: prints the hash when
/// `QUARC_CPU_ISA` is set.
#[test]
fn capped_vector_width_bits_child() {
    if let Ok(cap) = std::env::var("QUARC_CPU_ISA") {
        assert_eq!(quarc_kernels::vector_isa(), cap, "the child runs the capped path");
        println!("BN-BITS {:016x}", fused_bits_hash());
    }
}

/// The BatchNorm loops are compiled for AVX-512F, AVX2 and baseline x86-64: the three paths
/// (the narrower ones in child processes capped by `QUARC_CPU_ISA`) give the same bits.
#[test]
fn every_vector_width_gives_the_same_bits() {
    let own = format!("BN-BITS {:016x}", fused_bits_hash());
    for cap in ["avx2", "sse2"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "capped_vector_width_bits_child",
                "--test-threads",
                "1",
                "--nocapture",
            ])
            .env("QUARC_CPU_ISA", cap)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cap}: {log}");
        assert!(log.contains(&own), "{cap} gave other bits than {own}: {log}");
    }
}
