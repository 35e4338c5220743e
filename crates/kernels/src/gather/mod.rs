//! Gathers of values by a table of offsets, vector gathers where the CPU has them: the unfolding
//! of a strided 1×1 convolution, whose output rows of 4 or 8 values made one copy per row cost
//! more than the copying itself. Where every sixteen offsets fall into at most four 16-value
//! windows of the source (those convolutions' tables), AVX-512F loads the windows and permutes
//! ([`windows`]) instead of gathering.

#[cfg(target_arch = "x86_64")]
mod windows;

/// Offsets into a source slice, all below `span`: checked once when the table is built, so that
/// every [`gather`](Self::gather) from a source of at least `span` values stays in bounds.
pub(crate) struct OffsetTable {
    offsets: Vec<i32>,
    span: usize,
    /// The permute plan of the offsets, where one exists and the CPU has AVX-512F.
    #[cfg(target_arch = "x86_64")]
    windows: Option<Vec<windows::Group>>,
}

impl OffsetTable {
    /// A table of `offsets`; `None` when one does not fit an `i32` (the vector gathers' index).
    pub(crate) fn new(offsets: impl Iterator<Item = usize>) -> Option<Self> {
        let mut span = 0;
        let mut table = Vec::with_capacity(offsets.size_hint().0);
        for o in offsets {
            table.push(i32::try_from(o).ok()?);
            span = span.max(o + 1);
        }
        #[cfg(target_arch = "x86_64")]
        let windows = if crate::wide::isa() == crate::wide::Isa::Avx512 {
            windows::plan(&table, span)
        } else {
            None
        };
        Some(Self {
            offsets: table,
            span,
            #[cfg(target_arch = "x86_64")]
            windows,
        })
    }

    /// `dst[j] = src[offsets[j]]` for every `j`.
    ///
    /// # Panics
    /// When `dst` does not hold one value per offset or `src` fewer than the table's span.
    pub(crate) fn gather(&self, dst: &mut [f32], src: &[f32]) {
        assert_eq!(dst.len(), self.offsets.len(), "gather: destination length");
        assert!(src.len() >= self.span, "gather: source shorter than the table's span");
        #[cfg(target_arch = "x86_64")]
        match crate::wide::isa() {
            // SAFETY: the ISA is checked; every offset is below `span ≤ src.len()` (checked when
            // the table was built and above) and `dst` holds one value per offset.
            #[allow(unsafe_code)]
            crate::wide::Isa::Avx512 => {
                // SAFETY: as above; every window of the plan lies inside `span` (`windows::plan`).
                return unsafe {
                    match &self.windows {
                        Some(groups) => windows::gather16(groups, dst, src.as_ptr()),
                        None => vector::gather16(dst, src.as_ptr(), &self.offsets),
                    }
                };
            }
            #[allow(unsafe_code)]
            crate::wide::Isa::Avx2 => return unsafe { vector::gather8(dst, src.as_ptr(), &self.offsets) },
            crate::wide::Isa::Sse2 => {}
        }
        for (d, &o) in dst.iter_mut().zip(&self.offsets) {
            *d = src[o as usize];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vector {
    use std::arch::x86_64::{
        __m256i, _mm256_i32gather_ps, _mm256_loadu_si256, _mm256_storeu_ps, _mm512_i32gather_ps, _mm512_loadu_si512,
        _mm512_mask_i32gather_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_epi32, _mm512_setzero_ps, _mm512_storeu_ps,
    };

    /// # Safety
    /// AVX-512F; `src + offsets[j]` readable for every `j`; `dst.len() == offsets.len()`.
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    pub(super) unsafe fn gather16(dst: &mut [f32], src: *const f32, offsets: &[i32]) {
        let whole = offsets.len() / 16 * 16;
        // SAFETY: forwarded from the caller; `j + 16 ≤ whole` for the full vectors, the tail's
        // masked lanes are neither read nor written.
        unsafe {
            for j in (0..whole).step_by(16) {
                let idx = _mm512_loadu_si512(offsets.as_ptr().add(j).cast());
                _mm512_storeu_ps(dst.as_mut_ptr().add(j), _mm512_i32gather_ps::<4>(idx, src.cast()));
            }
            // the low `len − whole < 16` lanes
            let mask = ((1u32 << (offsets.len() - whole)) - 1) as u16;
            if mask != 0 {
                let idx = _mm512_maskz_loadu_epi32(mask, offsets.as_ptr().add(whole));
                let v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, idx, src.cast());
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(whole), mask, v);
            }
        }
    }

    /// # Safety
    /// AVX2; `src + offsets[j]` readable for every `j`; `dst.len() == offsets.len()`.
    #[target_feature(enable = "avx2")]
    #[allow(unsafe_code)]
    pub(super) unsafe fn gather8(dst: &mut [f32], src: *const f32, offsets: &[i32]) {
        let whole = offsets.len() / 8 * 8;
        // SAFETY: forwarded from the caller; `j + 8 ≤ whole`.
        unsafe {
            for j in (0..whole).step_by(8) {
                let idx = _mm256_loadu_si256(offsets.as_ptr().add(j).cast::<__m256i>());
                _mm256_storeu_ps(dst.as_mut_ptr().add(j), _mm256_i32gather_ps::<4>(src, idx));
            }
        }
        for j in whole..offsets.len() {
            // SAFETY: forwarded from the caller.
            dst[j] = unsafe { *src.add(offsets[j] as usize) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OffsetTable;

    #[test]
    fn gather_reads_every_offset_on_the_cpus_path() {
        let src: Vec<f32> = (0..200).map(|v| v as f32 * 0.5 - 7.0).collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 64] {
            let offsets: Vec<usize> = (0..len).map(|j| (j * 37 + 11) % 200).collect();
            let table = OffsetTable::new(offsets.iter().copied()).unwrap();
            let mut dst = vec![f32::NAN; len];
            table.gather(&mut dst, &src);
            let want: Vec<f32> = offsets.iter().map(|&o| src[o]).collect();
            assert_eq!(dst, want, "{len} values");
        }
    }

    #[test]
    fn strided_plane_offsets_read_through_windows_give_the_same_values() {
        // every other value of every other row of 8-, 14- and 16-wide planes (a permute plan on
        // AVX-512F), and the same offsets cut short to leave a partial last group
        for (w, rows) in [(8, 8), (14, 14), (16, 16)] {
            let offsets: Vec<usize> = (0..rows / 2 * w / 2)
                .map(|j| (j / (w / 2)) * 2 * w + (j % (w / 2)) * 2)
                .collect();
            let src: Vec<f32> = (0..w * rows).map(|v| v as f32 * 0.5 + 1.0).collect();
            for len in [offsets.len(), offsets.len() - 3, 5] {
                let table = OffsetTable::new(offsets[..len].iter().copied()).unwrap();
                let mut dst = vec![f32::NAN; len];
                table.gather(&mut dst, &src);
                let want: Vec<f32> = offsets[..len].iter().map(|&o| src[o]).collect();
                assert_eq!(dst, want, "{w}-wide plane, {len} values");
            }
        }
    }

    #[test]
    #[should_panic(expected = "span")]
    fn gather_refuses_a_source_shorter_than_the_offsets_reach() {
        let table = OffsetTable::new([0, 9].into_iter()).unwrap();
        table.gather(&mut [0.0; 2], &[0.0; 9]);
    }

    #[test]
    fn offsets_beyond_i32_are_refused() {
        assert!(OffsetTable::new([1usize << 40].into_iter()).is_none());
    }
}
