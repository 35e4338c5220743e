//! Fashion-MNIST: the subset shipped in this crate, and the full data set from disk.

use std::path::{Path, PathBuf};

use crate::cifar::Split;
use crate::idx::{from_idx_bytes, gunzip_if_needed, load_idx};
use crate::{Error, InMemoryDataset, Result};

/// Environment variable naming a folder with the full Fashion-MNIST IDX files.
pub const ENV_VAR: &str = "QUARC_FASHION_MNIST";
/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

const SUBSET_TRAIN_IMAGES: &[u8] = include_bytes!("../assets/fashion-mnist-subset/train-images-idx3-ubyte.gz");
const SUBSET_TRAIN_LABELS: &[u8] = include_bytes!("../assets/fashion-mnist-subset/train-labels-idx1-ubyte.gz");
const SUBSET_TEST_IMAGES: &[u8] = include_bytes!("../assets/fashion-mnist-subset/t10k-images-idx3-ubyte.gz");
const SUBSET_TEST_LABELS: &[u8] = include_bytes!("../assets/fashion-mnist-subset/t10k-labels-idx1-ubyte.gz");

/// Class names, by label.
pub const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The subset shipped with the crate (MIT licence, see `assets/fashion-mnist-subset/LICENSE`):
/// 5 000 training images (500 per class) and 1 000 test images (100 per class), in file order.
///
/// ```
/// use quarc_data::{fashion_mnist, Dataset, Split};
/// let train = fashion_mnist::bundled_subset(Split::Train)?;
/// assert_eq!((train.len(), train.num_classes()), (5000, 10));
/// # Ok::<(), quarc_data::Error>(())
/// ```
pub fn bundled_subset(split: Split) -> Result<InMemoryDataset> {
    let (img, lab) = match split {
        Split::Train => (SUBSET_TRAIN_IMAGES, SUBSET_TRAIN_LABELS),
        Split::Test => (SUBSET_TEST_IMAGES, SUBSET_TEST_LABELS),
    };
    let path = Path::new("<bundled fashion-mnist subset>");
    from_idx_bytes(
        &gunzip_if_needed(img.to_vec(), path)?,
        path,
        &gunzip_if_needed(lab.to_vec(), path)?,
        path,
        10,
    )
}

/// The folder with the full data set: `dir` if given, else `$QUARC_FASHION_MNIST`, else the
/// Debian location. The folder must hold `train-images-idx3-ubyte[.gz]` and friends.
pub fn locate(dir: Option<&Path>) -> Result<PathBuf> {
    let mut looked = Vec::new();
    let candidates = dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::var_os(ENV_VAR).map(PathBuf::from))
        .chain(std::iter::once(PathBuf::from(DEBIAN_DIR)));
    for c in candidates {
        if file(&c, "train-images-idx3-ubyte").is_some() {
            return Ok(c);
        }
        looked.push(c);
    }
    Err(Error::NotFound {
        what: "Fashion-MNIST".into(),
        looked,
        hint: format!(
            "on Debian: apt-get install -y dataset-fashion-mnist; or set {ENV_VAR} to a folder with the IDX files"
        ),
    })
}

fn file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Loads the full data set (60 000 training / 10 000 test images) found by [`locate`].
pub fn load(dir: Option<&Path>, split: Split) -> Result<InMemoryDataset> {
    let root = locate(dir)?;
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let need = |stem: String| {
        file(&root, &stem).ok_or_else(|| Error::NotFound {
            what: stem.clone(),
            looked: vec![root.clone()],
            hint: "the folder lacks this IDX file".into(),
        })
    };
    load_idx(
        &need(format!("{prefix}-images-idx3-ubyte"))?,
        &need(format!("{prefix}-labels-idx1-ubyte"))?,
        10,
    )
}
