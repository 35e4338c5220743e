//! Winograd (F(4×4, 3×3), or F(2×2, 3×3) where the batch gives too few tiles) against an f64
//! direct loop and against im2col: forward, input gradient and weight gradient over
//! random shapes (1e-4 relative), its f32 error on ResNet-18's layer shapes, and determinism
//! across thread counts. Its own test binary, because it switches the process-wide Winograd
//! setting.

mod common;

use std::sync::{Mutex, MutexGuard};

use candle_core::{Tensor, Var};
use common::{naive, rel_err64, seeded};
use proptest::prelude::*;
use quarc_kernels::{
    Conv2dParams, LsqInput, WinogradPolicy, conv2d, conv2d_lsq_input, keeping_winograd_tiles, set_winograd,
    winograd_tiles_reused,
};

/// Tests here switch the process-wide Winograd setting: they take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `(y, dx, dw)` of `Σ conv2d(x, w) · upstream` through the fast path.
fn fast(x: &Tensor, w: &Tensor, up: &Tensor, p: &Conv2dParams) -> (Tensor, Tensor, Tensor) {
    let (xv, wv) = (Var::from_tensor(x).unwrap(), Var::from_tensor(w).unwrap());
    let y = conv2d(&xv, &wv, p).unwrap();
    let g = (&y * up).unwrap().sum_all().unwrap().backward().unwrap();
    (y, g.get(&xv).unwrap().clone(), g.get(&wv).unwrap().clone())
}

/// Max relative errors of `(y, dx, dw)` against the f64 loop, with Winograd on and off.
fn errors(batch: usize, c_in: usize, c_out: usize, h: usize, w: usize, pad: usize, seed: u64) -> [(f64, f64, f64); 2] {
    let p = Conv2dParams {
        padding: pad,
        ..Default::default()
    };
    let x = seeded(seed, &[batch, c_in, h, w], 1.0);
    let wt = seeded(seed + 1, &[c_out, c_in, 3, 3], 0.5);
    let up = seeded(seed + 2, &[batch, c_out, h + 2 * pad - 2, w + 2 * pad - 2], 1.0);
    let (ny, ndx, ndw) = naive(&x, &wt, &up, &p);
    let mut out = [(0.0, 0.0, 0.0); 2];
    for (slot, policy) in out.iter_mut().zip([WinogradPolicy::Always, WinogradPolicy::Off]) {
        set_winograd(policy);
        let (y, dx, dw) = fast(&x, &wt, &up, &p);
        *slot = (rel_err64(&y, &ny), rel_err64(&dx, &ndx), rel_err64(&dw, &ndw));
    }
    set_winograd(WinogradPolicy::Always);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn winograd_agrees_with_the_f64_direct_sum(
        batch in 1usize..=5, c_in in 1usize..=40, c_out in 1usize..=40,
        h in 1usize..12, w in 1usize..12, pad in 0usize..=2, seed in 0u64..1000,
    ) {
        prop_assume!(h + 2 * pad >= 3 && w + 2 * pad >= 3);
        let _turn = serial();
        let [(wy, wdx, wdw), (iy, idx, idw)] = errors(batch, c_in, c_out, h, w, pad, seed);
        prop_assert!(wy < 1e-4 && wdx < 1e-4 && wdw < 1e-4, "winograd y {wy:e} dx {wdx:e} dw {wdw:e}");
        prop_assert!(iy < 1e-5 && idx < 1e-5 && idw < 1e-5, "im2col y {iy:e} dx {idx:e} dw {idw:e}");
    }
}

#[test]
fn winograd_error_on_resnet18_layers_is_bounded() {
    // ResNet-18's stride-1 3×3 layers at batch 1 (the f64 loop is the cost), unit-scale inputs.
    let _turn = serial();
    let mut worst = 0.0f64;
    for (i, &(c, hw)) in [(64usize, 32usize), (128, 16), (256, 8), (512, 4)].iter().enumerate() {
        let [(wy, wdx, wdw), (iy, idx, idw)] = errors(1, c, c, hw, hw, 1, 40 + i as u64);
        println!(
            "{c}x{c}@{hw}: winograd y {wy:.2e} dx {wdx:.2e} dw {wdw:.2e}; im2col y {iy:.2e} dx {idx:.2e} dw {idw:.2e}"
        );
        // F(4×4, 3×3) where it runs (64 @ 32² at batch 1; the others have too few tiles), whose
        // constants (1/6, 1/24, 5, 8) cost ten to twenty times im2col's f32 error (measured
        // 0.4–1.7e-5 of the largest output); F(2×2, 3×3) adds and halves only.
        assert!(
            wy < 3e-5 && wdx < 3e-5 && wdw < 3e-5,
            "winograd error {wy:e} / {wdx:e} / {wdw:e} on {c}@{hw}"
        );
        worst = worst.max(wy).max(wdx).max(wdw);
    }
    assert!(worst > 0.0, "the comparison must see some f32 rounding");
}

#[test]
fn winograd_results_do_not_depend_on_the_thread_count() {
    let p = Conv2dParams {
        padding: 1,
        ..Default::default()
    };
    let x = seeded(7, &[18, 16, 7, 10], 1.0);
    let w = seeded(8, &[24, 16, 3, 3], 0.5);
    let up = seeded(9, &[18, 24, 7, 10], 1.0);
    let _turn = serial();
    set_winograd(WinogradPolicy::Always);
    let once = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let (y, dx, dw) = fast(&x, &w, &up, &p);
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (flat(&y), flat(&dx), flat(&dw))
        })
    };
    assert_eq!(once(1), once(3));
}

/// `(y, dx, dw, dstep)` bits of `Σ conv · upstream`, the forward inside
/// `keeping_winograd_tiles` or not; with `step`, the input is fake-quantized in the packing.
fn gradient_bits(
    x: &Tensor,
    w: &Tensor,
    up: &Tensor,
    p: &Conv2dParams,
    step: Option<f32>,
    keep: bool,
) -> Vec<Vec<u32>> {
    let (xv, wv) = (Var::from_tensor(x).unwrap(), Var::from_tensor(w).unwrap());
    let sv = Var::new(&[step.unwrap_or(1.0)], x.device()).unwrap();
    let forward = || match step {
        None => conv2d(&xv, &wv, p).unwrap(),
        Some(_) => conv2d_lsq_input(&xv, &wv, &sv, SPEC, p).unwrap().expect("fused").0,
    };
    let y = if keep {
        keeping_winograd_tiles(forward)
    } else {
        forward()
    };
    let g = (&y * up).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![y, g.get(&xv).unwrap().clone(), g.get(&wv).unwrap().clone()];
    out.extend(step.map(|_| g.get(&sv).unwrap().clone()));
    let bits = |t: &Tensor| {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    out.iter().map(bits).collect()
}

/// Unsigned 2-bit input grid.
const SPEC: LsqInput = LsqInput {
    qn: 0.0,
    qp: 3.0,
    eps: 1e-8,
    grad_scale: 0.05,
};

#[test]
fn kept_tiles_give_the_same_outputs_and_gradients_bit_for_bit() {
    let _turn = serial();
    set_winograd(WinogradPolicy::Auto);
    let p = Conv2dParams {
        padding: 1,
        ..Default::default()
    };
    // (batch, channels, side): F(4×4, 3×3) over two chunks (16 images and a block of 4);
    // F(2×2, 3×3) (too few tiles for F(4×4, 3×3)).
    for (i, &(b, c, hw)) in [(20usize, 64usize, 16usize), (2, 64, 4)].iter().enumerate() {
        let x = (seeded(60 + i as u64, &[b, c, hw, hw], 1.0) + 0.5).unwrap();
        let w = seeded(70 + i as u64, &[c, c, 3, 3], 0.1);
        let up = seeded(80 + i as u64, &[b, c, hw, hw], 1.0);
        for step in [None, Some(0.3f32)] {
            let before = winograd_tiles_reused();
            let kept = gradient_bits(&x, &w, &up, &p, step, true);
            let reused = winograd_tiles_reused();
            let plain = gradient_bits(&x, &w, &up, &p, step, false);
            // the kept run's weight gradient read the forward's tiles; the plain one computed them
            assert_eq!((reused - before, winograd_tiles_reused() - reused), (1, 0));
            assert_eq!(kept.len(), if step.is_some() { 4 } else { 3 });
            assert!(
                kept == plain,
                "{b} × {c} @ {hw}², step {step:?}: kept tiles changed a value"
            );
        }
    }
}
