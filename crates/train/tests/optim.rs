//! Optimisers and schedules against hand-computed values (PyTorch semantics).

use candle_core::{Device, Tensor, Var};
use quarc_train::*;

fn one_var(v: f64) -> (Var, ParamGroup) {
    let var = Var::new(&[v], &Device::Cpu).unwrap();
    let g = ParamGroup {
        vars: vec![("w".into(), var.clone())],
        lr_scale: 1.0,
        weight_decay: 0.1,
    };
    (var, g)
}

/// Loss = 3·w, so the gradient is 3 every step.
fn step(opt: &mut Optimizer, var: &Var, lr: f64) {
    let grads = (var.as_tensor() * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
    opt.step(&grads, lr).unwrap();
}

#[test]
fn sgd_momentum_and_nesterov_match_pytorch() {
    // torch.optim.SGD([w], lr=0.5, momentum=0.9, weight_decay=0.1), w = 1, grad 3:
    // step 1: d = 3 + 0.1 = 3.1, v = 3.1, w = 1 − 1.55 = −0.55
    // step 2: d = 3 − 0.055 = 2.945, v = 0.9·3.1 + 2.945 = 5.735, w = −0.55 − 2.8675 = −3.4175
    let (var, g) = one_var(1.0);
    let mut opt = Optimizer::new(
        OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        vec![g],
    )
    .unwrap();
    step(&mut opt, &var, 0.5);
    assert!((var.as_tensor().to_vec1::<f64>().unwrap()[0] + 0.55).abs() < 1e-12);
    step(&mut opt, &var, 0.5);
    assert!((var.as_tensor().to_vec1::<f64>().unwrap()[0] + 3.4175).abs() < 1e-12);
    // Nesterov, step 1: d = 3.1, v = 3.1, update = d + 0.9·v = 5.89 → w = 1 − 2.945 = −1.945
    let (var, g) = one_var(1.0);
    let mut opt = Optimizer::new(
        OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: true,
        },
        vec![g],
    )
    .unwrap();
    step(&mut opt, &var, 0.5);
    assert!((var.as_tensor().to_vec1::<f64>().unwrap()[0] + 1.945).abs() < 1e-12);
}

#[test]
fn adamw_first_steps_match_the_formula() {
    // torch.optim.AdamW([w], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1), w = 1, grad 3:
    // step 1: m̂ = 3, v̂ = 9 → update = 3/(3 + 1e-8) + 0.1·1 → w = 1 − 0.1·(≈1 + 0.1) = 0.89
    let (var, g) = one_var(1.0);
    let mut opt = Optimizer::new(
        OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
        vec![g],
    )
    .unwrap();
    step(&mut opt, &var, 0.1);
    let w = var.as_tensor().to_vec1::<f64>().unwrap()[0];
    assert!((w - (1.0 - 0.1 * (3.0 / (3.0 + 1e-8) + 0.1))).abs() < 1e-12, "{w}");
    // State round trip: a restored optimiser takes the same second step.
    let state: std::collections::BTreeMap<String, Tensor> = opt.state().unwrap().into_iter().collect();
    let (var2, g2) = one_var(w);
    let mut opt2 = Optimizer::new(
        OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
        vec![g2],
    )
    .unwrap();
    opt2.load_state(&state).unwrap();
    step(&mut opt, &var, 0.1);
    step(&mut opt2, &var2, 0.1);
    assert_eq!(
        var.as_tensor().to_vec1::<f64>().unwrap(),
        var2.as_tensor().to_vec1::<f64>().unwrap()
    );
    assert!(
        Optimizer::new(
            OptimizerConfig::Sgd {
                momentum: 1.5,
                nesterov: false
            },
            vec![]
        )
        .is_err()
    );
}

#[test]
fn schedules() {
    let base = LrPlan {
        base: 1.0,
        schedule: LrSchedule::Linear,
        warmup_epochs: 0,
    };
    assert_eq!(base.lr(5, 10), 0.5);
    let step = LrPlan {
        schedule: LrSchedule::Step { every: 3, gamma: 0.1 },
        ..base
    };
    assert!((step.lr(7, 10) - 0.01).abs() < 1e-15);
    let cos = LrPlan {
        schedule: LrSchedule::Cosine { eta_min: 0.1 },
        ..base
    };
    assert!((cos.lr(10, 10) - 0.1).abs() < 1e-12);
    assert!(LrPlan { base: 0.0, ..base }.validate().is_err());
    assert!(
        LrPlan {
            schedule: LrSchedule::Step { every: 0, gamma: 0.1 },
            ..base
        }
        .validate()
        .is_err()
    );
}

#[test]
fn config_validation_and_json_round_trip() {
    let c = TrainConfig::default();
    c.validate().unwrap();
    let json = serde_json::to_string_pretty(&c).unwrap();
    assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), c);
    for bad in [
        TrainConfig {
            fraction: 0.0,
            ..c.clone()
        },
        TrainConfig {
            fraction: 1.5,
            ..c.clone()
        },
        TrainConfig {
            select_every: 0,
            ..c.clone()
        },
        TrainConfig { epochs: 0, ..c.clone() },
        TrainConfig {
            objective: ObjectiveConfig {
                kd_weight: 0.0,
                ce_weight: 0.0,
                ..Default::default()
            },
            ..c.clone()
        },
        TrainConfig {
            model: ModelKind::MobileNetV2 { width: 0.0 },
            ..c.clone()
        },
    ] {
        assert!(matches!(bad.validate(), Err(Error::InvalidConfig(_))), "{bad:?}");
    }
    assert!(serde_json::from_str::<TrainConfig>(r#"{"epochs": 3, "typo": 1}"#).is_err());
    assert_eq!(Method::parse("quarc").unwrap(), Method::Quarc);
    assert!(Method::parse("nope").is_err());
}
