//! The AVX-512 micro-kernel: an 8 × 32 tile of `C` in 16 registers.

/// Rows of `A` per panel.
pub(super) const MR: usize = 8;
/// 16-float vectors per row of the tile.
const NV: usize = 2;
/// Columns of `B` per strip.
pub(super) const NR: usize = 16 * NV;

/// `C[MR × NR] (+)= A_panel · B_strip` over `kc` rows of `k`.
///
/// # Safety
/// The CPU must have AVX-512F; `a` must hold `kc · MR` values, `b` `kc` rows of `NR` values at
/// stride `ldb`, `c` `MR` rows of `NR` values at stride `ldc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)]
pub(super) unsafe fn tile(a: *const f32, b: *const f32, ldb: usize, c: *mut f32, ldc: usize, kc: usize, load_c: bool) {
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps};
    // SAFETY: every pointer offset below stays inside the extents the caller guarantees.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        if load_c {
            for (i, row) in acc.iter_mut().enumerate() {
                *row = std::array::from_fn(|v| _mm512_loadu_ps(c.add(i * ldc + 16 * v)));
            }
        }
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            let bv: [_; NV] = std::array::from_fn(|v| _mm512_loadu_ps(b.add(16 * v)));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i));
                for v in 0..NV {
                    row[v] = _mm512_fmadd_ps(ai, bv[v], row[v]);
                }
            }
            a = a.add(MR);
            b = b.add(ldb);
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, r) in row.iter().enumerate() {
                _mm512_storeu_ps(c.add(i * ldc + 16 * v), *r);
            }
        }
    }
}

/// Never called: other architectures take the fallback.
#[cfg(not(target_arch = "x86_64"))]
#[allow(unsafe_code)]
pub(super) unsafe fn tile(_: *const f32, _: *const f32, _: usize, _: *mut f32, _: usize, _: usize, _: bool) {}
