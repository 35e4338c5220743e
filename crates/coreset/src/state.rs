//! Scorer state records and the small safetensors helpers the crate's files share.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::{Error, Result};

/// Named vectors a stateful scorer checkpoints (forgetting counts, …). Combinators nest their
/// children's records under `"0."`, `"1."`, ….
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateRecord {
    /// The entries.
    pub entries: BTreeMap<String, Vec<f32>>,
}

/// One tensor to write: name, dtype, shape, little-endian bytes.
pub(crate) type RawTensor = (String, Dtype, Vec<usize>, Vec<u8>);

pub(crate) fn f32_raw(name: String, v: &[f32]) -> RawTensor {
    (
        name,
        Dtype::F32,
        vec![v.len()],
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

pub(crate) fn u32_raw(name: String, v: &[u32]) -> RawTensor {
    (
        name,
        Dtype::U32,
        vec![v.len()],
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// Serialises tensors and metadata to `path` atomically.
pub(crate) fn write(path: &Path, tensors: Vec<RawTensor>, metadata: HashMap<String, String>) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(n, dt, shape, data)| {
            TensorView::new(*dt, shape.clone(), data)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::InvalidConfig(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes =
        safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| Error::InvalidConfig(e.to_string()))?;
    Ok(quarc_base::atomic_write(path, &bytes)?)
}

/// A file read back: its bytes, for [`Reader`].
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Typed access to a safetensors buffer with `Corrupt` errors naming the file.
pub(crate) struct Reader<'a> {
    path: &'a Path,
    st: SafeTensors<'a>,
    pub metadata: HashMap<String, String>,
}

impl<'a> Reader<'a> {
    pub fn new(path: &'a Path, bytes: &'a [u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Self::corrupt_at(path, format!("not a safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| Self::corrupt_at(path, e.to_string()))?;
        Ok(Self {
            path,
            st,
            metadata: header.metadata().clone().unwrap_or_default(),
        })
    }

    fn corrupt_at(path: &Path, reason: String) -> Error {
        Error::Corrupt {
            path: path.to_path_buf(),
            reason,
        }
    }

    pub fn corrupt(&self, reason: impl Into<String>) -> Error {
        Self::corrupt_at(self.path, reason.into())
    }

    pub fn meta(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| self.corrupt(format!("metadata `{key}` missing")))
    }

    pub fn names(&self) -> Vec<String> {
        self.st.names().into_iter().map(str::to_string).collect()
    }

    fn raw(&self, name: &str, dtype: Dtype, len: Option<usize>) -> Result<&'a [u8]> {
        let t = self
            .st
            .tensor(name)
            .map_err(|_| self.corrupt(format!("tensor `{name}` missing")))?;
        if t.dtype() != dtype || t.shape().len() != 1 || len.is_some_and(|l| t.shape()[0] != l) {
            return Err(self.corrupt(format!(
                "tensor `{name}`: {:?} {:?}, expected {dtype:?} [{len:?}]",
                t.dtype(),
                t.shape()
            )));
        }
        Ok(t.data())
    }

    pub fn f32s(&self, name: &str, len: Option<usize>) -> Result<Vec<f32>> {
        Ok(self
            .raw(name, Dtype::F32, len)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub fn u32s(&self, name: &str, len: Option<usize>) -> Result<Vec<u32>> {
        Ok(self
            .raw(name, Dtype::U32, len)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}
