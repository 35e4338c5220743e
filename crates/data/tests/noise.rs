//! Label noise: rate, determinism, pair maps, validation.

use std::sync::Arc;

use quarc_data::*;

fn clean(n: usize, k: usize) -> Arc<dyn Dataset> {
    let labels: Vec<u32> = (0..n).map(|i| (i % k) as u32).collect();
    Arc::new(
        InMemoryDataset::new(
            vec![0; n],
            labels,
            ImageShape {
                channels: 1,
                height: 1,
                width: 1,
            },
            k,
        )
        .unwrap(),
    )
}

#[test]
fn symmetric_noise_rate_and_determinism() {
    let ds = clean(1000, 10);
    let a = NoisyLabels::new(ds.clone(), NoiseKind::Symmetric, 0.4, 1).unwrap();
    let b = NoisyLabels::new(ds.clone(), NoiseKind::Symmetric, 0.4, 1).unwrap();
    let c = NoisyLabels::new(ds.clone(), NoiseKind::Symmetric, 0.4, 2).unwrap();
    assert_eq!(a.corrupted_indices().len(), 400);
    assert_eq!(a.labels(), b.labels());
    assert_ne!(a.labels(), c.labels());
    for i in 0..1000 {
        let changed = a.label(i).unwrap() != ds.label(i).unwrap();
        assert_eq!(
            changed,
            a.is_corrupted(i),
            "sample {i}: every corrupted label differs, no other changes"
        );
        assert_eq!(a.clean_label(i).unwrap(), ds.label(i).unwrap());
    }
    // The wrong labels spread over the other classes.
    let mut seen = std::collections::HashSet::new();
    for i in a.corrupted_indices() {
        seen.insert((ds.label(i).unwrap(), a.label(i).unwrap()));
    }
    assert!(seen.len() > 50, "{}", seen.len());
    assert_eq!(
        NoisyLabels::new(ds, NoiseKind::Symmetric, 0.0, 1)
            .unwrap()
            .corrupted_indices()
            .len(),
        0
    );
}

#[test]
fn pair_noise_follows_the_map() {
    let ds = clean(500, 5);
    let map = NoisyLabels::next_class_map(5);
    let n = NoisyLabels::new(ds.clone(), NoiseKind::Pair { map: map.clone() }, 0.2, 3).unwrap();
    assert_eq!(n.corrupted_indices().len(), 100);
    for i in n.corrupted_indices() {
        assert_eq!(n.label(i).unwrap(), map[ds.label(i).unwrap() as usize]);
    }
}

#[test]
fn invalid_rates_and_maps_are_typed_errors() {
    let ds = clean(10, 3);
    for rate in [-0.1, 1.0, f64::NAN] {
        assert!(
            matches!(
                NoisyLabels::new(ds.clone(), NoiseKind::Symmetric, rate, 0),
                Err(Error::InvalidConfig(_))
            ),
            "{rate}"
        );
    }
    for map in [vec![1, 2], vec![1, 2, 3], vec![0, 2, 0]] {
        assert!(
            matches!(
                NoisyLabels::new(ds.clone(), NoiseKind::Pair { map: map.clone() }, 0.2, 0),
                Err(Error::InvalidConfig(_))
            ),
            "{map:?}"
        );
    }
}

/// A user-implemented data set whose sample 2 carries label 5 with 3 classes.
struct BadLabel;

impl Dataset for BadLabel {
    fn len(&self) -> usize {
        4
    }
    fn num_classes(&self) -> usize {
        3
    }
    fn image_shape(&self) -> ImageShape {
        ImageShape {
            channels: 1,
            height: 1,
            width: 1,
        }
    }
    fn image(&self, _index: usize) -> Result<&[u8]> {
        Ok(&[0])
    }
    fn label(&self, index: usize) -> Result<u32> {
        Ok(if index == 2 { 5 } else { 0 })
    }
}

#[test]
fn a_label_out_of_range_is_a_typed_error_not_a_panic() {
    for kind in [
        NoiseKind::Symmetric,
        NoiseKind::Pair {
            map: NoisyLabels::next_class_map(3),
        },
    ] {
        assert!(matches!(
            NoisyLabels::new(Arc::new(BadLabel), kind, 0.99, 0),
            Err(Error::LabelOutOfRange {
                label: 5,
                index: 2,
                num_classes: 3
            })
        ));
    }
}
