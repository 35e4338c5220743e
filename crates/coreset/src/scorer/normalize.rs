//! Dataset-wide normalisation of score columns before mixing.

use serde::{Deserialize, Serialize};

/// How a score column is rescaled before a combinator mixes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Raw values (ACS: EVS and DS both lie in [0, √2]).
    #[default]
    None,
    /// `(s − min) / (max − min)` into [0, 1] (all 0 for a constant column).
    MinMax,
    /// Rank / (N − 1) into [0, 1]; ties share their average rank.
    Rank,
    /// `(s − mean) / std` (all 0 for a constant column).
    ZScore,
}

impl Normalization {
    /// Applies the normalisation to a whole column.
    ///
    /// ```
    /// use quarc_coreset::Normalization;
    /// assert_eq!(Normalization::MinMax.apply(&[1.0, 3.0, 2.0]), vec![0.0, 1.0, 0.5]);
    /// assert_eq!(Normalization::Rank.apply(&[5.0, 1.0, 5.0, 0.0]), vec![5.0 / 6.0, 1.0 / 3.0, 5.0 / 6.0, 0.0]);
    /// ```
    pub fn apply(&self, v: &[f32]) -> Vec<f32> {
        match self {
            Normalization::None => v.to_vec(),
            Normalization::MinMax => {
                let (lo, hi) = v
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
                let range = hi - lo;
                v.iter()
                    .map(|&x| if range > 0.0 { (x - lo) / range } else { 0.0 })
                    .collect()
            }
            Normalization::ZScore => {
                let n = v.len().max(1) as f64;
                let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
                let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
                let std = var.sqrt();
                v.iter()
                    .map(|&x| {
                        if std > 0.0 {
                            ((x as f64 - mean) / std) as f32
                        } else {
                            0.0
                        }
                    })
                    .collect()
            }
            Normalization::Rank => {
                let n = v.len();
                if n < 2 {
                    return vec![0.0; n];
                }
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| v[a].total_cmp(&v[b]).then(a.cmp(&b)));
                let mut out = vec![0f32; n];
                let mut i = 0;
                while i < n {
                    let mut j = i;
                    while j + 1 < n && v[order[j + 1]] == v[order[i]] {
                        j += 1;
                    }
                    let rank = (i + j) as f64 / 2.0 / (n - 1) as f64;
                    for &k in &order[i..=j] {
                        out[k] = rank as f32;
                    }
                    i = j + 1;
                }
                out
            }
        }
    }
}
