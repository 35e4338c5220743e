//! The orchestrator, the score table and a user-defined scorer plugged in through the public API.

use candle_core::{DType, Device, Tensor};
use quarc_base::{ModelOutput, Progress};
use quarc_coreset::*;

/// A scorer written by a user: prefers samples whose student logit for class 0 is large.
struct ClassZeroLogit;
impl Scorer for ClassZeroLogit {
    fn name(&self) -> String {
        "class0".into()
    }
    fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
        Ok(input.student.logits.narrow(1, 0, 1)?.squeeze(1)?)
    }
}

/// Logits that make sample i's score for class0 equal to i (and reference = zeros).
fn batch(indices: &[usize]) -> (ModelOutput, ModelOutput, Tensor) {
    let dev = Device::Cpu;
    let z: Vec<f32> = indices.iter().flat_map(|&i| [i as f32, 0.0]).collect();
    let s = ModelOutput::logits_only(Tensor::from_vec(z, (indices.len(), 2), &dev).unwrap());
    let r = ModelOutput::logits_only(Tensor::zeros((indices.len(), 2), DType::F32, &dev).unwrap());
    let y = Tensor::from_vec(
        indices.iter().map(|&i| (i % 2) as u32).collect::<Vec<_>>(),
        indices.len(),
        &dev,
    )
    .unwrap();
    (s, r, y)
}

fn feed_all(c: &mut Coreset, order: &[usize], p: Progress) {
    c.begin_scoring(p).unwrap();
    for chunk in order.chunks(7) {
        let (s, r, y) = batch(chunk);
        c.feed(&ScoreInput {
            indices: chunk,
            labels: &y,
            student: &s,
            reference: Some(&r),
        })
        .unwrap();
    }
}

#[test]
fn user_scorer_inside_annealed_and_class_balanced() {
    let n = 40;
    let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    // β = 1 at t = 0 → only the user scorer counts; top 25 % per class by "index".
    let scorer = Annealed::new(
        Box::new(ClassZeroLogit),
        Box::new(Disagreement),
        BetaSchedule::PaperCosine,
        Normalization::MinMax,
    );
    let mut c = Coreset::new(
        Box::new(scorer),
        Box::new(ClassBalanced::new(TopK::highest())),
        SelectionSchedule::every(3).unwrap(),
        Budget::Fraction(0.25),
        labels,
        2,
        7,
    )
    .unwrap();
    assert!(c.needs().reference);
    // Batches arrive in a scrambled order.
    let order: Vec<usize> = (0..n).map(|i| (i * 17) % n).collect();
    feed_all(&mut c, &order, Progress::new(0, 9));
    let s = c.select().unwrap().clone();
    // class 0 = even indices (20 of them), keep 5 largest: 30..38; class 1: 31..39
    assert_eq!(s.indices, vec![30, 31, 32, 33, 34, 35, 36, 37, 38, 39]);
    assert_eq!(c.history()[0].mixing_weights[0], ("beta".into(), 1.0));
    assert!(!c.needs_scoring(1) && c.needs_scoring(3));
    assert_eq!(c.table().unwrap().names(), &["class0".to_string(), "ds".to_string()]);
}

#[test]
fn missing_duplicate_and_bad_batches_are_typed_errors() {
    let labels: Vec<u32> = (0..10).map(|i| (i % 2) as u32).collect();
    let mut c = Coreset::new(
        Box::new(Disagreement),
        Box::new(TopK::highest()),
        SelectionSchedule::one_shot(),
        Budget::Count(3),
        labels.clone(),
        2,
        0,
    )
    .unwrap();
    let (s, r, y) = batch(&[0, 1, 2]);
    // feeding before begin_scoring
    assert!(matches!(
        c.feed(&ScoreInput {
            indices: &[0, 1, 2],
            labels: &y,
            student: &s,
            reference: Some(&r)
        }),
        Err(Error::NoScores)
    ));
    c.begin_scoring(Progress::new(0, 1)).unwrap();
    // reference missing while the scorer needs it
    assert!(matches!(
        c.feed(&ScoreInput {
            indices: &[0, 1, 2],
            labels: &y,
            student: &s,
            reference: None
        }),
        Err(Error::MissingInput { .. })
    ));
    c.feed(&ScoreInput {
        indices: &[0, 1, 2],
        labels: &y,
        student: &s,
        reference: Some(&r),
    })
    .unwrap();
    assert!(matches!(
        c.feed(&ScoreInput {
            indices: &[0, 1, 2],
            labels: &y,
            student: &s,
            reference: Some(&r)
        }),
        Err(Error::DuplicateIndex { index: 0 })
    ));
    assert!(matches!(c.select(), Err(Error::MissingScores { count: 7, .. })));
    // index out of range, label out of range, NaN logits, shape mismatch
    let (s2, r2, _) = batch(&[10]);
    let y2 = Tensor::new(&[0u32], &Device::Cpu).unwrap();
    assert!(matches!(
        c.feed(&ScoreInput {
            indices: &[10],
            labels: &y2,
            student: &s2,
            reference: Some(&r2)
        }),
        Err(Error::IndexOutOfRange { index: 10, .. })
    ));
    let (s3, r3, _) = batch(&[3]);
    let bad_label = Tensor::new(&[5u32], &Device::Cpu).unwrap();
    assert!(matches!(
        c.feed(&ScoreInput {
            indices: &[3],
            labels: &bad_label,
            student: &s3,
            reference: Some(&r3)
        }),
        Err(Error::LabelOutOfRange { label: 5, .. })
    ));
    let nan = ModelOutput::logits_only(Tensor::new(&[[f32::NAN, 0.0]], &Device::Cpu).unwrap());
    assert!(matches!(
        c.feed(&ScoreInput {
            indices: &[3],
            labels: &y2,
            student: &nan,
            reference: Some(&r3)
        }),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        c.feed(&ScoreInput {
            indices: &[3, 4],
            labels: &y2,
            student: &s3,
            reference: Some(&r3)
        }),
        Err(Error::ShapeMismatch { .. })
    ));
    // construction errors
    assert!(matches!(
        Coreset::new(
            Box::new(Disagreement),
            Box::new(TopK::highest()),
            SelectionSchedule::one_shot(),
            Budget::Fraction(0.0),
            labels.clone(),
            2,
            0
        ),
        Err(Error::InvalidBudget(_))
    ));
    assert!(matches!(
        Coreset::new(
            Box::new(Disagreement),
            Box::new(TopK::highest()),
            SelectionSchedule::one_shot(),
            Budget::Fraction(0.5),
            vec![],
            2,
            0
        ),
        Err(Error::Empty(_))
    ));
    assert!(matches!(
        Coreset::new(
            Box::new(Disagreement),
            Box::new(TopK::highest()),
            SelectionSchedule::one_shot(),
            Budget::Fraction(0.5),
            vec![0, 3],
            2,
            0
        ),
        Err(Error::LabelOutOfRange { .. })
    ));
}

#[test]
fn same_seed_same_coreset_and_state_round_trip() {
    let n = 50;
    let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    let make = || {
        Coreset::new(
            Box::new(RandomScore::new(9)),
            Box::new(ClassBalanced::new(TopK::highest())),
            SelectionSchedule::every(2).unwrap(),
            Budget::Fraction(0.2),
            labels.clone(),
            2,
            1,
        )
        .unwrap()
    };
    let order: Vec<usize> = (0..n).collect();
    let (mut a, mut b) = (make(), make());
    feed_all(&mut a, &order, Progress::new(0, 4));
    let rev: Vec<usize> = order.iter().rev().copied().collect();
    feed_all(&mut b, &rev, Progress::new(0, 4));
    assert_eq!(a.select().unwrap(), b.select().unwrap());
    let dir = std::env::temp_dir().join(format!("quarc-coreset-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.safetensors");
    a.save_state(&path).unwrap();
    let mut c = make();
    c.load_state(&path).unwrap();
    assert_eq!(c.current(), a.current());
    assert_eq!(c.history(), a.history());
    assert_eq!(c.history()[0].indices, a.current().unwrap().indices);
    // score table round trip and shard merge
    let t = a.table().unwrap();
    t.save(dir.join("t.safetensors")).unwrap();
    assert_eq!(&ScoreTable::load(dir.join("t.safetensors")).unwrap(), t);
    std::fs::write(dir.join("bad.safetensors"), b"garbage").unwrap();
    assert!(matches!(
        ScoreTable::load(dir.join("bad.safetensors")),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        c.load_state(dir.join("bad.safetensors")),
        Err(Error::Corrupt { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn forgetting_through_the_orchestrator() {
    let labels = vec![0u32, 1, 0, 1];
    let mut c = Coreset::new(
        Box::new(Forgetting::new(4).unwrap()),
        Box::new(TopK::highest()),
        SelectionSchedule::one_shot(),
        Budget::Count(1),
        labels,
        2,
        0,
    )
    .unwrap();
    assert!(c.needs().observe_training);
    let dev = Device::Cpu;
    let y = Tensor::new(&[0u32, 1], &dev).unwrap();
    let p = Progress::new(0, 1);
    // sample 2 (label 0): right then wrong → 1 event; sample 3 (label 1): right, right.
    for z in [[[5.0f32, 0.0], [0.0, 5.0]], [[0.0, 5.0], [0.0, 5.0]]] {
        let out = ModelOutput::logits_only(Tensor::new(&z, &dev).unwrap());
        c.observe(
            &ScoreInput {
                indices: &[2, 3],
                labels: &y,
                student: &out,
                reference: None,
            },
            &p,
        )
        .unwrap();
    }
    c.begin_scoring(p).unwrap();
    let z = ModelOutput::logits_only(Tensor::zeros((4, 2), DType::F32, &dev).unwrap());
    let y4 = Tensor::new(&[0u32, 1, 0, 1], &dev).unwrap();
    c.feed(&ScoreInput {
        indices: &[0, 1, 2, 3],
        labels: &y4,
        student: &z,
        reference: None,
    })
    .unwrap();
    assert_eq!(c.select().unwrap().indices, vec![2]);
}

#[test]
fn given_scores_select_without_a_pass_and_refuse_a_shorter_score_vector() {
    // Class 0 = even indices, class 1 = odd; the highest given score of each class wins.
    let scores = vec![0.3, 0.8, 0.9, 0.1, 0.5, 0.2];
    let labels: Vec<u32> = (0..6).map(|i| i % 2).collect();
    let config = CoresetConfig::preset("el2n", 1.0 / 3.0, 5).unwrap();
    let given = GivenScores::new("offline", scores.clone()).unwrap();
    let mut c = config.build_with_scorer(Box::new(given), labels.clone(), 2, 0).unwrap();
    assert!(c.needs().index_only);
    let picked = c.select_without_pass(Progress::new(0, 1)).unwrap().indices.clone();
    assert_eq!(picked, vec![1, 2]);
    assert_eq!(c.history()[0].scored, 0);
    // Scores for 5 samples, a data set of 6: a typed error, not a panic or a silent pick.
    let short = GivenScores::new("short", scores[..5].to_vec()).unwrap();
    let mut c = config.build_with_scorer(Box::new(short), labels, 2, 0).unwrap();
    let err = c.select_without_pass(Progress::new(0, 1)).unwrap_err();
    assert!(matches!(err, Error::MissingInput { .. }), "{err}");
    assert!(GivenScores::new("empty", vec![]).is_err());
    assert!(matches!(
        GivenScores::new("inf", vec![0.0, f32::INFINITY]),
        Err(Error::NonFinite { .. })
    ));
}
