//! What models hand to scorers and correction losses: logits plus named intermediate outputs.

use candle_core::{ModuleT, Tensor};

/// Named intermediate outputs of a forward pass, in the order the model produced them.
///
/// Recording is free (tensors are reference counted) and keeps the autograd graph, so a loss on
/// a feature back-propagates into the layers before it.
#[derive(Clone, Debug, Default)]
pub struct FeatureMap {
    entries: Vec<(String, Tensor)>,
}

impl FeatureMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `tensor` under `name`, replacing an earlier entry of the same name in place.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = tensor,
            None => self.entries.push((name, tensor)),
        }
    }

    /// The tensor recorded under `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Names in recording order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// `(name, tensor)` pairs in recording order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Number of recorded features.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A copy with every tensor detached from the graph (for reference-model outputs).
    pub fn detach(&self) -> Self {
        Self {
            entries: self.entries.iter().map(|(n, t)| (n.clone(), t.detach())).collect(),
        }
    }
}

/// The result of a forward pass: logits `(B, K)` and the chosen intermediate outputs.
#[derive(Clone, Debug)]
pub struct ModelOutput {
    /// Class logits, `(B, K)`.
    pub logits: Tensor,
    /// Named intermediate outputs.
    pub features: FeatureMap,
}

impl ModelOutput {
    /// Output with logits only.
    pub fn logits_only(logits: Tensor) -> Self {
        Self {
            logits,
            features: FeatureMap::new(),
        }
    }

    /// A copy detached from the graph.
    pub fn detach(&self) -> Self {
        Self {
            logits: self.logits.detach(),
            features: self.features.detach(),
        }
    }
}

/// A model that returns its logits and named intermediate outputs.
///
/// Implement it on your own model to feed feature-based scorers and layer-alignment losses;
/// any candle [`ModuleT`] fits through [`LogitsOnly`].
///
/// ```
/// use candle_core::{Device, Module, Tensor};
/// use quarc_base::{FeatureModule, LogitsOnly};
/// let model = LogitsOnly(candle_nn::Linear::new(Tensor::ones((3, 2), candle_core::DType::F32, &Device::Cpu)?, None));
/// let out = model.forward_features(&Tensor::ones((4, 2), candle_core::DType::F32, &Device::Cpu)?, false)?;
/// assert_eq!(out.logits.dims(), &[4, 3]);
/// assert!(out.features.is_empty());
/// # Ok::<(), candle_core::Error>(())
/// ```
pub trait FeatureModule {
    /// Forward pass; `train` selects training behaviour (BatchNorm statistics, observers).
    fn forward_features(&self, xs: &Tensor, train: bool) -> candle_core::Result<ModelOutput>;
}

/// Adapter that makes any [`ModuleT`] a [`FeatureModule`] with no features.
#[derive(Clone, Debug)]
pub struct LogitsOnly<M>(pub M);

impl<M: ModuleT> FeatureModule for LogitsOnly<M> {
    fn forward_features(&self, xs: &Tensor, train: bool) -> candle_core::Result<ModelOutput> {
        Ok(ModelOutput::logits_only(self.0.forward_t(xs, train)?))
    }
}

/// A model that can run one block at a time, so that a block of the quantized model can be fed
/// the full-precision model's input to that block (Cascaded Layer Correction's
/// "reference inputs" mode, BRECQ-style).
///
/// Block 0 takes the model input; block `i + 1` takes block `i`'s output. The names match the
/// ones `FeatureModule` records, so layer pairs can refer to either.
pub trait BlockwiseModule {
    /// Names of the blocks, in order.
    fn block_names(&self) -> Vec<String>;

    /// Runs block `index` on `xs`.
    fn forward_block(&self, index: usize, xs: &Tensor, train: bool) -> candle_core::Result<Tensor>;
}

/// Where a training run stands; passed to schedules, scorers and losses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// 0-based epoch.
    pub epoch: usize,
    /// Total number of epochs `E`.
    pub num_epochs: usize,
}

impl Progress {
    /// Progress at `epoch` of `num_epochs`.
    pub fn new(epoch: usize, num_epochs: usize) -> Self {
        Self { epoch, num_epochs }
    }

    /// `epoch / num_epochs` in `[0, 1]` (0 when `num_epochs` is 0).
    pub fn fraction(&self) -> f64 {
        if self.num_epochs == 0 {
            0.0
        } else {
            (self.epoch as f64 / self.num_epochs as f64).min(1.0)
        }
    }
}
