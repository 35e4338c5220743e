//! A guard against candle's silent gradient cuts.
//!
//! candle returns *no* gradient (not zeros) for a variable the loss does not reach: after
//! `apply_op*_no_bwd`, a bare `round()`, a `detach()` in the wrong place, or a quantizer that
//! was never called. The optimiser then silently skips the variable. Check after `backward`.

use candle_core::backprop::GradStore;
use candle_core::{DType, Var};
use candle_nn::VarMap;

use crate::{Error, Result};

/// Name suffixes of variables that are state, not parameters: they never get gradients.
pub const BUFFER_SUFFIXES: &[&str] = &["running_mean", "running_var", "obs_min", "obs_max", "obs_count"];

/// Whether `name` is a buffer (BatchNorm running statistics, observer state).
pub fn is_buffer(name: &str) -> bool {
    BUFFER_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Which trainable variables received no gradient, or only zeros.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GradientReport {
    /// Variables with no gradient at all (sorted by name).
    pub missing: Vec<String>,
    /// Variables whose gradient is exactly zero everywhere (sorted by name). Legitimate for
    /// a quantizer whose inputs are all inside its range, suspicious when persistent.
    pub all_zero: Vec<String>,
    /// Number of trainable variables checked.
    pub checked: usize,
}

impl GradientReport {
    /// Checks every non-buffer variable of `varmap` (see [`is_buffer`]) against `grads`.
    pub fn from_varmap(varmap: &VarMap, grads: &GradStore) -> Result<Self> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::config("VarMap lock poisoned"))?;
        let vars: Vec<(String, Var)> = data
            .iter()
            .filter(|(n, _)| !is_buffer(n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        drop(data);
        Self::from_vars(vars.iter().map(|(n, v)| (n.as_str(), v)), grads)
    }

    /// Checks the given `(name, var)` pairs against `grads`.
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a Var)>, grads: &GradStore) -> Result<Self> {
        let mut report = Self::default();
        for (name, var) in vars {
            report.checked += 1;
            match grads.get(var.as_tensor()) {
                None => report.missing.push(name.to_string()),
                Some(g) => {
                    let max = g.abs()?.to_dtype(DType::F64)?.max_all()?.to_scalar::<f64>()?;
                    if max == 0.0 {
                        report.all_zero.push(name.to_string());
                    }
                }
            }
        }
        report.missing.sort();
        report.all_zero.sort();
        Ok(report)
    }

    /// `Ok` when every checked variable has a gradient, else [`Error::NoGradient`].
    pub fn ensure_all(&self) -> Result<()> {
        if self.missing.is_empty() {
            Ok(())
        } else {
            Err(Error::NoGradient {
                names: self.missing.clone(),
            })
        }
    }
}

/// Errors with the names of every trainable variable of `varmap` that got no gradient.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let varmap = candle_nn::VarMap::new();
/// let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let a = vb.get_with_hints(1, "a", candle_nn::Init::Const(1.0))?;
/// let _unused = vb.get_with_hints(1, "b", candle_nn::Init::Const(1.0))?;
/// let grads = (a * 2.0)?.sum_all()?.backward()?;
/// let err = quarc_quant_core::check_gradients(&varmap, &grads).unwrap_err();
/// assert!(err.to_string().contains("b"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_gradients(varmap: &VarMap, grads: &GradStore) -> Result<()> {
    GradientReport::from_varmap(varmap, grads)?.ensure_all()
}
