//! A general, multi-threaded f32 GEMM on the register tiles of this module: both operands packed,
//! in blocks sized for the caches (the layout of the BLIS family of libraries).
//!
//! `B` is packed once per call (in parallel) into strips of `NR` columns per block of `kc` rows
//! of `k` ([`block_k`]: `kc × NR` values, one contiguous stream the micro-kernel reads from L1)
//! and shared by every thread. The rows of `A` are cut into tasks of at most [`MC_PANELS`] panels,
//! spread evenly over the threads ([`task_panels`]);
//! a task walks the blocks of `k`, packs its `mc × kc` block of `A` (it stays in L2), runs every strip of `B`
//! against it, and prefetches each next `C` tile (read again for every block of `k`: without the
//! prefetch it came at memory latency, 0.90× in a paired A/B). Tasks own disjoint rows of `C` and
//! need no barrier between blocks, so the result does not depend on the thread count; every `C`
//! value is a chain of fused multiply-adds in increasing `k`, as in [`super::matmul_packed`].

use rayon::prelude::*;

use super::{KC, Path, Tile, run_tile};
use crate::gemm::MatRef;
use crate::wide::prefetch;

/// Most `MR`-row panels of `A` per task: 24 × 6 rows × 512 = 288 KiB on AVX2, 24 × 8 rows × 256 =
/// 192 KiB on AVX-512, inside L2 beside the `B` block streaming through it.
const MC_PANELS: usize = 24;

/// `c (+)= a · b` with `c` row-major, row stride `ldc`; `a` and `b` any strides. Runs on rayon's
/// pool. Returns `false` (and does nothing) where this CPU has no micro-kernel: the caller then
/// takes another GEMM.
///
/// # Panics
/// When the shapes disagree or `c` is too short (the callers check shapes first).
pub(crate) fn matmul_blocked(c: &mut [f32], ldc: usize, a: MatRef<'_>, b: MatRef<'_>, accumulate: bool) -> bool {
    let path = Path::detect();
    if path == Path::Fallback {
        return false;
    }
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    assert_eq!(k, b.rows(), "blocked gemm: inner dimensions differ");
    if m == 0 || n == 0 {
        return true;
    }
    assert!(ldc >= n && (m - 1) * ldc + n <= c.len(), "blocked gemm: C too short");
    if k == 0 {
        if !accumulate {
            c.chunks_mut(ldc).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return true;
    }
    let (mr, nr) = path.tile();
    let kc = block_k(path);
    let packed_b = pack_b(b, nr, kc);
    let shape = Shape {
        path,
        k,
        n,
        kc,
        accumulate,
    };
    let panels = task_panels(m.div_ceil(mr), rayon::current_num_threads());
    split_rows(&mut c[..(m - 1) * ldc + n], ldc, &panels, mr)
        .into_par_iter()
        .for_each(|(row0, c_rows)| shape.run(c_rows, ldc, a, row0, &packed_b));
    true
}

/// `c` cut into the tasks' rows: task `t` takes `panels[t] · mr` rows (the last task what is left),
/// each slice paired with its first row.
fn split_rows<'c>(mut c: &'c mut [f32], ldc: usize, panels: &[usize], mr: usize) -> Vec<(usize, &'c mut [f32])> {
    let mut tasks = Vec::with_capacity(panels.len());
    let mut row0 = 0;
    for &p in panels {
        let take = (p * mr * ldc).min(c.len());
        let (head, tail) = std::mem::take(&mut c).split_at_mut(take);
        tasks.push((row0, head));
        row0 += p * mr;
        c = tail;
    }
    tasks
}

/// Rows of `k` per block on `path`: twice [`KC`] on AVX2, whose tiles are narrower (the `gemm`
/// crate's blocking picks 512 for a 32 KiB L1 too), where each core's L2 holds the task's
/// 288 KiB block of `A` beside the strips of `B` (an L2 of at least 512 KiB: measured on Zen 1,
/// docs/performance.md, session 29); [`KC`] elsewhere, and on CPUs with a smaller L2 (Intel
/// client cores have 256 KiB) or one the CPU does not report. The block changes no bit: `C`
/// passes between blocks as the f32 the registers hold.
fn block_k(path: Path) -> usize {
    match path {
        Path::Avx2 if super::cache::l2_kib().is_some_and(|kib| kib >= 512) => 2 * KC,
        _ => KC,
    }
}

/// All of `b` packed: for each block of `block` rows of `k`, its strips of `nr` columns one
/// after another, each `kc` groups of `nr` values (zeros past the last column).
fn pack_b(b: MatRef<'_>, nr: usize, block: usize) -> Vec<f32> {
    let (k, n) = (b.rows(), b.cols());
    let width = n.div_ceil(nr) * nr;
    let mut packed = vec![0.0f32; k * width];
    packed
        .par_chunks_mut(block * width)
        .enumerate()
        .for_each(|(blk, rows)| {
            let (k0, kc) = (blk * block, rows.len() / width);
            for (s, strip) in rows.chunks_exact_mut(kc * nr).enumerate() {
                pack_strip(strip, b, k0, s * nr, nr);
            }
        });
    packed
}

/// Panels of `A` per task, task by task: at most [`MC_PANELS`] each, at least two tasks per thread
/// where the panels allow, the task count a multiple of the threads, and the panels spread evenly
/// (sizes differ by at most one, the larger ones spaced out), so that each thread's share of the
/// tasks holds the same work. Equal tasks with a short last one left a thread idle for half a task
/// at the end (2048 rows, 2 threads: 3 % of the call).
fn task_panels(panels: usize, threads: usize) -> Vec<usize> {
    let threads = threads.max(1);
    let tasks = panels.div_ceil(MC_PANELS).max(2 * threads).min(panels);
    let tasks = (tasks.div_ceil(threads) * threads).min(panels);
    (0..tasks)
        .map(|t| (t + 1) * panels / tasks - t * panels / tasks)
        .collect()
}

/// `kc` rows from `k0` of columns `j0..j0 + nr` of `b` as `kc` groups of `nr` values, zeros past
/// the last column.
fn pack_strip(strip: &mut [f32], b: MatRef<'_>, k0: usize, j0: usize, nr: usize) {
    let cols = nr.min(b.cols() - j0);
    for (kk, row) in strip.chunks_exact_mut(nr).enumerate() {
        if b.has_unit_column_stride() {
            row[..cols].copy_from_slice(b.row_part(k0 + kk, j0, cols));
        } else {
            for (j, v) in row[..cols].iter_mut().enumerate() {
                *v = b.at(k0 + kk, j0 + j);
            }
        }
        row[cols..].fill(0.0);
    }
}

/// What every task shares.
struct Shape {
    path: Path,
    k: usize,
    n: usize,
    /// Rows of `k` per block ([`block_k`]).
    kc: usize,
    accumulate: bool,
}

impl Shape {
    /// Rows `row0..` of `C` (as many as `c_rows` holds), block of `k` after block: `A`'s rows
    /// packed per block (they stay in L2), every strip of `B` against them.
    fn run(&self, c_rows: &mut [f32], ldc: usize, a: MatRef<'_>, row0: usize, packed_b: &[f32]) {
        let (mr, nr) = self.path.tile();
        let rows = (c_rows.len() - self.n) / ldc + 1;
        let width = self.n.div_ceil(nr) * nr;
        let mut scratch = vec![0.0f32; mr * nr];
        for k0 in (0..self.k).step_by(self.kc) {
            let kc = self.kc.min(self.k - k0);
            let load_c = self.accumulate || k0 > 0;
            let packed_a = pack_block(a, row0, rows, k0, kc, mr);
            let block_b = &packed_b[k0 * width..(k0 + kc) * width];
            for (s, strip) in block_b.chunks_exact(kc * nr).enumerate() {
                for (p, panel) in packed_a.chunks_exact(kc * mr).enumerate() {
                    let tile = Tile {
                        row: p * mr,
                        col: s * nr,
                        rows: mr.min(rows - p * mr),
                        cols: nr.min(self.n - s * nr),
                    };
                    if load_c {
                        prefetch_tile(c_rows, ldc, (p + 1) * mr, tile.col, mr, nr);
                    }
                    run_tile(self.path, panel, strip, nr, kc, c_rows, ldc, tile, load_c, &mut scratch);
                }
            }
        }
    }
}

/// Rows `row0..row0 + rows` and columns `k0..k0 + kc` of `a` in panels of `mr` rows, each `kc`
/// groups of `mr` values (zeros past the last row).
fn pack_block(a: MatRef<'_>, row0: usize, rows: usize, k0: usize, kc: usize, mr: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows.div_ceil(mr) * mr * kc];
    for (p, panel) in out.chunks_exact_mut(mr * kc).enumerate() {
        let live = mr.min(rows - p * mr);
        let first = row0 + p * mr;
        if a.has_unit_column_stride() {
            for r in 0..live {
                let src = a.row_part(first + r, k0, kc);
                for (kk, v) in src.iter().enumerate() {
                    panel[kk * mr + r] = *v;
                }
            }
        } else {
            for kk in 0..kc {
                for r in 0..live {
                    panel[kk * mr + r] = a.at(first + r, k0 + kk);
                }
            }
        }
    }
    out
}

/// Asks for the `C` tile at `(row, col)` ahead of its micro-kernel, which would otherwise start
/// by waiting for its rows at memory latency (`C` is read again for every block of `k`; the tiles
/// past the block's last row are skipped).
fn prefetch_tile(c_rows: &[f32], ldc: usize, row: usize, col: usize, mr: usize, nr: usize) {
    for r in row..row + mr {
        let start = r * ldc + col;
        let end = (start + nr).min(c_rows.len());
        if start < end {
            prefetch(&c_rows[start..=start]);
            prefetch(&c_rows[end - 1..end]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::task_panels;

    #[test]
    fn tasks_are_whole_panels_spread_evenly_over_the_threads() {
        // 2048 rows = 342 six-row panels: 15 tasks of ≤ 24 panels, rounded up to 16 for 2 threads;
        // 342 = 16 · 21 + 6, the six tasks of 22 spaced out, so each half holds 171 panels
        let p = task_panels(342, 2);
        assert_eq!(p.len(), 16);
        assert_eq!(p.iter().sum::<usize>(), 342);
        assert!(p.iter().all(|&x| x == 21 || x == 22));
        assert_eq!(p[..8].iter().sum::<usize>(), 171);
        // two panels, two threads: one panel each
        assert_eq!(task_panels(2, 2), vec![1, 1]);
        // one panel: one task whatever the threads
        assert_eq!(task_panels(1, 4), vec![1]);
        // small m: at least two tasks per thread where the panels allow (8 panels, 2 threads)
        assert_eq!(task_panels(8, 2), vec![2, 2, 2, 2]);
        // three panels, two threads: no empty task
        assert_eq!(task_panels(3, 2), vec![1, 1, 1]);
    }
}
