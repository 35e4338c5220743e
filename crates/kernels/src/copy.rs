//! Copies of short rows (a few to a few dozen values) without a `memcpy` call per row.

/// `dst = src` for short rows, in 8-wide pieces (no call to `memcpy` per row).
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s); // 8 long, known when compiled: two moves, no call
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_short_copies_pieces_and_tail() {
        for n in [0usize, 3, 8, 13, 32] {
            let src: Vec<f32> = (0..n).map(|v| v as f32 + 0.5).collect();
            let mut dst = vec![0.0; n];
            copy_short(&mut dst, &src);
            assert_eq!(dst, src);
        }
    }
}
