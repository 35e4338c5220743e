//! # quarc-data
//!
//! Image-classification data for quarc's QAT loops, with every batch carrying the dataset index
//! of each sample (scores and coresets are keyed by it):
//!
//! - [`Dataset`] and [`InMemoryDataset`] (u8 pixels, u32 labels), [`Subset`] views, and a
//!   seeded class-stratified validation split ([`holdout_split`]);
//! - loaders for IDX ([`load_idx`], gzipped or raw: MNIST, Fashion-MNIST) and the CIFAR-10/100
//!   binary versions ([`load_cifar10`], [`load_cifar100`]), validating headers and sizes;
//! - the Fashion-MNIST subset shipped in the crate ([`fashion_mnist::bundled_subset`]) and the
//!   full set from a folder, `$QUARC_FASHION_MNIST` or Debian's location ([`fashion_mnist::load`]);
//! - seeded augmentation ([`Augment`]: pad-and-crop, flip), [`Normalize`], and the prefetching
//!   [`BatchLoader`]. Every random choice derives from a seed through SplitMix64, so the same
//!   seed gives the same batches on every machine.
//!
//! ```
//! use std::sync::Arc;
//! use quarc_data::{fashion_mnist, BatchLoader, Dataset, LoaderConfig, Normalize, Split};
//! let train = Arc::new(fashion_mnist::bundled_subset(Split::Train)?);
//! let loader = BatchLoader::new(train.clone(), LoaderConfig::eval(1000, Some(Normalize::fashion_mnist())), &candle_core::Device::Cpu)?;
//! let mut n = 0;
//! for batch in loader.epoch(0, None)? {
//!     let batch = batch?;
//!     assert_eq!(batch.images.dim(0)?, batch.indices.len());
//!     n += batch.indices.len();
//! }
//! assert_eq!(n, train.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod augment;
mod cifar;
mod dataset;
mod error;
pub mod fashion_mnist;
mod holdout;
mod idx;
mod loader;
mod noise;
mod subset;

pub use augment::{Augment, Normalize};
/// candle, as this crate's signatures use it.
pub use candle_core;
pub use cifar::{Cifar100Labels, Split, load_cifar10, load_cifar100, write_cifar10_bin, write_cifar100_bin};
pub use dataset::{Dataset, ImageShape, InMemoryDataset};
pub use error::{Error, Result};
pub use holdout::holdout_split;
pub use idx::{from_idx_bytes, load_idx, parse_images, parse_labels, write_idx};
pub use loader::{Batch, BatchIter, BatchLoader, LoaderConfig};
pub use noise::{NoiseKind, NoisyLabels};
pub use subset::Subset;
