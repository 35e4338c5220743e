//! Stride-1 "same" 3 × 3 depthwise convolution on small planes, straight on the NCHW planes with
//! masked loads, into an output that is never zero-filled first.
//!
//! When the output plane has the input's shape (stride 1, `padding = dilation`), output
//! `q` (flat index `y · w + x`) of tap `(ky, kx)` reads input `q + dy · w + dx`, one fixed offset
//! per tap, with `(dy, dx) = (ky·d − padding, kx·d − padding)`. A vector of consecutive outputs
//! then reads one vector per tap at that offset; the lanes whose input row or column falls
//! outside the plane (the zero padding, and the neighbouring row a column offset wraps into) are
//! masked off and read as zero. Each output vector is `Σ_tap w[tap] · load(tap)`, the first tap a
//! product, then additions in tap order: the arithmetic of the plane-by-plane and blocked
//! forwards, so the same bits, without the padded copy or the 16 × 16 transposes of the blocked
//! passes. Two channels run together, so each lane mask is loaded once for both.
//!
//! The stride-1 input gradient is the same sum over the output gradient with the taps flipped,
//! `(dy, dx) = (padding − ky·d, padding − kx·d)`, in tap order, as the blocked gather sums it.
//!
//! The weight gradient (AVX-512F only) runs 16 channels per task, image by image (so that each
//! image's planes of a task are one contiguous run): `dw[tap] = Σ_q dy[q] · x[q + offset(tap)]`,
//! summed per channel and lane (16 positions apart) in f32 over the plane and the batch in order,
//! the 16 lanes added in f64 at the end. Its AVX2 form measured slower than the blocked weight
//! gradient, which AVX2 keeps.
//!
//! An 8² layer moves little arithmetic per byte: with the kernel this lean, zero-filling the
//! fresh output first was a whole extra pass over it. So these passes write into the output
//! vector's spare capacity and set its length once every value is written.
//!
//! AVX-512F masks lanes with a 16-bit mask register: masked-off lanes are never read. AVX2 has
//! `vmaskmovps`, which on an AMD Zen 1 ran the 192 @ 8² forward and input gradient at a third
//! of the speed of plain loads. So AVX2 loads all eight lanes and clears the masked-off ones with
//! an AND of the lane mask (the same +0.0 a masked load gives, so the same bits), wherever every
//! such load of a pair of planes stays inside the batch's buffer: a masked-off lane then reads a
//! neighbouring plane's value and discards it. Only the pairs at the buffer's two ends, whose
//! loads could leave it, take `vmaskmovps` (`Plan::plain_loads_fit`).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::super::epilogue::{Epilogue, finish};
use super::super::geometry::ConvGeometry;
use crate::wide::{Isa, isa};

/// Planes at most this large (in values) take the masked passes (the blocked passes' range).
const MAX_PLANE: usize = 100;

/// Taps of a 3 × 3 kernel.
const TAPS: usize = 9;

/// Values per block of the weight gradient's lane sums, whatever the vector width.
const BLOCK: usize = 16;

/// Channels per task of the weight gradient: each image's planes of a task are then one
/// contiguous run.
const WEIGHT_CHANNELS: usize = 16;

/// Whether the masked passes suit `g`: a 3 × 3 kernel on a small plane that keeps its shape at
/// stride 1, on a CPU with masked vector loads (AVX-512F or AVX2).
pub(super) fn suits(g: &ConvGeometry) -> bool {
    isa() >= Isa::Avx2
        && (g.kh, g.kw, g.stride) == (3, 3, 1)
        && g.h_out() == g.h
        && g.w_out() == g.w
        && (1..=MAX_PLANE).contains(&g.p_in())
}

/// Whether the masked weight gradient suits `g`: as [`suits`], on AVX-512F only.
pub(super) fn suits_weight(g: &ConvGeometry) -> bool {
    suits(g) && isa() == Isa::Avx512
}

/// Per tap, the flat offset of its input; per vector of outputs and tap, which lanes read one.
struct Plan {
    /// Values per vector (16 with AVX-512F, 8 with AVX2).
    lanes: usize,
    /// Vectors per plane.
    vectors: usize,
    /// Vectors per plane rounded up to whole blocks of 16 values (the weight gradient's unit).
    padded: usize,
    /// Values per plane.
    p: usize,
    /// Per tap, the flat offset of its input from the output.
    offsets: [isize; TAPS],
    /// `masks[v · 9 + tap]`: bit `l` set when output `v · lanes + l` exists and its tap `tap`
    /// reads inside the plane; then, at [`Plan::exist`]`(v)`, bit `l` set when output
    /// `v · lanes + l` exists. For `padded` vectors.
    masks: Vec<u16>,
    /// The same masks as vectors of all-ones and zero lanes, for AVX2 (empty with AVX-512F).
    words: Vec<[i32; 8]>,
    /// Relative to a plane's first value, the first value a tap's whole vector may read and one
    /// past the last (outside the plane where a masked-off lane is).
    reach: [isize; 2],
}

impl Plan {
    /// The plan for the forward (`flipped = false`) or the input gradient (`flipped = true`).
    fn of(g: &ConvGeometry, flipped: bool, lanes: usize) -> Self {
        let sign = if flipped { -1 } else { 1 };
        let shift = |k: usize| sign * ((k * g.dilation) as isize - g.padding as isize);
        let shifts: [(isize, isize); TAPS] = std::array::from_fn(|t| (shift(t / 3), shift(t % 3)));
        let (h, w, p) = (g.h as isize, g.w as isize, g.p_in());
        let (vectors, padded) = (p.div_ceil(lanes), p.div_ceil(BLOCK) * (BLOCK / lanes));
        let mut masks = Vec::with_capacity(padded * (TAPS + 1));
        for v in 0..padded {
            for &(dy, dx) in &shifts {
                let reads = |l: usize| {
                    let q = (v * lanes + l) as isize;
                    let (y, x) = (q / w + dy, q % w + dx);
                    (v * lanes + l) < p && (0..h).contains(&y) && (0..w).contains(&x)
                };
                masks.push((0..lanes).filter(|&l| reads(l)).fold(0u16, |m, l| m | 1 << l));
            }
        }
        for v in 0..padded {
            masks.push((0..lanes).filter(|&l| v * lanes + l < p).fold(0u16, |m, l| m | 1 << l));
        }
        let offsets = shifts.map(|(dy, dx)| dy * w + dx);
        let (lowest, highest) = (offsets.iter().min().copied(), offsets.iter().max().copied());
        let last_vector = (vectors.max(1) - 1) * lanes;
        let reach = [
            lowest.unwrap_or(0),
            (last_vector + lanes) as isize + highest.unwrap_or(0),
        ];
        let words = if lanes == 8 {
            masks.iter().map(|&m| words(m)).collect()
        } else {
            Vec::new()
        };
        Self {
            lanes,
            vectors,
            padded,
            p,
            offsets,
            masks,
            words,
            reach,
        }
    }

    /// Whether every whole-vector load of `planes` consecutive planes from value `start` of a
    /// buffer of `len` values stays inside the buffer.
    fn plain_loads_fit(&self, start: usize, planes: usize, len: usize) -> bool {
        let first = start as isize + self.reach[0];
        let end = (start + (planes.max(1) - 1) * self.p) as isize + self.reach[1];
        first >= 0 && end <= len as isize
    }

    /// Where the mask of the outputs of vector `v` that exist sits in `masks` and `words`.
    fn exist(&self, v: usize) -> usize {
        self.padded * TAPS + v
    }

    /// The planes of one image, from value `first` of the batch `src` (`taps` holds nine weights
    /// per plane), into `dst`, every value of which it writes.
    fn image(&self, taps: &[f32], src: &[f32], first: usize, dst: &mut [MaybeUninit<f32>]) {
        let channels = taps.len() / TAPS;
        assert!(taps.len() == channels * TAPS && dst.len() == channels * self.p && first + dst.len() <= src.len());
        // `suits` is false off x86-64 (`isa` reports baseline vectors there); `fresh` relies on
        // every value being written, so no other architecture may get this far
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("masked depthwise passes on {} values without x86-64 vectors", dst.len());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `suits` admitted this plan only with the ISA its lane count names; `src` holds
        // `channels` planes from `first` and `dst` as many (checked above); every unmasked lane
        // lies inside a plane, and a whole-vector load is taken only inside `src`.
        #[allow(unsafe_code)]
        unsafe {
            let (batch, dst) = (
                Batch {
                    src: src.as_ptr(),
                    len: src.len(),
                    first,
                },
                dst.as_mut_ptr().cast::<f32>(),
            );
            match self.lanes {
                16 => x86::image_avx512(self, taps, batch, dst),
                _ => x86::image_avx2(self, taps, batch, dst),
            }
        }
    }
}

impl Plan {
    /// Adds one plane's products to the weight gradient's lane sums: `sums[tap][l] += dy[q] ·
    /// x[q + offset(tap)]` for the positions `q = v · 16 + l`, in order of `v`. The same sums, in
    /// the same order, with either vector width.
    fn weight(&self, dy: &[f32], x: &[f32], sums: &mut [[f32; BLOCK]; TAPS]) {
        assert!(dy.len() == self.p && x.len() == self.p && self.lanes == 16);
        #[cfg(not(target_arch = "x86_64"))]
        let _ = sums;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a 16-lane plan exists only on a CPU with AVX-512F (`lanes`), and every unmasked
        // lane lies inside the planes checked above.
        #[allow(unsafe_code)]
        unsafe {
            x86::weight_avx512(self, dy.as_ptr(), x.as_ptr(), sums)
        }
    }
}

/// The batch an image's planes are read from: its first value, its length, and where the image
/// starts in it.
#[derive(Clone, Copy)]
struct Batch {
    src: *const f32,
    len: usize,
    first: usize,
}

/// The low eight bits of `bits` as eight lanes of all ones (bit set) or zero.
fn words(bits: u16) -> [i32; 8] {
    std::array::from_fn(|l| -i32::from((bits >> l) & 1))
}

/// The lanes of the widest masked vectors this CPU has.
fn lanes() -> usize {
    if isa() == Isa::Avx512 { 16 } else { 8 }
}

/// `x[b, c] ⋆ w[c]`, then `epi` per image.
pub(super) fn forward(g: &ConvGeometry, x: &[f32], w: &[f32], epi: Option<&Epilogue<'_>>) -> Vec<f32> {
    fresh(&Plan::of(g, false, lanes()), g, x, w, epi)
}

/// `dy[b, c] ⋆ᵀ w[c]` (stride 1: the forward with the taps flipped).
pub(super) fn grad_input(g: &ConvGeometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    fresh(&Plan::of(g, true, lanes()), g, dy, w, None)
}

/// `dw[c] = Σ_b dy[b, c] ⋆ x[b, c]` where [`suits_weight`] holds, [`WEIGHT_CHANNELS`] channels
/// per task: lane sums of 16 positions in f32 over the plane and the batch in order
/// ([`Plan::weight`]), then the 16 lanes added in f64. The result does not depend on the thread
/// count.
///
/// # Panics
/// When `x`, `dy` or `dw` do not hold `g`'s images and channels (a bug in this crate).
pub(super) fn grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let plan = Plan::of(g, false, lanes());
    let (p, image) = (g.p_in(), g.c_in * g.p_in());
    assert!(x.len() == g.batch * image && dy.len() == x.len() && dw.len() == g.c_in * TAPS);
    dw.par_chunks_mut(WEIGHT_CHANNELS * TAPS)
        .enumerate()
        .for_each(|(block, dw)| {
            let c0 = block * WEIGHT_CHANNELS;
            let mut sums = vec![[[0.0f32; BLOCK]; TAPS]; dw.len() / TAPS];
            for b in 0..g.batch {
                let at = b * image + c0 * p;
                let planes = x[at..].chunks_exact(p).zip(dy[at..].chunks_exact(p));
                for (sum, (x, dy)) in sums.iter_mut().zip(planes) {
                    plan.weight(dy, x, sum);
                }
            }
            for (d, lanes) in dw.iter_mut().zip(sums.iter().flatten()) {
                *d = lanes.iter().fold(0.0f64, |s, &l| s + f64::from(l)) as f32;
            }
        });
}

/// [`images`] into a new vector, never zero-filled.
fn fresh(plan: &Plan, g: &ConvGeometry, src: &[f32], w: &[f32], epi: Option<&Epilogue<'_>>) -> Vec<f32> {
    let mut out = Vec::with_capacity(src.len());
    images(plan, g, src, w, &mut out.spare_capacity_mut()[..src.len()], epi);
    // SAFETY: `images` wrote all `src.len()` values (`Plan::image` writes every value of its
    // image, and the images tile `src`, whose length `images` checked).
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(src.len())
    };
    out
}

/// Every image of `src` through [`Plan::image`] into `dst`, then `epi`, images in parallel.
///
/// # Panics
/// When `src`, `dst` or `w` do not hold `g`'s images and channels (a bug in this crate).
fn images(
    plan: &Plan,
    g: &ConvGeometry,
    src: &[f32],
    w: &[f32],
    dst: &mut [MaybeUninit<f32>],
    epi: Option<&Epilogue<'_>>,
) {
    let image = g.c_in * g.p_in();
    assert!(src.len() == g.batch * image && dst.len() == src.len() && w.len() == g.c_in * TAPS);
    if image == 0 {
        return;
    }
    dst.par_chunks_mut(image).enumerate().for_each(|(b, dst)| {
        plan.image(w, src, b * image, dst);
        // SAFETY: `Plan::image` wrote every value of `dst`; `MaybeUninit<f32>` has `f32`'s layout.
        #[allow(unsafe_code)]
        let dst = unsafe { &mut *(std::ptr::from_mut(dst) as *mut [f32]) };
        finish(epi, dst, g.c_in, g.p_in());
    });
}

/// The kernels, one generic loop for both vector widths.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::{
        __m256, __m512, _mm256_add_ps, _mm256_and_ps, _mm256_castsi256_ps, _mm256_loadu_ps, _mm256_loadu_si256,
        _mm256_maskload_ps, _mm256_maskstore_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_storeu_ps, _mm512_add_ps,
        _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_mul_ps, _mm512_set1_ps, _mm512_storeu_ps,
    };

    use super::{BLOCK, Batch, Plan, TAPS, words};

    /// One vector width's masked loads and stores.
    trait Width {
        type V: Copy;
        const LANES: usize;
        /// # Safety
        /// The CPU must support the width.
        unsafe fn splat(x: f32) -> Self::V;
        /// # Safety
        /// As [`Width::splat`]; the lanes of mask `m` of `plan` must lie inside `at`'s allocation.
        unsafe fn load(plan: &Plan, m: usize, at: *const f32) -> Self::V;
        /// Whether whole-vector loads with cleared lanes ([`Width::load_cleared`]) beat masked ones.
        const PLAIN_LOADS: bool;
        /// [`Width::load`] as a whole-vector load whose masked-off lanes are then cleared.
        /// # Safety
        /// As [`Width::splat`]; the whole vector at `at` must lie inside one allocation.
        unsafe fn load_cleared(plan: &Plan, m: usize, at: *const f32) -> Self::V;
        /// # Safety
        /// As [`Width::splat`]; `at` must hold a whole vector.
        unsafe fn load_all(at: *const f32) -> Self::V;
        /// # Safety
        /// As [`Width::splat`].
        unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
        /// # Safety
        /// As [`Width::splat`].
        unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
        /// # Safety
        /// As [`Width::splat`]; the lanes of `bits` must lie inside `at`'s allocation.
        unsafe fn store(at: *mut f32, v: Self::V, bits: u16);
    }

    struct Avx512;

    impl Width for Avx512 {
        type V = __m512;
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            // SAFETY: the caller's CPU has AVX-512F.
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(plan: &Plan, m: usize, at: *const f32) -> __m512 {
            // SAFETY: forwarded; masked-off lanes are not read.
            unsafe { _mm512_maskz_loadu_ps(plan.masks[m], at) }
        }
        // mask registers: a masked load costs what a plain one does
        const PLAIN_LOADS: bool = false;
        #[inline(always)]
        unsafe fn load_cleared(plan: &Plan, m: usize, at: *const f32) -> __m512 {
            // SAFETY: forwarded (a masked load reads less).
            unsafe { Self::load(plan, m, at) }
        }
        #[inline(always)]
        unsafe fn load_all(at: *const f32) -> __m512 {
            // SAFETY: forwarded.
            unsafe { _mm512_loadu_ps(at) }
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            // SAFETY: as `splat`.
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            // SAFETY: as `splat`.
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn store(at: *mut f32, v: __m512, bits: u16) {
            // SAFETY: forwarded.
            unsafe {
                if bits == u16::MAX {
                    _mm512_storeu_ps(at, v)
                } else {
                    _mm512_mask_storeu_ps(at, bits, v)
                }
            }
        }
    }

    struct Avx2;

    impl Width for Avx2 {
        type V = __m256;
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            // SAFETY: the caller's CPU has AVX2.
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(plan: &Plan, m: usize, at: *const f32) -> __m256 {
            // SAFETY: forwarded; `words[m]` holds eight i32 lanes; masked-off lanes are not read.
            unsafe { _mm256_maskload_ps(at, _mm256_loadu_si256(plan.words[m].as_ptr().cast())) }
        }
        const PLAIN_LOADS: bool = true;
        #[inline(always)]
        unsafe fn load_cleared(plan: &Plan, m: usize, at: *const f32) -> __m256 {
            // SAFETY: forwarded; `words[m]` holds eight i32 lanes. The AND gives the masked
            // load's +0.0 in the masked-off lanes.
            unsafe {
                let mask = _mm256_castsi256_ps(_mm256_loadu_si256(plan.words[m].as_ptr().cast()));
                _mm256_and_ps(_mm256_loadu_ps(at), mask)
            }
        }
        #[inline(always)]
        unsafe fn load_all(at: *const f32) -> __m256 {
            // SAFETY: forwarded.
            unsafe { _mm256_loadu_ps(at) }
        }
        #[inline(always)]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            // SAFETY: as `splat`.
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            // SAFETY: as `splat`.
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn store(at: *mut f32, v: __m256, bits: u16) {
            // SAFETY: forwarded.
            unsafe {
                if bits == 0xff {
                    _mm256_storeu_ps(at, v)
                } else {
                    _mm256_maskstore_ps(at, _mm256_loadu_si256(words(bits).as_ptr().cast()), v)
                }
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX-512F; `src` must hold `taps.len() / 9` planes from `src.first`, and
    /// `dst` as many.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn image_avx512(plan: &Plan, taps: &[f32], src: Batch, dst: *mut f32) {
        // SAFETY: forwarded.
        unsafe { image::<Avx512>(plan, taps, src, dst) }
    }

    /// # Safety
    /// The CPU must have AVX2; `src` must hold `taps.len() / 9` planes from `src.first`, and `dst`
    /// as many.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn image_avx2(plan: &Plan, taps: &[f32], src: Batch, dst: *mut f32) {
        // SAFETY: forwarded.
        unsafe { image::<Avx2>(plan, taps, src, dst) }
    }

    /// # Safety
    /// The CPU must have AVX-512F; `dy` and `x` must hold `plan.p` values.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_avx512(plan: &Plan, dy: *const f32, x: *const f32, sums: &mut [[f32; BLOCK]; TAPS]) {
        // SAFETY: forwarded.
        unsafe { weight::<Avx512>(plan, dy, x, sums) }
    }

    /// [`Plan::weight`] (kept generic over the width: the AVX2 form measured 0.87× of the
    /// blocked weight gradient on Zen 5, so only AVX-512F runs it). A block of 16 positions is one
    /// AVX-512 vector, or two AVX2 ones each summed on its own (vectors `h`, `h + 2`, …), so that
    /// every lane would sum the same products in the same order on both.
    #[inline(always)]
    unsafe fn weight<W: Width>(plan: &Plan, dy: *const f32, x: *const f32, sums: &mut [[f32; BLOCK]; TAPS]) {
        // SAFETY (whole function): the caller's CPU has the width; `dy` and `x` hold `plan.p`
        // values; masked-off lanes (outside the plane, or past its end) are not read; `sums`
        // rows hold 16 values, `BLOCK / LANES` vectors.
        unsafe {
            let (per, all) = (BLOCK / W::LANES, ((1u32 << W::LANES) - 1) as u16);
            for h in 0..per {
                let mut acc = [W::splat(0.0); TAPS];
                for (a, sum) in acc.iter_mut().zip(sums.iter()) {
                    *a = W::load_all(sum.as_ptr().add(h * W::LANES));
                }
                for v in (h..plan.padded).step_by(per) {
                    let q = v * W::LANES;
                    let d = W::load(plan, plan.exist(v), dy.wrapping_add(q));
                    for (t, (a, &offset)) in acc.iter_mut().zip(&plan.offsets).enumerate() {
                        let xv = W::load(plan, v * TAPS + t, x.wrapping_add(q).wrapping_offset(offset));
                        *a = W::add(*a, W::mul(d, xv));
                    }
                }
                for (a, sum) in acc.iter().zip(sums.iter_mut()) {
                    W::store(sum.as_mut_ptr().add(h * W::LANES), *a, all);
                }
            }
        }
    }

    /// The image's channels two at a time, then the last one alone; each group by whole-vector
    /// loads where they stay inside the batch and `W` prefers them.
    #[inline(always)]
    unsafe fn image<W: Width>(plan: &Plan, taps: &[f32], src: Batch, dst: *mut f32) {
        let mut pairs = taps.chunks_exact(2 * TAPS);
        for (c, two) in pairs.by_ref().enumerate() {
            let at = 2 * c * plan.p;
            // SAFETY: planes `2c` and `2c + 1` exist (caller); whole-vector loads only where they
            // stay inside the batch.
            unsafe {
                if W::PLAIN_LOADS && plan.plain_loads_fit(src.first + at, 2, src.len) {
                    planes::<W, 2, true>(plan, two, src.src.add(src.first + at), dst.add(at));
                } else {
                    planes::<W, 2, false>(plan, two, src.src.add(src.first + at), dst.add(at));
                }
            }
        }
        if let [_, ..] = pairs.remainder() {
            let at = (taps.len() / TAPS - 1) * plan.p;
            // SAFETY: the last plane exists (caller).
            unsafe {
                if W::PLAIN_LOADS && plan.plain_loads_fit(src.first + at, 1, src.len) {
                    planes::<W, 1, true>(plan, pairs.remainder(), src.src.add(src.first + at), dst.add(at));
                } else {
                    planes::<W, 1, false>(plan, pairs.remainder(), src.src.add(src.first + at), dst.add(at));
                }
            }
        }
    }

    /// Tap entry `m`'s vector at `at`: a whole-vector load with the masked-off lanes cleared
    /// where `PLAIN`, else a masked load.
    ///
    /// # Safety
    /// As [`Width::load`]; where `PLAIN`, the whole vector at `at` must lie in one allocation.
    #[inline(always)]
    unsafe fn read<W: Width, const PLAIN: bool>(plan: &Plan, m: usize, at: *const f32) -> W::V {
        // SAFETY: forwarded.
        unsafe {
            if PLAIN {
                W::load_cleared(plan, m, at)
            } else {
                W::load(plan, m, at)
            }
        }
    }

    /// `C` consecutive planes of `src` into `dst`, their lane masks shared; each tap's vector read
    /// as [`read`] does.
    #[inline(always)]
    unsafe fn planes<W: Width, const C: usize, const PLAIN: bool>(
        plan: &Plan,
        taps: &[f32],
        src: *const f32,
        dst: *mut f32,
    ) {
        // SAFETY (whole function): the caller's CPU has the width; `src` and `dst` hold `C` planes
        // of `plan.p` values; each unmasked lane of tap `t` of output `q` reads `q + offsets[t]`
        // of its own plane (`Plan::of`), and with `PLAIN` every whole vector lies inside the
        // buffer (`Plan::plain_loads_fit`, checked by the caller); the stores write the lanes
        // that exist.
        unsafe {
            let mut w = [[W::splat(0.0); TAPS]; C];
            for (c, wc) in w.iter_mut().enumerate() {
                for (t, wt) in wc.iter_mut().enumerate() {
                    *wt = W::splat(taps[c * TAPS + t]);
                }
            }
            // (plain loops, no closures: a closure is not compiled with the caller's vectors)
            for v in 0..plan.vectors {
                let q = v * W::LANES;
                // the first tap a product, then the others added in tap order
                let mut acc = [W::splat(0.0); C];
                for (c, a) in acc.iter_mut().enumerate() {
                    let at = src.wrapping_add(c * plan.p + q).wrapping_offset(plan.offsets[0]);
                    *a = W::mul(w[c][0], read::<W, PLAIN>(plan, v * TAPS, at));
                }
                for (t, &offset) in plan.offsets.iter().enumerate().skip(1) {
                    for (c, a) in acc.iter_mut().enumerate() {
                        let at = src.wrapping_add(c * plan.p + q).wrapping_offset(offset);
                        *a = W::add(*a, W::mul(w[c][t], read::<W, PLAIN>(plan, v * TAPS + t, at)));
                    }
                }
                let bits = plan.masks[plan.exist(v)];
                for (c, &a) in acc.iter().enumerate() {
                    W::store(dst.add(c * plan.p + q), a, bits);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{forward_planes, grad_input_planes, test_values as values};
    use super::*;

    fn depthwise(
        batch: usize,
        c: usize,
        (h, w): (usize, usize),
        k: usize,
        padding: usize,
        dilation: usize,
    ) -> ConvGeometry {
        ConvGeometry {
            batch,
            c_in: c,
            h,
            w,
            c_out: c,
            kh: k,
            kw: k,
            stride: 1,
            padding,
            dilation,
            groups: c,
        }
    }

    /// The lane counts this CPU can run: AVX2's 8, and AVX-512F's 16 where it has it.
    fn lane_counts() -> Vec<usize> {
        [8, 16]
            .into_iter()
            .filter(|&l| (l == 8 && isa() >= Isa::Avx2) || isa() == Isa::Avx512)
            .collect()
    }

    /// A 3 × 3 plane `1..=9` with all-ones 3 × 3 taps and padding 1: each output is the sum of
    /// its neighbourhood, worked by hand. The flipped taps of all-ones weights give the same.
    #[test]
    fn all_ones_taps_sum_each_neighbourhood() {
        let g = depthwise(1, 1, (3, 3), 3, 1, 1);
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let expected = [12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0];
        for lanes in lane_counts() {
            for flipped in [false, true] {
                let out = fresh(&Plan::of(&g, flipped, lanes), &g, &x, &[1.0; 9], None);
                assert_eq!(out, expected, "{lanes} lanes, flipped {flipped}");
            }
        }
    }

    /// Each tap reads its own shifted input: a single 1 on tap (0, 0) copies the plane shifted
    /// down and right by one (forward: output (y, x) reads input (y − 1, x − 1)).
    #[test]
    fn one_tap_shifts_the_plane() {
        let g = depthwise(1, 1, (4, 5), 3, 1, 1);
        let x: Vec<f32> = (1..=20).map(|v| v as f32).collect();
        let mut taps = [0.0; 9];
        taps[0] = 1.0;
        for lanes in lane_counts() {
            let out = fresh(&Plan::of(&g, false, lanes), &g, &x, &taps, None);
            for (q, &o) in out.iter().enumerate() {
                let (y, xx) = (q / 5, q % 5);
                let want = if y == 0 || xx == 0 { 0.0 } else { x[q - 6] };
                assert_eq!(o, want, "{lanes} lanes, output ({y}, {xx})");
            }
        }
    }

    /// Against the plane-by-plane passes, bit for bit: odd plane sizes (a partial last vector),
    /// odd channel counts (a pair of planes, then one alone), dilation 2, and 1 × 1 planes.
    #[test]
    fn masked_passes_agree_bit_for_bit_with_the_plane_passes() {
        let cases = [
            ((8, 8), 1, 1, 5),
            ((7, 7), 1, 1, 5),
            ((5, 3), 1, 1, 2),
            ((7, 9), 2, 2, 5),
            ((1, 1), 1, 1, 3),
            ((10, 10), 1, 1, 1),
        ];
        for lanes in lane_counts() {
            for (hw, padding, dilation, c) in cases {
                let g = depthwise(2, c, hw, 3, padding, dilation);
                assert!(isa() < Isa::Avx2 || suits(&g));
                let case = format!("{lanes} lanes, {hw:?} p{padding} d{dilation}, {c} channels");
                let (x, wt) = (values(2 * c * g.p_in(), 1), values(c * 9, 2));
                let dy = values(x.len(), 3);
                let a = fresh(&Plan::of(&g, false, lanes), &g, &x, &wt, None);
                let mut b = vec![f32::NAN; x.len()];
                forward_planes(&g, &x, &wt, &mut b, None);
                assert_eq!(a, b, "forward {case}");
                let a = fresh(&Plan::of(&g, true, lanes), &g, &dy, &wt, None);
                let mut b = vec![f32::NAN; x.len()];
                grad_input_planes(&g, &dy, &wt, &mut b);
                assert_eq!(a, b, "input gradient {case}");
            }
        }
    }

    /// A NaN plane between finite ones: the whole-vector loads of its neighbours read some of
    /// its values into masked-off lanes, and the AND must discard them (a NaN times a zero weight
    /// would still be a NaN). The neighbours' outputs match the plane passes bit for bit.
    #[test]
    fn a_neighbouring_nan_plane_does_not_leak() {
        let g = depthwise(2, 5, (8, 8), 3, 1, 1);
        let mut x = values(2 * 5 * 64, 6);
        x[2 * 64..3 * 64].fill(f32::NAN); // image 0, channel 2
        let wt = values(5 * 9, 7);
        for lanes in lane_counts() {
            let got = fresh(&Plan::of(&g, false, lanes), &g, &x, &wt, None);
            let mut want = vec![0.0; x.len()];
            forward_planes(&g, &x, &wt, &mut want, None);
            for (plane, (a, b)) in got.chunks(64).zip(want.chunks(64)).enumerate() {
                if plane == 2 {
                    assert!(a.iter().all(|v| v.is_nan()), "{lanes} lanes: the NaN plane");
                } else {
                    assert!(a.iter().all(|v| v.is_finite()), "{lanes} lanes, plane {plane}: {a:?}");
                    assert_eq!(a, b, "{lanes} lanes, plane {plane}");
                }
            }
        }
    }

    /// Whole-vector loads reach 9 values before an 8 × 8 plane (tap (0, 0) of its first row) and
    /// 9 past it: they fit for planes with a neighbour on each side, not at the buffer's ends.
    #[test]
    fn whole_vector_loads_fit_only_inside_the_buffer() {
        let plan = Plan::of(&depthwise(1, 4, (8, 8), 3, 1, 1), false, 8);
        assert_eq!(plan.reach, [-9, 73]);
        let len = 4 * 64;
        assert!(
            !plan.plain_loads_fit(0, 2, len),
            "the first pair reads before the buffer"
        );
        assert!(!plan.plain_loads_fit(128, 2, len), "the last pair reads past it");
        assert!(plan.plain_loads_fit(64, 2, len), "planes 1 and 2 have neighbours");
        assert!(plan.plain_loads_fit(9, 1, 9 + 64 + 9));
        assert!(!plan.plain_loads_fit(9, 1, 9 + 64 + 8));
    }

    /// The weight gradient against the plane-by-plane one, to rounding (the sums run in another
    /// order).
    #[test]
    fn masked_weight_gradient_agrees_with_the_planes() {
        if isa() < Isa::Avx512 {
            return; // the masked weight gradient runs on AVX-512F only
        }
        use super::super::grad_weight_planes;
        for (hw, padding, dilation, c) in [
            ((8, 8), 1, 1, 3),
            ((7, 7), 1, 1, 2),
            ((5, 3), 1, 1, 1),
            ((7, 9), 2, 2, 2),
        ] {
            let g = depthwise(3, c, hw, 3, padding, dilation);
            let (x, dy) = (values(3 * c * g.p_in(), 4), values(3 * c * g.p_in(), 5));
            let mut want = vec![f32::NAN; c * 9];
            grad_weight_planes(&g, &x, &dy, &mut want);
            let mut got = vec![f32::NAN; c * 9];
            grad_weight(&g, &x, &dy, &mut got);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{hw:?} at {i}: {a} vs {b}");
            }
        }
    }

    /// A hand-worked weight gradient: one 2 × 2 plane, `x = [1, 2; 3, 4]`, `dy` all ones. Tap
    /// `(ky, kx)` sums `x` at offset `(ky − 1, kx − 1)` from every output where that exists: the
    /// centre tap all four (10); tap (0, 0) only output (1, 1), which reads x(0, 0) = 1; tap
    /// (0, 1) outputs (1, 0) and (1, 1), reading 1 + 2; tap (2, 1) outputs (0, 0) and (0, 1),
    /// reading 3 + 4.
    #[test]
    fn weight_gradient_of_a_small_plane_by_hand() {
        if isa() < Isa::Avx512 {
            return; // the masked weight gradient runs on AVX-512F only
        }
        let g = depthwise(1, 1, (2, 2), 3, 1, 1);
        let mut got = [f32::NAN; 9];
        grad_weight(&g, &[1.0, 2.0, 3.0, 4.0], &[1.0; 4], &mut got);
        assert_eq!(got, [1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]);
    }

    /// Only stride-1 convolutions that keep the plane's shape take the masked passes.
    #[test]
    fn only_shape_keeping_stride_one_planes_suit() {
        let same = depthwise(1, 16, (8, 8), 3, 1, 1);
        assert_eq!(suits(&same), isa() >= Isa::Avx2);
        let shrinking = depthwise(1, 16, (8, 8), 3, 0, 1);
        let strided = ConvGeometry { stride: 2, ..same };
        let large = depthwise(1, 16, (16, 16), 3, 1, 1);
        let five = depthwise(1, 16, (8, 8), 5, 2, 1);
        for g in [shrinking, strided, large, five] {
            assert!(!suits(&g));
        }
    }
}
