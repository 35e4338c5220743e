//! Helpers shared by the trainer's integration tests.

use std::path::Path;

/// Named tensors of a file.
pub type Tensors = Vec<(String, Vec<f64>)>;

/// The tensors of a safetensors file by name, sorted, as f64 (exact for f32 and u32 values, so
/// equal lists mean bit-identical tensors).
#[allow(dead_code)] // not every test file uses every helper
pub fn tensors(path: &Path) -> Tensors {
    let mut v: Vec<_> = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| {
            let flat = t.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap();
            (k, flat.to_vec1::<f64>().unwrap())
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The first `per` samples of each class of `ds`, in data set order.
#[allow(dead_code)]
pub fn first_per_class(ds: &quarc_data::InMemoryDataset, per: usize) -> quarc_data::InMemoryDataset {
    use quarc_data::Dataset;
    let labels = ds.labels();
    let mut counts = vec![0usize; labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0)];
    let idx: Vec<usize> = (0..ds.len())
        .filter(|&i| {
            let c = &mut counts[labels[i] as usize];
            *c += 1;
            *c <= per
        })
        .collect();
    ds.take(&idx).unwrap()
}
