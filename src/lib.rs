//! # quarc
//!
//! Data-efficient quantization-aware training for [candle](https://docs.rs/candle-core).
//! This facade re-exports the workspace crates:
//!
//! - [`quant_core`] (`quarc-quant-core`): quantizers (LSQ, LSQ+, PACT, uniform with
//!   observers), fused STE kernels with composed references, quantized layers, integer export.
//! - [`coreset`] (`quarc-coreset`): scorers (EVS, DS, RES, ACS, QuaRC, baselines), selectors,
//!   schedules, score tables and the `Coreset` orchestrator.
//! - [`data`] (`quarc-data`): data sets whose batches carry dataset indices, IDX and CIFAR
//!   loaders, the bundled Fashion-MNIST subset, seeded augmentation and a prefetching loader.
//! - [`models`] (`quarc-models`): SmallCnn, CIFAR ResNet-20/18 and MobileNetV2, full precision
//!   and quantized twins, seeded init, feature taps, checkpoints.
//! - [`train`] (`quarc-train`): the reference QAT loop (optimisers, schedules, the ACS/QuaRC
//!   procedure, logs, plots, resumable checkpoints).
//! - [`correction`] (`quarc-correction`): distillation, feature-alignment losses and Cascaded
//!   Layer Correction.
//!
//! ```
//! use quarc::prelude::*;
//! let cfg = QatConfig::lsq(2, 2)?;
//! assert_eq!(cfg.layer(LayerPosition::Middle).weight.bits(), Some(2));
//! # Ok::<(), quarc::quant_core::Error>(())
//! ```

pub mod runtime;

pub use quarc_coreset as coreset;
pub use quarc_correction as correction;
pub use quarc_data as data;
pub use quarc_kernels as kernels;
pub use quarc_models as models;
pub use quarc_quant_core as quant_core;
pub use quarc_train as train;

/// The names most QAT loops need.
pub mod prelude {
    pub use quarc_coreset::{
        Annealed, Budget, ClassBalanced, Coreset, ScoreInput, Scorer, SelectionSchedule, Selector, TopK, WeightedSum,
    };
    pub use quarc_correction::{AlignmentLoss, Cascade, CascadeMode, Distillation, FeatureKl, LayerPair, Mse};
    pub use quarc_quant_core::{
        Backend, Granularity, LayerPolicy, LayerPosition, LayerQuant, LsqConfig, ModelOutput, ParamStore, Progress,
        QConv2d, QLinear, QRange, QatConfig, Quantizer, QuantizerConfig, Role, Signedness, check_gradients,
        lsq_fake_quant,
    };
}
