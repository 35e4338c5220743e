//! Methods are coreset presets: one table, every name parses and builds, run options reach the
//! preset, and validation looks into the coreset before any work starts.

use quarc_coreset::{CoresetConfig, ScorerConfig, SelectorConfig};
use quarc_train::*;

#[test]
fn every_method_parses_and_builds_its_preset() {
    let labels: Vec<u32> = (0..200).map(|i| i % 10).collect();
    for m in Method::ALL {
        assert_eq!(Method::parse(m.name()).unwrap(), m);
        let config = TrainConfig {
            method: m,
            ..TrainConfig::default()
        };
        config.validate().unwrap_or_else(|e| panic!("{}: {e}", m.name()));
        let coreset = build_coreset(&config, labels.clone()).unwrap();
        assert_eq!(coreset.is_none(), m == Method::Full, "{}", m.name());
    }
    assert_eq!(Method::ALL.len(), 12);
    // The resample control re-selects (it used to draw once, like `random`).
    assert!(Method::RandomResample.adaptive() && Method::Rs2.adaptive() && !Method::Random.adaptive());
}

#[test]
fn run_options_reach_the_preset() {
    let config = TrainConfig {
        method: Method::Quarc,
        quarc_lambda: 0.25,
        beta_schedule: quarc_coreset::BetaSchedule::CodeCosine,
        selector: SelectorKind::Stratified {
            bins: 20,
            prune_fraction: 0.1,
        },
        candidate_pool: Some(quarc_coreset::CandidatePool { multiple: 3.0 }),
        ..TrainConfig::default()
    };
    let c = coreset_config(&config).unwrap().unwrap();
    assert_eq!(c.pool, Some(quarc_coreset::CandidatePool { multiple: 3.0 }));
    let ScorerConfig::WeightedSum { parts, .. } = &c.scorer else {
        panic!("quarc is a weighted sum: {c:?}")
    };
    assert_eq!(parts[1].weight, 0.25);
    assert!(matches!(
        parts[0].scorer,
        ScorerConfig::Acs {
            beta: quarc_coreset::BetaSchedule::CodeCosine,
            ..
        }
    ));
    assert!(matches!(c.selector, SelectorConfig::Stratified { bins: 20, .. }));
}

#[test]
fn validation_looks_into_the_coreset() {
    let huge_bins = TrainConfig {
        selector: SelectorKind::Stratified {
            bins: 1_000_000_000,
            prune_fraction: 0.1,
        },
        ..TrainConfig::default()
    };
    assert!(
        huge_bins.validate().is_err(),
        "a bin count that would allocate gigabytes passed"
    );
    let mut custom = CoresetConfig::preset("acs", 0.1, 5).unwrap();
    custom.schedule = quarc_coreset::ScheduleConfig::Every { epochs: 0 };
    let bad = TrainConfig {
        coreset: Some(custom),
        ..TrainConfig::default()
    };
    assert!(bad.validate().is_err());
    // A whole coreset in the run's JSON, with a typo inside it, is refused when parsed.
    let mut json = serde_json::to_value(TrainConfig {
        coreset: Some(CoresetConfig::preset("rs2", 0.05, 1).unwrap()),
        ..TrainConfig::default()
    })
    .unwrap();
    assert!(serde_json::from_value::<TrainConfig>(json.clone()).is_ok());
    json["coreset"]["selector"]["bins"] = serde_json::json!(3);
    assert!(serde_json::from_value::<TrainConfig>(json).is_err());
}
