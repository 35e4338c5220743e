//! Depthwise convolution (`groups = c_in = c_out`): a direct loop per channel plane, kept NCHW.
//!
//! Each input plane is copied once into a small zero-padded buffer split into `stride²` phases:
//! phase `(qy, qx)` holds the padded positions `(i·s + qy, j·s + qx)`. Output `(oy, ox)` of tap
//! `(ky, kx)` reads padded position `(oy·s + ky·d, ox·s + kx·d)`, which is entry
//! `(oy + ⌊ky·d/s⌋, ox + ⌊kx·d/s⌋)` of phase `(ky·d mod s, kx·d mod s)`. With the output laid out
//! on a grid as wide as a phase row (`cols ≥ w_out`, the extra columns ignored), every tap of a
//! whole plane is then **one** contiguous run, whatever the stride and dilation, and each pass is
//! one long vector loop per tap instead of one short loop per output row:
//!
//! - forward: `grid += w[tap] · run`, then the grid's first `w_out` columns are the output,
//! - input gradient: `run += w[tap] · dy_grid` (extra columns zero) into a zeroed phase buffer,
//!   which is then cropped back into the plane,
//! - weight gradient: `dw[tap] += dy_grid · run` (a dot product per tap).
//!
//! A 32² plane's buffers are a few KiB and stay in L1, and no whole image changes layout. Rayon
//! runs over images for the forward and input gradient, and over channels for the weight
//! gradient, where each channel sums its images in order (in f64), so results do not depend on
//! the thread count.

use rayon::prelude::*;

use super::epilogue::{Epilogue, finish};
use super::geometry::{ConvGeometry, div_rem_stride};
use crate::wide::{Kernel, wide};

/// Accumulator lanes of the dot products (the vector width the compiler maps them to).
const LANES: usize = 8;

/// How a plane's padded, phase-split copy and its output grid are laid out.
#[derive(Clone, Copy, Debug)]
struct Phases {
    /// Rows of one phase (one spare row, so that runs over the grid's extra columns stay inside).
    rows: usize,
    /// Entries per row of one phase, and of the output grid.
    cols: usize,
    /// Stride (phases per axis).
    stride: usize,
    /// Output rows.
    h_out: usize,
}

impl Phases {
    fn of(g: &ConvGeometry) -> Self {
        let (hp, wp) = (g.h + 2 * g.padding, g.w + 2 * g.padding);
        Self {
            rows: hp.div_ceil(g.stride) + 1,
            cols: wp.div_ceil(g.stride),
            stride: g.stride,
            h_out: g.h_out(),
        }
    }

    /// Length of the phase buffer.
    fn len(&self) -> usize {
        self.stride * self.stride * self.rows * self.cols
    }

    /// Length of a run and of the output grid.
    fn grid(&self) -> usize {
        self.h_out * self.cols
    }

    /// Index of padded position `(row, col)`.
    #[inline(always)]
    fn at(&self, row: usize, col: usize) -> usize {
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

/// Copies one `h × w` plane into `buf`, zero-padded and split into phases.
#[inline(always)]
fn fill(g: &ConvGeometry, ph: &Phases, plane: &[f32], buf: &mut Vec<f32>) {
    buf.clear();
    buf.resize(ph.len(), 0.0);
    for (iy, row) in plane.chunks_exact(g.w).enumerate() {
        for_each_column_phase(g, ph, iy + g.padding, |first, at, count| {
            let dst = &mut buf[at..at + count];
            if ph.stride == 1 {
                dst.copy_from_slice(row);
            } else {
                for (d, v) in dst.iter_mut().zip(row[first..].iter().step_by(ph.stride)) {
                    *d = *v;
                }
            }
        });
    }
}

/// Copies the interior of a padded phase buffer back into an `h × w` plane.
#[inline(always)]
fn crop(g: &ConvGeometry, ph: &Phases, buf: &[f32], plane: &mut [f32]) {
    for (iy, row) in plane.chunks_exact_mut(g.w).enumerate() {
        for_each_column_phase(g, ph, iy + g.padding, |first, at, count| {
            let src = &buf[at..at + count];
            if ph.stride == 1 {
                row.copy_from_slice(src);
            } else {
                for (d, v) in row[first..].iter_mut().step_by(ph.stride).zip(src) {
                    *d = *v;
                }
            }
        });
    }
}

/// `y = a · x`.
#[inline(always)]
fn scale(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = a * x;
    }
}

/// `y += a · x`.
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `Σ a·b` in `LANES` f32 partial sums (a fixed order: the result depends only on the inputs).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `(tap, start of its run)` for every tap.
fn runs(g: &ConvGeometry, ph: &Phases) -> Vec<(usize, usize)> {
    let taps = (0..g.kh).flat_map(|ky| (0..g.kw).map(move |kx| (ky, kx)));
    taps.map(|(ky, kx)| (ky * g.kw + kx, ph.at(ky * g.dilation, kx * g.dilation)))
        .collect()
}

/// The grid's first `w_out` columns, row by row (`to_grid` is the inverse, extra columns zero).
#[inline(always)]
fn from_grid(ph: &Phases, wo: usize, grid: &[f32], plane: &mut [f32]) {
    for (row, out) in grid.chunks_exact(ph.cols).zip(plane.chunks_exact_mut(wo)) {
        out.copy_from_slice(&row[..wo]);
    }
}

#[inline(always)]
fn to_grid(ph: &Phases, wo: usize, plane: &[f32], grid: &mut Vec<f32>) {
    grid.clear();
    grid.resize(ph.grid(), 0.0);
    for (row, src) in grid.chunks_exact_mut(ph.cols).zip(plane.chunks_exact(wo)) {
        row[..wo].copy_from_slice(src);
    }
}

/// What every plane of one call shares.
struct Plan<'a> {
    g: &'a ConvGeometry,
    ph: Phases,
    /// `(tap, start of its run)` per tap.
    runs: Vec<(usize, usize)>,
    /// Taps per channel.
    kk: usize,
    /// Output width.
    wo: usize,
}

impl<'a> Plan<'a> {
    fn of(g: &'a ConvGeometry) -> Self {
        let ph = Phases::of(g);
        Self {
            g,
            runs: runs(g, &ph),
            ph,
            kk: g.kh * g.kw,
            wo: g.w_out(),
        }
    }
}

/// One worker's buffers: a plane's phases and an output grid.
#[derive(Default)]
struct Scratch {
    buf: Vec<f32>,
    grid: Vec<f32>,
}

/// `out[b, c] = x[b, c] ⋆ w[c]`, then `epi` per image.
pub(crate) fn forward(g: &ConvGeometry, x: &[f32], w: &[f32], out: &mut [f32], epi: Option<&Epilogue<'_>>) {
    let plan = Plan::of(g);
    out.par_chunks_mut(g.c_in * g.p_out())
        .zip(x.par_chunks(g.c_in * g.p_in()))
        .for_each_init(Scratch::default, |s, (out, img)| {
            let plan = &plan;
            wide(ForwardImage { plan, w, img, out, s });
            finish(epi, out, g.c_in, g.p_out());
        });
}

/// The forward of one image, plane by plane: `grid += w[tap] · run` over the taps.
struct ForwardImage<'a> {
    plan: &'a Plan<'a>,
    w: &'a [f32],
    img: &'a [f32],
    out: &'a mut [f32],
    s: &'a mut Scratch,
}

impl Kernel for ForwardImage<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let (p, g, s) = (self.plan, self.plan.g, self.s);
        let planes = self
            .out
            .chunks_exact_mut(g.p_out())
            .zip(self.img.chunks_exact(g.p_in()));
        for (ch, (oplane, iplane)) in planes.enumerate() {
            fill(g, &p.ph, iplane, &mut s.buf);
            s.grid.resize(p.ph.grid(), 0.0);
            // the first tap writes the grid, the others add to it
            let mut taps = p.runs.iter();
            match taps.next() {
                Some(&(tap, at)) => scale(self.w[ch * p.kk + tap], &s.buf[at..at + p.ph.grid()], &mut s.grid),
                None => s.grid.fill(0.0),
            }
            for &(tap, at) in taps {
                axpy(self.w[ch * p.kk + tap], &s.buf[at..at + p.ph.grid()], &mut s.grid);
            }
            from_grid(&p.ph, p.wo, &s.grid, oplane);
        }
    }
}

/// `dx[b, c] = dy[b, c] ⋆ᵀ w[c]`: the output gradient added back along every tap into a zeroed
/// phase buffer, which is then cropped into the plane.
pub(crate) fn grad_input(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let plan = Plan::of(g);
    dx.par_chunks_mut(g.c_in * g.p_in())
        .zip(dy.par_chunks(g.c_in * g.p_out()))
        .for_each_init(Scratch::default, |s, (dx, dy)| {
            let plan = &plan;
            wide(GradInputImage { plan, w, dy, dx, s });
        });
}

/// The input gradient of one image, plane by plane: `run += w[tap] · dy_grid` over the taps.
struct GradInputImage<'a> {
    plan: &'a Plan<'a>,
    w: &'a [f32],
    dy: &'a [f32],
    dx: &'a mut [f32],
    s: &'a mut Scratch,
}

impl Kernel for GradInputImage<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let (p, g, s) = (self.plan, self.plan.g, self.s);
        let planes = self.dx.chunks_exact_mut(g.p_in()).zip(self.dy.chunks_exact(g.p_out()));
        for (ch, (dplane, gplane)) in planes.enumerate() {
            to_grid(&p.ph, p.wo, gplane, &mut s.grid);
            s.buf.clear();
            s.buf.resize(p.ph.len(), 0.0);
            for &(tap, at) in &p.runs {
                axpy(self.w[ch * p.kk + tap], &s.grid, &mut s.buf[at..at + p.ph.grid()]);
            }
            crop(g, &p.ph, &s.buf, dplane);
        }
    }
}

/// `dw[c] = Σ_b dy[b, c] ⋆ x[b, c]`: per image an f32 dot product per tap, accumulated in f64
/// over the batch in order, one channel per task.
pub(crate) fn grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let plan = Plan::of(g);
    dw.par_chunks_mut(plan.kk)
        .enumerate()
        .for_each_init(Scratch::default, |s, (ch, dw)| {
            let plan = &plan;
            wide(GradWeightChannel { plan, x, dy, ch, dw, s });
        });
}

/// The weight gradient of one channel over the whole batch.
struct GradWeightChannel<'a> {
    plan: &'a Plan<'a>,
    x: &'a [f32],
    dy: &'a [f32],
    ch: usize,
    dw: &'a mut [f32],
    s: &'a mut Scratch,
}

impl Kernel for GradWeightChannel<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let (p, g, s) = (self.plan, self.plan.g, self.s);
        let mut acc = vec![0.0f64; p.kk];
        for b in 0..g.batch {
            let plane = b * g.c_in + self.ch;
            let (pi, po) = (plane * g.p_in(), plane * g.p_out());
            fill(g, &p.ph, &self.x[pi..pi + g.p_in()], &mut s.buf);
            to_grid(&p.ph, p.wo, &self.dy[po..po + g.p_out()], &mut s.grid);
            for &(tap, at) in &p.runs {
                acc[tap] += dot(&s.grid, &s.buf[at..at + p.ph.grid()]) as f64;
            }
        }
        for (d, a) in self.dw.iter_mut().zip(&acc) {
            *d = *a as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wide::Kernel;

    fn geometry(h: usize, w: usize, k: usize, stride: usize, padding: usize, dilation: usize) -> ConvGeometry {
        ConvGeometry {
            batch: 1,
            c_in: 1,
            h,
            w,
            c_out: 1,
            kh: k,
            kw: k,
            stride,
            padding,
            dilation,
            groups: 1,
        }
    }

    #[test]
    fn phase_split_puts_every_padded_position_where_the_runs_read_it() {
        // 3×5 plane, padding 1, stride 2: padded 5×7 → 4 phases of (3 + 1 spare) rows × 4 columns.
        let g = geometry(3, 5, 3, 2, 1, 1);
        let ph = Phases::of(&g);
        assert_eq!((ph.rows, ph.cols, ph.h_out, ph.len()), (4, 4, 2, 64));
        let plane: Vec<f32> = (1..=15).map(|v| v as f32).collect();
        let mut buf = Vec::new();
        fill(&g, &ph, &plane, &mut buf);
        // padded row 2 is [0, 6, 7, 8, 9, 10, 0]: its even columns 0, 7, 9, 0 sit in phase (0, 0)
        // at phase row 1, its odd columns 6, 8, 10 in phase (0, 1)
        assert_eq!(&buf[ph.at(2, 0)..ph.at(2, 0) + 4], &[0.0, 7.0, 9.0, 0.0]);
        assert_eq!(&buf[ph.at(2, 1)..ph.at(2, 1) + 3], &[6.0, 8.0, 10.0]);
        // tap (1, 2) reads padded (oy·2 + 1, ox·2 + 2): (1, 2), (1, 4) then (3, 2), (3, 4), i.e.
        // plane values 2, 4 and 12, 14, on grid rows of 4 columns (the last two ignored)
        let (tap, at) = runs(&g, &ph)[5];
        assert_eq!(tap, 5);
        let run = &buf[at..at + ph.grid()];
        assert_eq!((run[0], run[1], run[4], run[5]), (2.0, 4.0, 12.0, 14.0));
        let mut back = vec![0.0; 15];
        crop(&g, &ph, &buf, &mut back);
        assert_eq!(back, plane);
    }

    /// The wide-vector build of each pass computes the same bits as the baseline build.
    #[test]
    fn wide_vectors_change_no_bit() {
        let mut g = geometry(9, 11, 3, 2, 1, 1);
        (g.batch, g.c_in, g.c_out, g.groups) = (2, 3, 3, 3);
        let plan = Plan::of(&g);
        let values = |n: usize, seed: u32| -> Vec<f32> {
            (0..n)
                .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 97.0 - 5.0)
                .collect()
        };
        let (x, w) = (values(3 * g.p_in(), 1), values(27, 2));
        let dy = values(3 * g.p_out(), 3);
        let (mut a, mut b) = (vec![0.0; 3 * g.p_out()], vec![0.0; 3 * g.p_out()]);
        let (mut s1, mut s2) = (Scratch::default(), Scratch::default());
        let img = &x[..3 * g.p_in()];
        ForwardImage {
            plan: &plan,
            w: &w,
            img,
            out: &mut a,
            s: &mut s1,
        }
        .run();
        wide(ForwardImage {
            plan: &plan,
            w: &w,
            img,
            out: &mut b,
            s: &mut s2,
        });
        assert_eq!(a, b);
        let (mut a, mut b) = (vec![0.0; 3 * g.p_in()], vec![0.0; 3 * g.p_in()]);
        GradInputImage {
            plan: &plan,
            w: &w,
            dy: &dy,
            dx: &mut a,
            s: &mut s1,
        }
        .run();
        wide(GradInputImage {
            plan: &plan,
            w: &w,
            dy: &dy,
            dx: &mut b,
            s: &mut s2,
        });
        assert_eq!(a, b);
        let (mut a, mut b) = (vec![0.0; 9], vec![0.0; 9]);
        g.batch = 1;
        let plan = Plan::of(&g);
        GradWeightChannel {
            plan: &plan,
            x: &x,
            dy: &dy,
            ch: 1,
            dw: &mut a,
            s: &mut s1,
        }
        .run();
        wide(GradWeightChannel {
            plan: &plan,
            x: &x,
            dy: &dy,
            ch: 1,
            dw: &mut b,
            s: &mut s2,
        });
        assert_eq!(a, b);
        assert!(a.iter().any(|v| *v != 0.0));
    }

    #[test]
    fn dot_sums_lanes_and_tail() {
        let a: Vec<f32> = (0..11).map(|v| v as f32).collect();
        let b = vec![2.0f32; 11];
        assert_eq!(dot(&a, &b), 110.0);
    }
}
