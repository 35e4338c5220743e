//! Helpers shared by the combinators: stacking child columns and splitting them again.

use candle_core::{DType, Tensor};

use crate::{Result, StateRecord};

/// A child's raw scores as `(B, C)` f32.
pub(crate) fn as_columns(t: Tensor) -> Result<Tensor> {
    let t = t.to_dtype(DType::F32)?;
    Ok(if t.rank() == 1 { t.unsqueeze(1)? } else { t })
}

/// Splits `columns` into consecutive groups of the given sizes; a column count other than the
/// sizes' sum, or columns of different lengths, is an error (a user's `combine` may hand in
/// anything).
pub(crate) fn split<'a, 'b>(columns: &'b [&'a [f32]], sizes: &[usize]) -> Result<Vec<&'b [&'a [f32]]>> {
    let want: usize = sizes.iter().sum();
    if columns.len() != want {
        return Err(crate::Error::InvalidConfig(format!(
            "a combinator of {want} score columns was handed {}",
            columns.len()
        )));
    }
    if let Some(first) = columns.first()
        && columns.iter().any(|c| c.len() != first.len())
    {
        return Err(crate::Error::InvalidConfig(format!(
            "score columns of different lengths: {:?}",
            columns.iter().map(|c| c.len()).collect::<Vec<_>>()
        )));
    }
    let mut out = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &n in sizes {
        out.push(&columns[start..start + n]);
        start += n;
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_checks_the_column_count_and_lengths() {
        let (a, b, c) = ([1.0f32, 2.0], [3.0f32, 4.0], [5.0f32]);
        let cols: [&[f32]; 2] = [&a, &b];
        let groups = split(&cols, &[1, 1]).unwrap();
        assert_eq!((groups[0][0], groups[1][0]), (&a[..], &b[..]));
        assert!(split(&cols, &[1, 2]).is_err()); // would index past the end
        assert!(split(&cols, &[1]).is_err());
        let ragged: [&[f32]; 2] = [&a, &c];
        assert!(split(&ragged, &[1, 1]).is_err());
    }
}
