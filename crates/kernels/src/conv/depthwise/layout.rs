//! Where a plane's values sit in the depthwise buffers: the zero-padded copy split into stride
//! phases, the output grid, and the copies between them and the NCHW planes.

use super::super::geometry::{ConvGeometry, div_rem_stride};
use crate::copy::{
    copy_short, masked_merge, masked_split, merge_pairs, merge_pairs_masked, split_pairs, split_pairs_masked,
};

/// How a plane's padded, phase-split copy and its output grid are laid out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Phases {
    /// Rows of one phase (one spare row, so that runs over the grid's extra columns stay inside).
    pub(super) rows: usize,
    /// Entries per row of one phase, and of the output grid.
    pub(super) cols: usize,
    /// Stride (phases per axis).
    pub(super) stride: usize,
    /// Output rows.
    pub(super) h_out: usize,
}

impl Phases {
    pub(super) fn of(g: &ConvGeometry) -> Self {
        let (hp, wp) = (g.h + 2 * g.padding, g.w + 2 * g.padding);
        Self {
            rows: hp.div_ceil(g.stride) + 1,
            cols: wp.div_ceil(g.stride),
            stride: g.stride,
            h_out: g.h_out(),
        }
    }

    /// Entries of one phase.
    pub(super) fn area(&self) -> usize {
        self.rows * self.cols
    }

    /// Entries of all the phases.
    pub(super) fn len(&self) -> usize {
        self.stride * self.stride * self.area()
    }

    /// Length of a run and of the output grid.
    pub(super) fn grid(&self) -> usize {
        self.h_out * self.cols
    }

    /// Index of padded position `(row, col)`.
    #[inline(always)]
    pub(super) fn at(&self, row: usize, col: usize) -> usize {
        let ((r, qr), (c, qc)) = (div_rem_stride(row, self.stride), div_rem_stride(col, self.stride));
        ((qr * self.stride + qc) * self.rows + r) * self.cols + c
    }
}

/// Calls `f(plane_column, phase_index, count)` for each column phase of a plane row that starts
/// at padded position `(row, padding)`: the plane's columns `first, first + s, …` (`count` of
/// them) are the phase row's entries from `phase_index` on.
#[inline(always)]
fn for_each_column_phase(g: &ConvGeometry, ph: &Phases, row: usize, mut f: impl FnMut(usize, usize, usize)) {
    let s = ph.stride;
    for first in 0..s.min(g.w) {
        let count = (g.w - first).div_ceil(s);
        f(first, ph.at(row, first + g.padding), count);
    }
}

/// Copies one `h × w` plane into the interior of `buf`, split into phases; the padding entries
/// are left as they are (zero: see [`Zeroed`]).
#[inline(always)]
pub(super) fn fill(g: &ConvGeometry, ph: &Phases, plane: &[f32], buf: &mut [f32]) {
    if ph.stride == 2 && masked_split(g.w) {
        for (iy, row) in plane.chunks_exact(g.w).enumerate() {
            let r = iy + g.padding;
            split_pairs_masked(row, buf, ph.at(r, g.padding), ph.at(r, g.padding + 1));
        }
        return;
    }
    for (iy, row) in plane.chunks_exact(g.w).enumerate() {
        let r = iy + g.padding;
        match ph.stride {
            1 => {
                let at = ph.at(r, g.padding);
                copy_short(&mut buf[at..at + g.w], row);
            }
            2 => split_pairs(row, buf, ph.at(r, g.padding), ph.at(r, g.padding + 1)),
            _ => for_each_column_phase(g, ph, r, |first, at, count| {
                for (d, v) in buf[at..at + count]
                    .iter_mut()
                    .zip(row[first..].iter().step_by(ph.stride))
                {
                    *d = *v;
                }
            }),
        }
    }
}

/// Copies the interior of a padded phase buffer back into an `h × w` plane.
#[inline(always)]
pub(super) fn crop(g: &ConvGeometry, ph: &Phases, buf: &[f32], plane: &mut [f32]) {
    if ph.stride == 2 && masked_merge(g.w) {
        for (iy, row) in plane.chunks_exact_mut(g.w).enumerate() {
            let r = iy + g.padding;
            merge_pairs_masked(buf, ph.at(r, g.padding), ph.at(r, g.padding + 1), row);
        }
        return;
    }
    for (iy, row) in plane.chunks_exact_mut(g.w).enumerate() {
        let r = iy + g.padding;
        match ph.stride {
            1 => {
                let at = ph.at(r, g.padding);
                copy_short(row, &buf[at..at + g.w]);
            }
            2 => merge_pairs(buf, ph.at(r, g.padding), ph.at(r, g.padding + 1), row),
            _ => for_each_column_phase(g, ph, r, |first, at, count| {
                for (d, v) in row[first..].iter_mut().step_by(ph.stride).zip(&buf[at..at + count]) {
                    *d = *v;
                }
            }),
        }
    }
}

/// `(tap, start of its run)` for every tap.
pub(super) fn runs(g: &ConvGeometry, ph: &Phases) -> Vec<(usize, usize)> {
    let taps = (0..g.kh).flat_map(|ky| (0..g.kw).map(move |kx| (ky, kx)));
    taps.map(|(ky, kx)| (ky * g.kw + kx, ph.at(ky * g.dilation, kx * g.dilation)))
        .collect()
}

/// The grid's first `wo` columns, row by row, into an `h_out × wo` plane.
#[inline(always)]
pub(super) fn from_grid(ph: &Phases, wo: usize, grid: &[f32], plane: &mut [f32]) {
    for (row, out) in grid.chunks_exact(ph.cols).zip(plane.chunks_exact_mut(wo)) {
        copy_short(out, &row[..wo]);
    }
}

/// An `h_out × wo` plane into the grid's first `wo` columns (the others are left as they are:
/// zero, see [`Zeroed`]).
#[inline(always)]
pub(super) fn to_grid(ph: &Phases, wo: usize, plane: &[f32], grid: &mut [f32]) {
    for (row, src) in grid.chunks_exact_mut(ph.cols).zip(plane.chunks_exact(wo)) {
        copy_short(&mut row[..wo], src);
    }
}

/// A buffer that is zeroed only when it is asked for with another layout. The passes overwrite
/// the same entries for every plane of a layout, so the others (a plane's padding, a grid's
/// spare columns) stay zero without a pass over the buffer per plane.
#[derive(Default)]
pub(super) struct Zeroed {
    data: Vec<f32>,
    layout: Option<[usize; 6]>,
}

impl Zeroed {
    /// The buffer for `layout` (its length last), zeroed if it last held another layout.
    pub(super) fn get(&mut self, layout: [usize; 6]) -> &mut [f32] {
        if self.layout != Some(layout) {
            self.data.clear();
            self.data.resize(layout[5], 0.0);
            self.layout = Some(layout);
        }
        &mut self.data
    }
}
