//! Gathers by permutes (AVX-512F; x86-64 only): each group of sixteen destination values is read
//! from at most four contiguous 16-value windows of the source, picked from by two two-source
//! permutes and one blend. On AMD's Zen 5 a 16-lane `vgatherdps` is a long microcoded sequence; a strided 1×1
//! convolution's output rows (every other value of every other input row) fall into two to four
//! such windows per group. (An AVX2 form, eight lanes from two windows by one-source permutes,
//! measured 0.91–1.08× of AVX2's 8-lane gather on the same CPU, so AVX2 keeps the gather.)

/// Values per group: one AVX-512 vector.
const LANES: usize = 16;
/// Windows one group may read: two per permute.
const MAX_WINDOWS: usize = 4;

/// How one group of up to [`LANES`] destination values is read.
pub(super) struct Group {
    /// The first source offset of each window; each lies at most `span − 16`, so that its 16
    /// values stay inside the source.
    starts: [u32; MAX_WINDOWS],
    /// Per permute, per lane: the value's index in the permute's pair of windows (`0..16` the
    /// first, `16..32` the second).
    picks: [[i32; LANES]; 2],
    /// Lanes taken from the second permute.
    from_second: u16,
    /// Lanes written: all but in a last, shorter group.
    written: u16,
}

/// The permute plan of a whole offset table, or `None` where some group needs more than four
/// windows or the source is shorter than one window (the vector gather then runs instead).
pub(super) fn plan(offsets: &[i32], span: usize) -> Option<Vec<Group>> {
    if span < LANES {
        return None;
    }
    offsets.chunks(LANES).map(|group| plan_group(group, span)).collect()
}

/// One group's windows, opened in lane order where a lane's offset is not in one already.
fn plan_group(offsets: &[i32], span: usize) -> Option<Group> {
    let mut starts: Vec<usize> = Vec::with_capacity(MAX_WINDOWS);
    let mut window_of = [0usize; LANES];
    for (lane, &o) in offsets.iter().enumerate() {
        let o = usize::try_from(o).ok()?;
        window_of[lane] = match starts.iter().position(|&s| (s..s + LANES).contains(&o)) {
            Some(w) => w,
            None if starts.len() < MAX_WINDOWS => {
                starts.push(o.min(span - LANES));
                starts.len() - 1
            }
            None => return None,
        };
    }
    // unused windows repeat the last one: read, never picked
    while starts.len() < MAX_WINDOWS {
        starts.push(*starts.last()?);
    }
    let mut group = Group {
        starts: [0; MAX_WINDOWS],
        picks: [[0; LANES]; 2],
        from_second: 0,
        written: ((1u32 << offsets.len()) - 1) as u16,
    };
    for (slot, &s) in group.starts.iter_mut().zip(&starts) {
        *slot = u32::try_from(s).ok()?;
    }
    for (lane, &o) in offsets.iter().enumerate() {
        let w = window_of[lane];
        group.picks[w / 2][lane] = i32::try_from((w % 2) * LANES + o as usize - starts[w]).ok()?;
        if w >= 2 {
            group.from_second |= 1 << lane;
        }
    }
    Some(group)
}

mod vector {
    use std::arch::x86_64::{
        _mm512_loadu_ps, _mm512_loadu_si512, _mm512_mask_blend_ps, _mm512_mask_storeu_ps, _mm512_permutex2var_ps,
        _mm512_storeu_ps,
    };

    use super::{Group, LANES};

    /// `dst[16·g + l]` = the value group `g` picks for lane `l`.
    ///
    /// # Safety
    /// AVX-512F; every window of every group (`start .. start + 16`) readable from `src`;
    /// `dst.len()` equal to the table's offset count (the groups' written lanes).
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    pub(in crate::gather) unsafe fn gather16(groups: &[Group], dst: &mut [f32], src: *const f32) {
        // SAFETY (whole function): forwarded from the caller; group `g` writes the lanes of
        // `dst[16·g ..]` that its `written` mask names, all inside `dst`.
        unsafe {
            for (g, group) in groups.iter().enumerate() {
                // plain loads, no closure: a closure is not compiled with this `target_feature`
                let [s0, s1, s2, s3] = group.starts.map(|s| s as usize);
                let picks = _mm512_loadu_si512(group.picks[0].as_ptr().cast());
                let first = _mm512_permutex2var_ps(_mm512_loadu_ps(src.add(s0)), picks, _mm512_loadu_ps(src.add(s1)));
                let v = if group.from_second == 0 {
                    first
                } else {
                    let picks = _mm512_loadu_si512(group.picks[1].as_ptr().cast());
                    let second =
                        _mm512_permutex2var_ps(_mm512_loadu_ps(src.add(s2)), picks, _mm512_loadu_ps(src.add(s3)));
                    _mm512_mask_blend_ps(group.from_second, first, second)
                };
                let at = dst.as_mut_ptr().add(g * LANES);
                if group.written == u16::MAX {
                    _mm512_storeu_ps(at, v);
                } else {
                    _mm512_mask_storeu_ps(at, group.written, v);
                }
            }
        }
    }
}

pub(super) use vector::gather16;

#[cfg(test)]
mod tests {
    use super::{LANES, plan};

    /// The offsets of a strided 1×1 conv's outputs on a `w`-wide plane of `h` rows.
    fn strided(h: usize, w: usize, s: usize) -> Vec<i32> {
        let (ho, wo) = (h.div_ceil(s), w.div_ceil(s));
        (0..ho * wo).map(|j| ((j / wo) * s * w + (j % wo) * s) as i32).collect()
    }

    /// What a plan picks, read back lane by lane without vectors.
    fn picked(offsets: &[i32], span: usize, src: &[f32]) -> Vec<f32> {
        let groups = plan(offsets, span).expect("a plan");
        let mut out = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            for lane in 0..(offsets.len() - g * LANES).min(LANES) {
                let pair = usize::from(group.from_second >> lane & 1);
                let pick = group.picks[pair][lane] as usize;
                let start = group.starts[2 * pair + pick / LANES] as usize;
                assert!(start + LANES <= span, "a window past the source");
                out.push(src[start + pick % LANES]);
            }
        }
        out
    }

    #[test]
    fn strided_pointwise_tables_are_picked_from_windows() {
        for (h, w, s) in [(8, 8, 2), (16, 16, 2), (7, 7, 2), (14, 14, 2), (12, 12, 3), (4, 4, 2)] {
            let offsets = strided(h, w, s);
            let src: Vec<f32> = (0..h * w).map(|v| v as f32 * 0.25 - 3.0).collect();
            let want: Vec<f32> = offsets.iter().map(|&o| src[o as usize]).collect();
            assert_eq!(picked(&offsets, h * w, &src), want, "{h}×{w} stride {s}");
        }
    }

    #[test]
    fn an_eight_wide_stride_two_plane_takes_four_windows_and_a_sixteen_wide_one_two() {
        let eight = plan(&strided(8, 8, 2), 64).unwrap();
        assert_eq!(eight.len(), 1);
        assert_eq!(eight[0].starts, [0, 16, 32, 48]);
        assert_eq!(eight[0].from_second, 0xff00);
        let sixteen = plan(&strided(16, 16, 2), 256).unwrap();
        assert_eq!(sixteen.len(), 4);
        assert!(sixteen.iter().all(|g| g.from_second == 0));
        assert_eq!(sixteen[1].starts[..2], [64, 96]);
    }

    #[test]
    fn five_windows_or_a_short_source_have_no_plan() {
        let spread: Vec<i32> = (0..5).map(|i| i * 20).collect();
        assert!(plan(&spread, 100).is_none());
        assert!(plan(&spread[..4], 100).is_some());
        assert!(plan(&[0, 3], 15).is_none());
    }

    #[test]
    fn a_window_near_the_end_starts_early_enough_to_stay_inside() {
        let groups = plan(&[30, 31], 32).unwrap();
        assert_eq!((groups[0].starts[0], groups[0].written), (16, 0b11));
        let src: Vec<f32> = (0..32).map(|v| v as f32).collect();
        assert_eq!(picked(&[30, 31], 32, &src), [30.0, 31.0]);
    }
}
