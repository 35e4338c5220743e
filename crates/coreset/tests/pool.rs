//! Candidate pools: a pass scores the pool alone and the selector takes each class's share from it.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use quarc_base::{ModelOutput, Progress};
use quarc_coreset::*;

/// Scores sample `i` as `i` (its student logit for class 0).
struct IndexScore;
impl Scorer for IndexScore {
    fn name(&self) -> String {
        "index".into()
    }
    fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
        Ok(input.student.logits.narrow(1, 0, 1)?.squeeze(1)?)
    }
}

const CLASSES: usize = 10;

fn labels(n: usize) -> Vec<u32> {
    (0..n).map(|i| (i % CLASSES) as u32).collect()
}

fn coreset(n: usize, budget: Budget, pool: Option<f64>) -> Coreset {
    let c = Coreset::new(
        Box::new(IndexScore),
        Box::new(ClassBalanced::new(TopK::highest())),
        SelectionSchedule::every(5).unwrap(),
        budget,
        labels(n),
        CLASSES,
        3,
    )
    .unwrap();
    match pool {
        Some(multiple) => c.with_candidate_pool(CandidatePool { multiple }).unwrap(),
        None => c,
    }
}

fn feed(c: &mut Coreset, indices: &[usize]) -> Result<()> {
    let dev = Device::Cpu;
    let z: Vec<f32> = indices
        .iter()
        .flat_map(|&i| std::iter::once(i as f32).chain([0.0; CLASSES - 1]))
        .collect();
    let s = ModelOutput::logits_only(Tensor::from_vec(z, (indices.len(), CLASSES), &dev)?);
    let y: Vec<u32> = indices.iter().map(|&i| (i % CLASSES) as u32).collect();
    let y = Tensor::from_vec(y, indices.len(), &dev)?;
    let r = ModelOutput::logits_only(Tensor::zeros((indices.len(), CLASSES), DType::F32, &dev)?);
    c.feed(&ScoreInput {
        indices,
        labels: &y,
        student: &s,
        reference: Some(&r),
    })
}

/// Scores whatever the pass asks for (the pool, or everything) and selects.
fn run_pass(c: &mut Coreset, n: usize, epoch: usize) -> (Option<Vec<usize>>, Vec<usize>) {
    c.begin_scoring(Progress::new(epoch, 20)).unwrap();
    let pool = c.scoring_indices().map(<[usize]>::to_vec);
    let all: Vec<usize> = (0..n).collect();
    for chunk in pool.as_deref().unwrap_or(&all).chunks(64) {
        feed(c, chunk).unwrap();
    }
    (pool, c.select().unwrap().indices.clone())
}

#[test]
fn a_pass_scores_the_pool_alone_and_takes_each_class_share_from_it() {
    // 1 000 samples, 100 per class; 2 % budget → 2 per class; pool 5× → 10 per class.
    let n = 1000;
    let mut c = coreset(n, Budget::Fraction(0.02), Some(5.0));
    let (pool, selected) = run_pass(&mut c, n, 0);
    let pool = pool.expect("a 10 % pool, not the whole data set");
    let expected_pool = CandidatePool { multiple: 5.0 }
        .draw(&labels(n), Budget::Fraction(0.02), 3, 0)
        .unwrap()
        .unwrap();
    assert_eq!(pool, expected_pool);
    let mut per_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in &pool {
        per_class.entry(i % CLASSES).or_default().push(i);
    }
    assert_eq!(per_class.len(), CLASSES);
    assert!(per_class.values().all(|m| m.len() == 10));
    // Top-k by score = by index: the two largest pool members of every class.
    let mut expected: Vec<usize> = per_class.values().flat_map(|m| m[m.len() - 2..].to_vec()).collect();
    expected.sort_unstable();
    assert_eq!(selected, expected);
    let rec = &c.history()[0];
    assert_eq!((rec.size, rec.scored), (20, 100));
    // The next selection draws a different pool (fresh per epoch), still 100 samples.
    let (next, _) = run_pass(&mut c, n, 5);
    assert_ne!(next.as_deref(), Some(pool.as_slice()));
    assert_eq!(c.history()[1].scored, 100);
}

#[test]
fn feeding_outside_the_pool_or_leaving_part_of_it_unscored_is_an_error() {
    let n = 1000;
    let mut c = coreset(n, Budget::Fraction(0.02), Some(5.0));
    c.begin_scoring(Progress::new(0, 20)).unwrap();
    let pool = c.scoring_indices().unwrap().to_vec();
    let outside = (0..n).find(|i| !pool.contains(i)).unwrap();
    assert!(matches!(feed(&mut c, &[outside]), Err(Error::NotInPool { index }) if index == outside));
    feed(&mut c, &pool[..50]).unwrap();
    // A sample scored twice is named by its dataset index, not its row in the pool's table.
    assert!(matches!(feed(&mut c, &pool[7..8]), Err(Error::DuplicateIndex { index }) if index == pool[7]));
    assert!(matches!(c.select(), Err(Error::MissingScores { count: 50, .. })));
}

#[test]
fn a_pool_as_large_as_the_data_set_changes_nothing() {
    // 10 % budget × 10 = everything: the same pass and selection as without a pool.
    let n = 500;
    let mut pooled = coreset(n, Budget::Fraction(0.1), Some(10.0));
    let mut plain = coreset(n, Budget::Fraction(0.1), None);
    let (pool, a) = run_pass(&mut pooled, n, 0);
    let (_, b) = run_pass(&mut plain, n, 0);
    assert!(pool.is_none());
    assert_eq!(a, b);
    assert_eq!(pooled.history()[0].scored, n);
}

#[test]
fn a_count_budget_takes_the_same_count_from_the_pool() {
    let n = 1000;
    let mut c = coreset(n, Budget::Count(30), Some(4.0));
    let (pool, selected) = run_pass(&mut c, n, 0);
    assert_eq!(pool.unwrap().len(), 120);
    assert_eq!(selected.len(), 30);
}

#[test]
fn a_scorer_that_needs_the_whole_pass_refuses_a_pool() {
    let c = Coreset::new(
        Box::new(Moderate::new("pooled")),
        Box::new(TopK::highest()),
        SelectionSchedule::one_shot(),
        Budget::Fraction(0.1),
        labels(100),
        CLASSES,
        0,
    )
    .unwrap();
    assert!(c.needs().whole_pass);
    assert!(matches!(
        c.with_candidate_pool(CandidatePool { multiple: 2.0 }),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn the_pool_is_plain_config_data_and_bad_multiples_are_refused() {
    let mut config = CoresetConfig::preset("acs", 0.01, 5).unwrap();
    let without: CoresetConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(without.pool, None);
    config.pool = Some(CandidatePool { multiple: 10.0 });
    let json = serde_json::to_string(&config).unwrap();
    assert!(json.contains("\"pool\":{\"multiple\":10.0}"), "{json}");
    assert_eq!(serde_json::from_str::<CoresetConfig>(&json).unwrap(), config);
    let typo = json.replace("\"multiple\"", "\"multiplier\"");
    assert!(serde_json::from_str::<CoresetConfig>(&typo).is_err());
    for bad in [0.5, f64::NAN, f64::INFINITY, -1.0] {
        config.pool = Some(CandidatePool { multiple: bad });
        assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))), "{bad}");
    }
    config.pool = Some(CandidatePool { multiple: 10.0 });
    let mut built = config.build(labels(2000), CLASSES, 0).unwrap();
    built.begin_scoring(Progress::new(0, 20)).unwrap();
    assert_eq!(built.scoring_indices().map(<[usize]>::len), Some(200));
}
