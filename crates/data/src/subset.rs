//! A view of some samples of a data set (what a coreset selection returns).

use std::sync::Arc;

use crate::{Dataset, Error, Result};

/// The samples `indices` of a data set. Batches drawn from a subset carry the **original**
/// dataset indices (see [`crate::BatchLoader::epoch`]), so scores stay keyed by the full data set.
///
/// ```
/// use std::sync::Arc;
/// use quarc_data::{fashion_mnist, Dataset, Split, Subset};
/// let ds: Arc<dyn Dataset> = Arc::new(fashion_mnist::bundled_subset(Split::Test)?);
/// let s = Subset::new(ds, vec![3, 1, 4])?;
/// assert_eq!((s.len(), s.labels()?.len()), (3, 3));
/// # Ok::<(), quarc_data::Error>(())
/// ```
#[derive(Clone)]
pub struct Subset {
    inner: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

impl Subset {
    /// A view of `indices` (each `< inner.len()`) of `inner`.
    pub fn new(inner: Arc<dyn Dataset>, indices: Vec<usize>) -> Result<Self> {
        let len = inner.len();
        if let Some(&index) = indices.iter().find(|&&i| i >= len) {
            return Err(Error::IndexOutOfRange { index, len });
        }
        Ok(Self { inner, indices })
    }

    /// The dataset indices of the view, in order.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// Number of samples in the view.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Labels of the view's samples, in view order.
    pub fn labels(&self) -> Result<Vec<u32>> {
        self.indices.iter().map(|&i| self.inner.label(i)).collect()
    }

    /// The underlying data set.
    pub fn inner(&self) -> &Arc<dyn Dataset> {
        &self.inner
    }
}
