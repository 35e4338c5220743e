//! Where quantized layers keep their parameters: a candle [`VarMap`] plus a name prefix.

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::{Error, Result};

/// A [`VarMap`] seen through a name prefix, handing out [`Var`]s.
///
/// Layer weights go through [`ParamStore::vb`] (candle-nn's own names, so full-precision
/// checkpoints load unchanged); quantizer parameters through [`ParamStore::var`] (`…wq.step`,
/// `…aq.offset`, …), in the same map, so `VarMap::all_vars`, `save` and `load` see them.
///
/// ```
/// use candle_core::{DType, Device};
/// let varmap = candle_nn::VarMap::new();
/// let store = quarc_quant_core::ParamStore::new(&varmap, DType::F32, &Device::Cpu).pp("conv1");
/// let v = store.pp("wq").var("step", 1, 0.0)?;
/// assert!(varmap.data().lock().unwrap().contains_key("conv1.wq.step"));
/// assert_eq!(v.as_tensor().to_vec1::<f32>()?, vec![0.0]);
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
#[derive(Clone)]
pub struct ParamStore<'a> {
    varmap: &'a VarMap,
    prefix: Vec<String>,
    dtype: DType,
    device: Device,
    calibration: Option<crate::Calibration>,
}

impl<'a> ParamStore<'a> {
    /// A store over `varmap` creating parameters of `dtype` on `device`.
    pub fn new(varmap: &'a VarMap, dtype: DType, device: &Device) -> Self {
        Self {
            varmap,
            prefix: Vec::new(),
            dtype,
            device: device.clone(),
            calibration: None,
        }
    }

    /// The same store, registering the quantized layers built through it with `calibration`
    /// (see [`crate::Calibration`]: one forward pass then calibrates them all).
    pub fn with_calibration(&self, calibration: &crate::Calibration) -> Self {
        let mut s = self.clone();
        s.calibration = Some(calibration.clone());
        s
    }

    /// The calibration switch layers built through this store register with, if any.
    pub fn calibration(&self) -> Option<&crate::Calibration> {
        self.calibration.as_ref()
    }

    /// The same store one name level deeper.
    pub fn pp(&self, name: impl ToString) -> Self {
        let mut s = self.clone();
        s.prefix.push(name.to_string());
        s
    }

    /// The full name of `name` under this prefix.
    pub fn path(&self, name: &str) -> String {
        let mut parts = self.prefix.clone();
        parts.push(name.to_string());
        parts.join(".")
    }

    /// The prefix itself (`a.b.c`).
    pub fn prefix(&self) -> String {
        self.prefix.join(".")
    }

    /// dtype of new parameters.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Device of new parameters.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The underlying map.
    pub fn varmap(&self) -> &'a VarMap {
        self.varmap
    }

    /// A candle-nn [`VarBuilder`] over the same map and prefix.
    pub fn vb(&self) -> VarBuilder<'a> {
        let vb = VarBuilder::from_varmap(self.varmap, self.dtype, &self.device);
        self.prefix.iter().fold(vb, |vb, p| vb.pp(p))
    }

    /// The variable `name` (under the prefix), created filled with `init` if the map lacks it.
    /// An existing variable of another shape is an error.
    pub fn var(&self, name: &str, shape: impl Into<Shape>, init: f64) -> Result<Var> {
        let shape = shape.into();
        let path = self.path(name);
        let mut data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| Error::config("VarMap lock poisoned"))?;
        if let Some(v) = data.get(&path) {
            if v.shape() != &shape {
                return Err(Error::ShapeMismatch {
                    context: format!("existing variable `{path}`"),
                    expected: shape.dims().to_vec(),
                    got: v.dims().to_vec(),
                });
            }
            return Ok(v.clone());
        }
        let t = (Tensor::ones(shape, self.dtype, &self.device)? * init)?;
        let v = Var::from_tensor(&t)?;
        data.insert(path, v.clone());
        Ok(v)
    }

    /// A deep copy of `value` as the variable `name` (under the prefix): created when the map
    /// lacks it, else the existing variable receives the values (another shape is an error).
    /// Never aliases `value`'s storage, also when `value` is itself a variable of another map.
    pub fn copy_into(&self, name: &str, value: &Tensor) -> Result<Var> {
        let v = self.var(name, value.shape().clone(), 0.0)?;
        v.set(&value.to_dtype(self.dtype)?.to_device(&self.device)?.copy()?)?;
        Ok(v)
    }
}
