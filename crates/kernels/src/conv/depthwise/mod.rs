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
//! - forward: `grid = Σ_tap w[tap] · run`, then the grid's first `w_out` columns are the output;
//! - input gradient: as a gather — each phase entry sums, over the taps of its phase, `w[tap]`
//!   times the output-gradient grid shifted by the tap's run start (the grid sits in a
//!   zero-extended copy, so no tap needs a bounds test); the phases are then cropped back into
//!   the plane;
//! - weight gradient: `dw[tap] += dy_grid · run` (a dot product per tap, kept in lanes until the
//!   end of the batch).
//!
//! The inner loops run over fixed tiles of outputs held in registers (`tiles`), the buffers are
//! zeroed once per call, not per plane (every plane overwrites the same entries:
//! `layout::Zeroed`), and the next plane of 16² or more is prefetched while one is worked on.
//! Planes of at most 100 values take, on AVX-512F or AVX2, the masked passes (`masked`: the
//! forward and input gradient of 3 × 3 stride-1 layers that keep the plane's shape, read straight
//! from the planes with masked loads (on AVX2 mostly plain loads with the masked-off lanes
//! cleared), and their weight gradient on AVX-512F) or else the
//! 16-channel blocked passes (`blocked`).
//!
//! A 32² plane's buffers are a few KiB and stay in L1, and no whole image changes layout. Rayon
//! runs over images for the forward and input gradient, and over channels for the weight
//! gradient, where each channel sums its images in order (in f64), so results do not depend on
//! the thread count.

use rayon::prelude::*;

use super::epilogue::{Epilogue, finish};
use super::geometry::ConvGeometry;
use crate::wide::{Kernel, prefetch_plane, wide};
use layout::{Phases, Zeroed, crop, fill, from_grid, runs, to_grid};
use tiles::{TILE, dot_lanes, weighted_sum, whole_tiles};

mod blocked;
mod layout;
mod masked;
mod tiles;

/// What every plane of one call shares.
struct Plan<'a> {
    g: &'a ConvGeometry,
    ph: Phases,
    /// `(tap, start of its run)` per tap.
    runs: Vec<(usize, usize)>,
    /// Per phase: its first entry and its taps as `(tap, offset into the zero-extended grid)`.
    gathers: Vec<(usize, Vec<(usize, usize)>)>,
    /// Taps per channel.
    kk: usize,
    /// Output width.
    wo: usize,
    /// Layout (length last) of a plane's phases, with room to read whole tiles past any run.
    padded: [usize; 6],
    /// Layout of the output grid, padded to whole tiles.
    grid: [usize; 6],
    /// Layout of the zero-extended grid the input gradient gathers from, and where the grid starts.
    extended: [usize; 6],
    lead: usize,
}

impl<'a> Plan<'a> {
    fn of(g: &'a ConvGeometry) -> Self {
        let ph = Phases::of(g);
        let runs = runs(g, &ph);
        let area = ph.area();
        // a run's start inside its own phase; the grid goes `lead` entries into its extended copy
        let lead = runs.iter().map(|&(_, at)| at % area).max().unwrap_or(0);
        let gathers = (0..g.stride * g.stride)
            .map(|q| {
                let taps = runs.iter().filter(|&&(_, at)| at / area == q);
                (q * area, taps.map(|&(tap, at)| (tap, lead - at % area)).collect())
            })
            .collect();
        let wo = g.w_out();
        let grid = whole_tiles(ph.grid());
        Self {
            g,
            runs,
            gathers,
            kk: g.kh * g.kw,
            wo,
            padded: [g.h, g.w, g.padding, ph.stride, ph.cols, ph.len() + TILE],
            grid: [ph.h_out, ph.cols, wo, 0, 0, grid],
            extended: [ph.h_out, ph.cols, wo, lead, 1, lead + whole_tiles(area)],
            lead,
            ph,
        }
    }

    /// The taps `(tap, offset)` with channel `ch`'s weights: `(weight, offset)`.
    #[inline(always)]
    fn weighted(&self, w: &[f32], ch: usize, taps: &[(usize, usize)], out: &mut Vec<(f32, usize)>) {
        out.clear();
        out.extend(taps.iter().map(|&(tap, at)| (w[ch * self.kk + tap], at)));
    }
}

/// One worker's buffers.
#[derive(Default)]
struct Scratch {
    /// A plane's zero-padded phases.
    padded: Zeroed,
    /// An output(-gradient) grid.
    grid: Zeroed,
    /// The input gradient's phases.
    phases: Vec<f32>,
    /// The current channel's `(weight, offset)` per tap.
    taps: Vec<(f32, usize)>,
    /// The weight gradient's f64 sums, per tap and lane.
    sums: Vec<[f64; TILE]>,
}

/// `x[b, c] ⋆ w[c]`, then `epi` per image, into a new vector.
pub(crate) fn forward(g: &ConvGeometry, x: &[f32], w: &[f32], epi: Option<&Epilogue<'_>>) -> Vec<f32> {
    if masked::suits(g) {
        return masked::forward(g, x, w, epi);
    }
    let mut out = crate::zeroed::zeros(g.batch * g.c_out * g.p_out());
    if blocked::suits(g) {
        blocked::forward(g, x, w, &mut out, epi)
    } else {
        forward_planes(g, x, w, &mut out, epi)
    }
    out
}

/// [`forward`] plane by plane.
fn forward_planes(g: &ConvGeometry, x: &[f32], w: &[f32], out: &mut [f32], epi: Option<&Epilogue<'_>>) {
    let plan = Plan::of(g);
    out.par_chunks_mut(g.c_in * g.p_out())
        .zip(x.par_chunks(g.c_in * g.p_in()))
        .for_each_init(Scratch::default, |s, (out, img)| {
            let plan = &plan;
            wide(ForwardImage { plan, w, img, out, s });
            finish(epi, out, g.c_in, g.p_out());
        });
}

/// The forward of one image, plane by plane: `grid = Σ_tap w[tap] · run`.
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
        let (buf, grid) = (s.padded.get(p.padded), s.grid.get(p.grid));
        for (ch, (oplane, iplane)) in planes.enumerate() {
            prefetch_plane(self.img, ch + 1, g.p_in());
            fill(g, &p.ph, iplane, buf);
            p.weighted(self.w, ch, &p.runs, &mut s.taps);
            weighted_sum(&s.taps, buf, grid);
            from_grid(&p.ph, p.wo, grid, oplane);
        }
    }
}

/// `dx[b, c] = dy[b, c] ⋆ᵀ w[c]`: each phase entry gathers the output gradient along the taps
/// of its phase; the phases are then cropped into the plane.
pub(crate) fn grad_input(g: &ConvGeometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    if masked::suits(g) {
        return masked::grad_input(g, dy, w);
    }
    let mut dx = crate::zeroed::zeros(g.batch * g.c_in * g.p_in());
    if blocked::suits(g) {
        blocked::grad_input(g, dy, w, &mut dx)
    } else {
        grad_input_planes(g, dy, w, &mut dx)
    }
    dx
}

/// [`grad_input`] plane by plane.
fn grad_input_planes(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let plan = Plan::of(g);
    dx.par_chunks_mut(g.c_in * g.p_in())
        .zip(dy.par_chunks(g.c_in * g.p_out()))
        .for_each_init(Scratch::default, |s, (dx, dy)| {
            let plan = &plan;
            wide(GradInputImage { plan, w, dy, dx, s });
        });
}

/// The input gradient of one image, plane by plane.
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
        let tiles = whole_tiles(p.ph.area());
        // phases are written in order; a phase's last tile spills into the next, which then
        // overwrites it (the last one into the spare `TILE` entries)
        s.phases.resize(p.ph.len() + TILE, 0.0);
        let planes = self.dx.chunks_exact_mut(g.p_in()).zip(self.dy.chunks_exact(g.p_out()));
        let extended = s.grid.get(p.extended);
        for (ch, (dplane, gplane)) in planes.enumerate() {
            prefetch_plane(self.dy, ch + 1, g.p_out());
            to_grid(&p.ph, p.wo, gplane, &mut extended[p.lead..]);
            for (start, taps) in &p.gathers {
                p.weighted(self.w, ch, taps, &mut s.taps);
                weighted_sum(&s.taps, extended, &mut s.phases[*start..start + tiles]);
            }
            crop(g, &p.ph, &s.phases, dplane);
        }
    }
}

/// `dw[c] = Σ_b dy[b, c] ⋆ x[b, c]`: per image f32 dot-product lanes per tap, accumulated in f64
/// over the batch in order, one channel per task.
pub(crate) fn grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    if masked::suits_weight(g) {
        masked::grad_weight(g, x, dy, dw)
    } else if blocked::suits(g) {
        blocked::grad_weight(g, x, dy, dw)
    } else {
        grad_weight_planes(g, x, dy, dw)
    }
}

/// [`grad_weight`] plane by plane.
fn grad_weight_planes(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
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
        s.sums.clear();
        s.sums.resize(p.kk, [0.0; TILE]);
        let tiles = p.grid[5];
        let (buf, grid) = (s.padded.get(p.padded), s.grid.get(p.grid));
        for b in 0..g.batch {
            let plane = b * g.c_in + self.ch;
            let (pi, po) = (plane * g.p_in(), plane * g.p_out());
            prefetch_plane(self.x, plane + g.c_in, g.p_in());
            prefetch_plane(self.dy, plane + g.c_in, g.p_out());
            fill(g, &p.ph, &self.x[pi..pi + g.p_in()], buf);
            to_grid(&p.ph, p.wo, &self.dy[po..po + g.p_out()], grid);
            for &(tap, at) in &p.runs {
                let lanes = dot_lanes(grid, &buf[at..at + tiles]);
                for (sum, lane) in s.sums[tap].iter_mut().zip(lanes) {
                    *sum += lane as f64;
                }
            }
        }
        // one horizontal sum per tap and call, not per image (a 16-add chain each)
        for (d, a) in self.dw.iter_mut().zip(&s.sums) {
            *d = a.iter().sum::<f64>() as f32;
        }
    }
}

/// Deterministic test values in [−5, 5.3), spread by a multiplicative hash of the index.
#[cfg(test)]
fn test_values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 97.0 - 5.0)
        .collect()
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
        let mut buf = vec![0.0; ph.len()];
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

    /// Stride-2 rows of every width and both paddings go into their two phases and back.
    #[test]
    fn stride_two_rows_split_into_phases_and_back() {
        for (w, padding) in [(37, 1), (37, 0), (16, 1), (5, 2), (1, 0)] {
            let g = geometry(3, w, 3, 2, padding, 1);
            let ph = Phases::of(&g);
            let plane: Vec<f32> = (0..3 * w).map(|v| v as f32 + 1.0).collect();
            let mut buf = vec![0.0; ph.len()];
            fill(&g, &ph, &plane, &mut buf);
            for (iy, ix) in (0..3).flat_map(|y| (0..w).map(move |x| (y, x))) {
                assert_eq!(
                    buf[ph.at(iy + padding, ix + padding)],
                    plane[iy * w + ix],
                    "{w} {padding}"
                );
            }
            assert_eq!(buf.iter().filter(|v| **v != 0.0).count(), 3 * w);
            let mut back = vec![0.0; 3 * w];
            crop(&g, &ph, &buf, &mut back);
            assert_eq!(back, plane);
        }
    }

    /// Every run ends inside its own phase, so the input gradient may gather phase by phase.
    #[test]
    fn every_run_stays_inside_its_phase() {
        for (h, k, stride, padding, dilation) in [(8, 3, 1, 1, 1), (9, 3, 2, 1, 1), (7, 5, 2, 2, 1), (10, 3, 3, 0, 2)] {
            let g = geometry(h, h + 1, k, stride, padding, dilation);
            let ph = Phases::of(&g);
            for (_, at) in runs(&g, &ph) {
                assert!(
                    at % ph.area() + ph.grid() <= ph.area(),
                    "{h} {k} {stride} {padding} {dilation}"
                );
            }
        }
    }

    /// A reused scratch buffer is zeroed again when the layout changes, and only then.
    #[test]
    fn zeroed_buffers_are_cleared_per_layout() {
        let mut z = Zeroed::default();
        z.get([1, 0, 0, 0, 0, 4])[2] = 5.0;
        assert_eq!(z.get([1, 0, 0, 0, 0, 4]), &[0.0, 0.0, 5.0, 0.0]);
        assert_eq!(z.get([2, 0, 0, 0, 0, 4]), &[0.0; 4]);
    }

    /// The gather form of the input gradient equals the transposed convolution written as a
    /// scatter, on a stride-2, padded, odd-sized plane.
    #[test]
    fn input_gradient_gather_matches_the_scatter() {
        let mut g = geometry(7, 6, 3, 2, 1, 1);
        (g.batch, g.c_in, g.c_out, g.groups) = (1, 1, 1, 1);
        let (ho, wo) = (g.h_out(), g.w_out());
        let dy: Vec<f32> = (0..ho * wo).map(|v| v as f32 - 3.0).collect();
        let w: Vec<f32> = (0..9).map(|v| 0.5 * v as f32 - 1.0).collect();
        let mut want = vec![0.0f32; g.h * g.w];
        for (oy, ox, ky, kx) in
            (0..ho).flat_map(|a| (0..wo).flat_map(move |b| (0..9).map(move |t| (a, b, t / 3, t % 3))))
        {
            let (iy, ix) = ((oy * 2 + ky) as isize - 1, (ox * 2 + kx) as isize - 1);
            if (0..7).contains(&iy) && (0..6).contains(&ix) {
                want[iy as usize * 6 + ix as usize] += w[ky * 3 + kx] * dy[oy * wo + ox];
            }
        }
        let mut got = vec![f32::NAN; g.h * g.w];
        grad_input_planes(&g, &dy, &w, &mut got);
        assert_eq!(got, want);
    }
}
