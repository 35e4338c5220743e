//! `Layers`: what a model's constructor builds its layers with (a `VarBuilder` for QAT).

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::{DType, Device, Var};
use candle_nn::{BatchNorm, Conv2dConfig, VarMap};
use quarc_quant_core::{Calibration, LayerPosition, LayerQuant, ParamStore, QConv2d, QLinear, QatConfig, Signedness};

use super::spec::{ConvSpec, LayerOverride, LinearSpec, name_matches};
use crate::init::{Initializer, insert};
use crate::{Error, Result};

/// One quantizable layer as built: its name, place and quantizers.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerInfo {
    /// Parameter prefix (`block1.conv`).
    pub name: String,
    /// Its place for the first/last-layer policy.
    pub position: LayerPosition,
    /// The quantizers it got (full precision: identity weight, no input quantizer).
    pub quant: LayerQuant,
}

/// What one build pass shares between the `Layers` handles of all prefixes.
pub(crate) struct Pass<'a> {
    pub(crate) varmap: &'a VarMap,
    pub(crate) qat: Option<QatConfig>,
    pub(crate) overrides: Vec<(String, LayerOverride)>,
    pub(crate) init: RefCell<Initializer>,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    pub(crate) calibration: Calibration,
    /// The quantizable layers in build order, from the discovery pass (`None` during it).
    pub(crate) order: Option<Vec<String>>,
    /// The layers built so far in this pass.
    pub(crate) built: RefCell<Vec<LayerInfo>>,
}

/// Hands out the layers of one model under name prefixes, like candle-nn's `VarBuilder`: built
/// without a QAT configuration they are plain full-precision layers, with one they are the
/// quantized twin under **the same parameter names** (quantizer parameters added under
/// `<layer>.wq.*` / `<layer>.aq.*`). Get one from [`crate::ModelBuilder::build`].
#[derive(Clone)]
pub struct Layers<'a> {
    pass: Rc<Pass<'a>>,
    prefix: Vec<String>,
}

impl<'a> Layers<'a> {
    pub(crate) fn new(pass: Pass<'a>) -> Self {
        Self {
            pass: Rc::new(pass),
            prefix: Vec::new(),
        }
    }

    pub(crate) fn into_built(self) -> Vec<LayerInfo> {
        self.pass.built.borrow().clone()
    }

    /// The same builder one name level deeper (`b.pp("block1").conv2d("conv", …)` is
    /// `block1.conv`).
    pub fn pp(&self, name: impl ToString) -> Self {
        let mut s = self.clone();
        s.prefix.push(name.to_string());
        s
    }

    fn path(&self, name: &str) -> String {
        self.prefix
            .iter()
            .map(String::as_str)
            .chain([name])
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The calibration switch every quantized layer of this model registers with.
    pub fn calibration(&self) -> &Calibration {
        &self.pass.calibration
    }

    /// Whether this pass builds the quantized twin.
    pub fn is_quantized(&self) -> bool {
        self.pass.qat.is_some() && self.pass.order.is_some()
    }

    fn store(&self, full: &str) -> ParamStore<'a> {
        let p = &self.pass;
        ParamStore::new(p.varmap, p.dtype, &p.device)
            .with_calibration(&p.calibration)
            .pp(full)
    }

    /// The place of layer `full` for the first/last-layer policy.
    fn position(&self, full: &str, given: Option<LayerPosition>) -> LayerPosition {
        let order = self.pass.order.as_deref().unwrap_or_default();
        given.unwrap_or(if order.first().is_some_and(|f| f == full) {
            LayerPosition::First
        } else if order.last().is_some_and(|l| l == full) {
            LayerPosition::Last
        } else {
            LayerPosition::Middle
        })
    }

    /// The quantizers of layer `full`: the configuration's policy for its position, then the
    /// last override whose pattern matches, then the input's signedness.
    fn quant(&self, full: &str, given: Option<LayerPosition>, signed_input: bool) -> LayerQuant {
        let position = self.position(full, given);
        let quant = match (&self.pass.qat, &self.pass.order) {
            (Some(qat), Some(_)) => {
                let over = self.pass.overrides.iter().rev().find(|(p, _)| name_matches(p, full));
                let mut q = match over.map(|(_, o)| o) {
                    None => qat.layer(position),
                    Some(LayerOverride::KeepFp) => LayerQuant::full_precision(),
                    Some(LayerOverride::Quantizers(q)) => q.clone(),
                    Some(LayerOverride::Bits { weight, activation }) => {
                        let middle = qat.layer(LayerPosition::Middle);
                        LayerQuant {
                            weight: middle.weight.with_bits(*weight),
                            activation: middle.activation.map(|a| a.with_bits(*activation)),
                        }
                    }
                };
                if position == LayerPosition::First && over.is_some() {
                    q.activation = None; // the first layer sees the image as given
                }
                if signed_input {
                    q.activation = q.activation.map(|a| a.with_signedness(Signedness::Signed));
                }
                q
            }
            _ => LayerQuant::full_precision(),
        };
        self.pass.built.borrow_mut().push(LayerInfo {
            name: full.to_string(),
            position,
            quant: quant.clone(),
        });
        quant
    }

    /// A conv layer `<prefix>.<name>` (weights seeded unless the map already has them).
    pub fn conv2d(&self, name: &str, spec: ConvSpec) -> Result<QConv2d> {
        let full = self.path(name);
        let s = spec;
        if s.groups == 0 || s.stride == 0 || s.kernel == 0 || !s.in_channels.is_multiple_of(s.groups) {
            return Err(Error::InvalidConfig(format!(
                "conv `{full}`: kernel {}, stride {}, groups {} (must be positive, groups dividing {} input channels)",
                s.kernel, s.stride, s.groups, s.in_channels
            )));
        }
        let (w, b) = self
            .pass
            .init
            .borrow_mut()
            .conv(s.out_channels, s.in_channels / s.groups, s.kernel, s.bias)?;
        insert(self.pass.varmap, format!("{full}.weight"), w)?;
        if let Some(b) = b {
            insert(self.pass.varmap, format!("{full}.bias"), b)?;
        }
        let cfg = Conv2dConfig {
            padding: s.padding,
            stride: s.stride,
            dilation: 1,
            groups: s.groups,
            cudnn_fwd_algo: None,
        };
        let quant = self.quant(&full, s.position, s.signed_input);
        Ok(QConv2d::new(
            s.in_channels,
            s.out_channels,
            s.kernel,
            cfg,
            s.bias,
            &quant,
            &self.store(&full),
        )?)
    }

    /// A fully connected layer `<prefix>.<name>`.
    pub fn linear(&self, name: &str, spec: LinearSpec) -> Result<QLinear> {
        let full = self.path(name);
        let (w, b) = self
            .pass
            .init
            .borrow_mut()
            .linear(spec.out_features, spec.in_features)?;
        insert(self.pass.varmap, format!("{full}.weight"), w)?;
        if spec.bias {
            insert(self.pass.varmap, format!("{full}.bias"), b)?;
        }
        let quant = self.quant(&full, spec.position, spec.signed_input);
        Ok(QLinear::new(
            spec.in_features,
            spec.out_features,
            spec.bias,
            &quant,
            &self.store(&full),
        )?)
    }

    /// BatchNorm `<prefix>.<name>` over `channels` (γ = 1, β = 0, running mean 0, variance 1;
    /// momentum 0.1, ε = 1e-5, as PyTorch). BatchNorm is never quantized.
    pub fn batch_norm(&self, name: &str, channels: usize) -> Result<BatchNorm> {
        let config = candle_nn::BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
            ..Default::default()
        };
        let p = &self.pass;
        let store = ParamStore::new(p.varmap, p.dtype, &p.device).pp(self.path(name));
        Ok(candle_nn::batch_norm(channels, config, store.vb())?)
    }

    /// The variable `<prefix>.<name>` of the map (created by an earlier layer constructor).
    pub(crate) fn var(&self, name: &str) -> Result<Var> {
        let full = self.path(name);
        let data = self
            .pass
            .varmap
            .data()
            .lock()
            .map_err(|_| Error::InvalidConfig("the VarMap's lock is poisoned".to_string()))?;
        data.get(&full)
            .cloned()
            .ok_or_else(|| Error::InvalidConfig(format!("no variable `{full}` in the map")))
    }
}
