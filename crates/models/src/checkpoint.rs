//! Checkpoints: save a model's `VarMap` atomically, load one (full or partial) back.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use candle_nn::VarMap;

use crate::{Error, Result};

/// What a load did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Names copied from the file, sorted.
    pub loaded: Vec<String>,
    /// Model variables the file lacks (e.g. quantizer parameters when loading a full-precision
    /// checkpoint into a quantized twin: calibrate them after loading), sorted.
    pub missing: Vec<String>,
    /// File tensors the model does not have, sorted.
    pub unexpected: Vec<String>,
    /// Tensors skipped by a lenient load, with the reason, sorted.
    pub rejected: Vec<(String, String)>,
}

/// Saves every variable of `varmap` to a safetensors file, atomically (temp file + rename).
pub fn save(varmap: &VarMap, path: impl AsRef<Path>) -> Result<()> {
    let tensors: HashMap<String, Tensor> = {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::InvalidConfig("VarMap lock poisoned".into()))?;
        data.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    };
    save_tensors(&tensors, path)
}

/// Saves named tensors to a safetensors file, atomically (temp file, fsync, rename).
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::Checkpoint {
        path: path.into(),
        reason: "no file name".into(),
    })?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let io = |e: std::io::Error| Error::Checkpoint {
        path: path.into(),
        reason: e.to_string(),
    };
    let result = candle_core::safetensors::save(tensors, &tmp)
        .map_err(Error::from)
        .and_then(|_| std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io))
        .and_then(|_| std::fs::rename(&tmp, path).map_err(io))
        .and_then(|_| quarc_quant_core::sync_dir(dir).map_err(io));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    tracing::debug!(path = %path.display(), tensors = tensors.len(), ok = result.is_ok(), "checkpoint written");
    result
}

/// How [`load_with`] treats what does not fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadMode {
    /// A tensor of another dtype than its variable, a non-finite value, a negative BatchNorm
    /// running variance, or a file of which no tensor matches the model are errors (the default).
    #[default]
    Strict,
    /// The same cases are reported (`LoadReport::rejected`) and those tensors skipped; dtypes are
    /// converted; a file that matches nothing loads nothing.
    Lenient,
}

/// Copies the tensors of `path` into the variables of `varmap` with the same names, strictly
/// (see [`LoadMode::Strict`]). A shape mismatch is an error (nothing is changed then); names only
/// on one side are reported. Loading a full-precision checkpoint into a quantized twin is this
/// call: the twin's quantizer variables come back as `missing`.
pub fn load(varmap: &VarMap, path: impl AsRef<Path>) -> Result<LoadReport> {
    load_with(varmap, path, LoadMode::Strict)
}

/// Why a tensor of the file cannot go into its variable, if it cannot.
fn reject_reason(name: &str, t: &Tensor, var: &candle_core::Var) -> Result<Option<String>> {
    if t.dtype() != var.dtype() {
        return Ok(Some(format!(
            "dtype {:?} in the file, {:?} in the model",
            t.dtype(),
            var.dtype()
        )));
    }
    let v = t.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    if v.iter().any(|x| !x.is_finite()) {
        return Ok(Some("non-finite values".into()));
    }
    if name.ends_with("running_var") && v.iter().any(|&x| x < 0.0) {
        return Ok(Some("a negative BatchNorm running variance".into()));
    }
    Ok(None)
}

/// [`load`] with a choice of [`LoadMode`].
pub fn load_with(varmap: &VarMap, path: impl AsRef<Path>, mode: LoadMode) -> Result<LoadReport> {
    let path = path.as_ref();
    let device = {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::InvalidConfig("VarMap lock poisoned".into()))?;
        data.values()
            .next()
            .map(|v| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu)
    };
    let bad = |reason: String| Error::Checkpoint {
        path: path.into(),
        reason,
    };
    let file = candle_core::safetensors::load(path, &device).map_err(|e| bad(e.to_string()))?;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::InvalidConfig("VarMap lock poisoned".into()))?;
    let mut report = LoadReport::default();
    for (name, t) in &file {
        let Some(v) = data.get(name) else {
            report.unexpected.push(name.clone());
            continue;
        };
        if v.dims() != t.dims() {
            return Err(Error::CheckpointShape {
                path: path.into(),
                name: name.clone(),
                file: t.dims().to_vec(),
                model: v.dims().to_vec(),
            });
        }
        match (reject_reason(name, t, v)?, mode) {
            (None, _) => report.loaded.push(name.clone()),
            (Some(r), LoadMode::Strict) => return Err(bad(format!("`{name}`: {r}"))),
            (Some(r), LoadMode::Lenient) if r.starts_with("dtype") => report.loaded.push(name.clone()),
            (Some(r), LoadMode::Lenient) => report.rejected.push((name.clone(), r)),
        }
    }
    if mode == LoadMode::Strict && report.loaded.is_empty() && !data.is_empty() {
        return Err(bad(format!(
            "none of its {} tensors matches a variable of the model (file names like {:?})",
            file.len(),
            file.keys().take(3).collect::<Vec<_>>()
        )));
    }
    for name in &report.loaded {
        data[name].set(&file[name].to_dtype(data[name].dtype())?)?;
    }
    report.missing = data.keys().filter(|k| !file.contains_key(*k)).cloned().collect();
    report.loaded.sort();
    report.missing.sort();
    report.unexpected.sort();
    report.rejected.sort();
    Ok(report)
}

/// Copies every variable of `from` into the variable of the same name in `to`: a **deep copy**
/// (the twin never shares storage with the reference, so training one cannot change the other),
/// converted to `to`'s dtype and device. Use it to move a trained full-precision model into its
/// quantized twin; the twin's quantizer parameters come back as `missing` (calibrate them next).
/// A shape mismatch is an error before anything is changed, and so are two maps with no name in
/// common (nothing would be copied) and `from` and `to` being the same map.
pub fn transfer(from: &VarMap, to: &VarMap) -> Result<LoadReport> {
    if std::ptr::eq(from, to) {
        return Err(Error::InvalidConfig("transfer from a VarMap into itself".into()));
    }
    let source: std::collections::BTreeMap<String, Tensor> = {
        let data = from
            .data()
            .lock()
            .map_err(|_| Error::InvalidConfig("VarMap lock poisoned".into()))?;
        data.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    };
    let data = to
        .data()
        .lock()
        .map_err(|_| Error::InvalidConfig("VarMap lock poisoned".into()))?;
    let mut report = LoadReport::default();
    for (name, t) in &source {
        match data.get(name) {
            Some(v) if v.dims() != t.dims() => {
                return Err(Error::TransferShape {
                    name: name.clone(),
                    from: t.dims().to_vec(),
                    to: v.dims().to_vec(),
                });
            }
            Some(_) => report.loaded.push(name.clone()),
            None => report.unexpected.push(name.clone()),
        }
    }
    if report.loaded.is_empty() && !source.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "transfer: none of the {} source variables has a namesake in the target (source names like {:?})",
            source.len(),
            source.keys().take(3).collect::<Vec<_>>()
        )));
    }
    for name in &report.loaded {
        let v = &data[name];
        v.set(&source[name].to_dtype(v.dtype())?.to_device(v.device())?.copy()?)?;
    }
    report.missing = data.keys().filter(|k| !source.contains_key(*k)).cloned().collect();
    report.loaded.sort();
    report.missing.sort();
    report.unexpected.sort();
    Ok(report)
}

/// Number of trainable parameters (BatchNorm running statistics and observer state excluded).
pub fn count_parameters(varmap: &VarMap) -> usize {
    varmap
        .data()
        .lock()
        .map(|d| {
            d.iter()
                .filter(|(n, _)| !quarc_quant_core::is_buffer(n))
                .map(|(_, v)| v.elem_count())
                .sum()
        })
        .unwrap_or(0)
}
