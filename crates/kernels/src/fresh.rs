//! Output buffers handed to their kernel unwritten, for kernels that write every value.
//!
//! An output zero-filled and then overwritten costs one pass over memory that buys nothing: in
//! a ResNet-18 FP32 step those fills were 4.7 % of the samples (`perf`, session 26), about
//! 770 MB a step across the convolutions, the batch norms and the fused residual ReLU. Here the
//! vector's spare capacity goes to the kernel as `MaybeUninit<f32>`, and the length is set only
//! once every value has been written.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// A vector of `n` values, all of them stored by `write` into the storage it is handed.
///
/// # Safety
/// `write` must initialise every element of the slice it receives.
#[allow(unsafe_code)]
pub(crate) unsafe fn written_by(n: usize, write: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    write(&mut out.spare_capacity_mut()[..n]);
    // SAFETY: the caller's contract: `write` initialised all `n` values.
    unsafe { out.set_len(n) };
    out
}

/// `s` as storage a kernel may write.
///
/// # Safety
/// Only initialised values may be stored through the result (`MaybeUninit::write`, never
/// `MaybeUninit::uninit()`), so that `s` stays initialised.
#[allow(unsafe_code)]
pub(crate) unsafe fn as_unwritten(s: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the caller keeps the values initialised.
    unsafe { &mut *(s as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// `s` read as values, once they have all been written.
///
/// # Safety
/// Every element of `s` must be initialised.
#[allow(unsafe_code)]
pub(crate) unsafe fn assume_written(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: the layouts agree and the caller vouches for every value.
    unsafe { &mut *(s as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `dst[i] = src[i]` below the shorter length, eight values a step: eight, a length known when
/// compiled, become two vector moves, where a copy of a length known only at run time becomes a
/// call to `memcpy` (short planes, such as ResNet-18's 4 × 4, are copied one at a time).
#[inline(always)]
pub(crate) fn copy_into(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    let n = dst.len().min(src.len());
    let mut d = dst[..n].chunks_exact_mut(8);
    let mut s = src[..n].chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        for l in 0..8 {
            d[l].write(s[l]);
        }
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        d.write(*s);
    }
}

/// `f(a[i], b[i])` for every `i` below the shorter length, in parallel tasks of `chunk` values.
#[allow(unsafe_code)]
pub(crate) fn map2(a: &[f32], b: &[f32], chunk: usize, f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let n = a.len().min(b.len());
    let (a, b, chunk) = (&a[..n], &b[..n], chunk.max(1));
    // SAFETY: the three slices have length `n` and are cut into the same chunks, and each output
    // chunk is zipped with input chunks of its own length: every value is written.
    unsafe {
        written_by(n, |out| {
            out.par_chunks_mut(chunk)
                .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
                .for_each(|(o, (a, b))| {
                    for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                        o.write(f(*a, *b));
                    }
                });
        })
    }
}

/// `f(a[i], b[i], c[i])` for every `i` below the shortest length, as [`map2`].
#[allow(unsafe_code)]
pub(crate) fn map3(a: &[f32], b: &[f32], c: &[f32], chunk: usize, f: impl Fn(f32, f32, f32) -> f32 + Sync) -> Vec<f32> {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c, chunk) = (&a[..n], &b[..n], &c[..n], chunk.max(1));
    // SAFETY: as in `map2`, with a third input of the same length and chunks.
    unsafe {
        written_by(n, |out| {
            out.par_chunks_mut(chunk)
                .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)).zip(c.par_chunks(chunk)))
                .for_each(|(o, ((a, b), c))| {
                    for (((o, a), b), c) in o.iter_mut().zip(a).zip(b).zip(c) {
                        o.write(f(*a, *b, *c));
                    }
                });
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_write_every_value_in_order() {
        // Lengths around the chunk size, and unequal inputs (the shortest one decides).
        for n in [0, 1, 7, 8, 9, 100] {
            let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let b: Vec<f32> = (0..n + 3).map(|i| 10.0 * i as f32).collect();
            let c: Vec<f32> = (0..n + 1).map(|i| -(i as f32)).collect();
            drop(vec![f32::NAN; 4 * n]); // a dirty block the allocator may hand back
            let two = map2(&a, &b, 8, |a, b| a + b);
            assert_eq!(two, (0..n).map(|i| 11.0 * i as f32).collect::<Vec<_>>(), "n {n}");
            let three = map3(&a, &b, &c, 8, |a, b, c| a * b + c);
            let want: Vec<f32> = (0..n).map(|i| (i * i * 10) as f32 - i as f32).collect();
            assert_eq!(three, want, "n {n}");
        }
    }

    #[test]
    #[allow(unsafe_code)]
    fn copies_write_every_value_of_the_shorter_length() {
        for n in 0..=33 {
            let src: Vec<f32> = (0..n).map(|v| v as f32 + 0.5).collect();
            let mut dst = vec![f32::NAN; n + 2];
            // SAFETY: the copy stores values of `src` only.
            copy_into(unsafe { as_unwritten(&mut dst) }, &src);
            assert_eq!(&dst[..n], &src[..], "n {n}");
            assert!(dst[n..].iter().all(|v| v.is_nan()), "n {n}: wrote past the source");
        }
    }

    #[test]
    #[allow(unsafe_code)]
    fn a_written_vector_keeps_what_was_written() {
        // SAFETY: the closure writes all 40 values.
        let v = unsafe {
            written_by(40, |s| {
                for (i, d) in s.iter_mut().enumerate() {
                    d.write(i as f32 * 0.5);
                }
            })
        };
        assert_eq!(v, (0..40).map(|i| i as f32 * 0.5).collect::<Vec<_>>());
        let mut w = vec![1.0f32; 3];
        // SAFETY: only initialised values are written through the view.
        let view = unsafe { as_unwritten(&mut w) };
        view[1].write(5.0);
        assert_eq!(w, [1.0, 5.0, 1.0]);
    }
}
