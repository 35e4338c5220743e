//! When to re-select.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Re-select every `every` epochs starting at `first_epoch` (ACS: R = 10, from epoch 0);
/// `every = None` selects once (one-shot).
///
/// ```
/// use quarc_coreset::SelectionSchedule;
/// let s = SelectionSchedule::every(5)?;
/// assert!(s.is_selection_epoch(0) && s.is_selection_epoch(10) && !s.is_selection_epoch(3));
/// let once = SelectionSchedule::one_shot();
/// assert!(once.is_selection_epoch(0) && !once.is_selection_epoch(5));
/// assert!(SelectionSchedule::every(0).is_err());
/// # Ok::<(), quarc_coreset::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SelectionSchedule {
    /// Period R in epochs; `None` = one-shot.
    pub every: Option<usize>,
    /// The first selection epoch.
    pub first_epoch: usize,
}

impl SelectionSchedule {
    /// Every `r ≥ 1` epochs from epoch 0.
    pub fn every(r: usize) -> Result<Self> {
        if r == 0 {
            return Err(Error::InvalidConfig(
                "the selection period R must be ≥ 1 (use one_shot for R = ∞)".into(),
            ));
        }
        Ok(Self {
            every: Some(r),
            first_epoch: 0,
        })
    }

    /// Once, at epoch 0.
    pub fn one_shot() -> Self {
        Self {
            every: None,
            first_epoch: 0,
        }
    }

    /// Whether `epoch` starts with a scoring pass and a new selection.
    pub fn is_selection_epoch(&self, epoch: usize) -> bool {
        match self.every {
            _ if epoch < self.first_epoch => false,
            None => epoch == self.first_epoch,
            Some(r) => (epoch - self.first_epoch).is_multiple_of(r.max(1)),
        }
    }
}
