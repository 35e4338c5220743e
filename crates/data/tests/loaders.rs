//! File formats (written here in their exact layout), corrupt files, the bundled subset and the
//! full Fashion-MNIST.

use std::path::PathBuf;

use quarc_data::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("quarc-data-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn toy(n: usize, shape: ImageShape, classes: usize) -> InMemoryDataset {
    let pixels: Vec<u8> = (0..n * shape.len()).map(|i| (i * 37 % 251) as u8).collect();
    let labels: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
    InMemoryDataset::new(pixels, labels, shape, classes).unwrap()
}

#[test]
fn idx_round_trip_raw_and_gzipped() {
    let d = dir("idx");
    let ds = toy(
        7,
        ImageShape {
            channels: 1,
            height: 3,
            width: 4,
        },
        10,
    );
    let (img, lab) = (d.join("img"), d.join("lab"));
    write_idx(&ds, &img, &lab).unwrap();
    assert_eq!(load_idx(&img, &lab, 10).unwrap(), ds);
    // gzipped copies
    for p in [&img, &lab] {
        let raw = std::fs::read(p).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &raw).unwrap();
        std::fs::write(p.with_extension("gz"), enc.finish().unwrap()).unwrap();
    }
    assert_eq!(
        load_idx(&img.with_extension("gz"), &lab.with_extension("gz"), 10).unwrap(),
        ds
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn corrupt_idx_files_are_typed_errors() {
    let d = dir("idx-bad");
    let ds = toy(
        5,
        ImageShape {
            channels: 1,
            height: 2,
            width: 2,
        },
        10,
    );
    let (img, lab) = (d.join("img"), d.join("lab"));
    write_idx(&ds, &img, &lab).unwrap();
    let bytes = std::fs::read(&img).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated body", bytes[..bytes.len() - 1].to_vec()),
        ("truncated header", bytes[..10].to_vec()),
        ("wrong magic", [&[0, 0, 8, 1][..], &bytes[4..]].concat()),
        ("bad gzip", vec![0x1f, 0x8b, 0, 1, 2, 3]),
    ];
    for (what, b) in cases {
        let p = d.join("bad");
        std::fs::write(&p, b).unwrap();
        assert!(matches!(load_idx(&p, &lab, 10), Err(Error::Corrupt { .. })), "{what}");
    }
    // label count mismatch and labels out of range
    let short = toy(
        4,
        ImageShape {
            channels: 1,
            height: 2,
            width: 2,
        },
        10,
    );
    write_idx(&short, &d.join("i4"), &d.join("l4")).unwrap();
    assert!(matches!(load_idx(&img, &d.join("l4"), 10), Err(Error::Corrupt { .. })));
    assert!(matches!(load_idx(&img, &lab, 3), Err(Error::Corrupt { .. })));
    assert!(matches!(load_idx(&d.join("missing"), &lab, 10), Err(Error::Io { .. })));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn cifar10_and_cifar100_binary_formats() {
    let d = dir("cifar");
    let shape = ImageShape {
        channels: 3,
        height: 32,
        width: 32,
    };
    let parts: Vec<InMemoryDataset> = (0..5).map(|k| toy(3 + k, shape, 10)).collect();
    for (k, p) in parts.iter().enumerate() {
        write_cifar10_bin(p, &d.join(format!("data_batch_{}.bin", k + 1))).unwrap();
    }
    write_cifar10_bin(&parts[0], &d.join("test_batch.bin")).unwrap();
    let train = load_cifar10(&d, Split::Train).unwrap();
    assert_eq!(train.len(), 3 + 4 + 5 + 6 + 7);
    assert_eq!(train.image(3).unwrap(), parts[1].image(0).unwrap()); // files concatenated in order
    assert_eq!(load_cifar10(&d, Split::Test).unwrap(), parts[0]);
    // A record's first byte is the label, then R, G, B planes.
    let raw = std::fs::read(d.join("test_batch.bin")).unwrap();
    assert_eq!(
        (raw.len(), raw[0], &raw[1..4]),
        (3 * 3073, 0, &parts[0].image(0).unwrap()[..3])
    );
    // CIFAR-100: coarse + fine labels.
    let fine = toy(6, shape, 100);
    let coarse: Vec<u32> = (0..6).map(|i| (i % 20) as u32).collect();
    write_cifar100_bin(&fine, &coarse, &d.join("train.bin")).unwrap();
    assert_eq!(load_cifar100(&d, Split::Train, Cifar100Labels::Fine).unwrap(), fine);
    assert_eq!(
        load_cifar100(&d, Split::Train, Cifar100Labels::Coarse)
            .unwrap()
            .labels(),
        coarse
    );
    // Truncated file, missing file.
    std::fs::write(d.join("test_batch.bin"), &raw[..raw.len() - 5]).unwrap();
    assert!(matches!(load_cifar10(&d, Split::Test), Err(Error::Corrupt { .. })));
    assert!(matches!(
        load_cifar100(&d, Split::Test, Cifar100Labels::Fine),
        Err(Error::NotFound { .. })
    ));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bundled_subset_is_class_balanced() {
    for (split, n) in [(Split::Train, 5000), (Split::Test, 1000)] {
        let ds = fashion_mnist::bundled_subset(split).unwrap();
        assert_eq!(ds.len(), n);
        assert_eq!(
            ds.image_shape(),
            ImageShape {
                channels: 1,
                height: 28,
                width: 28
            }
        );
        let mut counts = [0usize; 10];
        ds.labels().iter().for_each(|&y| counts[y as usize] += 1);
        assert!(counts.iter().all(|&c| c == n / 10), "{counts:?}");
    }
}

/// The full data set: opt-in, since a fresh clone has only the bundled subset. Install Debian's
/// `dataset-fashion-mnist` (or point `QUARC_FASHION_MNIST` at the four files) and run
/// `cargo test --release -p quarc-data --test loaders -- --ignored`; `.ci/run` does both.
#[test]
#[ignore = "needs the full Fashion-MNIST (apt-get install dataset-fashion-mnist, or QUARC_FASHION_MNIST=DIR); run with --ignored"]
fn full_fashion_mnist() {
    let t0 = std::time::Instant::now();
    let train =
        fashion_mnist::load(None, Split::Train).expect("full Fashion-MNIST (apt-get install -y dataset-fashion-mnist)");
    let test = fashion_mnist::load(None, Split::Test).unwrap();
    eprintln!(
        "loaded 70 000 Fashion-MNIST images in {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    let mut counts = [0usize; 10];
    train.labels().iter().for_each(|&y| counts[y as usize] += 1);
    assert_eq!(counts, [6000; 10]);
    // The bundled subset is the first 500 of each class of this file.
    let sub = fashion_mnist::bundled_subset(Split::Train).unwrap();
    assert_eq!(sub.image(0).unwrap(), train.image(0).unwrap());
    // A folder without the files falls through to the next place (here the Debian location).
    if std::env::var_os(fashion_mnist::ENV_VAR).is_none() {
        let found = fashion_mnist::locate(Some(std::path::Path::new("/nonexistent"))).unwrap();
        assert_eq!(found, PathBuf::from(fashion_mnist::DEBIAN_DIR));
    }
}

/// A gzip bomb — a valid IDX header declaring 10 images followed by megabytes of zeros that
/// compress to almost nothing — stops inflating at the declared size and is a typed error.
#[test]
fn gzip_inflation_stops_at_the_size_the_header_declares() {
    let d = dir("bomb");
    let mut header = vec![0, 0, 8, 3];
    for v in [10u32, 28, 28] {
        header.extend_from_slice(&v.to_be_bytes());
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &header).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        std::io::Write::write_all(&mut enc, &zeros).unwrap(); // 64 MiB of body
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let (img, lab) = (d.join("img.gz"), d.join("lab"));
    std::fs::write(&img, &bomb).unwrap();
    let labels = toy(
        10,
        ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        },
        10,
    );
    write_idx(&labels, &d.join("unused"), &lab).unwrap();
    let e = load_idx(&img, &lab, 10).unwrap_err();
    assert!(e.to_string().contains("inflates beyond the 7856 bytes"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

/// Class-balanced selection and the hold-out split group by the labels present: a label value
/// (or a reported class count) in the billions costs nothing.
#[test]
fn huge_label_values_and_class_counts_allocate_nothing_extra() {
    let shape = ImageShape {
        channels: 1,
        height: 1,
        width: 1,
    };
    let labels: Vec<u32> = (0..40).map(|i| if i % 2 == 0 { 3 } else { 3_000_000_000 }).collect();
    let ds = InMemoryDataset::new(vec![7; 40], labels, shape, 4_000_000_000).unwrap();
    let (train, held) = holdout_split(&ds, 10, 1).unwrap();
    assert_eq!((train.len(), held.len()), (30, 10));
    assert_eq!(held.labels().iter().filter(|&&l| l == 3).count(), 5);
}
