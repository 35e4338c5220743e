use super::*;

/// A deterministic pseudo-random fill in [-1, 1) (also the blocked GEMM's tests').
pub(crate) fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `c (+)= a·b` in f64, row-major operands with the given strides.
fn reference(c: &mut [f32], ldc: usize, a: MatRef<'_>, b: &[f32], ldb: usize, n: usize, accumulate: bool) {
    for i in 0..a.rows() {
        for j in 0..n {
            let mut s = if accumulate { f64::from(c[i * ldc + j]) } else { 0.0 };
            for kk in 0..a.cols() {
                s += f64::from(a.at(i, kk)) * f64::from(b[kk * ldb + j]);
            }
            c[i * ldc + j] = s as f32;
        }
    }
}

impl<'a> PackedLhs<'a> {
    fn with_path(a: MatRef<'a>, path: Path) -> Self {
        let mut p = Self::new(a);
        if p.path != path {
            let (mr, _) = path.tile();
            p.path = path;
            p.panels = pack(a, mr);
        }
        p
    }
}

fn paths() -> Vec<Path> {
    let mut v = vec![Path::Fallback];
    if isa() >= Isa::Avx2 && avx2::has_fma() {
        v.push(Path::Avx2);
    }
    if isa() == Isa::Avx512 {
        v.push(Path::Avx512);
    }
    v
}

/// (m, k, n, ldb padding, ldc padding, transposed A)
const SHAPES: [(usize, usize, usize, usize, usize, bool); 7] = [
    (8, 3, 32, 0, 0, false),
    (1, 1, 1, 0, 0, false),
    (13, 300, 50, 3, 0, false),
    (64, 576, 294, 0, 5, false),
    (5, 520, 97, 1, 2, true),
    (24, 9, 24, 0, 0, true),
    (33, 257, 31, 0, 0, false),
];

#[test]
fn every_path_matches_the_f64_product_with_edges_strides_and_accumulation() {
    for (s, &(m, k, n, pb, pc, trans)) in SHAPES.iter().enumerate() {
        let (ldb, ldc) = (n + pb, n + pc);
        let a_data = fill(m * k, 1 + s as u64);
        let a = if trans {
            MatRef::row_major(&a_data, k, m).t()
        } else {
            MatRef::row_major(&a_data, m, k)
        };
        let b = fill((k - 1) * ldb + n, 100 + s as u64);
        let c0 = fill((m - 1) * ldc + n, 200 + s as u64);
        for accumulate in [false, true] {
            let mut want = c0.clone();
            reference(&mut want, ldc, a, &b, ldb, n, accumulate);
            for path in paths() {
                let mut got = c0.clone();
                matmul_packed(&mut got, ldc, &PackedLhs::with_path(a, path), &b, ldb, n, accumulate);
                for i in 0..m {
                    for j in 0..n {
                        let (g, w) = (got[i * ldc + j], want[i * ldc + j]);
                        let tol = 1e-5 * (k as f32).sqrt() * 4.0;
                        assert!(
                            (g - w).abs() <= tol,
                            "{path:?} shape {s} ({i},{j}) acc {accumulate}: {g} vs {w}"
                        );
                    }
                    // the padding between rows is never written
                    if i + 1 < m {
                        assert_eq!(got[i * ldc + n..(i + 1) * ldc], c0[i * ldc + n..(i + 1) * ldc]);
                    }
                }
            }
        }
    }
}

#[test]
fn the_two_vector_paths_give_the_same_bits() {
    if !paths().contains(&Path::Avx512) {
        return eprintln!("skipped: needs AVX-512F to compare both paths");
    }
    let (m, k, n) = (20, 700, 75);
    let a_data = fill(m * k, 7);
    let b = fill(k * n, 8);
    let a = MatRef::row_major(&a_data, m, k);
    let run = |path| {
        let mut c = fill(m * n, 9);
        matmul_packed(&mut c, n, &PackedLhs::with_path(a, path), &b, n, n, true);
        c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    assert_eq!(run(Path::Avx512), run(Path::Avx2));
}

/// One of `matmul_packed`'s loop orders.
type Order = fn(&mut [f32], usize, &PackedLhs<'_>, &[f32], usize, usize, bool);

#[test]
fn panel_first_and_strip_first_orders_give_the_same_bits() {
    // SmallCnn's first layer (k = 9), a pointwise one (k = 16) and odd edges (a partial panel and
    // a partial strip), with and without accumulation, on every path this CPU runs
    for (m, k, n) in [(32, 9, 784), (96, 16, 203), (13, 5, 37)] {
        let a_data = fill(m * k, 11);
        let b = fill(k * n, 12);
        let a = MatRef::row_major(&a_data, m, k);
        for path in paths().into_iter().filter(|p| *p != Path::Fallback) {
            let packed = PackedLhs::with_path(a, path);
            for accumulate in [false, true] {
                let run = |order: Order| {
                    let mut c = fill(m * n, 13);
                    order(&mut c, n, &packed, &b, n, n, accumulate);
                    c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                let (panels, strips) = (run(panels_first), run(strips_first));
                assert_eq!(panels, strips, "{path:?} {m}×{k}×{n} accumulate {accumulate}");
            }
        }
    }
}

#[test]
fn a_hand_computed_product() {
    // [1 2; 3 4] · [5 6; 7 8] = [19 22; 43 50]
    let a = [1.0, 2.0, 3.0, 4.0];
    let b = [5.0, 6.0, 7.0, 8.0];
    for path in paths() {
        let mut c = [0.0f32; 4];
        matmul_packed(
            &mut c,
            2,
            &PackedLhs::with_path(MatRef::row_major(&a, 2, 2), path),
            &b,
            2,
            2,
            false,
        );
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0], "{path:?}");
    }
}
