//! Fused CPU kernels against the composed candle reference: forward bit for bit, gradients to
//! rounding error, at clamp boundaries and rounding ties; finite differences of the STE surrogate.

mod common;

use candle_core::{DType, Tensor, Var};
use common::{assert_same_values, rand_tensor, rel_diff, values};
use quarc_quant_core::{
    Backend, Granularity, LsqOptions, QRange, Signedness, lsq_fake_quant, lsq_plus_fake_quant, pact_fake_quant,
    reference,
};

struct Case {
    shape: Vec<usize>,
    bits: u32,
    signedness: Signedness,
    granularity: Granularity,
    dtype: DType,
    offset: bool,
}

/// Inputs with exact ties (v = k + ½) and exact boundaries (v = qn, qp) mixed into random data.
fn inputs(case: &Case, seed: u64) -> (Tensor, Tensor, Option<Tensor>) {
    let range = QRange::new(case.bits, case.signedness).unwrap();
    let channels = match case.granularity {
        Granularity::PerTensor => 1,
        Granularity::PerChannel { axis } => case.shape[axis],
    };
    // Power-of-two steps make s·(k + ½) exact.
    let steps: Vec<f64> = (0..channels).map(|c| [0.25, 0.5, 0.125][c % 3]).collect();
    let offsets: Vec<f64> = (0..channels)
        .map(|c| if case.offset { [0.0, 0.25, -0.5][c % 3] } else { 0.0 })
        .collect();
    let numel: usize = case.shape.iter().product();
    let mut x = common::Rng::new(seed).vec(numel, -3.0, 3.0);
    let inner: usize = match case.granularity {
        Granularity::PerTensor => numel,
        Granularity::PerChannel { axis } => case.shape[axis + 1..].iter().product(),
    };
    for (i, v) in x.iter_mut().enumerate() {
        let c = (i / inner) % channels;
        let (s, o) = (steps[c], offsets[c]);
        match i % 7 {
            0 => *v = s * (((i / 7) as i64 % 5 - 2) as f64 + 0.5) + o, // tie
            1 => *v = s * range.qn() as f64 + o,                       // lower boundary
            2 => *v = s * range.qp() as f64 + o,                       // upper boundary
            _ => {}
        }
    }
    let dev = candle_core::Device::Cpu;
    let x = Tensor::from_vec(x, case.shape.as_slice(), &dev)
        .unwrap()
        .to_dtype(case.dtype)
        .unwrap();
    let s = Tensor::from_vec(steps, channels, &dev)
        .unwrap()
        .to_dtype(case.dtype)
        .unwrap();
    let o = case.offset.then(|| {
        Tensor::from_vec(offsets, channels, &dev)
            .unwrap()
            .to_dtype(case.dtype)
            .unwrap()
    });
    (x, s, o)
}

/// Runs one backend and returns (y, dx, dstep, doffset) for the loss Σ w·y.
fn run(
    case: &Case,
    backend: Backend,
    x: &Tensor,
    s: &Tensor,
    o: Option<&Tensor>,
    w: &Tensor,
) -> (Tensor, Tensor, Tensor, Option<Tensor>) {
    let range = QRange::new(case.bits, case.signedness).unwrap();
    let (xv, sv) = (Var::from_tensor(x).unwrap(), Var::from_tensor(s).unwrap());
    let ov = o.map(|o| Var::from_tensor(o).unwrap());
    let opts = LsqOptions {
        grad_scale: 0.37,
        granularity: case.granularity,
        backend,
    };
    let y = match &ov {
        None => lsq_fake_quant(xv.as_tensor(), sv.as_tensor(), range, opts).unwrap(),
        Some(ov) => lsq_plus_fake_quant(xv.as_tensor(), sv.as_tensor(), ov.as_tensor(), range, opts).unwrap(),
    };
    let grads = (&y * w).unwrap().sum_all().unwrap().backward().unwrap();
    let dx = grads.get(xv.as_tensor()).expect("dx").clone();
    let ds = grads.get(sv.as_tensor()).expect("dstep").clone();
    let d_o = ov.as_ref().map(|o| grads.get(o.as_tensor()).expect("doffset").clone());
    (y, dx, ds, d_o)
}

fn check(case: Case, seed: u64) {
    let (x, s, o) = inputs(&case, seed);
    let w = rand_tensor(seed + 1, &case.shape, -1.0, 1.0, case.dtype);
    let (yf, dxf, dsf, dof) = run(&case, Backend::Auto, &x, &s, o.as_ref(), &w);
    let (yc, dxc, dsc, doc) = run(&case, Backend::Composed, &x, &s, o.as_ref(), &w);
    let tol = if case.dtype == DType::F64 { 1e-12 } else { 1e-6 };
    assert_same_values(&yf, &yc, "forward");
    assert!(rel_diff(&dxf, &dxc, 1e-30) <= tol, "dx {}", rel_diff(&dxf, &dxc, 1e-30));
    // The step/offset gradients are sums: compare against the sum of the magnitudes.
    let l1 = values(&(&w.abs().unwrap() * 8.0).unwrap()).iter().sum::<f64>().max(1.0);
    let ds_err = values(&dsf)
        .iter()
        .zip(values(&dsc))
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()))
        / l1;
    assert!(
        ds_err <= tol,
        "dstep {ds_err}: {:?} vs {:?}",
        values(&dsf),
        values(&dsc)
    );
    if let (Some(a), Some(b)) = (dof, doc) {
        let e = values(&a)
            .iter()
            .zip(values(&b))
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()))
            / l1;
        assert!(e <= tol, "doffset {e}");
    }
    // The shapes of the gradients follow the parameters.
    assert_eq!(dsf.dims(), s.dims());
}

#[test]
fn lsq_per_tensor_signed_and_unsigned_all_widths() {
    for (k, bits) in [2u32, 3, 4, 8].into_iter().enumerate() {
        for signedness in [Signedness::Signed, Signedness::Unsigned] {
            for dtype in [DType::F32, DType::F64] {
                let case = Case {
                    shape: vec![3, 5, 7, 6],
                    bits,
                    signedness,
                    granularity: Granularity::PerTensor,
                    dtype,
                    offset: false,
                };
                check(case, 10 + k as u64);
            }
        }
    }
}

#[test]
fn lsq_per_channel_axis0_and_axis1() {
    for axis in [0usize, 1] {
        for dtype in [DType::F32, DType::F64] {
            let case = Case {
                shape: vec![4, 6, 3, 5],
                bits: 2,
                signedness: Signedness::Signed,
                granularity: Granularity::PerChannel { axis },
                dtype,
                offset: false,
            };
            check(case, 20 + axis as u64);
        }
    }
}

#[test]
fn lsq_plus_with_offsets() {
    for granularity in [Granularity::PerTensor, Granularity::PerChannel { axis: 1 }] {
        for dtype in [DType::F32, DType::F64] {
            let case = Case {
                shape: vec![2, 3, 9, 4],
                bits: 4,
                signedness: Signedness::Unsigned,
                granularity,
                dtype,
                offset: true,
            };
            check(case, 30);
        }
    }
}

#[test]
fn large_tensor_spanning_many_chunks_per_channel() {
    // 130 k elements: several rayon chunks, channel rows crossing chunk boundaries.
    let case = Case {
        shape: vec![7, 64, 17, 17],
        bits: 4,
        signedness: Signedness::Signed,
        granularity: Granularity::PerChannel { axis: 1 },
        dtype: DType::F64,
        offset: false,
    };
    check(case, 40);
}

#[test]
fn ties_round_half_to_even_in_both_backends() {
    let x = Tensor::new(
        &[0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -3.5],
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let s = Tensor::new(&[1f32], &candle_core::Device::Cpu).unwrap();
    let r = QRange::signed(8).unwrap();
    for backend in [Backend::Auto, Backend::Composed] {
        let opts = LsqOptions {
            backend,
            ..Default::default()
        };
        let y = lsq_fake_quant(&x, &s, r, opts).unwrap();
        assert_eq!(
            y.to_vec1::<f32>().unwrap(),
            vec![0.0, 2.0, 2.0, 0.0, -2.0, -2.0, 4.0, -4.0],
            "{backend:?}"
        );
    }
}

#[test]
fn boundary_values_pass_the_gradient() {
    // v = qn and v = qp exactly are inside: dx = 1 there, 0 just outside.
    let dev = candle_core::Device::Cpu;
    let r = QRange::signed(2).unwrap(); // [-2, 1]
    for backend in [Backend::Auto, Backend::Composed] {
        let x = Var::new(&[-2.0f32, 1.0, -2.0001, 1.0001], &dev).unwrap();
        let s = Var::new(&[1f32], &dev).unwrap();
        let y = lsq_fake_quant(
            x.as_tensor(),
            s.as_tensor(),
            r,
            LsqOptions {
                backend,
                ..Default::default()
            },
        )
        .unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert_eq!(
            g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap(),
            vec![1.0, 1.0, 0.0, 0.0],
            "{backend:?}"
        );
        // ds = (round(-2) + 2) + (round(1) - 1) + qn + qp = 0 + 0 - 2 + 1
        assert_eq!(
            g.get(s.as_tensor()).unwrap().to_vec1::<f32>().unwrap(),
            vec![-1.0],
            "{backend:?}"
        );
    }
}

#[test]
fn step_gradient_matches_finite_differences_of_the_ste_surrogate() {
    // Surrogate f(s) = Σ w·s·(clamp(x/s, qn, qp) + r), r = round(v₀) − v₀ frozen inside the range,
    // 0 outside: smooth in s, and LSQ's step gradient is exactly its derivative.
    let n = 200;
    let mut rng = common::Rng::new(7);
    let x = rng.vec(n, -2.0, 2.0);
    let w = rng.vec(n, -1.0, 1.0);
    let (s0, qn, qp) = (0.3f64, -8.0, 7.0);
    let r: Vec<f64> = x
        .iter()
        .map(|&xi| {
            let v = xi / s0;
            if (qn..=qp).contains(&v) {
                v.round_ties_even() - v
            } else {
                0.0
            }
        })
        .collect();
    let f = |s: f64| -> f64 {
        x.iter()
            .zip(&w)
            .zip(&r)
            .map(|((&xi, &wi), &ri)| wi * s * ((xi / s).clamp(qn, qp) + ri))
            .sum()
    };
    let h = 1e-6;
    let fd = (f(s0 + h) - f(s0 - h)) / (2.0 * h);
    let dev = candle_core::Device::Cpu;
    for backend in [Backend::Auto, Backend::Composed] {
        let xt = Tensor::new(x.as_slice(), &dev).unwrap();
        let wt = Tensor::new(w.as_slice(), &dev).unwrap();
        let s = Var::new(&[s0], &dev).unwrap();
        let y = lsq_fake_quant(
            &xt,
            s.as_tensor(),
            QRange::signed(4).unwrap(),
            LsqOptions {
                backend,
                ..Default::default()
            },
        )
        .unwrap();
        let g = (y * wt).unwrap().sum_all().unwrap().backward().unwrap();
        let ds = g.get(s.as_tensor()).unwrap().to_vec1::<f64>().unwrap()[0];
        assert!(
            (ds - fd).abs() < 1e-6 * fd.abs().max(1.0),
            "{backend:?}: {ds} vs FD {fd}"
        );
    }
}

#[test]
fn pact_fused_matches_composed_and_finite_differences() {
    let dev = candle_core::Device::Cpu;
    let n = 300;
    let mut rng = common::Rng::new(9);
    let x = rng.vec(n, -1.0, 4.0);
    let w = rng.vec(n, -1.0, 1.0);
    let alpha0 = 2.5f64;
    // Surrogate f(α) = Σ w·clamp(x, 0, α): PACT's α gradient is Σ w·[x > α].
    let f = |a: f64| -> f64 { x.iter().zip(&w).map(|(&xi, &wi)| wi * xi.clamp(0.0, a)).sum() };
    let fd = (f(alpha0 + 1e-6) - f(alpha0 - 1e-6)) / 2e-6;
    let xt = Tensor::new(x.as_slice(), &dev).unwrap();
    let wt = Tensor::new(w.as_slice(), &dev).unwrap();
    let mut outs = Vec::new();
    for fused in [true, false] {
        let xv = Var::from_tensor(&xt).unwrap();
        let a = Var::new(&[alpha0], &dev).unwrap();
        let y = if fused {
            pact_fake_quant(xv.as_tensor(), a.as_tensor(), 3)
        } else {
            reference::pact_fake_quant_slow(xv.as_tensor(), a.as_tensor(), 3)
        }
        .unwrap();
        let g = (&y * &wt).unwrap().sum_all().unwrap().backward().unwrap();
        let da = g.get(a.as_tensor()).unwrap().to_vec1::<f64>().unwrap()[0];
        assert!((da - fd).abs() < 1e-7, "fused={fused}: {da} vs {fd}");
        let dx = g.get(xv.as_tensor()).unwrap().clone();
        // dx = w on [0, α], 0 elsewhere
        for ((xi, wi), d) in x.iter().zip(&w).zip(values(&dx)) {
            let expect = if (0.0..=alpha0).contains(xi) { *wi } else { 0.0 };
            assert!((d - expect).abs() < 1e-12);
        }
        outs.push(y);
    }
    assert_same_values(&outs[0], &outs[1], "pact forward");
}

#[test]
fn offset_gradient_matches_finite_differences() {
    // LSQ+ surrogate in the offset: f(o) = Σ w·(s·(clamp((x−o)/s) + r) + o); d/do = Σ_outside w.
    let dev = candle_core::Device::Cpu;
    let mut rng = common::Rng::new(11);
    let n = 150;
    let x = rng.vec(n, -1.0, 3.0);
    let w = rng.vec(n, -1.0, 1.0);
    let (s, o0, qn, qp) = (0.2f64, 0.3f64, 0.0, 15.0);
    let r: Vec<f64> = x
        .iter()
        .map(|&xi| {
            let v = (xi - o0) / s;
            if (qn..=qp).contains(&v) {
                v.round_ties_even() - v
            } else {
                0.0
            }
        })
        .collect();
    let f = |o: f64| -> f64 {
        x.iter()
            .zip(&w)
            .zip(&r)
            .map(|((&xi, &wi), &ri)| wi * (s * (((xi - o) / s).clamp(qn, qp) + ri) + o))
            .sum()
    };
    let fd = (f(o0 + 1e-6) - f(o0 - 1e-6)) / 2e-6;
    for backend in [Backend::Auto, Backend::Composed] {
        let st = Tensor::new(&[s], &dev).unwrap();
        let ov = Var::new(&[o0], &dev).unwrap();
        let y = lsq_plus_fake_quant(
            &Tensor::new(x.as_slice(), &dev).unwrap(),
            &st,
            ov.as_tensor(),
            QRange::unsigned(4).unwrap(),
            LsqOptions {
                backend,
                ..Default::default()
            },
        )
        .unwrap();
        let g = (y * Tensor::new(w.as_slice(), &dev).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let d = g.get(ov.as_tensor()).unwrap().to_vec1::<f64>().unwrap()[0];
        assert!((d - fd).abs() < 1e-6, "{backend:?}: {d} vs {fd}");
    }
}

#[test]
fn non_contiguous_and_offset_inputs() {
    // A transposed view and a narrowed view give the same result as their contiguous copies.
    let x = rand_tensor(3, &[6, 10], -2.0, 2.0, DType::F32);
    let s = Tensor::new(&[0.25f32], &candle_core::Device::Cpu).unwrap();
    let r = QRange::signed(3).unwrap();
    for view in [x.t().unwrap(), x.narrow(1, 3, 5).unwrap()] {
        let a = lsq_fake_quant(&view, &s, r, LsqOptions::default()).unwrap();
        let b = lsq_fake_quant(
            &view.contiguous().unwrap(),
            &s,
            r,
            LsqOptions {
                backend: Backend::Composed,
                ..Default::default()
            },
        )
        .unwrap();
        assert_same_values(&a, &b, "view");
    }
}
