//! CIFAR-10 and CIFAR-100 binary versions.

use std::path::Path;

use crate::idx::read_maybe_gz;
use crate::{Dataset, Error, ImageShape, InMemoryDataset, Result};

const PIXELS: usize = 3 * 32 * 32;

/// Training or test split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training set.
    Train,
    /// The test set.
    Test,
}

/// CIFAR-100's two label sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cifar100Labels {
    /// 100 fine classes.
    Fine,
    /// 20 coarse superclasses.
    Coarse,
}

fn parse(
    path: &Path,
    label_bytes: usize,
    pick: usize,
    num_classes: usize,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<()> {
    let bytes = read_maybe_gz(path)?;
    let record = label_bytes + PIXELS;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            reason: format!("{} bytes is not a whole number of {record}-byte records", bytes.len()),
        });
    }
    for (k, r) in bytes.chunks_exact(record).enumerate() {
        let label = u32::from(r[pick]);
        if label as usize >= num_classes {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                reason: format!("record {k}: label {label} ≥ {num_classes}"),
            });
        }
        labels.push(label);
        pixels.extend_from_slice(&r[label_bytes..]);
    }
    Ok(())
}

fn files(dir: &Path, names: &[&str]) -> Result<Vec<std::path::PathBuf>> {
    let paths: Vec<_> = names.iter().map(|n| dir.join(n)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        return Err(Error::NotFound {
            what: format!("CIFAR file {}", missing.display()),
            looked: vec![dir.to_path_buf()],
            hint: "download the binary version (cifar-10-binary.tar.gz / cifar-100-binary.tar.gz) and extract it; pass the folder that holds the .bin files".into(),
        });
    }
    Ok(paths)
}

/// Loads CIFAR-10 (binary version) from `dir` holding `data_batch_1.bin` … `data_batch_5.bin`
/// and `test_batch.bin`. Records: 1 label byte + 3072 pixel bytes (R, G, B planes).
pub fn load_cifar10(dir: &Path, split: Split) -> Result<InMemoryDataset> {
    let names: Vec<&str> = match split {
        Split::Train => vec![
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
        ],
        Split::Test => vec!["test_batch.bin"],
    };
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for p in files(dir, &names)? {
        parse(&p, 1, 0, 10, &mut pixels, &mut labels)?;
    }
    InMemoryDataset::new(
        pixels,
        labels,
        ImageShape {
            channels: 3,
            height: 32,
            width: 32,
        },
        10,
    )
}

/// Loads CIFAR-100 (binary version) from `dir` holding `train.bin` and `test.bin`. Records:
/// coarse label byte, fine label byte, 3072 pixel bytes.
pub fn load_cifar100(dir: &Path, split: Split, labels_kind: Cifar100Labels) -> Result<InMemoryDataset> {
    let name = match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    };
    let (pick, classes) = match labels_kind {
        Cifar100Labels::Coarse => (0, 20),
        Cifar100Labels::Fine => (1, 100),
    };
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for p in files(dir, &[name])? {
        parse(&p, 2, pick, classes, &mut pixels, &mut labels)?;
    }
    InMemoryDataset::new(
        pixels,
        labels,
        ImageShape {
            channels: 3,
            height: 32,
            width: 32,
        },
        classes,
    )
}

/// Writes a 3×32×32 data set as one CIFAR-10 binary file (tests, synthetic runs).
pub fn write_cifar10_bin(ds: &dyn Dataset, path: &Path) -> Result<()> {
    if ds.image_shape()
        != (ImageShape {
            channels: 3,
            height: 32,
            width: 32,
        })
    {
        return Err(Error::InvalidConfig("CIFAR-10 binary holds 3×32×32 images".into()));
    }
    let mut out = Vec::with_capacity(ds.len() * (PIXELS + 1));
    for i in 0..ds.len() {
        out.push(ds.label(i)? as u8);
        out.extend_from_slice(ds.image(i)?);
    }
    quarc_base::atomic_write(path, &out).map_err(|e| Error::InvalidConfig(e.to_string()))
}

/// Writes a 3×32×32 data set as one CIFAR-100 binary file with the given coarse and fine labels.
pub fn write_cifar100_bin(ds: &dyn Dataset, coarse: &[u32], path: &Path) -> Result<()> {
    if coarse.len() != ds.len() {
        return Err(Error::InvalidConfig("one coarse label per sample".into()));
    }
    let mut out = Vec::with_capacity(ds.len() * (PIXELS + 2));
    for (i, &c) in coarse.iter().enumerate() {
        out.push(c as u8);
        out.push(ds.label(i)? as u8);
        out.extend_from_slice(ds.image(i)?);
    }
    quarc_base::atomic_write(path, &out).map_err(|e| Error::InvalidConfig(e.to_string()))
}
