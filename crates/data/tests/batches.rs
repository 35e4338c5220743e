//! The batch loader: determinism, subsets, augmentation, normalisation.

use std::sync::Arc;

use candle_core::Device;
use quarc_data::*;

fn ramp(n: usize) -> Arc<InMemoryDataset> {
    // 1×2×3 images whose pixels encode (sample, position).
    let pixels: Vec<u8> = (0..n).flat_map(|i| (0..6).map(move |p| (i * 10 + p) as u8)).collect();
    let labels = (0..n).map(|i| (i % 3) as u32).collect();
    Arc::new(
        InMemoryDataset::new(
            pixels,
            labels,
            ImageShape {
                channels: 1,
                height: 2,
                width: 3,
            },
            3,
        )
        .unwrap(),
    )
}

fn collect(loader: &BatchLoader, epoch: usize, subset: Option<&[usize]>) -> Vec<(Vec<usize>, Vec<f32>)> {
    loader
        .epoch(epoch, subset)
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            (b.indices, b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        })
        .collect()
}

#[test]
fn same_seed_same_batches_other_seed_other_order() {
    let ds = ramp(20);
    let cfg = |seed| {
        LoaderConfig::train(
            6,
            Augment {
                pad_crop: 1,
                hflip: true,
            },
            None,
            seed,
        )
    };
    let a = BatchLoader::new(ds.clone(), cfg(1), &Device::Cpu).unwrap();
    let b = BatchLoader::new(ds.clone(), cfg(1), &Device::Cpu).unwrap();
    let c = BatchLoader::new(ds.clone(), cfg(2), &Device::Cpu).unwrap();
    assert_eq!(collect(&a, 3, None), collect(&b, 3, None));
    assert_ne!(collect(&a, 3, None), collect(&c, 3, None));
    assert_ne!(collect(&a, 3, None), collect(&a, 4, None)); // reshuffled each epoch
    // every sample exactly once, batch sizes 6, 6, 6, 2
    let batches = collect(&a, 0, None);
    assert_eq!(batches.iter().map(|b| b.0.len()).collect::<Vec<_>>(), vec![6, 6, 6, 2]);
    let mut all: Vec<usize> = batches.iter().flat_map(|b| b.0.clone()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<_>>());
}

#[test]
fn eval_order_is_fixed_and_subsets_keep_dataset_indices() {
    let ds = ramp(10);
    let l = BatchLoader::new(ds, LoaderConfig::eval(4, None), &Device::Cpu).unwrap();
    let b = collect(&l, 0, Some(&[9, 2, 5]));
    assert_eq!(b[0].0, vec![9, 2, 5]);
    // pixel / 255 without augmentation: sample 9's first pixel is 90
    assert!((b[0].1[0] - 90.0 / 255.0).abs() < 1e-7);
    assert!(matches!(
        l.epoch(0, Some(&[10])),
        Err(Error::IndexOutOfRange { index: 10, len: 10 })
    ));
    assert!(matches!(l.epoch(0, Some(&[])), Err(Error::Empty(_))));
    let drop = BatchLoader::new(
        ramp(10),
        LoaderConfig {
            drop_last: true,
            ..LoaderConfig::eval(4, None)
        },
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(collect(&drop, 0, None).len(), 2);
    assert_eq!(drop.num_batches(10), 2);
}

#[test]
fn flip_and_crop_move_pixels_as_expected() {
    // One 1×2×3 image [[0,1,2],[3,4,5]] (×1/255). With flip only, each draw is either the image
    // or its mirror [[2,1,0],[5,4,3]]; with pad-crop, a shifted copy with zero borders.
    let ds = Arc::new(
        InMemoryDataset::new(
            vec![0, 1, 2, 3, 4, 5],
            vec![0],
            ImageShape {
                channels: 1,
                height: 2,
                width: 3,
            },
            1,
        )
        .unwrap(),
    );
    let orig: Vec<f32> = (0..6).map(|v| v as f32 / 255.0).collect();
    let mirror: Vec<f32> = [2, 1, 0, 5, 4, 3].iter().map(|&v| v as f32 / 255.0).collect();
    let mut seen = (false, false);
    for seed in 0..32 {
        let l = BatchLoader::new(
            ds.clone(),
            LoaderConfig::train(
                1,
                Augment {
                    pad_crop: 0,
                    hflip: true,
                },
                None,
                seed,
            ),
            &Device::Cpu,
        )
        .unwrap();
        let px = collect(&l, 0, None)[0].1.clone();
        if px == orig {
            seen.0 = true;
        } else {
            assert_eq!(px, mirror);
            seen.1 = true;
        }
    }
    assert_eq!(seen, (true, true));
    for seed in 0..32 {
        let l = BatchLoader::new(
            ds.clone(),
            LoaderConfig::train(
                1,
                Augment {
                    pad_crop: 1,
                    hflip: false,
                },
                None,
                seed,
            ),
            &Device::Cpu,
        )
        .unwrap();
        let px = collect(&l, 0, None)[0].1.clone();
        // the output is the image shifted by some (dy, dx) ∈ {−1, 0, 1}², zero-filled
        let shifted = |dy: i32, dx: i32| -> Vec<f32> {
            (0..2)
                .flat_map(|y| (0..3).map(move |x| (y + dy, x + dx)))
                .map(|(sy, sx)| {
                    if (0..2).contains(&sy) && (0..3).contains(&sx) {
                        orig[(sy * 3 + sx) as usize]
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        assert!((-1..=1).any(|dy| (-1..=1).any(|dx| px == shifted(dy, dx))), "{px:?}");
    }
}

#[test]
fn normalisation_values_and_validation() {
    let ds = ramp(3);
    let norm = Normalize::new(vec![0.5], vec![0.25]).unwrap();
    let l = BatchLoader::new(ds.clone(), LoaderConfig::eval(3, Some(norm)), &Device::Cpu).unwrap();
    let px = collect(&l, 0, None)[0].1.clone();
    // sample 1, pixel 0 = 10: (10/255 − 0.5)/0.25
    assert!((px[6] - (10.0 / 255.0 - 0.5) / 0.25).abs() < 1e-6);
    assert!(Normalize::new(vec![0.5], vec![0.0]).is_err());
    assert!(
        BatchLoader::new(
            ds.clone(),
            LoaderConfig::eval(3, Some(Normalize::cifar10())),
            &Device::Cpu
        )
        .is_err()
    );
    assert!(BatchLoader::new(ds, LoaderConfig::eval(0, None), &Device::Cpu).is_err());
}

/// A user's data set that hands back samples of the wrong length, or labels outside its class
/// count, gets a typed error from the loader — not a panic inside a worker thread (which would
/// abort the process).
#[test]
fn a_user_dataset_with_bad_samples_is_a_typed_error_not_an_abort() {
    use std::sync::Arc;
    struct Bad {
        short_at: usize,
        label: u32,
        pixels: Vec<u8>,
    }
    impl quarc_data::Dataset for Bad {
        fn len(&self) -> usize {
            8
        }
        fn num_classes(&self) -> usize {
            2
        }
        fn image_shape(&self) -> quarc_data::ImageShape {
            quarc_data::ImageShape {
                channels: 1,
                height: 2,
                width: 2,
            }
        }
        fn image(&self, index: usize) -> quarc_data::Result<&[u8]> {
            Ok(if index == self.short_at {
                &self.pixels[..1]
            } else {
                &self.pixels[..]
            })
        }
        fn label(&self, _index: usize) -> quarc_data::Result<u32> {
            Ok(self.label)
        }
    }
    let run = |short_at: usize, label: u32| {
        let ds = Arc::new(Bad {
            short_at,
            label,
            pixels: vec![9; 4],
        });
        let loader =
            quarc_data::BatchLoader::new(ds, quarc_data::LoaderConfig::eval(4, None), &candle_core::Device::Cpu)
                .unwrap();
        loader
            .epoch(0, None)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .map(|b| b.len())
    };
    assert_eq!(run(usize::MAX, 1).unwrap(), 2);
    let e = run(5, 1).unwrap_err();
    assert!(e.to_string().contains("sample 5 has 1 bytes"), "{e}");
    assert!(run(usize::MAX, 7).is_err()); // label 7 of 2 classes
}
