//! Handing a Winograd forward's transformed input to its weight gradient.
//!
//! A convolution's forward op cannot know whether a backward pass will follow, and keeping the
//! tiles costs memory until it does (or until the graph is dropped): 2.25× each Winograd layer's
//! input for F(4×4, 3×3). So the forward keeps them only inside [`keeping_winograd_tiles`] and
//! only for a weight that tracks gradients; a training step wraps its forward in it, an
//! evaluation does not.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::winograd::SavedTiles;

thread_local! {
    static KEEP: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (a training step's forward pass) with this thread's CPU convolutions keeping their
/// Winograd-transformed input for the weight gradient, which then skips computing it again.
/// The gradients are bit for bit the same either way; the step is faster (ResNet-18 FP32 at
/// batch 64: measured in docs/performance.md) and holds more memory between its forward and
/// backward passes: `(m + 2)² / m²` times each stride-1 3×3 layer's input (2.25× for the usual
/// F(4×4, 3×3)), released as each layer's backward runs, or when the graph is dropped.
///
/// Only weights that track gradients keep tiles (a frozen teacher's layers do not). Run
/// evaluation outside it: a forward whose graph stays alive holds every layer's tiles.
///
/// ```
/// use candle_core::{Device, Var};
/// use quarc_kernels::{Conv2dParams, conv2d, keeping_winograd_tiles};
/// let dev = Device::Cpu;
/// let x = candle_core::Tensor::randn(0f32, 1.0, (2, 64, 8, 8), &dev)?;
/// let w = Var::randn(0f32, 0.05, (64, 64, 3, 3), &dev)?;
/// let p = Conv2dParams { padding: 1, ..Default::default() };
/// let kept = keeping_winograd_tiles(|| conv2d(&x, &w, &p))?.sqr()?.sum_all()?.backward()?;
/// let plain = conv2d(&x, &w, &p)?.sqr()?.sum_all()?.backward()?;
/// let (a, b) = (kept.get(&w).unwrap(), plain.get(&w).unwrap());
/// assert_eq!(a.flatten_all()?.to_vec1::<f32>()?, b.flatten_all()?.to_vec1::<f32>()?);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn keeping_winograd_tiles<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the previous setting back, also when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            KEEP.with(|k| k.set(self.0));
        }
    }
    let _restore = Restore(KEEP.with(|k| k.replace(true)));
    f()
}

/// Weight gradients that used kept tiles, since the process started.
static REUSED: AtomicU64 = AtomicU64::new(0);

/// How many Winograd weight gradients in this process used the tiles their forward kept: a
/// check that a training loop's forward runs inside [`keeping_winograd_tiles`] (it stays put
/// when no forward keeps tiles, or when a backward could not use them).
pub fn winograd_tiles_reused() -> u64 {
    REUSED.load(Ordering::Relaxed)
}

/// Counts one weight gradient that used kept tiles.
pub(crate) fn count_reuse() {
    REUSED.fetch_add(1, Ordering::Relaxed);
}

/// Whether this thread is inside [`keeping_winograd_tiles`].
pub(crate) fn keeps_tiles() -> bool {
    KEEP.with(Cell::get)
}

/// Where a forward op leaves its tiles for its backward: nothing when keeping is off.
#[derive(Clone, Debug, Default)]
pub(crate) struct TileStash(Option<Arc<Mutex<Option<SavedTiles>>>>);

impl TileStash {
    /// A stash that keeps tiles when `keep`, else one that drops them.
    pub fn when(keep: bool) -> Self {
        Self(keep.then(Default::default))
    }

    /// Whether the forward should keep its tiles.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Leaves `tiles` for the backward (replacing any left before).
    pub fn put(&self, tiles: Option<SavedTiles>) {
        if let Some(slot) = &self.0
            && let Ok(mut slot) = slot.lock()
        {
            *slot = tiles;
        }
    }

    /// Takes the tiles left by the forward, if any.
    pub fn take(&self) -> Option<SavedTiles> {
        self.0.as_ref()?.lock().ok()?.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_nests_and_is_left_also_on_a_panic() {
        assert!(!keeps_tiles());
        keeping_winograd_tiles(|| {
            assert!(keeps_tiles());
            keeping_winograd_tiles(|| assert!(keeps_tiles()));
            assert!(keeps_tiles());
        });
        assert!(!keeps_tiles());
        let unwound = std::panic::catch_unwind(|| keeping_winograd_tiles(|| panic!("inside the scope")));
        assert!(unwound.is_err());
        assert!(!keeps_tiles());
    }

    #[test]
    fn a_stash_that_is_off_keeps_nothing() {
        let g = crate::conv::ConvGeometry {
            batch: 1,
            c_in: 1,
            h: 3,
            w: 3,
            c_out: 1,
            kh: 3,
            kw: 3,
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        };
        let tiles = || SavedTiles {
            key: crate::conv::winograd::TilesKey::new(&g, None),
            chunks: vec![vec![1.0; 3]],
        };
        let off = TileStash::when(false);
        off.put(Some(tiles()));
        assert!(!off.is_on() && off.take().is_none());
        let on = TileStash::when(true);
        on.put(Some(tiles()));
        assert_eq!(on.take().map(|t| t.chunks), Some(vec![vec![1.0; 3]]));
        assert!(on.take().is_none(), "taken once");
    }
}
