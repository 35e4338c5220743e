//! `ScoreTable`: raw per-sample scores of one full pass, keyed by dataset index.

use std::collections::HashMap;
use std::path::Path;

use crate::state::{Reader, f32_raw, read_bytes, u32_raw, write};
use crate::{Error, Result};

/// Collects the raw score columns of a pass over `num_samples` samples, batch by batch in any
/// order. Policy: a sample scored twice is [`Error::DuplicateIndex`], a NaN/∞ score is
/// [`Error::NonFinite`] naming the sample, and [`ScoreTable::ensure_complete`] reports samples
/// never scored. Shards scored by different workers [`merge`](ScoreTable::merge).
///
/// ```
/// use quarc_coreset::ScoreTable;
/// let mut t = ScoreTable::new(4, vec!["evs".into()])?;
/// t.record(&[2, 0], &[0.5, 0.1])?;
/// assert!(t.ensure_complete().is_err());
/// let mut shard = ScoreTable::new(4, vec!["evs".into()])?;
/// shard.record(&[3, 1], &[0.9, 0.2])?;
/// t.merge(&shard)?;
/// t.ensure_complete()?;
/// assert_eq!(t.column(0), &[0.1, 0.2, 0.5, 0.9]);
/// assert!(t.record(&[1], &[0.3]).is_err()); // scored twice
/// # Ok::<(), quarc_coreset::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreTable {
    names: Vec<String>,
    columns: Vec<Vec<f32>>,
    filled: Vec<bool>,
    count: usize,
}

const FORMAT: &str = "quarc-score-table/1";

impl ScoreTable {
    /// An empty table for `num_samples` samples with the given column names.
    pub fn new(num_samples: usize, names: Vec<String>) -> Result<Self> {
        if num_samples == 0 {
            return Err(Error::Empty("a score table needs at least one sample".into()));
        }
        if names.is_empty() {
            return Err(Error::InvalidConfig("a score table needs at least one column".into()));
        }
        Ok(Self {
            columns: vec![vec![0.0; num_samples]; names.len()],
            names,
            filled: vec![false; num_samples],
            count: 0,
        })
    }

    /// Number of samples.
    pub fn num_samples(&self) -> usize {
        self.filled.len()
    }

    /// Column names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of samples scored so far.
    pub fn scored(&self) -> usize {
        self.count
    }

    /// Records a batch: `scores` is row-major `(B, C)` for `indices` of length `B`.
    pub fn record(&mut self, indices: &[usize], scores: &[f32]) -> Result<()> {
        let c = self.names.len();
        if scores.len() != indices.len() * c {
            return Err(Error::ShapeMismatch {
                context: "scores of a batch".into(),
                expected: vec![indices.len(), c],
                got: vec![scores.len()],
            });
        }
        let n = self.num_samples();
        let mut seen = std::collections::HashSet::with_capacity(indices.len());
        for (row, &i) in indices.iter().enumerate() {
            if i >= n {
                return Err(Error::IndexOutOfRange {
                    index: i,
                    num_samples: n,
                });
            }
            if self.filled[i] || !seen.insert(i) {
                return Err(Error::DuplicateIndex { index: i });
            }
            if let Some(col) = (0..c).find(|&col| !scores[row * c + col].is_finite()) {
                return Err(Error::NonFinite {
                    what: format!("score `{}` of sample {i}", self.names[col]),
                });
            }
        }
        for (row, &i) in indices.iter().enumerate() {
            for col in 0..c {
                self.columns[col][i] = scores[row * c + col];
            }
            self.filled[i] = true;
        }
        self.count += indices.len();
        Ok(())
    }

    /// Samples not scored yet, ascending.
    pub fn missing(&self) -> Vec<usize> {
        self.filled
            .iter()
            .enumerate()
            .filter(|(_, f)| !**f)
            .map(|(i, _)| i)
            .collect()
    }

    /// `Ok` when every sample has been scored.
    pub fn ensure_complete(&self) -> Result<()> {
        if self.count == self.num_samples() {
            return Ok(());
        }
        let missing = self.missing();
        Err(Error::MissingScores {
            count: missing.len(),
            first: missing.into_iter().take(8).collect(),
        })
    }

    /// Column `c` (length `num_samples`; unscored samples hold 0).
    pub fn column(&self, c: usize) -> &[f32] {
        &self.columns[c]
    }

    /// All columns as slices.
    pub fn columns(&self) -> Vec<&[f32]> {
        self.columns.iter().map(Vec::as_slice).collect()
    }

    /// Adds the samples of another shard of the same pass; overlapping samples are an error.
    pub fn merge(&mut self, other: &ScoreTable) -> Result<()> {
        if other.names != self.names || other.num_samples() != self.num_samples() {
            return Err(Error::InvalidConfig(format!(
                "cannot merge a table of {} samples × {:?} into one of {} × {:?}",
                other.num_samples(),
                other.names,
                self.num_samples(),
                self.names
            )));
        }
        if let Some(i) = (0..self.num_samples()).find(|&i| self.filled[i] && other.filled[i]) {
            return Err(Error::DuplicateIndex { index: i });
        }
        for i in (0..self.num_samples()).filter(|&i| other.filled[i]) {
            for c in 0..self.names.len() {
                self.columns[c][i] = other.columns[c][i];
            }
            self.filled[i] = true;
        }
        self.count += other.count;
        Ok(())
    }

    /// Writes the table to `path` (safetensors, atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut tensors: Vec<_> = self
            .columns
            .iter()
            .enumerate()
            .map(|(c, v)| f32_raw(format!("column.{c}"), v))
            .collect();
        tensors.push(u32_raw(
            "filled".into(),
            &self.filled.iter().map(|&f| f as u32).collect::<Vec<_>>(),
        ));
        let mut meta = HashMap::new();
        meta.insert("quarc.format".into(), FORMAT.into());
        meta.insert(
            "quarc.columns".into(),
            serde_json::to_string(&self.names).map_err(|e| Error::InvalidConfig(e.to_string()))?,
        );
        write(path.as_ref(), tensors, meta)
    }

    /// Reads a table written by [`ScoreTable::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_bytes(path)?;
        let r = Reader::new(path, &bytes)?;
        if r.meta("quarc.format")? != FORMAT {
            return Err(r.corrupt(format!("format tag is not {FORMAT:?}")));
        }
        let names: Vec<String> =
            serde_json::from_str(r.meta("quarc.columns")?).map_err(|e| r.corrupt(format!("column names: {e}")))?;
        let filled: Vec<bool> = r.u32s("filled", None)?.into_iter().map(|f| f != 0).collect();
        let n = filled.len();
        let columns = (0..names.len())
            .map(|c| r.f32s(&format!("column.{c}"), Some(n)))
            .collect::<Result<Vec<_>>>()?;
        let mut table = Self::new(n, names).map_err(|e| r.corrupt(e.to_string()))?;
        table.count = filled.iter().filter(|f| **f).count();
        table.filled = filled;
        table.columns = columns;
        Ok(table)
    }
}
