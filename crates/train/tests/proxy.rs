//! Proxy scores (EL2N early in full-precision runs, forgetting over whole runs) on a tiny slice
//! of the bundled Fashion-MNIST subset: values in their ranges, deterministic, averaged over
//! runs, saved and loaded, and bad settings or files refused.

mod common;

use std::sync::Arc;

use candle_core::Device;
use quarc_data::{Normalize, Split, fashion_mnist};
use quarc_train::*;

const PER_CLASS: usize = 12;

fn experiment(dir: &std::path::Path) -> Experiment {
    let train = fashion_mnist::bundled_subset(Split::Train).unwrap();
    let test = fashion_mnist::bundled_subset(Split::Test).unwrap();
    let config = TrainConfig {
        method: Method::El2n,
        batch_size: 16,
        eval_batch_size: 50,
        reference: ReferenceConfig {
            checkpoint: None,
            epochs: 2,
            lr: 0.05,
        },
        seed: 5,
        ..TrainConfig::default()
    };
    Experiment {
        config,
        train: Arc::new(common::first_per_class(&train, PER_CLASS)),
        test: Arc::new(common::first_per_class(&test, 5)),
        normalize: Some(Normalize::fashion_mnist()),
        run_dir: dir.to_path_buf(),
        device: Device::Cpu,
        verbose: false,
        noise: None,
        custom: Default::default(),
    }
}

#[test]
fn proxy_scores_lie_in_their_ranges_repeat_exactly_and_average_over_runs() {
    let dir = std::env::temp_dir().join(format!("quarc-proxy-{}", std::process::id()));
    let exp = experiment(&dir);
    let n = 10 * PER_CLASS;
    let one = ProxyConfig {
        runs: 1,
        el2n_after_epochs: 1,
    };
    let a = exp.proxy_scores(one).unwrap();
    assert_eq!((a.el2n.len(), a.forgetting.len()), (n, n));
    // EL2N = ‖p − onehot‖₂ lies in [0, √2].
    assert!(
        a.el2n.iter().all(|&e| (0.0..=2f32.sqrt() + 1e-6).contains(&e)),
        "{:?}",
        a.el2n
    );
    // Two presentations per sample (2 epochs): at most one forgetting event when learned,
    // presentations + 1 = 3 when never predicted correctly.
    assert!(
        a.forgetting.iter().all(|&f| [0.0, 1.0, 3.0].contains(&f)),
        "{:?}",
        a.forgetting
    );
    assert!(
        a.forgetting.iter().any(|&f| f != a.forgetting[0]),
        "one value for every sample"
    );
    // The same seed gives the same scores.
    assert_eq!(exp.proxy_scores(one).unwrap(), a);
    // Two runs average the first run (identical to `a`) with a second, different one.
    let two = exp
        .proxy_scores(ProxyConfig {
            runs: 2,
            el2n_after_epochs: 2,
        })
        .unwrap();
    let a2 = exp
        .proxy_scores(ProxyConfig {
            runs: 1,
            el2n_after_epochs: 2,
        })
        .unwrap();
    // Forgetting does not depend on when EL2N is taken; EL2N does.
    assert_eq!(a2.forgetting, a.forgetting);
    assert_ne!(a2.el2n, a.el2n);
    assert!(
        two.forgetting.iter().zip(&a.forgetting).any(|(t, o)| t != o),
        "the second run repeated the first"
    );
    for (t, o) in two.forgetting.iter().zip(&a.forgetting) {
        let second = 2.0 * t - o; // the second run's own score
        assert!([0.0, 1.0, 3.0].iter().any(|v| (second - v).abs() < 1e-5), "{second}");
    }
    // Save, load, and refuse a wrong length or a corrupt file.
    let path = dir.join("proxy.safetensors");
    std::fs::create_dir_all(&dir).unwrap();
    two.save(&path).unwrap();
    assert_eq!(ProxyScores::load(&path, n).unwrap(), two);
    assert!(ProxyScores::load(&path, n + 1).is_err());
    std::fs::write(&path, b"not a safetensors file").unwrap();
    assert!(ProxyScores::load(&path, n).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_proxy_settings_are_typed_errors() {
    let exp = experiment(&std::env::temp_dir().join("quarc-proxy-unused"));
    for (runs, el2n_after_epochs) in [(0, 1), (MAX_PROXY_RUNS + 1, 1), (1, 0), (1, 3)] {
        let e = exp.proxy_scores(ProxyConfig {
            runs,
            el2n_after_epochs,
        });
        assert!(
            matches!(e, Err(Error::InvalidConfig(_))),
            "{runs} {el2n_after_epochs}: {e:?}"
        );
    }
}
