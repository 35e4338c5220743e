//! CIFAR-style ResNets: ResNet-20 (He et al. 2016, option-A shortcuts) and ResNet-18
//! (3×3 stem, no max-pool, projection shortcuts).

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use quarc_quant_core::{BlockwiseModule, Calibration, FeatureMap, ModelOutput, QLinear, QatConfig};

use crate::conv_bn::{Activation, ConvBn, Mode, linear_forward};
use crate::init::InitScheme;
use crate::{ConvSpec, Error, Layers, LinearSpec, Model, ModelBuilder, Result};

/// How a block's shortcut changes shape.
#[derive(Debug)]
enum Shortcut {
    Identity,
    /// Option A: subsample by 2 and zero-pad channels (parameter-free).
    PadZeros {
        extra: usize,
    },
    /// Option B: 1×1 conv + BN.
    Projection(ConvBn),
}

/// The BasicBlock: conv3×3 → BN → ReLU → conv3×3 → BN, plus the shortcut, then ReLU.
#[derive(Debug)]
struct BasicBlock {
    conv1: ConvBn,
    conv2: ConvBn,
    shortcut: Shortcut,
}

impl BasicBlock {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = self.conv1.forward_act(x, mode, Activation::Relu)?;
        let h = self.conv2.forward(&h, mode)?;
        let s = match &self.shortcut {
            Shortcut::Identity => x.clone(),
            Shortcut::Projection(p) => p.forward(x, mode)?,
            Shortcut::PadZeros { extra } => {
                let (b, c, hh, ww) = x.dims4()?;
                let sub = x
                    .reshape((b, c, hh / 2, 2, ww / 2, 2))?
                    .narrow(3, 0, 1)?
                    .narrow(5, 0, 1)?
                    .reshape((b, c, hh / 2, ww / 2))?;
                let half = extra / 2;
                let zeros = |n: usize| Tensor::zeros((b, n, hh / 2, ww / 2), x.dtype(), x.device());
                Tensor::cat(&[zeros(half)?, sub, zeros(extra - half)?], 1)?
            }
        };
        Ok(quarc_kernels::add_relu(&h, &s)?)
    }
}

/// Shortcut style for blocks that change shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortcutKind {
    /// Parameter-free subsample + zero padding (CIFAR ResNet-20/32/56).
    OptionA,
    /// 1×1 conv + BN (ResNet-18/34).
    Projection,
}

/// The shape of a ResNet: stage widths, blocks per stage, shortcut style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResNetSpec {
    /// Channels of each stage.
    pub widths: Vec<usize>,
    /// BasicBlocks per stage.
    pub depths: Vec<usize>,
    /// How shape-changing blocks shortcut.
    pub shortcut: ShortcutKind,
}

/// A CIFAR ResNet of BasicBlocks. Features: `stem`, `layer{s}.{b}` for every block, `pool`.
/// Blocks for [`BlockwiseModule`]: `stem`, every `layer{s}.{b}`, `head` (pool + fc, logits).
#[derive(Debug)]
pub struct ResNet {
    stem: ConvBn,
    blocks: Vec<(String, BasicBlock)>,
    fc: QLinear,
    calibration: Calibration,
}

impl ResNet {
    /// A ResNet of the given shape.
    pub fn new(
        varmap: &VarMap,
        qat: Option<QatConfig>,
        spec: &ResNetSpec,
        num_classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let b = ModelBuilder::new(varmap, device)
            .qat(qat)
            .seed(seed)
            .init(InitScheme::KaimingNormalFanOut);
        Ok(b.build(|l| Self::build(l, spec, num_classes))?.model)
    }

    /// The model's constructor, for [`ModelBuilder::build`] (to add per-layer overrides). The
    /// stem is the first layer built and the classifier the last.
    pub fn build(b: &Layers<'_>, spec: &ResNetSpec, num_classes: usize) -> Result<Self> {
        let (widths, depths, shortcut) = (spec.widths.as_slice(), spec.depths.as_slice(), spec.shortcut);
        crate::check_classes(num_classes)?;
        if widths.is_empty() || widths.len() != depths.len() || depths.contains(&0) {
            return Err(Error::InvalidConfig(format!(
                "stage widths {widths:?} and depths {depths:?} must be non-empty, equal in length, depths ≥ 1"
            )));
        }
        let stem = ConvBn::new(b, "stem", ConvSpec::new(3, widths[0], 3).signed_input())?;
        let mut blocks = Vec::new();
        let mut inp = widths[0];
        for (s, (&w, &d)) in widths.iter().zip(depths).enumerate() {
            for k in 0..d {
                let stride = if s > 0 && k == 0 { 2 } else { 1 };
                let name = format!("layer{}.{k}", s + 1);
                let conv1 = ConvBn::new(b, &format!("{name}.conv1"), ConvSpec::new(inp, w, 3).stride(stride))?;
                let conv2 = ConvBn::new(b, &format!("{name}.conv2"), ConvSpec::new(w, w, 3))?;
                let sc = if stride == 1 && inp == w {
                    Shortcut::Identity
                } else {
                    match shortcut {
                        ShortcutKind::OptionA => Shortcut::PadZeros { extra: w - inp },
                        ShortcutKind::Projection => Shortcut::Projection(ConvBn::new(
                            b,
                            &format!("{name}.shortcut"),
                            ConvSpec::new(inp, w, 1).stride(stride),
                        )?),
                    }
                };
                blocks.push((
                    name,
                    BasicBlock {
                        conv1,
                        conv2,
                        shortcut: sc,
                    },
                ));
                inp = w;
            }
        }
        let fc = b.linear("fc", LinearSpec::new(inp, num_classes))?;
        Ok(Self {
            stem,
            blocks,
            fc,
            calibration: b.calibration().clone(),
        })
    }

    /// ResNet-20 for CIFAR (16/32/64, 3 blocks per stage, option A): 0.27 M parameters.
    pub fn resnet20(
        varmap: &VarMap,
        qat: Option<QatConfig>,
        num_classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        Self::new(
            varmap,
            qat,
            &ResNetSpec {
                widths: vec![16, 32, 64],
                depths: vec![3, 3, 3],
                shortcut: ShortcutKind::OptionA,
            },
            num_classes,
            seed,
            device,
        )
    }

    /// ResNet-18 for CIFAR (64/128/256/512, 2 blocks per stage, projections): 11.17 M parameters.
    pub fn resnet18(
        varmap: &VarMap,
        qat: Option<QatConfig>,
        num_classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        Self::new(
            varmap,
            qat,
            &ResNetSpec {
                widths: vec![64, 128, 256, 512],
                depths: vec![2, 2, 2, 2],
                shortcut: ShortcutKind::Projection,
            },
            num_classes,
            seed,
            device,
        )
    }

    fn head(&self, h: &Tensor, mode: Mode) -> Result<Tensor> {
        linear_forward(&self.fc, &h.mean((2, 3))?, mode)
    }

    fn block(&self, index: usize, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match index {
            0 => self.stem.forward_act(x, mode, Activation::Relu),
            i if i <= self.blocks.len() => self.blocks[i - 1].1.forward(x, mode),
            i if i == self.blocks.len() + 1 => self.head(x, mode),
            i => Err(Error::InvalidConfig(format!("block {i} of {}", self.blocks.len() + 2))),
        }
    }
}

impl Model for ResNet {
    fn forward_mode(&self, x: &Tensor, mode: Mode) -> Result<ModelOutput> {
        let mut f = FeatureMap::new();
        let mut h = self.block(0, x, mode)?;
        f.insert("stem", h.clone());
        for (name, block) in &self.blocks {
            h = block.forward(&h, mode)?;
            f.insert(name.clone(), h.clone());
        }
        let pooled = h.mean((2, 3))?;
        f.insert("pool", pooled.clone());
        Ok(ModelOutput {
            logits: linear_forward(&self.fc, &pooled, mode)?,
            features: f,
        })
    }

    fn calibration(&self) -> Option<&Calibration> {
        Some(&self.calibration)
    }

    fn export(&self) -> Result<quarc_quant_core::export::IntegerExport> {
        let mut layers = vec![("stem".to_string(), &self.stem)];
        for (name, b) in &self.blocks {
            layers.push((format!("{name}.conv1"), &b.conv1));
            layers.push((format!("{name}.conv2"), &b.conv2));
            if let Shortcut::Projection(p) = &b.shortcut {
                layers.push((format!("{name}.shortcut"), p));
            }
        }
        crate::export_layers(layers, &self.fc)
    }
}

impl BlockwiseModule for ResNet {
    fn block_names(&self) -> Vec<String> {
        std::iter::once("stem".to_string())
            .chain(self.blocks.iter().map(|(n, _)| n.clone()))
            .chain(std::iter::once("head".to_string()))
            .collect()
    }
    fn forward_block(&self, index: usize, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(self.block(index, xs, Mode::from_train(train))?)
    }
}

crate::impl_feature_module!(ResNet);

impl crate::ToOnnx for ResNet {
    fn to_onnx(&self, g: &mut crate::OnnxGraph, x: &crate::onnx::Value) -> Result<crate::onnx::Value> {
        let mut h = g.conv_bn(&self.stem, x, Activation::Relu)?;
        for (_, b) in &self.blocks {
            let y = g.conv_bn(&b.conv1, &h, Activation::Relu)?;
            let y = g.conv_bn(&b.conv2, &y, Activation::Identity)?;
            let s = match &b.shortcut {
                Shortcut::Identity => h.clone(),
                Shortcut::Projection(p) => g.conv_bn(p, &h, Activation::Identity)?,
                Shortcut::PadZeros { extra } => g.subsample_pad_channels(&h, *extra),
            };
            let sum = g.add(&y, &s);
            h = g.activation(&sum, Activation::Relu);
        }
        let pooled = g.global_avg_pool(&h);
        g.linear(&self.fc, &pooled)
    }
}
