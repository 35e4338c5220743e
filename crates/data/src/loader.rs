//! Seeded, shuffling, prefetching batch loader.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};

use candle_core::{Device, Tensor};
use quarc_base::{SplitMix64, mix};
use rayon::prelude::*;

use crate::augment::prepare;
use crate::{Augment, Dataset, Error, Normalize, Result};

/// One batch: images `(B, C, H, W)` f32, labels `(B,)` u32, and the dataset index of every row.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Images, `(B, C, H, W)`, f32.
    pub images: Tensor,
    /// Labels, `(B,)`, u32.
    pub labels: Tensor,
    /// Dataset index of each row.
    pub indices: Vec<usize>,
}

/// Loader settings.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Samples per batch (≥ 1).
    pub batch_size: usize,
    /// Shuffle each epoch (seeded by `(seed, epoch)`).
    pub shuffle: bool,
    /// Drop a last incomplete batch.
    pub drop_last: bool,
    /// Augmentation.
    pub augment: Augment,
    /// Normalisation (none: pixels / 255).
    pub normalize: Option<Normalize>,
    /// The seed of every random choice.
    pub seed: u64,
}

impl LoaderConfig {
    /// Training: shuffled, with the given augmentation.
    pub fn train(batch_size: usize, augment: Augment, normalize: Option<Normalize>, seed: u64) -> Self {
        Self {
            batch_size,
            shuffle: true,
            drop_last: false,
            augment,
            normalize,
            seed,
        }
    }

    /// Evaluation and scoring: fixed order, no augmentation (deterministic preprocessing).
    pub fn eval(batch_size: usize, normalize: Option<Normalize>) -> Self {
        Self {
            batch_size,
            shuffle: false,
            drop_last: false,
            augment: Augment::none(),
            normalize,
            seed: 0,
        }
    }
}

/// Batches over a data set (or over a subset's indices), preparing the next batch on a rayon
/// worker while the caller trains on the current one. The same seed gives the same batches,
/// bit for bit, on every machine.
///
/// ```
/// use std::sync::Arc;
/// use quarc_data::{fashion_mnist, BatchLoader, LoaderConfig, Split, Augment};
/// let ds = Arc::new(fashion_mnist::bundled_subset(Split::Test)?);
/// let loader = BatchLoader::new(ds, LoaderConfig::train(256, Augment::none(), None, 7), &candle_core::Device::Cpu)?;
/// let subset: Vec<usize> = (0..1000).step_by(10).collect(); // 100 samples, e.g. a coreset
/// let batches: Vec<_> = loader.epoch(0, Some(&subset))?.collect::<Result<_, _>>()?;
/// assert_eq!(batches.len(), 1);
/// assert_eq!(batches[0].images.dims(), &[100, 1, 28, 28]);
/// assert!(batches[0].indices.iter().all(|i| i % 10 == 0)); // original dataset indices
/// # Ok::<(), quarc_data::Error>(())
/// ```
pub struct BatchLoader {
    dataset: Arc<dyn Dataset>,
    config: LoaderConfig,
    device: Device,
}

impl BatchLoader {
    /// A loader over `dataset` creating tensors on `device`.
    pub fn new(dataset: Arc<dyn Dataset>, config: LoaderConfig, device: &Device) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::InvalidConfig("batch size must be ≥ 1".into()));
        }
        if let Some(n) = &config.normalize
            && n.channels() != dataset.image_shape().channels
        {
            return Err(Error::InvalidConfig(format!(
                "normalisation for {} channels, images have {}",
                n.channels(),
                dataset.image_shape().channels
            )));
        }
        Ok(Self {
            dataset,
            config,
            device: device.clone(),
        })
    }

    /// The data set.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Number of batches in an epoch over `n` samples.
    pub fn num_batches(&self, n: usize) -> usize {
        if self.config.drop_last {
            n / self.config.batch_size
        } else {
            n.div_ceil(self.config.batch_size)
        }
    }

    /// The batches of epoch `epoch`, over `subset` (dataset indices) or the whole data set.
    pub fn epoch(&self, epoch: usize, subset: Option<&[usize]>) -> Result<BatchIter> {
        let len = self.dataset.len();
        let mut order: Vec<usize> = match subset {
            Some(s) => {
                if let Some(&index) = s.iter().find(|&&i| i >= len) {
                    return Err(Error::IndexOutOfRange { index, len });
                }
                s.to_vec()
            }
            None => (0..len).collect(),
        };
        if order.is_empty() {
            return Err(Error::Empty("an epoch over no samples".into()));
        }
        if self.config.shuffle {
            SplitMix64::derive(self.config.seed, mix(epoch as u64)).shuffle(&mut order);
        }
        let bs = self.config.batch_size;
        let mut chunks: Vec<Vec<usize>> = order.chunks(bs).map(<[usize]>::to_vec).collect();
        if self.config.drop_last && chunks.last().is_some_and(|c| c.len() < bs) {
            chunks.pop();
        }
        let mut it = BatchIter {
            dataset: self.dataset.clone(),
            config: Arc::new(self.config.clone()),
            device: self.device.clone(),
            epoch,
            chunks,
            next: 0,
            pending: None,
        };
        it.prefetch();
        Ok(it)
    }
}

struct HostBatch {
    pixels: Vec<f32>,
    labels: Vec<u32>,
    indices: Vec<usize>,
}

/// Iterator over the batches of one epoch.
pub struct BatchIter {
    dataset: Arc<dyn Dataset>,
    config: Arc<LoaderConfig>,
    device: Device,
    epoch: usize,
    chunks: Vec<Vec<usize>>,
    next: usize,
    pending: Option<Receiver<Result<HostBatch>>>,
}

fn assemble(dataset: &dyn Dataset, config: &LoaderConfig, epoch: usize, indices: Vec<usize>) -> Result<HostBatch> {
    let shape = dataset.image_shape();
    let n = shape.len();
    if n == 0 {
        return Err(Error::InvalidConfig(format!(
            "the data set's image shape {shape:?} is empty"
        )));
    }
    let mut pixels = vec![0f32; indices.len() * n];
    pixels
        .par_chunks_mut(n)
        .zip(indices.par_iter())
        .try_for_each(|(out, &i)| -> Result<()> {
            let mut rng = SplitMix64::derive(config.seed, mix(epoch as u64) ^ mix(i as u64 ^ 0xA5A5));
            let image = dataset.image(i)?;
            if image.len() != n {
                // A user's data set may hand back anything: a typed error, not a panic in a worker.
                return Err(Error::InvalidConfig(format!(
                    "sample {i} has {} bytes, the data set's image shape {shape:?} needs {n}",
                    image.len()
                )));
            }
            prepare(image, shape, config.augment, config.normalize.as_ref(), &mut rng, out);
            Ok(())
        })?;
    let labels = indices.iter().map(|&i| dataset.label(i)).collect::<Result<Vec<_>>>()?;
    let classes = dataset.num_classes();
    if let Some((&i, &label)) = indices.iter().zip(&labels).find(|(_, l)| **l as usize >= classes) {
        return Err(Error::LabelOutOfRange {
            label,
            index: i,
            num_classes: classes,
        });
    }
    Ok(HostBatch {
        pixels,
        labels,
        indices,
    })
}

impl BatchIter {
    /// Number of batches left.
    pub fn remaining(&self) -> usize {
        self.chunks.len() - self.next
    }

    fn prefetch(&mut self) {
        if self.next >= self.chunks.len() {
            self.pending = None;
            return;
        }
        let (tx, rx) = channel();
        let (dataset, config, epoch) = (self.dataset.clone(), self.config.clone(), self.epoch);
        let indices = std::mem::take(&mut self.chunks[self.next]);
        rayon::spawn(move || {
            let _ = tx.send(assemble(dataset.as_ref(), &config, epoch, indices));
        });
        self.pending = Some(rx);
    }
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        let rx = self.pending.take()?;
        self.next += 1;
        let host = match rx.recv() {
            Ok(r) => r,
            Err(_) => Err(Error::InvalidConfig("the batch worker stopped".into())),
        };
        self.prefetch();
        Some(host.and_then(|h| {
            let s = self.dataset.image_shape();
            let b = h.indices.len();
            Ok(Batch {
                images: Tensor::from_vec(h.pixels, (b, s.channels, s.height, s.width), &self.device)?,
                labels: Tensor::from_vec(h.labels, b, &self.device)?,
                indices: h.indices,
            })
        }))
    }
}
