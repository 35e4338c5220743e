//! The per-channel affine + activation a forward convolution can apply to each output chunk
//! while it is still in cache: evaluation-mode BatchNorm (+ ReLU) folded into the conv.

use crate::batch_norm::Activation;
use crate::batch_norm::kernel::affine_in_place;

/// `y = act(y · scale[o] + shift[o])` over output channels `o`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epilogue<'a> {
    pub scale: &'a [f32],
    pub shift: &'a [f32],
    pub act: Activation,
}

impl Epilogue<'_> {
    /// Applies the epilogue to whole output images (`c_out × p_out` each) in `out`.
    pub fn apply(&self, out: &mut [f32], c_out: usize, p_out: usize) {
        affine_in_place(out, c_out, p_out, self.scale, self.shift, self.act);
    }
}

/// Applies `epi`, if any, to whole output images.
pub(crate) fn finish(epi: Option<&Epilogue<'_>>, out: &mut [f32], c_out: usize, p_out: usize) {
    if let Some(e) = epi {
        e.apply(out, c_out, p_out);
    }
}
