//! The flagship example's synthetic mode: writes CIFAR-format files, loads them with the real
//! loader, trains the FP ResNet-18 reference and one QuaRC epoch with CLC, exports.

use quarc::coreset::BetaSchedule;
use quarc::correction::CascadeMode;
use quarc::train::Method;
use quarc_harness::cifar::{CifarRun, run};

#[test]
fn resnet18_cifar_synthetic_run() {
    let out = std::env::temp_dir().join(format!("quarc-r18-synthetic-{}", std::process::id()));
    let args = CifarRun {
        data_dir: None,
        synthetic: true,
        method: Method::Quarc,
        fraction: 0.1,
        w_bits: 2,
        a_bits: Some(2),
        epochs: 1,
        select_every: 1,
        beta_schedule: BetaSchedule::PaperCosine,
        clc: Some((CascadeMode::NaturalForward, 1.0)),
        teacher: None,
        fp_epochs: 1,
        batch_size: 32,
        lr: 0.01,
        device: "cpu".into(),
        seed: 0,
        out: out.clone(),
    };
    let s = run(&args).unwrap();
    assert!(s.finished && s.epochs_done == 1);
    assert!((0.0..=1.0).contains(&s.final_accuracy));
    let dir = out.join("quarc-f0.1-w2a2-seed0");
    // 80 synthetic training images, 10 % class-balanced: 1 per class.
    let sel: Vec<usize> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("selections/epoch_0.json")).unwrap()).unwrap();
    assert_eq!(sel.len(), 10);
    assert!(
        std::fs::read_to_string(dir.join("log.jsonl"))
            .unwrap()
            .contains("layer4.1")
    );
    assert!(dir.join("model.int.safetensors").is_file());
    // Without data and without --synthetic: a clear error, not a panic.
    let err = run(&CifarRun {
        synthetic: false,
        ..args
    })
    .unwrap_err();
    assert!(err.to_string().contains("--data-dir"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}
