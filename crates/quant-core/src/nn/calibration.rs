//! One-call calibration: an ordinary forward pass of any model initialises every quantized layer
//! that was built through a [`ParamStore`](crate::ParamStore) carrying the same [`Calibration`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Error, Result};

/// What one layer's calibration saw and set.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibratedLayer {
    /// The layer's parameter prefix (`block1.conv`).
    pub name: String,
    /// The weight quantizer's kind (`"lsq"`, …; `"identity"` when the weight stays FP).
    pub weight: &'static str,
    /// The input quantizer's kind, `None` when the input stays FP.
    pub activation: Option<&'static str>,
    /// The shape of the input the layer was calibrated on.
    pub input_shape: Vec<usize>,
    /// The smallest and the largest input value seen.
    pub input_range: (f32, f32),
}

/// What [`Calibration::run`] initialised, in the order the forward pass reached the layers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CalibrationReport {
    /// One entry per calibrated layer.
    pub layers: Vec<CalibratedLayer>,
}

impl CalibrationReport {
    /// The entry of layer `name`.
    pub fn layer(&self, name: &str) -> Option<&CalibratedLayer> {
        self.layers.iter().find(|l| l.name == name)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Layers with at least one quantizer, in construction order.
    registered: Vec<String>,
    calibrated: Vec<CalibratedLayer>,
}

#[derive(Debug, Default)]
struct Inner {
    active: AtomicBool,
    state: Mutex<State>,
}

/// A switch shared by the quantized layers of one model. While [`Calibration::run`] executes the
/// model's own forward pass, each registered layer initialises its quantizers from the input it
/// receives (weight steps from the weights, activation ranges from the data) before computing
/// its output; afterwards every registered layer must have been reached, or the error names the
/// ones that were not.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use quarc_quant_core::{Calibration, LayerPosition, ParamStore, QLinear, QatConfig};
/// let varmap = candle_nn::VarMap::new();
/// let calibration = Calibration::new();
/// let store = ParamStore::new(&varmap, DType::F32, &Device::Cpu).with_calibration(&calibration);
/// let quant = QatConfig::lsq(4, 4)?.layer(LayerPosition::Middle);
/// let fc1 = QLinear::new(8, 8, true, &quant, &store.pp("fc1"))?;
/// let fc2 = QLinear::new(8, 2, true, &quant, &store.pp("fc2"))?;
/// let x = Tensor::rand(0f32, 1.0, (4, 8), &Device::Cpu)?;
/// let report = calibration.run(|| fc2.forward_t(&fc1.forward_t(&x, false)?.relu()?, false))?;
/// assert_eq!(report.layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["fc1", "fc2"]);
/// // a forward that skips a layer is an error naming it
/// let err = calibration.run(|| fc1.forward_t(&x, false)).unwrap_err();
/// assert!(err.to_string().contains("fc2"));
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    inner: Arc<Inner>,
}

/// Turns the switch off when the forward pass ends, also on an error or a panic.
struct Active<'a>(&'a AtomicBool);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Calibration {
    /// A switch with no layers yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> Result<MutexGuard<'_, State>> {
        self.inner
            .state
            .lock()
            .map_err(|_| Error::config("the calibration state's lock is poisoned"))
    }

    /// Registers a quantized layer; two layers of one name are an error.
    pub(crate) fn register(&self, name: &str) -> Result<()> {
        let mut s = self.state()?;
        if s.registered.iter().any(|n| n == name) {
            return Err(Error::config(format!(
                "two quantized layers are named `{name}`: give each layer its own prefix"
            )));
        }
        s.registered.push(name.to_string());
        Ok(())
    }

    /// Whether a calibration pass is running.
    pub(crate) fn is_active(&self) -> bool {
        self.inner.active.load(Ordering::SeqCst)
    }

    /// Whether `name` was already calibrated in this pass (a layer called twice keeps the
    /// calibration of its first call).
    pub(crate) fn is_done(&self, name: &str) -> Result<bool> {
        Ok(self.state()?.calibrated.iter().any(|l| l.name == name))
    }

    pub(crate) fn record(&self, layer: CalibratedLayer) -> Result<()> {
        self.state()?.calibrated.push(layer);
        Ok(())
    }

    /// The registered layers (those with at least one quantizer), in construction order.
    pub fn layers(&self) -> Vec<String> {
        self.state().map(|s| s.registered.clone()).unwrap_or_default()
    }

    /// Runs `forward` (one ordinary forward pass of the model over a calibration batch) with
    /// calibration on, and reports what was initialised. A registered layer that the pass did not
    /// reach is an [`Error::Uncalibrated`] naming it; the forward's own error is returned as is.
    pub fn run<T, E: From<Error>>(
        &self,
        forward: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<CalibrationReport, E> {
        self.state()?.calibrated.clear();
        {
            self.inner.active.store(true, Ordering::SeqCst);
            let _off = Active(&self.inner.active);
            forward()?;
        }
        let s = self.state()?;
        let reached: BTreeSet<&str> = s.calibrated.iter().map(|l| l.name.as_str()).collect();
        let missing: Vec<String> = s
            .registered
            .iter()
            .filter(|n| !reached.contains(n.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Error::Uncalibrated { layers: missing }.into());
        }
        tracing::debug!(layers = s.calibrated.len(), "calibration pass done");
        Ok(CalibrationReport {
            layers: s.calibrated.clone(),
        })
    }
}
