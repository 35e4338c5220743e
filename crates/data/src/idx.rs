//! IDX files (MNIST, Fashion-MNIST), gzipped or raw.

use std::io::Read;
use std::path::Path;

use crate::{Error, ImageShape, InMemoryDataset, Result};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Reads a file, gunzipping it when it starts with the gzip magic bytes.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    gunzip_if_needed(raw, path)
}

/// Slack allowed beyond the size a file declares for itself.
const INFLATE_SLACK: usize = 1 << 16;

/// What the first bytes of an inflated stream say its whole size is: an IDX header's counts, or
/// `None` (no IDX magic).
fn idx_declared_size(head: &[u8]) -> Option<usize> {
    let word = |at: usize| {
        head.get(at..at + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
    };
    match word(0)? as u32 {
        IMAGES_MAGIC => 16usize.checked_add(word(4)?.checked_mul(word(8)?)?.checked_mul(word(12)?)?),
        LABELS_MAGIC => 8usize.checked_add(word(4)?),
        _ => None,
    }
}

/// Inflates a gzip stream, or returns `raw` as it is when it does not start with the gzip magic.
/// The output is capped at the size the file declares — its IDX header's counts, else the gzip
/// trailer's length — plus a little slack, so a small file cannot inflate into gigabytes
/// before the size checks run.
pub(crate) fn gunzip_if_needed(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let bad = |e: std::io::Error| corrupt(format!("bad gzip stream: {e}"));
    let trailer = raw
        .len()
        .checked_sub(4)
        .map(|i| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]) as usize);
    let mut decoder = flate2::read::GzDecoder::new(raw.as_slice());
    let mut head = Vec::new();
    (&mut decoder).take(16).read_to_end(&mut head).map_err(bad)?;
    let declared = idx_declared_size(&head).or(trailer).unwrap_or(0);
    let limit = declared.saturating_add(INFLATE_SLACK);
    let mut out = head;
    (&mut decoder)
        .take(limit.saturating_sub(out.len()) as u64 + 1)
        .read_to_end(&mut out)
        .map_err(bad)?;
    if out.len() > limit {
        return Err(corrupt(format!(
            "the gzip stream inflates beyond the {declared} bytes the file declares"
        )));
    }
    Ok(out)
}

fn be_u32(b: &[u8], at: usize, path: &Path) -> Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| Error::Corrupt {
            path: path.to_path_buf(),
            reason: "truncated header".into(),
        })
}

/// Parses IDX image bytes: `(count, rows, cols, pixels)`.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let magic = be_u32(bytes, 0, path)?;
    if magic != IMAGES_MAGIC {
        return Err(corrupt(format!(
            "magic {magic:#010x}, expected {IMAGES_MAGIC:#010x} (IDX images)"
        )));
    }
    let (n, rows, cols) = (
        be_u32(bytes, 4, path)? as usize,
        be_u32(bytes, 8, path)? as usize,
        be_u32(bytes, 12, path)? as usize,
    );
    let expected = n
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| corrupt("sizes overflow".into()))?;
    let body = &bytes[16..];
    if body.len() != expected {
        return Err(corrupt(format!(
            "{n} images of {rows}×{cols} need {expected} bytes, the file has {}",
            body.len()
        )));
    }
    Ok((n, rows, cols, body.to_vec()))
}

/// Parses IDX label bytes.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u32>> {
    let magic = be_u32(bytes, 0, path)?;
    if magic != LABELS_MAGIC {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            reason: format!("magic {magic:#010x}, expected {LABELS_MAGIC:#010x} (IDX labels)"),
        });
    }
    let n = be_u32(bytes, 4, path)? as usize;
    let body = &bytes[8..];
    if body.len() != n {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            reason: format!("{n} labels declared, {} bytes present", body.len()),
        });
    }
    Ok(body.iter().map(|&b| u32::from(b)).collect())
}

/// Builds a data set from IDX image and label bytes (already decompressed); the paths name
/// the sources in errors.
pub fn from_idx_bytes(
    images: &[u8],
    images_path: &Path,
    labels: &[u8],
    labels_path: &Path,
    num_classes: usize,
) -> Result<InMemoryDataset> {
    let (n, rows, cols, pixels) = parse_images(images, images_path)?;
    let labels = parse_labels(labels, labels_path)?;
    let corrupt = |reason: String| Error::Corrupt {
        path: labels_path.to_path_buf(),
        reason,
    };
    if labels.len() != n {
        return Err(corrupt(format!("{} labels for {n} images", labels.len())));
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l as usize >= num_classes) {
        return Err(corrupt(format!(
            "label {label} of sample {index} ≥ {num_classes} classes"
        )));
    }
    InMemoryDataset::new(
        pixels,
        labels,
        ImageShape {
            channels: 1,
            height: rows,
            width: cols,
        },
        num_classes,
    )
}

/// Loads an IDX image file and its label file (each gzipped or raw).
///
/// ```no_run
/// let ds = quarc_data::load_idx(
///     "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz".as_ref(),
///     "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz".as_ref(), 10)?;
/// # Ok::<(), quarc_data::Error>(())
/// ```
pub fn load_idx(images: &Path, labels: &Path, num_classes: usize) -> Result<InMemoryDataset> {
    from_idx_bytes(
        &read_maybe_gz(images)?,
        images,
        &read_maybe_gz(labels)?,
        labels,
        num_classes,
    )
}

/// Writes a data set of single-channel images as raw IDX files (for tests and tools).
pub fn write_idx(ds: &InMemoryDataset, images: &Path, labels: &Path) -> Result<()> {
    use crate::Dataset;
    let s = ds.image_shape();
    if s.channels != 1 {
        return Err(Error::InvalidConfig("IDX holds single-channel images".into()));
    }
    let mut img = Vec::with_capacity(16 + ds.len() * s.len());
    for v in [IMAGES_MAGIC, ds.len() as u32, s.height as u32, s.width as u32] {
        img.extend_from_slice(&v.to_be_bytes());
    }
    let mut lab = Vec::with_capacity(8 + ds.len());
    lab.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    lab.extend_from_slice(&(ds.len() as u32).to_be_bytes());
    for i in 0..ds.len() {
        img.extend_from_slice(ds.image(i)?);
        lab.push(ds.label(i)? as u8);
    }
    quarc_base::atomic_write(images, &img).map_err(|e| Error::InvalidConfig(e.to_string()))?;
    quarc_base::atomic_write(labels, &lab).map_err(|e| Error::InvalidConfig(e.to_string()))
}
