//! Our own f32 GEMM for the convolutions: `C (+)= A·B` with `A` packed once per call into row
//! panels and `B` read where it lies (row-major, any row stride).
//!
//! The `gemm` crate packs both operands on every call. In a convolution `A` is the weight (or
//! its transpose), the same for every chunk of images, and `B` the freshly unfolded (im2col)
//! matrix or the output gradient: packing `A` once per call and reading `B` in place removes two
//! copies per chunk (ResNet-18's 64 @ 32² layers: forward 1.10×, input gradient 1.06×).
//!
//! The micro-kernel holds an `MR × NR` tile of `C` in registers (AVX-512: 8 × 32, AVX2 + FMA:
//! 6 × 16) and walks `k` in blocks of [`KC`] rows: one `KC × NR` strip of `B` stays in L1 while
//! every row panel of `A` passes over it. A `B` small enough to stay in L2 (one block of `k`) is
//! walked the other way round, each panel over every strip, so that `C` is written a few rows at a
//! time (a short `k` makes the product wait on its stores of `C`). Each `C` value is a sum of fused multiply-adds in
//! increasing `k`, so both vector paths give the same bits. Without AVX2 + FMA (and on other
//! architectures) the product falls back to the `gemm` crate.

mod avx2;
mod avx512;
mod blocked;
mod cache;

pub(crate) use blocked::matmul_blocked;

use crate::gemm::{MatRef, matmul};
use crate::wide::{Isa, isa};

/// Rows of `k` per block: a `KC × 32` strip of `B` is 32 KiB, inside the 48 KiB L1 of the
/// machines measured.
const KC: usize = 256;

/// A row stride of at least `n` for a matrix the micro-kernel reads in place: a whole number of
/// 64-byte lines, and an odd one, so that the `KC` rows of a strip spread over every L1 set (a
/// stride of 1 024 floats put them all in one set: 0.80× the speed of a stride of 1 040).
pub(crate) fn padded_stride(n: usize) -> usize {
    let lines = n.div_ceil(16);
    (lines | 1) * 16
}

/// Which micro-kernel runs, fixed per call by the CPU (and `QUARC_CPU_ISA`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Avx512,
    Avx2,
    Fallback,
}

impl Path {
    fn detect() -> Self {
        match isa() {
            Isa::Avx512 => Path::Avx512,
            Isa::Avx2 if avx2::has_fma() => Path::Avx2,
            _ => Path::Fallback,
        }
    }

    /// `(MR, NR)`: the register tile.
    fn tile(self) -> (usize, usize) {
        match self {
            Path::Avx512 => (avx512::MR, avx512::NR),
            Path::Avx2 => (avx2::MR, avx2::NR),
            Path::Fallback => (1, 1),
        }
    }
}

/// Whether this CPU (under `QUARC_CPU_ISA`) runs one of the micro-kernels.
pub(crate) fn has_micro_kernel() -> bool {
    Path::detect() != Path::Fallback
}

/// The left operand `A` (`m × k`), packed: panel `p` holds rows `p·MR..p·MR + MR` (zeros past
/// `m`) as `k` groups of `MR` values, so the micro-kernel reads it as one stream.
pub(crate) struct PackedLhs<'a> {
    src: MatRef<'a>,
    path: Path,
    panels: Vec<f32>,
}

impl<'a> PackedLhs<'a> {
    /// Packs `a` (any strides) for the micro-kernel this CPU runs.
    pub(crate) fn new(a: MatRef<'a>) -> Self {
        let path = Path::detect();
        let (mr, _) = path.tile();
        // the fallback reads `a` as it is, or a row-major copy of a transposed view (as a strided
        // view `gemm` would repack it for every chunk of images); panels of one row are that copy
        let panels = match path {
            Path::Fallback if a.has_unit_column_stride() => Vec::new(),
            _ => pack(a, mr),
        };
        Self { src: a, path, panels }
    }
}

/// `a` in panels of `mr` rows, each `k` groups of `mr` values (zeros past the last row).
fn pack(a: MatRef<'_>, mr: usize) -> Vec<f32> {
    let (m, k) = (a.rows(), a.cols());
    let mut out = vec![0.0f32; m.div_ceil(mr) * mr * k];
    for (p, panel) in out.chunks_exact_mut(mr * k).enumerate() {
        let rows = mr.min(m - p * mr);
        // read along the view's unit stride: rows of a row-major `A`, columns of a transposed one
        if a.has_unit_column_stride() {
            for r in 0..rows {
                for kk in 0..k {
                    panel[kk * mr + r] = a.at(p * mr + r, kk);
                }
            }
        } else {
            for kk in 0..k {
                for r in 0..rows {
                    panel[kk * mr + r] = a.at(p * mr + r, kk);
                }
            }
        }
    }
    out
}

/// `c (+)= a · b`: `b` is `k × n` row-major with row stride `ldb`, `c` is `m × n` row-major with
/// row stride `ldc`; with `accumulate` the product is added to `c`, otherwise it overwrites it.
///
/// # Panics
/// When the shapes disagree or `b`/`c` are too short (a bug in this crate: the convolution front
/// validates shapes first).
pub(crate) fn matmul_packed(
    c: &mut [f32],
    ldc: usize,
    a: &PackedLhs<'_>,
    b: &[f32],
    ldb: usize,
    n: usize,
    accumulate: bool,
) {
    let (m, k) = (a.src.rows(), a.src.cols());
    if m == 0 || n == 0 {
        return;
    }
    let b_view = MatRef::strided(b, k, n, ldb, 1);
    if a.path == Path::Fallback || k == 0 {
        let lhs = if a.panels.is_empty() {
            a.src
        } else {
            MatRef::row_major(&a.panels, m, k)
        };
        return matmul(c, ldc, lhs, b_view, accumulate);
    }
    assert!(ldb >= n && (k - 1) * ldb + n <= b.len(), "packed gemm: B too short");
    assert!(ldc >= n && (m - 1) * ldc + n <= c.len(), "packed gemm: C too short");
    if k <= KC && k * n <= SMALL_B {
        panels_first(c, ldc, a, b, ldb, n, accumulate);
    } else {
        strips_first(c, ldc, a, b, ldb, n, accumulate);
    }
}

/// [`matmul_packed`] block of `k` by block: each strip of `B` stays in L1 while every panel of
/// `A` passes over it.
fn strips_first(c: &mut [f32], ldc: usize, a: &PackedLhs<'_>, b: &[f32], ldb: usize, n: usize, accumulate: bool) {
    let (m, k) = (a.src.rows(), a.src.cols());
    let (mr, nr) = a.path.tile();
    // scratch for the tiles at the right and bottom edges
    let (mut strip_pad, mut tile_pad) = (Vec::new(), vec![0.0f32; mr * nr]);
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let load_c = accumulate || k0 > 0;
        for j0 in (0..n).step_by(nr) {
            let cols = nr.min(n - j0);
            // A strip narrower than NR is copied into a zero-padded one: the kernel always reads NR.
            let (strip, ld) = if cols == nr {
                (&b[k0 * ldb + j0..], ldb)
            } else {
                (pad_strip(&mut strip_pad, nr, b, ldb, k0, kc, j0, cols), nr)
            };
            for (p, panel) in a.panels.chunks_exact(mr * k).enumerate() {
                let a_block = &panel[k0 * mr..(k0 + kc) * mr];
                let tile = Tile::at(p * mr, j0, (m, n), (mr, nr));
                run_tile(a.path, a_block, strip, ld, kc, c, ldc, tile, load_c, &mut tile_pad);
            }
        }
    }
}

/// Values of `B` (`k · n`, 128 KiB) up to which a product with one block of `k` runs panel by
/// panel ([`panels_first`]).
const SMALL_B: usize = 32 * 1024;

/// [`matmul_packed`] for a `B` small enough to stay in L2 (`k ≤ KC`, `k · n ≤ SMALL_B`): each
/// panel of `A` runs over every strip, so `C` is written `MR` rows at a time, front to back,
/// instead of a column of tiles down all `m` rows per strip. With a short `k` the kernel is
/// bound by its stores of `C`: SmallCnn's 1→32 layer (`k` = 9) wrote 32 rows' streams at once.
/// The same products in the same order per value as the strip-first loop.
fn panels_first(c: &mut [f32], ldc: usize, a: &PackedLhs<'_>, b: &[f32], ldb: usize, n: usize, accumulate: bool) {
    let (m, k) = (a.src.rows(), a.src.cols());
    let (mr, nr) = a.path.tile();
    let whole = n / nr * nr;
    let mut strip_pad = Vec::new();
    if whole < n {
        pad_strip(&mut strip_pad, nr, b, ldb, 0, k, whole, n - whole);
    }
    let mut tile_pad = vec![0.0f32; mr * nr];
    for (p, panel) in a.panels.chunks_exact(mr * k).enumerate() {
        for j0 in (0..n).step_by(nr) {
            let tile = Tile::at(p * mr, j0, (m, n), (mr, nr));
            let (strip, ld) = if tile.cols == nr {
                (&b[j0..], ldb)
            } else {
                (&strip_pad[..], nr)
            };
            run_tile(a.path, panel, strip, ld, k, c, ldc, tile, accumulate, &mut tile_pad);
        }
    }
}

/// Where one register tile lands in `C`.
#[derive(Clone, Copy)]
struct Tile {
    row: usize,
    col: usize,
    rows: usize,
    cols: usize,
}

impl Tile {
    /// The tile at `(row, col)` of an `m × n` product in `mr × nr` tiles, cut at the edges.
    fn at(row: usize, col: usize, (m, n): (usize, usize), (mr, nr): (usize, usize)) -> Self {
        Self {
            row,
            col,
            rows: mr.min(m - row),
            cols: nr.min(n - col),
        }
    }
}

/// Columns `j0..j0 + cols` of rows `k0..k0 + kc` of `b` into `pad`, zero-padded to `nr` columns.
#[allow(clippy::too_many_arguments)]
fn pad_strip<'p>(
    pad: &'p mut Vec<f32>,
    nr: usize,
    b: &[f32],
    ldb: usize,
    k0: usize,
    kc: usize,
    j0: usize,
    cols: usize,
) -> &'p [f32] {
    pad.clear();
    pad.resize(kc * nr, 0.0);
    for (kk, row) in pad.chunks_exact_mut(nr).enumerate() {
        let src = (k0 + kk) * ldb + j0;
        row[..cols].copy_from_slice(&b[src..src + cols]);
    }
    pad
}

/// One `MR × NR` tile: straight into `c` when whole, through `scratch` at the edges.
#[allow(clippy::too_many_arguments)]
fn run_tile(
    path: Path,
    a: &[f32],
    b: &[f32],
    ldb: usize,
    kc: usize,
    c: &mut [f32],
    ldc: usize,
    t: Tile,
    load_c: bool,
    scratch: &mut [f32],
) {
    let (mr, nr) = path.tile();
    debug_assert!(a.len() >= kc * mr && b.len() >= (kc - 1) * ldb + nr);
    let origin = t.row * ldc + t.col;
    if t.rows == mr && t.cols == nr {
        // SAFETY: `matmul_packed` checked that rows `t.row..t.row + MR` and columns
        // `t.col..t.col + NR` lie inside `c` (a whole tile), `a` holds `kc · MR` values and `b`
        // `kc` rows of `NR` at stride `ldb` (asserted above in debug, by construction always).
        #[allow(unsafe_code)]
        unsafe {
            kernel(path, a, b, ldb, &mut c[origin..], ldc, kc, load_c)
        };
        return;
    }
    // a tile that overwrites `c` never reads the scratch's old values
    for r in (0..t.rows).filter(|_| load_c) {
        let row = &c[origin + r * ldc..origin + r * ldc + t.cols];
        scratch[r * nr..r * nr + t.cols].copy_from_slice(row);
    }
    // SAFETY: `scratch` holds a whole `MR × NR` tile with row stride `NR`; `a` and `b` as above.
    #[allow(unsafe_code)]
    unsafe {
        kernel(path, a, b, ldb, scratch, nr, kc, load_c)
    };
    for r in 0..t.rows {
        c[origin + r * ldc..origin + r * ldc + t.cols].copy_from_slice(&scratch[r * nr..r * nr + t.cols]);
    }
}

/// # Safety
/// `c` must hold `MR` rows of `NR` values at stride `ldc`, `a` `kc · MR` values, `b` `kc` rows of
/// `NR` values at stride `ldb`; the CPU must support `path`.
#[allow(unsafe_code, clippy::too_many_arguments)]
unsafe fn kernel(path: Path, a: &[f32], b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, kc: usize, load_c: bool) {
    debug_assert!(c.len() >= (path.tile().0 - 1) * ldc + path.tile().1);
    // SAFETY: forwarded from the caller.
    unsafe {
        match path {
            Path::Avx512 => avx512::tile(a.as_ptr(), b.as_ptr(), ldb, c.as_mut_ptr(), ldc, kc, load_c),
            Path::Avx2 => avx2::tile(a.as_ptr(), b.as_ptr(), ldb, c.as_mut_ptr(), ldc, kc, load_c),
            // `matmul_packed` returns before any tile on the fallback path
            Path::Fallback => debug_assert!(false, "no micro-kernel on the fallback path"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
