//! Zero-filled output buffers, filled by all rayon threads when they are large.
//!
//! `vec![0.0; n]` is one thread's `memset` (or, for a fresh mapping, one thread's page faults):
//! a convolution's or a batch norm's output of a few MiB is then zeroed by one core while the
//! others wait for the kernel that overwrites it. Large buffers are filled in parallel instead,
//! straight into the vector's spare capacity, so every page is also first touched by the thread
//! that zeroes it.

use rayon::prelude::*;

/// Below this many floats (256 KiB) one thread's fill is cheaper than waking the others.
const PARALLEL_FROM: usize = 1 << 16;

/// `n` zeros; filled by the rayon pool when `n` is large.
pub(crate) fn zeros(n: usize) -> Vec<f32> {
    if n < PARALLEL_FROM || rayon::current_num_threads() < 2 {
        return vec![0.0; n];
    }
    let mut out = Vec::with_capacity(n);
    out.par_extend((0..n).into_par_iter().map(|_| 0.0f32));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_is_all_zeros() {
        for n in [
            0,
            1,
            PARALLEL_FROM - 1,
            PARALLEL_FROM,
            PARALLEL_FROM + 7,
            3 * PARALLEL_FROM + 1,
        ] {
            drop(vec![f32::NAN; n]); // a freed dirty block the allocator may hand back
            let v = zeros(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|x| x.to_bits() == 0), "length {n}");
        }
    }
}
