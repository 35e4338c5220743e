//! The forward's transformed input tiles `V`, kept for the weight gradient.
//!
//! The weight gradient needs the same `V[ξ]` the forward computed (the same plan, chunking and
//! input fake-quant), and computing it again took about 12 % of a ResNet-18 FP32 training step
//! (the input transform and its interleaving transposes, docs/performance.md). A forward that
//! is asked to keep its tiles hands them to its backward instead, at the cost of holding them
//! in between: `(m + 2)² / m²` times the layer's input (2.25× for F(4×4, 3×3)) plus row padding.

use super::super::geometry::ConvGeometry;
use super::super::input_quant::Grid;

/// What `V` was computed from, beyond the input itself: the backward reuses it only when
/// everything here matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TilesKey {
    /// The layer's shapes (which also fix the tile size and the chunks).
    geometry: ConvGeometry,
    /// The input fake-quant's step and levels, as bits.
    grid: Option<[u32; 3]>,
}

impl TilesKey {
    pub fn new(geometry: &ConvGeometry, grid: Option<&Grid>) -> Self {
        Self {
            geometry: *geometry,
            grid: grid.map(|g| [g.step.to_bits(), g.qn.to_bits(), g.qp.to_bits()]),
        }
    }
}

/// Each chunk's `V` as the forward laid it out (`[c][ξ][column]`, rows `row` apart).
#[derive(Debug)]
pub(crate) struct SavedTiles {
    pub key: TilesKey,
    pub chunks: Vec<Vec<f32>>,
}
