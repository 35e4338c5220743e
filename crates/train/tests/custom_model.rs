//! A user's own model (defined here, not in quarc-models) through the trainer, with a coreset
//! and a layer correction the user built: logs, plots, checkpoints and a bit-identical resume.
//! Its 64-channel 3×3 block runs on Winograd, whose weight gradients reuse the forward's tiles.

mod common;

use std::sync::Arc;

use common::tensors;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use quarc_coreset::CoresetConfig;
use quarc_correction::{Cascade, LayerPair, Mse};
use quarc_data::{Normalize, Split, fashion_mnist};
use quarc_models::{Activation, ConvBn, ConvSpec, Layers, LinearSpec, Mode, Model, ModelBuilder};
use quarc_quant_core::{FeatureMap, ModelOutput, QLinear, QatConfig};
use quarc_train::*;

/// conv-BN-ReLU, a residual conv-BN-ReLU (64 channels: a Winograd layer), global pooling, a
/// classifier.
struct ResidualNet {
    stem: ConvBn,
    block: ConvBn,
    fc: QLinear,
}

impl ResidualNet {
    fn new(b: &Layers) -> quarc_models::Result<Self> {
        Ok(Self {
            stem: ConvBn::new(b, "stem", ConvSpec::new(1, 64, 3).stride(2).signed_input())?,
            block: ConvBn::new(b, "block", ConvSpec::new(64, 64, 3))?,
            fc: b.linear("fc", LinearSpec::new(64, 10))?,
        })
    }
}

impl Model for ResidualNet {
    fn forward_mode(&self, x: &Tensor, mode: Mode) -> quarc_models::Result<ModelOutput> {
        let h = self.stem.forward_act(x, mode, Activation::Relu)?;
        let h = (self.block.forward_act(&h, mode, Activation::Relu)? + h)?;
        let mut features = FeatureMap::new();
        features.insert("block", h.clone());
        let logits = self.fc.forward_t(&h.mean((2, 3))?, mode.train())?;
        Ok(ModelOutput { logits, features })
    }
}

fn factory(vars: &VarMap, qat: Option<&QatConfig>, dev: &Device) -> quarc_models::Result<Box<dyn Model>> {
    let b = ModelBuilder::new(vars, dev).seed(7).qat(qat.cloned());
    Ok(Box::new(b.build(ResidualNet::new)?))
}

fn experiment(dir: &std::path::Path, stop_after: Option<usize>) -> Experiment {
    let train = fashion_mnist::bundled_subset(Split::Train).unwrap();
    let test = fashion_mnist::bundled_subset(Split::Test).unwrap();
    let (train, test) = (
        train.take(&(0..400).collect::<Vec<_>>()).unwrap(),
        test.take(&(0..200).collect::<Vec<_>>()).unwrap(),
    );
    let config = TrainConfig {
        fraction: 0.25,
        select_every: 2,
        epochs: 3,
        batch_size: 32,
        eval_batch_size: 100,
        qat: QatConfig::lsq(2, 2).unwrap(),
        reference: ReferenceConfig {
            checkpoint: None,
            epochs: 1,
            lr: 0.05,
        },
        stop_after,
        seed: 5,
        ..TrainConfig::default()
    };
    let coreset: Arc<CoresetFactory> = Arc::new(|labels: Vec<u32>| {
        // DS from a fresh candidate pool of 2× the budget (half the data set per pass; unequal
        // classes, so the pool must still give every class its exact share).
        let mut c = CoresetConfig::preset("ds", 0.25, 2)?;
        c.pool = Some(quarc_coreset::CandidatePool { multiple: 2.0 });
        Ok(c.build(labels, 10, 5)?)
    });
    let cascade = Cascade::new(vec![LayerPair::same("block")], Box::new(Mse), 0.5).unwrap();
    Experiment {
        config,
        train: Arc::new(train),
        test: Arc::new(test),
        normalize: Some(Normalize::fashion_mnist()),
        run_dir: dir.to_path_buf(),
        device: Device::Cpu,
        verbose: false,
        noise: None,
        custom: Custom {
            model: Some(Arc::new(factory)),
            coreset: Some(coreset),
            cascade: Some(Arc::new(cascade)),
        },
    }
}

#[test]
fn a_user_model_trains_logs_and_resumes_bit_identically_through_the_trainer() {
    let root = std::env::temp_dir().join(format!("quarc-custom-{}", std::process::id()));
    let (a, b) = (root.join("straight"), root.join("resumed"));
    let reused = quarc_kernels::winograd_tiles_reused();
    let full = experiment(&a, None).run().unwrap();
    assert!(full.finished && full.epochs_done == 3);
    // every training step's block weight gradient read its forward's tiles: 13 reference
    // batches (400 images of 32) and 3 × 4 QAT batches (100 of 32); other tests only add
    assert!(quarc_kernels::winograd_tiles_reused() - reused >= 13 + 12);
    assert!(full.final_accuracy > 0.1, "{}", full.final_accuracy); // better than chance on 10 classes
    let first = experiment(&b, Some(1)).run().unwrap();
    assert!(!first.finished);
    let last = experiment(&b, None).run().unwrap();
    assert!(last.finished);
    assert_eq!(
        tensors(&a.join("model.safetensors")),
        tensors(&b.join("model.safetensors"))
    );
    assert_eq!(full.final_accuracy, last.final_accuracy);
    // the twin's weights moved away from the reference's, and the quantizer steps are there
    let (reference, model) = (
        tensors(&a.join("reference.safetensors")),
        tensors(&a.join("model.safetensors")),
    );
    let w = |v: &common::Tensors, n: &str| v.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_ne!(w(&reference, "block.conv.weight"), w(&model, "block.conv.weight"));
    assert!(model.iter().any(|(k, _)| k == "block.conv.wq.step"));
    // log (3 lines with the user cascade's layer), the coreset's selections, the plot
    let log = std::fs::read_to_string(b.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3);
    assert!(log.contains("\"clc\":[[\"block\""), "{log}");
    let sel: Vec<usize> =
        serde_json::from_str(&std::fs::read_to_string(b.join("selections/epoch_0.json")).unwrap()).unwrap();
    assert_eq!(sel.len(), 100);
    assert!(
        std::fs::read_to_string(b.join("accuracy.svg"))
            .unwrap()
            .contains("<svg")
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// Proxy scores come from the user's model too, and a coreset of `GivenScores` built from them
/// drives the run: the first selection is the per-class top-k of the proxy EL2N.
#[test]
fn proxy_scores_of_a_user_model_drive_its_coreset() {
    let dir = std::env::temp_dir().join(format!("quarc-custom-proxy-{}", std::process::id()));
    let mut exp = experiment(&dir, None);
    exp.config.epochs = 1;
    let one = ProxyConfig {
        runs: 1,
        el2n_after_epochs: 1,
    };
    let scores = exp.proxy_scores(one).unwrap();
    assert_eq!((scores.el2n.len(), scores.forgetting.len()), (400, 400));
    assert!(scores.el2n.iter().all(|&e| (0.0..=2f32.sqrt() + 1e-6).contains(&e)));
    // one epoch, one presentation per sample: never forgotten (0), or never learned (1 + 1)
    assert!(
        scores.forgetting.iter().all(|&f| f == 0.0 || f == 2.0),
        "{:?}",
        scores.forgetting
    );
    let el2n = scores.el2n.clone();
    exp.custom.coreset = Some(Arc::new(move |labels: Vec<u32>| {
        let given = quarc_coreset::GivenScores::new("el2n_proxy", el2n.clone())?;
        Ok(CoresetConfig::preset("el2n", 0.25, 2)?.build_with_scorer(Box::new(given), labels, 10, 5)?)
    }));
    assert!(exp.run().unwrap().finished);
    let mut sel: Vec<usize> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("selections/epoch_0.json")).unwrap()).unwrap();
    sel.sort_unstable();
    // expected: in each class, the round(n_c / 4) highest scores, ties to the lower index
    let labels = exp.train.labels();
    let mut expected = Vec::new();
    for class in 0..10u32 {
        let mut members: Vec<usize> = (0..400).filter(|&i| labels[i] == class).collect();
        let k = ((members.len() as f64 * 0.25).round() as usize).max(1);
        members.sort_by(|&a, &b| scores.el2n[b].total_cmp(&scores.el2n[a]).then(a.cmp(&b)));
        expected.extend_from_slice(&members[..k]);
    }
    expected.sort_unstable();
    assert_eq!(sel, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}
