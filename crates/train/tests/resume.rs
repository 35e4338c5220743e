//! A run stopped mid-way and resumed gives bit-identical weights and coreset (CPU), on a tiny
//! slice of the bundled Fashion-MNIST subset. Also checks the run directory's files.

mod common;

use std::sync::Arc;

use common::tensors;

use candle_core::Device;
use quarc_data::{Normalize, Split, fashion_mnist};
use quarc_train::*;

fn experiment(dir: &std::path::Path, stop_after: Option<usize>) -> Experiment {
    let train = fashion_mnist::bundled_subset(Split::Train).unwrap();
    let test = fashion_mnist::bundled_subset(Split::Test).unwrap();
    // 300 training images (30 per class), 200 test images.
    let config = TrainConfig {
        method: Method::Quarc,
        fraction: 0.2,
        select_every: 2,
        epochs: 4,
        batch_size: 32,
        eval_batch_size: 100,
        reference: ReferenceConfig {
            checkpoint: None,
            epochs: 1,
            lr: 0.05,
        },
        objective: ObjectiveConfig {
            clc: Some(ClcConfig {
                layers: vec!["conv2".into(), "conv3".into()],
                beta: 1.0,
                loss: ClcLoss::Mse,
                mode: Default::default(),
            }),
            ..Default::default()
        },
        stop_after,
        seed: 3,
        ..TrainConfig::default()
    };
    Experiment {
        config,
        train: Arc::new(common::first_per_class(&train, 30)),
        test: Arc::new(common::first_per_class(&test, 20)),
        normalize: Some(Normalize::fashion_mnist()),
        run_dir: dir.to_path_buf(),
        device: Device::Cpu,
        verbose: false,
        // Diagnostics only: pretend every 7th training sample is mislabelled.
        noise: Some((0..300).map(|i| i % 7 == 0).collect()),
        custom: Default::default(),
    }
}

#[test]
fn stopped_and_resumed_run_is_bit_identical() {
    let root = std::env::temp_dir().join(format!("quarc-resume-{}", std::process::id()));
    let (a, b) = (root.join("straight"), root.join("resumed"));
    let full = experiment(&a, None).run().unwrap();
    assert!(full.finished && full.epochs_done == 4);
    let first = experiment(&b, Some(1)).run().unwrap();
    assert!(!first.finished && first.epochs_done == 1);
    // As if killed after logging epoch 1 but before its checkpoint: the stale line must go.
    let log_path = b.join("log.jsonl");
    let first_line = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .replace("\"epoch\":0", "\"epoch\":1");
    std::fs::write(
        &log_path,
        format!("{}{first_line}\n", std::fs::read_to_string(&log_path).unwrap()),
    )
    .unwrap();
    let second = experiment(&b, Some(2)).run().unwrap();
    assert_eq!(second.epochs_done, 3);
    let last = experiment(&b, None).run().unwrap();
    assert!(last.finished);
    assert_eq!(
        tensors(&a.join("model.safetensors")),
        tensors(&b.join("model.safetensors"))
    );
    for e in [0, 2] {
        let sel = |d: &std::path::Path| std::fs::read_to_string(d.join(format!("selections/epoch_{e}.json"))).unwrap();
        assert_eq!(sel(&a), sel(&b));
    }
    assert_eq!(full.final_accuracy, last.final_accuracy);
    // The run directory holds the log (4 lines), the plot, the integer export and the summary.
    let log = std::fs::read_to_string(b.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 4);
    assert!(log.contains("\"clc\":[[\"conv2\""));
    assert!(
        log.contains("\"selected_noisy_share\""),
        "noise diagnostics missing from the log"
    );
    assert!(
        std::fs::read_to_string(b.join("accuracy.svg"))
            .unwrap()
            .contains("<svg")
    );
    let export = quarc_quant_core::export::IntegerExport::load(b.join("model.int.safetensors")).unwrap();
    assert_eq!(
        export.layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["conv2", "conv3"]
    );
    // 20 % of 30 per class = 6 per class.
    let sel: Vec<usize> =
        serde_json::from_str(&std::fs::read_to_string(b.join("selections/epoch_0.json")).unwrap()).unwrap();
    assert_eq!(sel.len(), 60);
    // A different configuration in the same directory is refused.
    let mut other = experiment(&b, None);
    other.config.fraction = 0.5;
    assert!(matches!(other.run(), Err(Error::Run { .. })));
    std::fs::remove_dir_all(&root).unwrap();
}

/// RS2 through the trainer: a new class-balanced subset every epoch, none repeating within the
/// first pass over the data, and no scoring pass (its scores are not model outputs).
#[test]
fn rs2_draws_a_fresh_disjoint_subset_every_epoch() {
    let dir = std::env::temp_dir().join(format!("quarc-rs2-{}", std::process::id()));
    let mut e = experiment(&dir, None);
    e.config.method = Method::Rs2;
    e.config.objective.clc = None;
    let summary = e.run().unwrap();
    assert!(summary.finished);
    assert_eq!(summary.scoring_secs, 0.0, "rs2 ran a scoring pass");
    let mut seen = std::collections::BTreeSet::new();
    for epoch in 0..4 {
        let path = dir.join(format!("selections/epoch_{epoch}.json"));
        let sel: Vec<usize> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(sel.len(), 60, "epoch {epoch}");
        for i in sel {
            assert!(
                seen.insert(i),
                "sample {i} repeated at epoch {epoch} before the data set was used up"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A candidate pool through the trainer: each selection comes from that epoch's pool alone
/// (the pass scored nothing else), with the budget's share of every class.
#[test]
fn a_pooled_run_selects_from_each_epochs_pool() {
    let dir = std::env::temp_dir().join(format!("quarc-pool-{}", std::process::id()));
    let mut e = experiment(&dir, None);
    e.config.method = Method::Acs;
    e.config.fraction = 0.1;
    e.config.objective.clc = None;
    e.config.candidate_pool = Some(quarc_coreset::CandidatePool { multiple: 2.0 });
    let labels = e.train.labels();
    let summary = e.run().unwrap();
    assert!(summary.finished && summary.scoring_secs > 0.0);
    for epoch in [0, 2] {
        let path = dir.join(format!("selections/epoch_{epoch}.json"));
        let sel: Vec<usize> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let pool = quarc_coreset::CandidatePool { multiple: 2.0 }
            .draw(&labels, quarc_coreset::Budget::Fraction(0.1), 3, epoch)
            .unwrap()
            .unwrap();
        assert_eq!((sel.len(), pool.len()), (30, 60), "epoch {epoch}");
        assert!(
            sel.iter().all(|i| pool.contains(i)),
            "epoch {epoch}: {sel:?} ⊄ {pool:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
