//! Sixteen-lane vectors as plain arrays, for the Winograd transforms and the blocked depthwise
//! passes: the loops are written so the compiler turns each into one or two vector instructions
//! inside a [`crate::wide`] kernel.

use std::mem::MaybeUninit;

use crate::transpose::LANES;

pub(crate) type Lanes = [f32; LANES];

// Plain loops, not `std::array::from_fn`: that one is not always inlined into the AVX-512 or
// AVX2 copy of a kernel, and a call there runs scalar code (measured: 14 % of the 128 @ 16² forward).
#[inline(always)]
pub(crate) fn add(a: Lanes, b: Lanes) -> Lanes {
    let mut r = a;
    for (r, b) in r.iter_mut().zip(b) {
        *r += b;
    }
    r
}

#[inline(always)]
pub(crate) fn sub(a: Lanes, b: Lanes) -> Lanes {
    let mut r = a;
    for (r, b) in r.iter_mut().zip(b) {
        *r -= b;
    }
    r
}

/// `LANES` values from `src[at..]`, the lanes from `lanes` on read as zeros.
#[inline(always)]
pub(crate) fn load(src: &[f32], at: usize, lanes: usize) -> Lanes {
    // Element loops over fixed-length slices: one vector load, where `copy_from_slice` with a
    // length the compiler cannot see became a call to `memmove` (10 % of the 128 @ 16² forward).
    let mut v = [0.0f32; LANES];
    if lanes == LANES {
        let s = &src[at..at + LANES];
        #[allow(clippy::manual_memcpy)] // see above
        for l in 0..LANES {
            v[l] = s[l];
        }
    } else {
        for (v, s) in v.iter_mut().zip(&src[at..at + lanes]) {
            *v = *s;
        }
    }
    v
}

/// The `N` whole vectors at the start of `src` (one bounds check; built on [`load`] it measured
/// 3–6 % slower in the depthwise forward).
#[inline(always)]
pub(crate) fn load_n<const N: usize>(src: &[f32]) -> [Lanes; N] {
    let src = &src[..N * LANES];
    let mut v = [[0.0f32; LANES]; N];
    for (m, vm) in v.iter_mut().enumerate() {
        for l in 0..LANES {
            vm[l] = src[m * LANES + l];
        }
    }
    v
}

/// The first `lanes` values of `v` into `dst[at..]`.
#[inline(always)]
pub(crate) fn store(dst: &mut [f32], at: usize, v: &Lanes, lanes: usize) {
    if lanes == LANES {
        let d = &mut dst[at..at + LANES];
        #[allow(clippy::manual_memcpy)] // as in `load`
        for l in 0..LANES {
            d[l] = v[l];
        }
    } else {
        for (d, v) in dst[at..at + lanes].iter_mut().zip(v) {
            *d = *v;
        }
    }
}

/// [`store`] into memory not yet written.
#[inline(always)]
pub(crate) fn store_uninit(dst: &mut [MaybeUninit<f32>], at: usize, v: &Lanes, lanes: usize) {
    if lanes == LANES {
        let d = &mut dst[at..at + LANES];
        for l in 0..LANES {
            d[l].write(v[l]);
        }
    } else {
        for (d, v) in dst[at..at + lanes].iter_mut().zip(v) {
            d.write(*v);
        }
    }
}
