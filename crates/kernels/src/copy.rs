//! Copies of short rows (a few to a few dozen values) without a `memcpy` call per row, and the
//! even/odd split of a row (stride-2 phases) and its inverse, sixteen values at a time.

/// `dst = src` for short rows, in 8-wide pieces and then pieces of 4, 2 and 1 (no call to
/// `memcpy` per row, and no element loop for the last values: a 7-wide row is three moves).
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s); // 8 long, known when compiled: two moves, no call
    }
    let (d, s) = (d.into_remainder(), s.remainder());
    let len = d.len().min(s.len());
    let mut at = 0;
    for piece in [4, 2, 1] {
        if len - at >= piece {
            d[at..at + piece].copy_from_slice(&s[at..at + piece]);
            at += piece;
        }
    }
}

/// `buf[even + i] = row[2i]`, `buf[odd + i] = row[2i + 1]`, sixteen columns at a time.
#[inline(always)]
pub(crate) fn split_pairs(row: &[f32], buf: &mut [f32], even: usize, odd: usize) {
    let mut pieces = row.chunks_exact(16);
    for (c, piece) in (&mut pieces).enumerate() {
        // one whole 16-wide load, then shuffles (not two overlapping masked loads)
        let mut v = [0.0f32; 16];
        v.copy_from_slice(piece);
        let (mut e, mut o) = ([0.0f32; 8], [0.0f32; 8]);
        for l in 0..8 {
            e[l] = v[2 * l];
            o[l] = v[2 * l + 1];
        }
        buf[even + 8 * c..even + 8 * c + 8].copy_from_slice(&e);
        buf[odd + 8 * c..odd + 8 * c + 8].copy_from_slice(&o);
    }
    // The rest pair by pair (no branch per value), then a last even value.
    let half = row.len() / 16 * 8;
    let rest = pieces.remainder();
    let mut pairs = rest.chunks_exact(2);
    for (i, pair) in (&mut pairs).enumerate() {
        buf[even + half + i] = pair[0];
        buf[odd + half + i] = pair[1];
    }
    if let [last] = pairs.remainder() {
        buf[even + half + rest.len() / 2] = *last;
    }
}

/// The inverse of [`split_pairs`]: `row[2i] = buf[even + i]`, `row[2i + 1] = buf[odd + i]`.
#[inline(always)]
pub(crate) fn merge_pairs(buf: &[f32], even: usize, odd: usize, row: &mut [f32]) {
    let done = row.len() / 16 * 16;
    let mut pieces = row.chunks_exact_mut(16);
    for (c, piece) in (&mut pieces).enumerate() {
        let (e, o) = (&buf[even + 8 * c..even + 8 * c + 8], &buf[odd + 8 * c..odd + 8 * c + 8]);
        for l in 0..8 {
            piece[2 * l] = e[l];
            piece[2 * l + 1] = o[l];
        }
    }
    for (x, v) in pieces
        .into_remainder()
        .iter_mut()
        .enumerate()
        .map(|(i, v)| (done + i, v))
    {
        *v = buf[if x % 2 == 0 { even } else { odd } + x / 2];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_merge_pairs_invert_each_other() {
        for n in 0usize..=40 {
            let row: Vec<f32> = (0..n).map(|v| v as f32 + 0.25).collect();
            let (even, odd) = (3, 3 + n.div_ceil(2) + 2);
            let mut buf = vec![f32::NAN; odd + n / 2 + 1];
            split_pairs(&row, &mut buf, even, odd);
            for (x, v) in row.iter().enumerate() {
                assert_eq!(buf[if x % 2 == 0 { even } else { odd } + x / 2], *v, "n {n} x {x}");
            }
            let mut back = vec![0.0; n];
            merge_pairs(&buf, even, odd, &mut back);
            assert_eq!(back, row);
        }
    }

    #[test]
    fn copy_short_copies_pieces_and_tail() {
        for n in 0usize..=33 {
            let src: Vec<f32> = (0..n).map(|v| v as f32 + 0.5).collect();
            let mut dst = vec![0.0; n];
            copy_short(&mut dst, &src);
            assert_eq!(dst, src);
        }
    }
}
