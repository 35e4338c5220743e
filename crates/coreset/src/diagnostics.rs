//! Selection diagnostics against known label noise.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How a selection treats samples known to be mislabelled (when ground truth is available).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseDiagnostics {
    /// Share of noisy samples in the whole data set.
    pub dataset_noise_rate: f64,
    /// Share of noisy samples in the selection (below the data set's rate = noise is dropped).
    pub selected_noisy_share: f64,
    /// Of the samples left out, the share that is noisy (precision of "dropping noisy samples").
    pub drop_precision: f64,
    /// Of the noisy samples, the share left out (recall of "dropping noisy samples").
    pub drop_recall: f64,
}

impl NoiseDiagnostics {
    /// Diagnostics of `selected` (distinct dataset indices, any order) against the flags `noisy`.
    ///
    /// Errors: an index out of range of `noisy`, or one listed twice.
    ///
    /// ```
    /// use quarc_coreset::NoiseDiagnostics;
    /// // 10 samples, 0..4 noisy; the selection keeps 2, 3, 8, 9 → 2 of 4 selected are noisy,
    /// // 6 dropped of which 2 noisy (0, 1), 2 of the 4 noisy dropped.
    /// let noisy: Vec<bool> = (0..10).map(|i| i < 4).collect();
    /// let d = NoiseDiagnostics::compute(&[2, 3, 8, 9], &noisy)?;
    /// assert_eq!((d.dataset_noise_rate, d.selected_noisy_share), (0.4, 0.5));
    /// assert_eq!((d.drop_precision, d.drop_recall), (2.0 / 6.0, 0.5));
    /// # Ok::<(), quarc_coreset::Error>(())
    /// ```
    pub fn compute(selected: &[usize], noisy: &[bool]) -> Result<Self> {
        let n = noisy.len();
        let mut seen = vec![false; n];
        for &index in selected {
            match seen.get_mut(index) {
                None => return Err(Error::IndexOutOfRange { index, num_samples: n }),
                Some(true) => return Err(Error::DuplicateSelection { index }),
                Some(s) => *s = true,
            }
        }
        let total_noisy = noisy.iter().filter(|b| **b).count();
        let selected_noisy = selected.iter().filter(|&&i| noisy[i]).count();
        let dropped = n - selected.len();
        let dropped_noisy = total_noisy - selected_noisy;
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Ok(Self {
            dataset_noise_rate: ratio(total_noisy, n),
            selected_noisy_share: ratio(selected_noisy, selected.len()),
            drop_precision: ratio(dropped_noisy, dropped),
            drop_recall: ratio(dropped_noisy, total_noisy),
        })
    }
}
