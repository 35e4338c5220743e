//! The inner loops of the depthwise passes, over fixed tiles of [`TILE`] outputs.
//!
//! A tile's sums live in a `[f32; TILE]` the compiler keeps in vector registers across all the
//! taps (one AVX-512 register, two AVX2 ones), and no loop has a run-time remainder: buffers
//! are padded to whole tiles. Every lane sums its terms in the same order whatever the vector
//! width, so each build computes the same bits.

/// Outputs per tile.
pub(super) const TILE: usize = 16;

/// `len` rounded up to whole tiles.
pub(super) fn whole_tiles(len: usize) -> usize {
    len.div_ceil(TILE) * TILE
}

/// `out[j] = Σ_t w_t · src[offset_t + j]` over the `(w_t, offset_t)` in order (`out.len()` a
/// multiple of [`TILE`]; zero when there is no tap). The first term is a product, not an
/// addition to zero. Two tiles go through the taps together: two independent sums in flight.
#[inline(always)]
pub(super) fn weighted_sum(taps: &[(f32, usize)], src: &[f32], out: &mut [f32]) {
    let Some((&(w0, at0), rest)) = taps.split_first() else {
        out.fill(0.0);
        return;
    };
    let base = out.len() / (2 * TILE) * 2 * TILE;
    let mut pairs = out.chunks_exact_mut(2 * TILE);
    for (i, out) in (&mut pairs).enumerate() {
        let base = i * 2 * TILE;
        let mut acc = [0.0f32; 2 * TILE];
        let x = &src[at0 + base..at0 + base + 2 * TILE];
        for l in 0..2 * TILE {
            acc[l] = w0 * x[l];
        }
        for &(w, at) in rest {
            let x = &src[at + base..at + base + 2 * TILE];
            for l in 0..2 * TILE {
                acc[l] += w * x[l];
            }
        }
        out.copy_from_slice(&acc);
    }
    let out = pairs.into_remainder();
    if !out.is_empty() {
        let mut acc = [0.0f32; TILE];
        let x = &src[at0 + base..at0 + base + TILE];
        for l in 0..TILE {
            acc[l] = w0 * x[l];
        }
        for &(w, at) in rest {
            let x = &src[at + base..at + base + TILE];
            for l in 0..TILE {
                acc[l] += w * x[l];
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// The [`TILE`] lane sums of `Σ a·b` over `a.len()` (a multiple of [`TILE`]) entries: lane `l`
/// sums the entries `l, l + TILE, …` in order.
#[inline(always)]
pub(super) fn dot_lanes(a: &[f32], b: &[f32]) -> [f32; TILE] {
    let mut acc = [0.0f32; TILE];
    for (x, y) in a.chunks_exact(TILE).zip(b.chunks_exact(TILE)) {
        for l in 0..TILE {
            acc[l] += x[l] * y[l];
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_sum_adds_shifted_runs_tile_by_tile() {
        let src: Vec<f32> = (0..48).map(|v| v as f32).collect();
        let mut out = vec![f32::NAN; 32];
        weighted_sum(&[(2.0, 0), (-1.0, 3)], &src, &mut out);
        // 2·j − (j + 3) = j − 3
        let want: Vec<f32> = (0..32).map(|j| j as f32 - 3.0).collect();
        assert_eq!(out, want);
        weighted_sum(&[], &src, &mut out);
        assert!(out.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn dot_lanes_sum_every_tile() {
        let a: Vec<f32> = (0..32).map(|v| v as f32).collect();
        let b = vec![2.0f32; 40];
        let lanes = dot_lanes(&a, &b);
        assert_eq!(lanes[0], 2.0 * (0.0 + 16.0));
        assert_eq!(lanes.iter().sum::<f32>(), 992.0);
        assert_eq!(whole_tiles(17), 32);
        assert_eq!(whole_tiles(32), 32);
        assert_eq!(whole_tiles(0), 0);
    }
}
