//! The fast conv2d against candle's composed conv2d: forward, input gradient and weight
//! gradient over random shapes (proptest), odd layouts, a finite-difference check, and
//! determinism across thread counts.

use candle_core::{DType, Device, Tensor, Var};
use proptest::prelude::*;
use quarc_kernels::{Conv2dParams, conv2d, conv2d_reference, runs_fast_path};

mod common;

use common::{naive, rel_err, rel_err64, seeded};

struct Outcome {
    y: Tensor,
    dx: Tensor,
    dw: Tensor,
}

fn run(x: &Tensor, w: &Tensor, upstream: &Tensor, p: &Conv2dParams, fast: bool) -> Outcome {
    let xv = Var::from_tensor(x).unwrap();
    let wv = Var::from_tensor(w).unwrap();
    let y = if fast {
        conv2d(&xv, &wv, p)
    } else {
        conv2d_reference(&xv, &wv, p)
    }
    .unwrap();
    let grads = (&y * upstream).unwrap().sum_all().unwrap().backward().unwrap();
    Outcome {
        dx: grads.get(&xv).unwrap().clone(),
        dw: grads.get(&wv).unwrap().clone(),
        y,
    }
}

#[allow(clippy::too_many_arguments)]
fn check(batch: usize, c_in: usize, c_out: usize, h: usize, w: usize, k: usize, p: Conv2dParams, seed: u64) {
    let x = seeded(seed, &[batch, c_in, h, w], 1.0);
    let wt = seeded(seed + 1, &[c_out, c_in / p.groups, k, k], 0.5);
    assert!(runs_fast_path(&x, &wt, &p), "expected the fast path for {p:?}");
    let y = conv2d_reference(&x, &wt, &p).unwrap();
    let upstream = seeded(seed + 2, y.dims(), 1.0);
    let a = run(&x, &wt, &upstream, &p, true);
    let ctx = format!("b{batch} {c_in}→{c_out} {h}×{w} k{k} {p:?}");
    assert_eq!(a.y.dims(), y.dims(), "{ctx}");
    assert!(
        rel_err(&a.y, &y) < 1e-5,
        "forward vs candle {ctx}: {}",
        rel_err(&a.y, &y)
    );
    // An exact f64 reference for all three.
    let (ny, ndx, ndw) = naive(&x, &wt, &upstream, &p);
    assert!(rel_err64(&a.y, &ny) < 1e-5, "forward vs f64 {ctx}");
    assert!(
        rel_err64(&a.dx, &ndx) < 1e-5,
        "grad input vs f64 {ctx}: {}",
        rel_err64(&a.dx, &ndx)
    );
    assert!(
        rel_err64(&a.dw, &ndw) < 1e-5,
        "grad weight vs f64 {ctx}: {}",
        rel_err64(&a.dw, &ndw)
    );
    // candle's own backward (conv_transpose2d for the input gradient) derives the output padding
    // from the height only, so it returns a wrongly sized input gradient when height and width
    // leave different remainders under the stride; compare with it wherever it is right.
    let eff = p.dilation * (k - 1) + 1;
    if p.stride == 1 || (h + 2 * p.padding - eff) % p.stride == (w + 2 * p.padding - eff) % p.stride {
        let b = run(&x, &wt, &upstream, &p, false);
        assert!(
            rel_err(&a.dx, &b.dx) < 1e-5,
            "grad input vs candle {ctx}: {}",
            rel_err(&a.dx, &b.dx)
        );
        assert!(
            rel_err(&a.dw, &b.dw) < 1e-5,
            "grad weight vs candle {ctx}: {}",
            rel_err(&a.dw, &b.dw)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn dense_conv_agrees_with_candle(
        batch in 1usize..=5, c_in in 1usize..=40, c_out in 1usize..=40,
        k in prop::sample::select(vec![1usize, 3, 5, 7]), extra_h in 0usize..9, extra_w in 0usize..9,
        stride in 1usize..=2, padding in 0usize..=2, seed in 0u64..1000,
    ) {
        let (h, w) = ((k + extra_h).saturating_sub(2 * padding).max(1), (k + extra_w).saturating_sub(2 * padding).max(1));
        prop_assume!(h + 2 * padding >= k && w + 2 * padding >= k);
        check(batch, c_in, c_out, h, w, k, Conv2dParams { padding, stride, dilation: 1, groups: 1 }, seed);
    }

    #[test]
    fn depthwise_conv_agrees_with_candle(
        batch in 1usize..=5, c in 1usize..=40, k in prop::sample::select(vec![1usize, 3, 5]),
        extra in 0usize..9, stride in 1usize..=2, padding in 0usize..=2, dilation in 1usize..=2, seed in 0u64..1000,
        wider in prop::sample::select(vec![2usize, 21]),
    ) {
        // rows wider than 16 take the depthwise copies' 16-column pieces, narrow ones only their tails
        let h = (k + extra).saturating_sub(padding).max(1);
        prop_assume!(h + 2 * padding > dilation * (k - 1));
        check(batch, c, c, h, h + wider, k, Conv2dParams { padding, stride, dilation, groups: c }, seed);
    }
}

#[test]
fn the_model_layers_agree_with_candle() {
    // SmallCnn, a ResNet basic block, a downsample 1×1, MobileNetV2 pointwise and depthwise
    let dense = |padding, stride| Conv2dParams {
        padding,
        stride,
        ..Default::default()
    };
    check(4, 1, 32, 28, 28, 3, dense(1, 1), 1);
    // one input channel, 3×3: the register-blocked weight gradient, with 1 and 2 channels left
    // over after its blocks of three, stride 2, and a pixel count that is not a multiple of 16
    check(3, 1, 7, 9, 9, 3, dense(1, 1), 11);
    check(2, 1, 5, 13, 11, 3, dense(0, 2), 12);
    // nine channels 1×1: nine unfolded rows too
    check(2, 9, 4, 6, 5, 1, dense(0, 1), 13);
    check(4, 32, 64, 28, 28, 3, dense(1, 2), 2);
    check(3, 64, 64, 8, 8, 3, dense(1, 1), 3);
    check(3, 64, 128, 8, 8, 1, dense(0, 2), 4);
    // a strided 1×1 with short output rows: the unfold gathers by an offset table; stride 3 and a
    // non-square plane (3 × 4 outputs, not a whole vector)
    check(2, 5, 6, 9, 10, 1, dense(0, 3), 14);
    check(3, 24, 96, 8, 8, 1, dense(0, 1), 5);
    check(
        3,
        96,
        96,
        8,
        8,
        3,
        Conv2dParams {
            padding: 1,
            stride: 2,
            dilation: 1,
            groups: 96,
        },
        6,
    );
    check(
        2,
        3,
        5,
        9,
        7,
        3,
        Conv2dParams {
            padding: 2,
            stride: 1,
            dilation: 2,
            groups: 1,
        },
        7,
    );
    // wide batches take the batched-GEMM path (small output planes)
    check(33, 16, 8, 4, 4, 3, dense(1, 1), 8);
}

/// The model layers and depthwise shapes that take the blocked (AVX-512F) and plane passes.
fn model_layers_and_depthwise_paths() {
    let dense = |padding, stride| Conv2dParams {
        padding,
        stride,
        ..Default::default()
    };
    let depthwise = |c, stride| Conv2dParams {
        padding: 1,
        stride,
        dilation: 1,
        groups: c,
    };
    check(4, 32, 64, 28, 28, 3, dense(1, 2), 2);
    check(3, 64, 64, 8, 8, 3, dense(1, 1), 3);
    check(3, 64, 128, 8, 8, 1, dense(0, 2), 4);
    check(33, 16, 8, 4, 4, 3, dense(1, 1), 8);
    check(3, 32, 32, 8, 8, 3, depthwise(32, 1), 9);
    check(3, 32, 32, 16, 16, 3, depthwise(32, 2), 10);
    check(2, 24, 24, 32, 32, 3, depthwise(24, 2), 11);
}

/// The child of [`every_vector_width_agrees_with_candle`]: runs only with `QUARC_CPU_ISA` set.
#[test]
fn capped_vector_width_child() {
    let Ok(cap) = std::env::var("QUARC_CPU_ISA") else {
        return;
    };
    let order = ["sse2", "avx2", "avx512f"];
    let rank = |v: &str| order.iter().position(|o| *o == v).unwrap();
    assert!(
        rank(quarc_kernels::vector_isa()) <= rank(&cap),
        "{} above the cap {cap}",
        quarc_kernels::vector_isa()
    );
    model_layers_and_depthwise_paths();
}

/// The AVX2 and baseline paths, which an AVX-512 machine never takes by itself, run in child
/// processes capped by `QUARC_CPU_ISA` and must agree with candle as the default path does.
#[test]
fn every_vector_width_agrees_with_candle() {
    model_layers_and_depthwise_paths();
    for cap in ["avx2", "sse2"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "capped_vector_width_child", "--test-threads", "1"])
            .env("QUARC_CPU_ISA", cap)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{cap}: {log}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(log.contains("1 passed"), "{cap}: the child ran no test: {log}");
    }
}

#[test]
fn non_contiguous_and_offset_inputs() {
    let dev = Device::Cpu;
    let p = Conv2dParams {
        padding: 1,
        stride: 1,
        ..Default::default()
    };
    let big = Tensor::randn(0f32, 1.0, (3, 4, 9, 7), &dev).unwrap();
    let w = Tensor::randn(0f32, 1.0, (5, 4, 3, 3), &dev).unwrap();
    // an offset view (narrow along the batch) and a transposed (strided) view
    let offset = big.narrow(0, 1, 2).unwrap();
    let transposed = Tensor::randn(0f32, 1.0, (3, 4, 7, 9), &dev)
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    let w_t = Tensor::randn(0f32, 1.0, (4, 5, 3, 3), &dev)
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    for (x, w) in [(&offset, &w), (&transposed, &w), (&offset, &w_t)] {
        assert!(!x.is_contiguous() || !w.is_contiguous() || x.layout().start_offset() > 0);
        let a = conv2d(x, w, &p).unwrap();
        let b = conv2d_reference(x, w, &p).unwrap();
        assert!(rel_err(&a, &b) < 1e-5);
    }
}

#[test]
fn finite_differences_on_a_tiny_conv() {
    let dev = Device::Cpu;
    let p = Conv2dParams {
        padding: 1,
        stride: 2,
        ..Default::default()
    };
    let x = Tensor::randn(0f32, 1.0, (1, 2, 5, 4), &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let w = Tensor::randn(0f32, 1.0, (3, 2, 3, 3), &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    // the loss Σ y² in f64 around f32 evaluations of the fast op
    let loss = |x: &Tensor, w: &Tensor| -> f64 {
        let y = conv2d(&x.to_dtype(DType::F32).unwrap(), &w.to_dtype(DType::F32).unwrap(), &p).unwrap();
        y.to_dtype(DType::F64)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let xv = Var::from_tensor(&x.to_dtype(DType::F32).unwrap()).unwrap();
    let wv = Var::from_tensor(&w.to_dtype(DType::F32).unwrap()).unwrap();
    let grads = conv2d(&xv, &wv, &p)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let eps = 1e-2;
    for (t, g) in [(&x, grads.get(&xv).unwrap()), (&w, grads.get(&wv).unwrap())] {
        let flat = t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for i in (0..flat.len()).step_by(3) {
            let bump = |d: f64| {
                let mut v = flat.clone();
                v[i] += d;
                Tensor::from_vec(v, t.dims(), &dev).unwrap()
            };
            let (plus, minus) = if std::ptr::eq(t, &x) {
                (loss(&bump(eps), &w), loss(&bump(-eps), &w))
            } else {
                (loss(&x, &bump(eps)), loss(&x, &bump(-eps)))
            };
            let fd = (plus - minus) / (2.0 * eps);
            assert!(
                (fd - g[i] as f64).abs() < 2e-3 * (1.0 + fd.abs()),
                "index {i}: fd {fd} vs {}",
                g[i]
            );
        }
    }
}

#[test]
fn an_image_input_gets_no_gradient_work() {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev).unwrap();
    let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev).unwrap()).unwrap();
    let grads = conv2d(&x, &w, &Conv2dParams::default())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&x).is_none());
    assert!(grads.get(&w).is_some());
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let dev = Device::Cpu;
    let p = Conv2dParams {
        padding: 1,
        stride: 1,
        ..Default::default()
    };
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (37, 8, 6, 6), &dev).unwrap()).unwrap();
    let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (16, 8, 3, 3), &dev).unwrap()).unwrap();
    let wd = Var::from_tensor(&Tensor::randn(0f32, 1.0, (8, 1, 3, 3), &dev).unwrap()).unwrap();
    let depthwise = Conv2dParams { groups: 8, ..p };
    let once = |threads: usize, w: &Var, p: &Conv2dParams| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let y = conv2d(&x, w, p).unwrap();
            let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (flat(&y), flat(g.get(&x).unwrap()), flat(g.get(w).unwrap()))
        })
    };
    assert_eq!(once(1, &w, &p), once(3, &w, &p));
    assert_eq!(once(1, &wd, &depthwise), once(3, &wd, &depthwise));
}

#[test]
fn unsupported_groups_and_dtypes_fall_back_to_candle() {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (2, 4, 6, 6), &dev).unwrap();
    let w = Tensor::randn(0f32, 1.0, (6, 2, 3, 3), &dev).unwrap();
    let p = Conv2dParams {
        groups: 2,
        ..Default::default()
    };
    assert!(!runs_fast_path(&x, &w, &p));
    let a = conv2d(&x, &w, &p).unwrap();
    assert_eq!(a.dims(), &[2, 6, 4, 4]);
    let x64 = x.to_dtype(DType::F64).unwrap();
    let w64 = Tensor::randn(0f32, 1.0, (3, 4, 3, 3), &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    assert!(!runs_fast_path(&x64, &w64, &Conv2dParams::default()));
    assert_eq!(
        conv2d(&x64, &w64, &Conv2dParams::default()).unwrap().dims(),
        &[2, 3, 4, 4]
    );
    // a shape error surfaces as an error, not a panic
    let bad = Tensor::randn(0f32, 1.0, (3, 5, 3, 3), &dev).unwrap();
    assert!(conv2d(&x, &bad, &Conv2dParams::default()).is_err());
}

#[test]
fn empty_inputs_give_errors_or_empty_results_not_panics() {
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::ones((4, 3, 3, 3), DType::F32, &dev).unwrap()).unwrap();
    // an empty batch convolves to an empty batch, and its weight gradient is zero
    let x = Var::from_tensor(&Tensor::zeros((0, 3, 8, 8), DType::F32, &dev).unwrap()).unwrap();
    let y = conv2d(
        &x,
        &w,
        &Conv2dParams {
            padding: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(y.dims(), &[0, 4, 8, 8]);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(
        g.get(&w)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
    // an empty plane is refused by the fast path (candle then reports its own error or result)
    let flat = Tensor::zeros((2, 3, 0, 8), DType::F32, &dev).unwrap();
    assert!(!runs_fast_path(
        &flat,
        &w,
        &Conv2dParams {
            padding: 1,
            ..Default::default()
        }
    ));
}
