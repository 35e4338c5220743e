//! What the trainer builds its two models with: quarc's built-in models or yours.

use candle_core::Device;
use candle_nn::VarMap;
use quarc_models::{MobileNetV2, Model, ResNet, SmallCnn};
use quarc_quant_core::QatConfig;

use crate::ModelKind;

/// Builds a model into a `VarMap`: the full-precision reference for `qat = None`, the quantized
/// twin **with the same parameter names** otherwise (what [`quarc_models::ModelBuilder`] gives).
/// Object safe; any `Fn(&VarMap, Option<&QatConfig>, &Device) -> quarc_models::Result<Box<dyn Model>>`
/// is one.
pub trait ModelFactory: Send + Sync {
    /// Builds the model into `vars` on `device`.
    fn build(&self, vars: &VarMap, qat: Option<&QatConfig>, device: &Device) -> quarc_models::Result<Box<dyn Model>>;
}

impl<F> ModelFactory for F
where
    F: Fn(&VarMap, Option<&QatConfig>, &Device) -> quarc_models::Result<Box<dyn Model>> + Send + Sync,
{
    fn build(&self, vars: &VarMap, qat: Option<&QatConfig>, device: &Device) -> quarc_models::Result<Box<dyn Model>> {
        self(vars, qat, device)
    }
}

/// A built-in model of the configuration: kind, classes, weight seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BuiltIn {
    /// Which model.
    pub kind: ModelKind,
    /// Number of classes.
    pub classes: usize,
    /// Seed of the initial weights.
    pub seed: u64,
}

impl ModelFactory for BuiltIn {
    fn build(&self, vars: &VarMap, qat: Option<&QatConfig>, device: &Device) -> quarc_models::Result<Box<dyn Model>> {
        let (qat, classes, seed) = (qat.cloned(), self.classes, self.seed);
        Ok(match self.kind {
            ModelKind::SmallCnn => Box::new(SmallCnn::new(vars, qat, classes, seed, device)?),
            ModelKind::ResNet20 => Box::new(ResNet::resnet20(vars, qat, classes, seed, device)?),
            ModelKind::ResNet18 => Box::new(ResNet::resnet18(vars, qat, classes, seed, device)?),
            ModelKind::MobileNetV2 { width } => Box::new(MobileNetV2::new(vars, qat, width, classes, seed, device)?),
        })
    }
}
