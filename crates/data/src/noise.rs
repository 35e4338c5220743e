//! Seeded label noise over any data set, with the clean labels kept for evaluation only.

use std::sync::Arc;

use quarc_base::SplitMix64;

use crate::{Dataset, Error, ImageShape, Result};

/// How labels are corrupted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoiseKind {
    /// A corrupted label is replaced by a uniformly drawn *other* class.
    Symmetric,
    /// Pair (asymmetric) noise: class `c` becomes `map[c]`, a fixed confusable class
    /// (`map[c] ≠ c`, one entry per class).
    Pair {
        /// The class mapping.
        map: Vec<u32>,
    },
}

/// A data set whose labels carry seeded noise: exactly `round(rate · N)` samples, chosen
/// uniformly without replacement, get a wrong label. Images are the inner data set's. The
/// clean labels and the corrupted indices are kept for evaluation and diagnostics only.
///
/// ```
/// use std::sync::Arc;
/// use quarc_data::{fashion_mnist, Dataset, NoiseKind, NoisyLabels, Split};
/// let clean: Arc<dyn Dataset> = Arc::new(fashion_mnist::bundled_subset(Split::Test)?);
/// let noisy = NoisyLabels::new(clean.clone(), NoiseKind::Symmetric, 0.2, 7)?;
/// assert_eq!(noisy.corrupted_indices().len(), 200);
/// let i = noisy.corrupted_indices()[0];
/// assert_ne!(noisy.label(i)?, clean.label(i)?);
/// assert_eq!(noisy.clean_label(i)?, clean.label(i)?);
/// # Ok::<(), quarc_data::Error>(())
/// ```
pub struct NoisyLabels {
    inner: Arc<dyn Dataset>,
    labels: Vec<u32>,
    clean: Vec<u32>,
    corrupted: Vec<bool>,
}

impl NoisyLabels {
    /// Corrupts a fraction `rate ∈ [0, 1)` of the labels of `inner`, deterministically per `seed`.
    pub fn new(inner: Arc<dyn Dataset>, kind: NoiseKind, rate: f64, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::InvalidConfig(format!(
                "noise rate must be in [0, 1), got {rate}"
            )));
        }
        let k = inner.num_classes();
        if k < 2 {
            return Err(Error::InvalidConfig("label noise needs at least two classes".into()));
        }
        if let NoiseKind::Pair { map } = &kind {
            if map.len() != k {
                return Err(Error::InvalidConfig(format!(
                    "pair map has {} entries for {k} classes",
                    map.len()
                )));
            }
            if let Some((c, &m)) = map
                .iter()
                .enumerate()
                .find(|(c, m)| **m as usize >= k || **m as usize == *c)
            {
                return Err(Error::InvalidConfig(format!(
                    "pair map sends class {c} to {m}: must be another class below {k}"
                )));
            }
        }
        // Label by label, so that a failing read is an error rather than a shifted label list.
        let clean = (0..inner.len()).map(|i| inner.label(i)).collect::<Result<Vec<u32>>>()?;
        // A user-implemented data set may carry a label the pair map cannot index.
        if let Some((index, &label)) = clean.iter().enumerate().find(|(_, l)| **l as usize >= k) {
            return Err(Error::LabelOutOfRange {
                index,
                label,
                num_classes: k,
            });
        }
        let n = clean.len();
        let mut rng = SplitMix64::new(seed);
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let mut corrupted = vec![false; n];
        let mut labels = clean.clone();
        for &i in order.iter().take((rate * n as f64).round() as usize) {
            corrupted[i] = true;
            labels[i] = match &kind {
                NoiseKind::Symmetric => {
                    let other = rng.below(k - 1) as u32;
                    if other >= clean[i] { other + 1 } else { other }
                }
                NoiseKind::Pair { map } => map[clean[i] as usize],
            };
        }
        Ok(Self {
            inner,
            labels,
            clean,
            corrupted,
        })
    }

    /// The pair map `c → (c + 1) mod K`.
    pub fn next_class_map(num_classes: usize) -> Vec<u32> {
        (0..num_classes).map(|c| ((c + 1) % num_classes) as u32).collect()
    }

    /// Whether sample `i`'s label was corrupted.
    pub fn is_corrupted(&self, i: usize) -> bool {
        self.corrupted.get(i).copied().unwrap_or(false)
    }

    /// The corruption flag of every sample.
    pub fn corrupted(&self) -> &[bool] {
        &self.corrupted
    }

    /// Indices of the corrupted samples, ascending.
    pub fn corrupted_indices(&self) -> Vec<usize> {
        self.corrupted
            .iter()
            .enumerate()
            .filter(|(_, c)| **c)
            .map(|(i, _)| i)
            .collect()
    }

    /// The clean label of sample `i` (for evaluation only).
    pub fn clean_label(&self, i: usize) -> Result<u32> {
        self.clean.get(i).copied().ok_or(Error::IndexOutOfRange {
            index: i,
            len: self.clean.len(),
        })
    }
}

impl Dataset for NoisyLabels {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn image_shape(&self) -> ImageShape {
        self.inner.image_shape()
    }
    fn image(&self, index: usize) -> Result<&[u8]> {
        self.inner.image(index)
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
