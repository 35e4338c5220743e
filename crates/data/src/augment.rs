//! Seeded augmentation and per-channel normalisation, applied per sample while a batch is built.

use quarc_base::SplitMix64;

use crate::{Error, ImageShape, Result};

/// Training-time augmentation. Each sample's random draws come from a stream derived from
/// `(seed, epoch, dataset index)`, so results do not depend on batch composition or threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Augment {
    /// Zero-pad by this many pixels and crop back at a random offset (0 = off; CIFAR uses 4).
    pub pad_crop: usize,
    /// Flip horizontally with probability ½.
    pub hflip: bool,
}

impl Augment {
    /// No augmentation (scoring and evaluation).
    pub fn none() -> Self {
        Self::default()
    }

    /// The CIFAR recipe: pad 4 and random crop, horizontal flip.
    pub fn cifar() -> Self {
        Self {
            pad_crop: 4,
            hflip: true,
        }
    }

    /// Whether anything is applied.
    pub fn is_identity(&self) -> bool {
        self.pad_crop == 0 && !self.hflip
    }
}

/// Per-channel normalisation `(x/255 − mean_c) / std_c`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Normalize {
    /// Per-channel means and standard deviations on the [0, 1] scale.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(Error::InvalidConfig(format!(
                "{} means and {} stds",
                mean.len(),
                std.len()
            )));
        }
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::InvalidConfig(
                "normalisation needs finite means and positive stds".into(),
            ));
        }
        Ok(Self { mean, std })
    }

    /// Fashion-MNIST's statistics (training set).
    pub fn fashion_mnist() -> Self {
        Self {
            mean: vec![0.2860],
            std: vec![0.3530],
        }
    }

    /// CIFAR-10's statistics (training set).
    pub fn cifar10() -> Self {
        Self {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        }
    }

    /// The per-channel means.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// The per-channel standard deviations.
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    pub(crate) fn channels(&self) -> usize {
        self.mean.len()
    }
}

/// Writes sample `pixels` (CHW u8) into `out` as f32, augmented and normalised.
pub(crate) fn prepare(
    pixels: &[u8],
    shape: ImageShape,
    augment: Augment,
    normalize: Option<&Normalize>,
    rng: &mut SplitMix64,
    out: &mut [f32],
) {
    let (c, h, w) = (shape.channels, shape.height, shape.width);
    let p = augment.pad_crop as isize;
    let (dy, dx) = if p > 0 {
        (
            rng.below(2 * p as usize + 1) as isize - p,
            rng.below(2 * p as usize + 1) as isize - p,
        )
    } else {
        (0, 0)
    };
    let flip = augment.hflip && rng.below(2) == 1;
    for ch in 0..c {
        let (mean, std) = normalize.map_or((0.0, 1.0), |n| (n.mean[ch], n.std[ch]));
        for y in 0..h {
            for x in 0..w {
                let sx = if flip { w - 1 - x } else { x } as isize + dx;
                let sy = y as isize + dy;
                let v = if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                    pixels[ch * h * w + sy as usize * w + sx as usize] as f32 / 255.0
                } else {
                    0.0
                };
                out[ch * h * w + y * w + x] = (v - mean) / std;
            }
        }
    }
}
