//! The model builder: one model definition gives the full-precision model and its quantized
//! twin, with the first/last-layer policy and per-layer overrides applied by name.

mod layers;
mod spec;

use std::cell::RefCell;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use quarc_quant_core::{Calibration, CalibrationReport, ModelOutput, QatConfig};

pub use layers::{LayerInfo, Layers};
pub use spec::{ConvSpec, LayerOverride, LinearSpec, name_matches};

use crate::init::{InitScheme, Initializer};
use crate::{Error, Mode, Model, Result};

/// Builds a model — yours or one of quarc's — into a `VarMap`, in full precision or as the
/// quantized twin, from **one** constructor written against [`Layers`].
///
/// The constructor runs twice for a quantized build: once into a scratch map to learn the
/// layers' names and order (the first layer built is the first layer, the last is the last, for
/// the [`QatConfig`]'s first/last-layer policy; overrides are checked against these names), then
/// for real. Weights are drawn from `seed` in build order, so the same seed and constructor give
/// the same weights everywhere.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use candle_nn::VarMap;
/// use quarc_models::{ConvSpec, LayerOverride, Layers, LinearSpec, ModelBuilder};
/// use quarc_quant_core::{QConv2d, QLinear, QatConfig};
///
/// struct Tiny { conv: QConv2d, fc: QLinear }
/// fn tiny(b: &Layers) -> quarc_models::Result<Tiny> {
///     Ok(Tiny { conv: b.conv2d("conv", ConvSpec::new(1, 4, 3))?, fc: b.linear("fc", LinearSpec::new(4, 10))? })
/// }
/// let dev = Device::Cpu;
/// let (fp_vars, q_vars) = (VarMap::new(), VarMap::new());
/// let fp = ModelBuilder::new(&fp_vars, &dev).seed(0).build(tiny)?;
/// let q = ModelBuilder::new(&q_vars, &dev)
///     .qat(QatConfig::lsq(2, 2)?)                     // first (conv) and last (fc) layers stay FP …
///     .override_layers("fc", LayerOverride::Bits { weight: 8, activation: 8 }) // … except: fc at 8 bits
///     .build(tiny)?;
/// assert_eq!(q.layers[0].quant.weight.bits(), None);
/// assert_eq!(q.layers[1].quant.weight.bits(), Some(8));
/// // a pattern that matches no layer is an error
/// assert!(ModelBuilder::new(&VarMap::new(), &dev).qat(QatConfig::lsq(2, 2)?)
///     .override_layers("fc2", LayerOverride::KeepFp).build(tiny).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ModelBuilder<'a> {
    varmap: &'a VarMap,
    device: Device,
    qat: Option<QatConfig>,
    overrides: Vec<(String, LayerOverride)>,
    seed: u64,
    scheme: InitScheme,
    dtype: DType,
}

/// A built model with its layers and the calibration switch they share.
#[derive(Debug)]
pub struct Built<M> {
    /// The model the constructor returned.
    pub model: M,
    /// The quantizable layers (conv, linear) in build order, with what each got.
    pub layers: Vec<LayerInfo>,
    /// The switch [`Built::calibrate`] runs the model's forward pass under.
    pub calibration: Calibration,
}

impl<'a> ModelBuilder<'a> {
    /// A full-precision f32 build into `varmap` on `device`, seed 0, PyTorch's default init.
    pub fn new(varmap: &'a VarMap, device: &Device) -> Self {
        Self {
            varmap,
            device: device.clone(),
            qat: None,
            overrides: Vec::new(),
            seed: 0,
            scheme: InitScheme::PyTorchDefault,
            dtype: DType::F32,
        }
    }

    /// Build the quantized twin with this configuration (`None`: full precision).
    pub fn qat(self, qat: impl Into<Option<QatConfig>>) -> Self {
        Self {
            qat: qat.into(),
            ..self
        }
    }

    /// Seed of the weight initialisation.
    pub fn seed(self, seed: u64) -> Self {
        Self { seed, ..self }
    }

    /// How conv and linear weights are drawn.
    pub fn init(self, scheme: InitScheme) -> Self {
        Self { scheme, ..self }
    }

    /// dtype of the parameters.
    pub fn dtype(self, dtype: DType) -> Self {
        Self { dtype, ..self }
    }

    /// Overrides the quantizers of every layer whose name matches `pattern` (`*` for any run of
    /// characters, `?` for one). Later overrides win over earlier ones; a pattern that matches
    /// no layer makes [`ModelBuilder::build`] fail.
    pub fn override_layers(mut self, pattern: impl Into<String>, what: LayerOverride) -> Self {
        self.overrides.push((pattern.into(), what));
        self
    }

    fn pass(&self, varmap: &'a VarMap, order: Option<Vec<String>>) -> layers::Pass<'a> {
        layers::Pass {
            varmap,
            qat: self.qat.clone(),
            overrides: self.overrides.clone(),
            init: RefCell::new(Initializer::new(self.seed, self.scheme, self.dtype, &self.device)),
            dtype: self.dtype,
            device: self.device.clone(),
            calibration: Calibration::new(),
            order,
            built: RefCell::new(Vec::new()),
        }
    }

    /// Runs `constructor` and returns the model with its layer list and calibration switch.
    pub fn build<M>(&self, constructor: impl Fn(&Layers<'_>) -> Result<M>) -> Result<Built<M>> {
        if let Some(q) = &self.qat {
            q.validate()?;
        }
        let order = if self.qat.is_some() || !self.overrides.is_empty() {
            let scratch = VarMap::new();
            let discovery = Layers::new(self.pass(&scratch, None));
            constructor(&discovery)?;
            let names: Vec<String> = discovery.into_built().into_iter().map(|l| l.name).collect();
            if let Some(dup) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)) {
                return Err(Error::InvalidConfig(format!(
                    "two layers are named `{}`: give each layer its own name",
                    dup.1
                )));
            }
            spec::check_overrides(&self.overrides, &names)?;
            Some(names)
        } else {
            Some(Vec::new())
        };
        let layers = Layers::new(self.pass(self.varmap, order));
        let model = constructor(&layers)?;
        let calibration = layers.calibration().clone();
        Ok(Built {
            model,
            layers: layers.into_built(),
            calibration,
        })
    }
}

impl<M: Model> Built<M> {
    /// Calibrates every quantizer with one forward pass over `x` in [`Mode::Calibrate`]; the
    /// report lists what was initialised; a layer the pass did not reach is an error naming it.
    pub fn calibrate(&self, x: &Tensor) -> Result<CalibrationReport> {
        self.calibration.run(|| self.model.forward_mode(x, Mode::Calibrate))
    }
}

impl<M: Model> Model for Built<M> {
    fn forward_mode(&self, x: &Tensor, mode: Mode) -> Result<ModelOutput> {
        self.model.forward_mode(x, mode)
    }

    fn calibration(&self) -> Option<&Calibration> {
        Some(&self.calibration)
    }

    fn export(&self) -> Result<quarc_quant_core::export::IntegerExport> {
        self.model.export()
    }
}

impl<M: crate::ToOnnx> crate::ToOnnx for Built<M> {
    fn to_onnx(&self, g: &mut crate::OnnxGraph, x: &crate::onnx::Value) -> Result<crate::onnx::Value> {
        self.model.to_onnx(g, x)
    }
}
