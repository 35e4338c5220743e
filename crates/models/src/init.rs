//! Seeded parameter initialisation (candle's CPU RNG cannot be seeded).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use quarc_quant_core::SplitMix64;

use crate::{Error, Result};

/// How conv and linear weights are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InitScheme {
    /// PyTorch's default for `Conv2d`/`Linear`: `kaiming_uniform_(a = √5)`, i.e.
    /// `U(−1/√fan_in, 1/√fan_in)` for weights and biases.
    #[default]
    PyTorchDefault,
    /// torchvision's ResNet init for convs: `kaiming_normal_(mode = "fan_out", nonlinearity = "relu")`,
    /// `N(0, 2/fan_out)`; linear layers keep PyTorch's default.
    KaimingNormalFanOut,
}

/// Draws parameters from one seeded stream, in a fixed order: the same seed and architecture
/// give the same weights on every machine.
pub struct Initializer {
    rng: SplitMix64,
    scheme: InitScheme,
    dtype: DType,
    device: Device,
}

impl Initializer {
    /// An initializer for parameters of `dtype` on `device`.
    pub fn new(seed: u64, scheme: InitScheme, dtype: DType, device: &Device) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            scheme,
            dtype,
            device: device.clone(),
        }
    }

    fn uniform(&mut self, n: usize, bound: f64) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.rng.next_f64() * 2.0 - 1.0) * bound) as f32)
            .collect()
    }

    fn normal(&mut self, n: usize, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                // Box–Muller; 1 − u keeps the log finite.
                let (u1, u2) = (1.0 - self.rng.next_f64(), self.rng.next_f64());
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
            })
            .collect()
    }

    fn tensor(&self, v: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?
            .to_dtype(self.dtype)?
            .to_device(&self.device)?)
    }

    /// A conv weight `(out, in/groups, k, k)` and optional bias `(out,)`.
    pub fn conv(&mut self, out: usize, in_per_group: usize, k: usize, bias: bool) -> Result<(Tensor, Option<Tensor>)> {
        let fan_in = in_per_group * k * k;
        let n = out * fan_in;
        let w = match self.scheme {
            InitScheme::PyTorchDefault => self.uniform(n, 1.0 / (fan_in as f64).sqrt()),
            InitScheme::KaimingNormalFanOut => self.normal(n, (2.0 / (out * k * k) as f64).sqrt()),
        };
        let w = self.tensor(w, &[out, in_per_group, k, k])?;
        let b = if bias {
            let v = self.uniform(out, 1.0 / (fan_in as f64).sqrt());
            Some(self.tensor(v, &[out])?)
        } else {
            None
        };
        Ok((w, b))
    }

    /// A linear weight `(out, in)` and bias `(out,)`, PyTorch's default.
    pub fn linear(&mut self, out: usize, inp: usize) -> Result<(Tensor, Tensor)> {
        let bound = 1.0 / (inp as f64).sqrt();
        let w = self.uniform(out * inp, bound);
        let b = self.uniform(out, bound);
        Ok((self.tensor(w, &[out, inp])?, self.tensor(b, &[out])?))
    }
}

/// Inserts `tensor` into `varmap` under `name` unless the map already has it.
pub(crate) fn insert(varmap: &VarMap, name: String, tensor: Tensor) -> Result<()> {
    let mut data = varmap
        .data()
        .lock()
        .map_err(|_| Error::InvalidConfig("VarMap lock poisoned".into()))?;
    if let std::collections::hash_map::Entry::Vacant(e) = data.entry(name) {
        e.insert(Var::from_tensor(&tensor)?);
    }
    Ok(())
}
