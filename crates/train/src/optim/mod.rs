//! Optimisers candle lacks: SGD with momentum, Nesterov and weight decay, and AdamW, both with
//! parameter groups (per-group learning-rate scale and weight decay) and checkpointable state.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

mod sgd;
use sgd::SgdStep;

/// One group: variables sharing a learning-rate scale and a weight decay.
#[derive(Clone, Debug)]
pub struct ParamGroup {
    /// `(name, variable)` pairs.
    pub vars: Vec<(String, Var)>,
    /// Multiplies the scheduled learning rate.
    pub lr_scale: f64,
    /// L2 weight decay (coupled for SGD, decoupled for AdamW).
    pub weight_decay: f64,
}

/// How the variables of a model are grouped (the ACS recipe by default): weight decay only on
/// conv and linear weights (rank ≥ 2), none on BatchNorm and quantizer parameters; activation
/// quantizer parameters (`.aq.`) at a tenth of the learning rate. Buffers are left out.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupPolicy {
    /// Weight decay of conv/linear weights.
    pub weight_decay: f64,
    /// Learning-rate scale of activation quantizer parameters.
    pub activation_quantizer_lr_scale: f64,
}

impl Default for GroupPolicy {
    fn default() -> Self {
        Self {
            weight_decay: 5e-4,
            activation_quantizer_lr_scale: 0.1,
        }
    }
}

impl GroupPolicy {
    /// Splits the trainable variables of `varmap` into three groups (decayed weights, other
    /// parameters, activation-quantizer parameters), each sorted by name.
    pub fn groups(&self, varmap: &VarMap) -> Vec<ParamGroup> {
        let data = varmap.data().lock().map(|d| d.clone()).unwrap_or_default();
        let mut vars: Vec<(String, Var)> = data
            .into_iter()
            .filter(|(n, _)| !quarc_quant_core::is_buffer(n))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let (mut decayed, mut plain, mut act_q) = (Vec::new(), Vec::new(), Vec::new());
        for (n, v) in vars {
            if n.contains(".aq.") {
                act_q.push((n, v));
            } else if n.ends_with(".weight") && v.rank() >= 2 {
                decayed.push((n, v));
            } else {
                plain.push((n, v));
            }
        }
        vec![
            ParamGroup {
                vars: decayed,
                lr_scale: 1.0,
                weight_decay: self.weight_decay,
            },
            ParamGroup {
                vars: plain,
                lr_scale: 1.0,
                weight_decay: 0.0,
            },
            ParamGroup {
                vars: act_q,
                lr_scale: self.activation_quantizer_lr_scale,
                weight_decay: 0.0,
            },
        ]
    }
}

/// Which optimiser, with its settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// SGD, PyTorch semantics: `v ← μv + (g + λw)`, step `v` (or `g + λw + μv` with Nesterov).
    Sgd {
        /// Momentum μ.
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// AdamW (Loshchilov & Hutter), decoupled weight decay.
    AdamW {
        /// β₁.
        beta1: f64,
        /// β₂.
        beta2: f64,
        /// ε.
        eps: f64,
    },
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::Sgd {
            momentum: 0.9,
            nesterov: false,
        }
    }
}

/// An optimiser over parameter groups with state that checkpoints.
pub struct Optimizer {
    config: OptimizerConfig,
    groups: Vec<ParamGroup>,
    first: BTreeMap<String, Tensor>,
    second: BTreeMap<String, Tensor>,
    steps: u64,
}

impl Optimizer {
    /// An optimiser over `groups`.
    pub fn new(config: OptimizerConfig, groups: Vec<ParamGroup>) -> Result<Self> {
        match config {
            OptimizerConfig::Sgd { momentum, .. } if !(0.0..1.0).contains(&momentum) => {
                return Err(Error::InvalidConfig(format!(
                    "SGD momentum must be in [0, 1), got {momentum}"
                )));
            }
            OptimizerConfig::AdamW { beta1, beta2, eps }
                if !((0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0) =>
            {
                return Err(Error::InvalidConfig(format!(
                    "AdamW needs β₁, β₂ in [0, 1) and ε > 0, got {beta1}, {beta2}, {eps}"
                )));
            }
            _ => {}
        }
        if let Some(g) = groups.iter().find(|g| !(g.weight_decay >= 0.0 && g.lr_scale >= 0.0)) {
            return Err(Error::InvalidConfig(format!(
                "group with lr scale {} and weight decay {}",
                g.lr_scale, g.weight_decay
            )));
        }
        Ok(Self {
            config,
            groups,
            first: BTreeMap::new(),
            second: BTreeMap::new(),
            steps: 0,
        })
    }

    /// One update with the scheduled learning rate `lr`; variables without a gradient are skipped.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        for group in &self.groups {
            let lr = lr * group.lr_scale;
            for (name, var) in &group.vars {
                let Some(g) = grads.get(var.as_tensor()) else { continue };
                // Gradients can carry the autograd graph of the step (they are computed from
                // variables); detached, the optimiser state cannot keep old graphs alive.
                let g = &g.detach();
                match self.config {
                    OptimizerConfig::Sgd { momentum, nesterov } => {
                        let s = SgdStep {
                            momentum,
                            nesterov,
                            weight_decay: group.weight_decay,
                            lr,
                        };
                        let v = self.first.get(name);
                        if !sgd::fused(&s, var, g, v)?
                            && let Some(v) = sgd::composed(&s, var, g, v)?
                        {
                            self.first.insert(name.clone(), v.detach());
                        }
                    }
                    OptimizerConfig::AdamW { beta1, beta2, eps } => {
                        let w = &var.as_tensor().detach();
                        let m = match self.first.get(name) {
                            Some(m) => ((m * beta1)? + (g * (1.0 - beta1))?)?,
                            None => (g * (1.0 - beta1))?,
                        };
                        let v = match self.second.get(name) {
                            Some(v) => ((v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?,
                            None => (g.sqr()? * (1.0 - beta2))?,
                        };
                        let m_hat = (&m / (1.0 - beta1.powi(t)))?;
                        let v_hat = (&v / (1.0 - beta2.powi(t)))?;
                        let mut update = (m_hat / (v_hat.sqrt()? + eps)?)?;
                        if group.weight_decay > 0.0 {
                            update = (update + (w * group.weight_decay)?)?;
                        }
                        var.set(&(w - (update * lr)?)?)?;
                        self.first.insert(name.clone(), m.detach());
                        self.second.insert(name.clone(), v.detach());
                    }
                }
            }
        }
        Ok(())
    }

    /// The state as named tensors (`first.<var>`, `second.<var>`, `steps`), for checkpoints:
    /// copies, which later steps (that update the momentum in place) leave unchanged.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(self.first.len() + self.second.len() + 1);
        for (k, v) in &self.first {
            out.push((format!("first.{k}"), v.copy()?));
        }
        for (k, v) in &self.second {
            out.push((format!("second.{k}"), v.copy()?));
        }
        out.push((
            "steps".into(),
            Tensor::new(&[self.steps as f64], &candle_core::Device::Cpu)?,
        ));
        Ok(out)
    }

    /// Restores [`Optimizer::state`] (copying the tensors: the optimiser updates its state in place).
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        self.first.clear();
        self.second.clear();
        for (k, v) in state {
            if let Some(n) = k.strip_prefix("first.") {
                self.first.insert(n.to_string(), v.copy()?);
            } else if let Some(n) = k.strip_prefix("second.") {
                self.second.insert(n.to_string(), v.copy()?);
            } else if k == "steps" {
                self.steps = v
                    .flatten_all()?
                    .to_dtype(candle_core::DType::F64)?
                    .to_vec1::<f64>()?
                    .first()
                    .copied()
                    .unwrap_or(0.0) as u64;
            }
        }
        Ok(())
    }
}
