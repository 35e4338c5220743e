use candle_core::{Device, Tensor, Var};

use super::*;
use crate::packed::tests::fill;

/// `c (+)= a·b` as the micro-kernels compute it: one fused multiply-add chain in increasing `k`.
fn fma_chain(c: &mut [f32], ldc: usize, a: MatRef<'_>, b: MatRef<'_>, accumulate: bool) {
    for i in 0..a.rows() {
        for j in 0..b.cols() {
            let mut s = if accumulate { c[i * ldc + j] } else { 0.0 };
            for kk in 0..a.cols() {
                s = a.at(i, kk).mul_add(b.at(kk, j), s);
            }
            c[i * ldc + j] = s;
        }
    }
}

#[test]
fn blocked_gemm_gives_the_fma_chains_bits_at_every_edge() {
    if !has_micro_kernel() {
        return; // QUARC_CPU_ISA=sse2 or no AVX2 + FMA: the op is candle's matmul (tested below)
    }
    // m across panel and task edges, n across strip edges, k across the 256-row blocks
    for &(m, n, k) in &[
        (1, 1, 1),
        (5, 15, 3),
        (7, 17, 256),
        (13, 33, 257),
        (150, 40, 600),
        (64, 10, 513),
    ] {
        for transposed in [false, true] {
            let (av, bv) = (fill(m * k, (m * 31 + k) as u64), fill(k * n, (n * 17 + k) as u64));
            // the transposed case stores aᵀ (k × m) and bᵀ (n × k) and reads them as views
            let (a, b) = if transposed {
                (MatRef::row_major(&av, k, m).t(), MatRef::row_major(&bv, n, k).t())
            } else {
                (MatRef::row_major(&av, m, k), MatRef::row_major(&bv, k, n))
            };
            for accumulate in [false, true] {
                let ldc = n + 3;
                let start = fill(m * ldc, 7);
                let (mut got, mut want) = (start.clone(), start);
                assert!(matmul_blocked(&mut got, ldc, a, b, accumulate));
                fma_chain(&mut want, ldc, a, b, accumulate);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "m {m} n {n} k {k} t {transposed} acc {accumulate}"
                );
            }
        }
    }
}

#[test]
fn blocked_gemm_is_the_same_on_any_thread_count() {
    let (m, n, k) = (97, 45, 300);
    let (av, bv) = (fill(m * k, 1), fill(k * n, 2));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut c = vec![0.0f32; m * n];
        let done = pool.install(|| {
            matmul_blocked(
                &mut c,
                n,
                MatRef::row_major(&av, m, k),
                MatRef::row_major(&bv, k, n),
                false,
            )
        });
        (done, c)
    };
    let (done, one) = run(1);
    if done {
        assert_eq!(run(3).1, one);
        assert_eq!(run(2).1, one);
    }
}

#[test]
fn zero_inner_dimension_zeroes_or_keeps() {
    let mut c = vec![5.0f32; 6];
    let empty: [f32; 0] = [];
    if matmul_blocked(
        &mut c,
        3,
        MatRef::row_major(&empty, 2, 0),
        MatRef::row_major(&empty, 0, 3),
        true,
    ) {
        assert_eq!(c, [5.0; 6]);
        assert!(matmul_blocked(
            &mut c,
            3,
            MatRef::row_major(&empty, 2, 0),
            MatRef::row_major(&empty, 0, 3),
            false
        ));
        assert_eq!(c, [0.0; 6]);
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn op_matches_candles_matmul_with_gradients() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let a = Var::from_tensor(&Tensor::from_vec(fill(37 * 70, 3), (37, 70), &dev)?)?;
    let b = Var::from_tensor(&Tensor::from_vec(fill(70 * 21, 4), (70, 21), &dev)?)?;
    let g = Tensor::from_vec(fill(37 * 21, 5), (37, 21), &dev)?;
    let ours = matmul(&a, &b)?;
    let theirs = a.matmul(&b)?;
    assert_eq!(ours.dims(), &[37, 21]);
    assert!(max_diff(&ours, &theirs) < 1e-5);
    let (go, gt) = (
        (ours * &g)?.sum_all()?.backward()?,
        (theirs * &g)?.sum_all()?.backward()?,
    );
    for v in [&a, &b] {
        assert!(max_diff(go.get(v).unwrap(), gt.get(v).unwrap()) < 1e-5);
    }
    // d/da of sum(g ⊙ a·b) is g·bᵀ: check one entry by hand
    let (gv, bv) = (g.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
    let want: f32 = (0..21).map(|j| gv[2][j] * bv[5][j]).sum();
    let got = go.get(&a).unwrap().to_vec2::<f32>()?[2][5];
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    Ok(())
}

#[test]
fn op_reads_transposed_views_and_falls_back_off_f32() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let a = Tensor::from_vec(fill(30 * 8, 6), (30, 8), &dev)?;
    let b = Tensor::from_vec(fill(30 * 9, 7), (30, 9), &dev)?;
    // aᵀ · b through a strided view, against candle on contiguous copies
    let ours = matmul(&a.t()?, &b)?;
    let theirs = a.t()?.contiguous()?.matmul(&b)?;
    assert!(max_diff(&ours, &theirs) < 1e-5);
    let (a64, b64) = (a.to_dtype(DType::F64)?, b.to_dtype(DType::F64)?);
    let via_candle = matmul(&a64.t()?, &b64)?;
    assert_eq!(via_candle.dtype(), DType::F64);
    assert!(max_diff(&via_candle.to_dtype(DType::F32)?, &theirs) < 1e-5);
    Ok(())
}

#[test]
fn op_refuses_shapes_that_disagree() {
    let dev = Device::Cpu;
    let a = Tensor::zeros((3, 4), DType::F32, &dev).unwrap();
    let b = Tensor::zeros((5, 2), DType::F32, &dev).unwrap();
    assert!(matmul(&a, &b).is_err());
    let v = Tensor::zeros(4, DType::F32, &dev).unwrap();
    assert!(matmul(&a, &v).is_err());
}
