//! Helpers shared by the combinators: stacking child columns and splitting them again.

use candle_core::{DType, Tensor};

use crate::{Result, StateRecord};

/// A child's raw scores as `(B, C)` f32.
pub(crate) fn as_columns(t: Tensor) -> Result<Tensor> {
    let t = t.to_dtype(DType::F32)?;
    Ok(if t.rank() == 1 { t.unsqueeze(1)? } else { t })
}

/// Splits `columns` into consecutive groups of the given sizes.
pub(crate) fn split<'a, 'b>(columns: &'b [&'a [f32]], sizes: &[usize]) -> Vec<&'b [&'a [f32]]> {
    let mut out = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &n in sizes {
        out.push(&columns[start..start + n]);
        start += n;
    }
    out
}

/// Prefixes every key of a child's state with `"{i}."`.
pub(crate) fn nest(i: usize, child: StateRecord, into: &mut StateRecord) {
    for (k, v) in child.entries {
        into.entries.insert(format!("{i}.{k}"), v);
    }
}

/// The entries of `state` under `"{i}."`, prefix removed.
pub(crate) fn unnest(i: usize, state: &StateRecord) -> StateRecord {
    let prefix = format!("{i}.");
    StateRecord {
        entries: state
            .entries
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
            .collect(),
    }
}
