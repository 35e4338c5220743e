//! A seeded, class-stratified hold-out split: the validation set that tuning reads instead of
//! the test set.

use quarc_base::SplitMix64;

use crate::{Dataset, Error, InMemoryDataset, Result};

/// Splits `data` into `(train, validation)` with `holdout` samples in the validation part,
/// spread over the classes in proportion to their counts (largest remainders first) and drawn
/// at random within each class, deterministically per `seed`. Both parts are copies that keep
/// the original sample order; labels are whatever `data` reports (noisy labels stay noisy).
///
/// ```
/// use quarc_data::{holdout_split, Dataset, ImageShape, InMemoryDataset};
/// let shape = ImageShape { channels: 1, height: 1, width: 1 };
/// let data = InMemoryDataset::new((0..10).collect(), vec![0, 0, 0, 0, 0, 0, 1, 1, 1, 1], shape, 2)?;
/// let (train, val) = holdout_split(&data, 5, 7)?;
/// assert_eq!((train.len(), val.len()), (5, 5));
/// // 6 : 4 over the classes gives 3 + 2 held out.
/// assert_eq!(val.labels().iter().filter(|&&l| l == 0).count(), 3);
/// assert!(holdout_split(&data, 10, 7).is_err()); // nothing left to train on
/// # Ok::<(), quarc_data::Error>(())
/// ```
pub fn holdout_split(data: &dyn Dataset, holdout: usize, seed: u64) -> Result<(InMemoryDataset, InMemoryDataset)> {
    let n = data.len();
    if holdout == 0 || holdout >= n {
        return Err(Error::InvalidConfig(format!(
            "a hold-out of {holdout} samples needs 0 < holdout < {n} (the data set's size)"
        )));
    }
    let k = data.num_classes();
    let labels = data.labels();
    if labels.len() != n {
        return Err(Error::InvalidConfig(format!(
            "the data set reports {n} samples but {} readable labels",
            labels.len()
        )));
    }
    // The classes that occur, in label order: memory follows the data, not the class count the
    // data set reports.
    let mut present: std::collections::BTreeMap<u32, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        if l as usize >= k {
            return Err(Error::LabelOutOfRange {
                label: l,
                index: i,
                num_classes: k,
            });
        }
        present.entry(l).or_default().push(i);
    }
    let mut by_class: Vec<Vec<usize>> = present.into_values().collect();
    // Largest-remainder apportionment of `holdout` over the class counts.
    let exact: Vec<f64> = by_class
        .iter()
        .map(|c| holdout as f64 * c.len() as f64 / n as f64)
        .collect();
    let mut quota: Vec<usize> = exact.iter().map(|q| q.floor() as usize).collect();
    let mut order: Vec<usize> = (0..by_class.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let missing = holdout - quota.iter().sum::<usize>();
    for &c in order.iter().take(missing) {
        quota[c] += 1;
    }
    let mut held = vec![false; n];
    let mut rng = SplitMix64::new(seed);
    for (members, &q) in by_class.iter_mut().zip(&quota) {
        rng.shuffle(members);
        for &i in members.iter().take(q) {
            held[i] = true;
        }
    }
    let pick = |want: bool| -> Result<InMemoryDataset> {
        let shape = data.image_shape();
        let mut pixels = Vec::new();
        let mut picked = Vec::new();
        for i in (0..n).filter(|&i| held[i] == want) {
            pixels.extend_from_slice(data.image(i)?);
            picked.push(labels[i]);
        }
        InMemoryDataset::new(pixels, picked, shape, k)
    };
    Ok((pick(false)?, pick(true)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageShape;

    fn toy(n: usize, k: usize) -> InMemoryDataset {
        let shape = ImageShape {
            channels: 1,
            height: 1,
            width: 2,
        };
        let pixels = (0..n).flat_map(|i| [(i % 251) as u8, (i / 251) as u8]).collect();
        let labels = (0..n).map(|i| ((i * 7) % k) as u32).collect();
        InMemoryDataset::new(pixels, labels, shape, k).unwrap()
    }

    #[test]
    fn split_is_disjoint_complete_stratified_and_seeded() {
        let data = toy(1000, 4);
        let (train, val) = holdout_split(&data, 100, 3).unwrap();
        assert_eq!((train.len(), val.len()), (900, 100));
        // Every class holds 250 samples, so each gives exactly 25.
        for c in 0..4u32 {
            assert_eq!(val.labels().iter().filter(|&&l| l == c).count(), 25);
        }
        // The two parts partition the samples (pixels identify them).
        let key = |d: &InMemoryDataset, i: usize| d.image(i).unwrap().to_vec();
        let mut all: Vec<Vec<u8>> = (0..train.len()).map(|i| key(&train, i)).collect();
        all.extend((0..val.len()).map(|i| key(&val, i)));
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 1000);
        let again = holdout_split(&data, 100, 3).unwrap();
        assert_eq!(again.1, val);
        assert_ne!(holdout_split(&data, 100, 4).unwrap().1, val);
    }

    #[test]
    fn bad_sizes_are_typed_errors() {
        let data = toy(10, 2);
        assert!(matches!(holdout_split(&data, 0, 0), Err(Error::InvalidConfig(_))));
        assert!(matches!(holdout_split(&data, 10, 0), Err(Error::InvalidConfig(_))));
    }
}
