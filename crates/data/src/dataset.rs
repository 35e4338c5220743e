//! The `Dataset` trait and the in-memory implementation.

use crate::{Error, Result};

/// Shape of one image, channels first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageShape {
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
}

impl ImageShape {
    /// Bytes (u8 pixels) per image.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the shape holds no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An image-classification data set addressed by dataset index `0..len()`. Pixels are u8,
/// channels first; batches convert them to f32 (see [`crate::BatchLoader`]).
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether the data set is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of classes.
    fn num_classes(&self) -> usize;
    /// Shape of every image.
    fn image_shape(&self) -> ImageShape;
    /// The u8 pixels of sample `index` (CHW), or an error when out of range.
    fn image(&self, index: usize) -> Result<&[u8]>;
    /// The label of sample `index`.
    fn label(&self, index: usize) -> Result<u32>;
    /// All labels, by dataset index.
    fn labels(&self) -> Vec<u32> {
        (0..self.len()).filter_map(|i| self.label(i).ok()).collect()
    }
}

/// Images and labels held in memory: u8 pixels and u32 labels, compact.
#[derive(Clone, Debug, PartialEq)]
pub struct InMemoryDataset {
    pixels: Vec<u8>,
    labels: Vec<u32>,
    shape: ImageShape,
    num_classes: usize,
}

impl InMemoryDataset {
    /// A data set from flat CHW pixels (`labels.len()` images) and labels `< num_classes`.
    ///
    /// ```
    /// use quarc_data::{Dataset, ImageShape, InMemoryDataset};
    /// let shape = ImageShape { channels: 1, height: 2, width: 2 };
    /// let ds = InMemoryDataset::new(vec![0, 1, 2, 3, 4, 5, 6, 7], vec![1, 0], shape, 2)?;
    /// assert_eq!((ds.len(), ds.image(1)?, ds.label(0)?), (2, &[4u8, 5, 6, 7][..], 1));
    /// assert!(InMemoryDataset::new(vec![0; 4], vec![2], shape, 2).is_err()); // label out of range
    /// # Ok::<(), quarc_data::Error>(())
    /// ```
    pub fn new(pixels: Vec<u8>, labels: Vec<u32>, shape: ImageShape, num_classes: usize) -> Result<Self> {
        if shape.is_empty() {
            return Err(Error::InvalidConfig(format!("image shape {shape:?} has no pixels")));
        }
        if pixels.len() != labels.len() * shape.len() {
            return Err(Error::InvalidConfig(format!(
                "{} pixels for {} images of {} pixels",
                pixels.len(),
                labels.len(),
                shape.len()
            )));
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l as usize >= num_classes) {
            return Err(Error::LabelOutOfRange {
                label,
                index,
                num_classes,
            });
        }
        Ok(Self {
            pixels,
            labels,
            shape,
            num_classes,
        })
    }

    /// Replaces the labels (same length, in range), e.g. to inject label noise.
    pub fn with_labels(mut self, labels: Vec<u32>) -> Result<Self> {
        if labels.len() != self.labels.len() {
            return Err(Error::InvalidConfig(format!(
                "{} labels for {} samples",
                labels.len(),
                self.labels.len()
            )));
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= self.num_classes)
        {
            return Err(Error::LabelOutOfRange {
                label,
                index,
                num_classes: self.num_classes,
            });
        }
        self.labels = labels;
        Ok(self)
    }

    /// The samples at `indices` as a new in-memory data set (copies pixels).
    pub fn take(&self, indices: &[usize]) -> Result<Self> {
        let mut pixels = Vec::with_capacity(indices.len() * self.shape.len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i)?);
            labels.push(self.labels[i]);
        }
        Self::new(pixels, labels, self.shape, self.num_classes)
    }
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn num_classes(&self) -> usize {
        self.num_classes
    }
    fn image_shape(&self) -> ImageShape {
        self.shape
    }
    fn image(&self, index: usize) -> Result<&[u8]> {
        if index >= self.labels.len() {
            return Err(Error::IndexOutOfRange {
                index,
                len: self.labels.len(),
            });
        }
        let n = self.shape.len();
        Ok(&self.pixels[index * n..(index + 1) * n])
    }
    fn label(&self, index: usize) -> Result<u32> {
        self.labels.get(index).copied().ok_or(Error::IndexOutOfRange {
            index,
            len: self.labels.len(),
        })
    }
    fn labels(&self) -> Vec<u32> {
        self.labels.clone()
    }
}
