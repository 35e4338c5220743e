//! `CoresetConfig`: presets, JSON, validation, and the two resampling controls.

use std::collections::BTreeSet;

use quarc_coreset::*;

fn labels(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| i % 10).collect()
}

#[test]
fn every_preset_parses_round_trips_and_builds() {
    for name in PRESETS {
        let c = CoresetConfig::preset(name, 0.1, 5).unwrap_or_else(|e| panic!("{name}: {e}"));
        let json = serde_json::to_string_pretty(&c).unwrap();
        let back: CoresetConfig = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: {e}\n{json}"));
        assert_eq!(back, c, "{name}");
        let coreset = back.build(labels(200), 10, 3).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(coreset.num_samples(), 200);
    }
    assert!(matches!(CoresetConfig::preset("acs+", 0.1, 5), Err(Error::InvalidConfig(m)) if m.contains("acs+")));
}

#[test]
fn adaptive_presets_reselect_and_one_shot_ones_do_not() {
    for (name, adaptive) in [
        ("random", false),
        ("el2n", false),
        ("acs", true),
        ("random_resample", true),
        ("rs2", true),
    ] {
        assert_eq!(
            CoresetConfig::preset(name, 0.1, 5).unwrap().adaptive(),
            adaptive,
            "{name}"
        );
    }
}

fn rejects(json: &str, what: &str) {
    let r = serde_json::from_str::<CoresetConfig>(json);
    assert!(r.is_err(), "{what} was accepted: {json}");
}

#[test]
fn unknown_fields_are_rejected_at_every_level() {
    let good = serde_json::to_value(CoresetConfig::preset("quarc", 0.1, 5).unwrap()).unwrap();
    let mut top = good.clone();
    top["selction"] = serde_json::json!(1);
    rejects(&top.to_string(), "a top-level typo");
    let mut scorer = good.clone();
    scorer["scorer"]["parts"][0]["scorer"]["bta"] = serde_json::json!(1);
    rejects(&scorer.to_string(), "a typo in a nested scorer");
    let mut part = good.clone();
    part["scorer"]["parts"][1]["wieght"] = serde_json::json!(1);
    rejects(&part.to_string(), "a typo in a weighted part");
    let mut sel = good.clone();
    sel["selector"]["kep"] = serde_json::json!("keep_highest");
    rejects(&sel.to_string(), "a typo in the selector");
    let mut sched = good.clone();
    sched["schedule"]["epoch"] = serde_json::json!(3);
    rejects(&sched.to_string(), "a typo in the schedule");
    let mut empty_variant = good;
    empty_variant["scorer"] = serde_json::json!({"type": "evs", "extra": 1});
    rejects(&empty_variant.to_string(), "a field on a scorer without fields");
    rejects(r#"{"type": "acss"}"#, "an unknown scorer type");
}

fn invalid(mutate: impl FnOnce(&mut CoresetConfig)) -> Error {
    let mut c = CoresetConfig::preset("acs", 0.1, 5).unwrap();
    mutate(&mut c);
    let e = c.validate().expect_err("accepted");
    assert!(
        c.build(labels(100), 10, 0).is_err(),
        "build accepted what validate rejects"
    );
    e
}

#[test]
fn bad_values_are_typed_errors_naming_the_field() {
    let bins = |b: usize| {
        move |c: &mut CoresetConfig| {
            c.selector = SelectorConfig::Stratified {
                bins: b,
                prune_fraction: 0.1,
                keep: Direction::KeepHighest,
            }
        }
    };
    assert!(matches!(invalid(bins(0)), Error::InvalidConfig(m) if m.contains("bins")));
    assert!(matches!(invalid(bins(1_000_000_000)), Error::InvalidConfig(m) if m.contains("bins")));
    let e = invalid(|c| {
        c.selector = SelectorConfig::Stratified {
            bins: 10,
            prune_fraction: 1.0,
            keep: Direction::KeepHighest,
        }
    });
    assert!(matches!(e, Error::InvalidConfig(m) if m.contains("prune_fraction")));
    for f in [0.0, -0.1, 1.5, f64::NAN] {
        assert!(
            matches!(invalid(|c| c.budget = Budget::Fraction(f)), Error::InvalidBudget(_)),
            "{f}"
        );
    }
    assert!(matches!(
        invalid(|c| c.budget = Budget::Count(0)),
        Error::InvalidBudget(_)
    ));
    assert!(
        matches!(invalid(|c| c.schedule = ScheduleConfig::Every { epochs: 0 }), Error::InvalidConfig(m) if m.contains("epochs"))
    );
    let res = |t: f64| {
        move |c: &mut CoresetConfig| {
            c.scorer = ScorerConfig::Res {
                divergence: Divergence::default(),
                temperature: t,
            }
        }
    };
    assert!(matches!(invalid(res(0.0)), Error::InvalidConfig(m) if m.contains("temperature")));
    assert!(matches!(invalid(res(f64::INFINITY)), Error::InvalidConfig(m) if m.contains("temperature")));
    let sum = |parts: Vec<WeightedPart>| {
        move |c: &mut CoresetConfig| {
            c.scorer = ScorerConfig::WeightedSum {
                parts,
                normalization: Normalization::None,
            }
        }
    };
    assert!(matches!(invalid(sum(vec![])), Error::InvalidConfig(m) if m.contains("parts")));
    let nan = vec![WeightedPart {
        weight: f64::NAN,
        scorer: ScorerConfig::Evs {},
    }];
    assert!(matches!(invalid(sum(nan)), Error::InvalidConfig(m) if m.contains("weight")));
}

fn select_at(coreset: &mut Coreset, epoch: usize) -> Vec<usize> {
    coreset
        .select_without_pass(Progress::new(epoch, 20))
        .unwrap()
        .indices
        .clone()
}

#[test]
fn random_resample_draws_anew_at_each_selection_and_random_does_not() {
    let mut resample = CoresetConfig::preset("random_resample", 0.1, 5)
        .unwrap()
        .build(labels(500), 10, 7)
        .unwrap();
    let (a, b) = (select_at(&mut resample, 0), select_at(&mut resample, 5));
    assert_eq!((a.len(), b.len()), (50, 50));
    assert_ne!(a, b, "random_resample kept its subset");
    let mut fixed = CoresetConfig::preset("random", 0.1, 5)
        .unwrap()
        .build(labels(500), 10, 7)
        .unwrap();
    assert_eq!(select_at(&mut fixed, 0), select_at(&mut fixed, 5));
    // Same seed, same draw; another seed, another.
    let mut again = CoresetConfig::preset("random_resample", 0.1, 5)
        .unwrap()
        .build(labels(500), 10, 7)
        .unwrap();
    assert_eq!(select_at(&mut again, 5), b);
    let mut other = CoresetConfig::preset("random_resample", 0.1, 5)
        .unwrap()
        .build(labels(500), 10, 8)
        .unwrap();
    assert_ne!(select_at(&mut other, 5), b);
}

#[test]
fn rs2_sees_the_whole_data_set_before_any_sample_repeats() {
    // 10 classes of 53: per class round(0.1·53) = 5 a selection, ⌈53/5⌉ = 11 selections a round.
    let labels = labels(530);
    let mut rs2 = CoresetConfig::preset("rs2", 0.1, 5)
        .unwrap()
        .build(labels.clone(), 10, 1)
        .unwrap();
    assert!(rs2.needs().index_only, "rs2 must not need a scoring pass");
    let mut seen_count = vec![0usize; 530];
    let mut previous: Option<Vec<usize>> = None;
    for epoch in 0..11 {
        assert!(rs2.needs_scoring(epoch), "rs2 re-selects every epoch");
        let s = select_at(&mut rs2, epoch);
        assert_eq!(s.len(), 50);
        assert_eq!(
            s.iter().collect::<BTreeSet<_>>().len(),
            50,
            "a sample twice in one selection"
        );
        for c in 0..10 {
            assert_eq!(
                s.iter().filter(|&&i| labels[i] == c).count(),
                5,
                "class {c} at epoch {epoch}"
            );
        }
        assert_ne!(previous.as_ref(), Some(&s));
        s.iter().for_each(|&i| seen_count[i] += 1);
        previous = Some(s);
    }
    // After one round every sample was seen; only the top-up of the last chunk (2 per class) repeats.
    assert!(
        seen_count.iter().all(|&n| n >= 1),
        "a sample was never drawn in the first round"
    );
    assert_eq!(seen_count.iter().filter(|&&n| n == 2).count(), 20);
    // A new round starts in a new order.
    let mut again = CoresetConfig::preset("rs2", 0.1, 5)
        .unwrap()
        .build(labels, 10, 1)
        .unwrap();
    assert_ne!(select_at(&mut again, 11), select_at(&mut again, 0));
}

#[test]
fn a_pass_free_selection_is_refused_for_scorers_that_read_outputs() {
    let mut acs = CoresetConfig::preset("acs", 0.1, 5)
        .unwrap()
        .build(labels(100), 10, 0)
        .unwrap();
    assert!(matches!(
        acs.select_without_pass(Progress::new(0, 10)),
        Err(Error::MissingInput { .. })
    ));
}
