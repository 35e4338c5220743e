//! Selector properties (proptest) and hand-checked cases.

use proptest::prelude::*;
use quarc_coreset::*;

fn ctx(seed: u64, epoch: usize) -> SelectContext {
    SelectContext { seed, epoch }
}

fn data() -> impl Strategy<Value = (Vec<f32>, Vec<u32>)> {
    (1usize..300).prop_flat_map(|n| {
        (
            proptest::collection::vec(prop_oneof![-5.0f32..5.0, Just(1.0f32)], n),
            proptest::collection::vec(0u32..7, n),
        )
    })
}

fn selectors() -> Vec<(&'static str, Box<dyn Selector>)> {
    vec![
        ("top_highest", Box::new(TopK::highest())),
        ("top_lowest", Box::new(TopK::lowest())),
        ("random", Box::new(RandomSelector)),
        (
            "stratified",
            Box::new(Stratified::new(Direction::KeepHighest, 10, 0.1).unwrap()),
        ),
    ]
}

fn assert_sorted_unique(s: &Selection, n: usize) -> Result<(), TestCaseError> {
    prop_assert!(s.indices.windows(2).all(|w| w[0] < w[1]), "not sorted/unique");
    prop_assert!(s.indices.iter().all(|&i| i < n));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn global_budget_is_exact_unique_and_deterministic((scores, labels) in data(), f in 0.01f64..=1.0, seed in 0u64..1000) {
        let n = scores.len();
        for (name, sel) in selectors() {
            let s = sel.select(&scores, &labels, Budget::Fraction(f), &ctx(seed, 3)).unwrap();
            prop_assert_eq!(s.len(), Budget::Fraction(f).count(n), "{}", name);
            assert_sorted_unique(&s, n)?;
            let again = sel.select(&scores, &labels, Budget::Fraction(f), &ctx(seed, 3)).unwrap();
            prop_assert_eq!(&s, &again, "{} not deterministic", name);
        }
    }

    #[test]
    fn class_balanced_counts_per_class((scores, labels) in data(), f in 0.01f64..=1.0, seed in 0u64..1000) {
        for (name, inner) in selectors() {
            let sel = ClassBalanced::boxed(inner);
            let s = sel.select(&scores, &labels, Budget::Fraction(f), &ctx(seed, 0)).unwrap();
            assert_sorted_unique(&s, scores.len())?;
            for c in 0..7u32 {
                let n_c = labels.iter().filter(|&&y| y == c).count();
                let got = s.indices.iter().filter(|&&i| labels[i] == c).count();
                prop_assert_eq!(got, ClassBalanced::class_count(f, n_c), "{} class {}", name, c);
                if n_c > 0 { prop_assert!(got >= 1); }
            }
        }
    }

    #[test]
    fn top_k_respects_direction((scores, labels) in data(), k in 1usize..50) {
        let n = scores.len();
        let k = k.min(n);
        let hi = TopK::highest().select(&scores, &labels, Budget::Count(k), &ctx(0, 0)).unwrap();
        let lo = TopK::lowest().select(&scores, &labels, Budget::Count(k), &ctx(0, 0)).unwrap();
        let min_kept = hi.indices.iter().map(|&i| scores[i]).fold(f32::INFINITY, f32::min);
        let max_dropped = (0..n).filter(|i| !hi.indices.contains(i)).map(|i| scores[i]).fold(f32::NEG_INFINITY, f32::max);
        prop_assert!(min_kept >= max_dropped);
        let max_kept = lo.indices.iter().map(|&i| scores[i]).fold(f32::NEG_INFINITY, f32::max);
        let min_dropped = (0..n).filter(|i| !lo.indices.contains(i)).map(|i| scores[i]).fold(f32::INFINITY, f32::min);
        prop_assert!(max_kept <= min_dropped);
    }
}

#[test]
fn ties_break_by_ascending_index() {
    let scores = [1.0f32, 2.0, 2.0, 2.0, 0.5];
    let labels = [0u32; 5];
    let s = TopK::highest()
        .select(&scores, &labels, Budget::Count(2), &ctx(0, 0))
        .unwrap();
    assert_eq!(s.indices, vec![1, 2]);
    let s = TopK::lowest()
        .select(&[1.0, 1.0, 1.0], &[0, 0, 0], Budget::Count(2), &ctx(0, 0))
        .unwrap();
    assert_eq!(s.indices, vec![0, 1]);
}

#[test]
fn class_balanced_top_k_hand_case() {
    // class 0: samples 0..4 with scores 0.1 0.9 0.5 0.7; class 1: samples 4..6 with 0.3 0.2
    // f = 0.5: class 0 keeps round(2) = 2 → {1, 3}; class 1 keeps round(1) = 1 → {4}
    let scores = [0.1f32, 0.9, 0.5, 0.7, 0.3, 0.2];
    let labels = [0u32, 0, 0, 0, 1, 1];
    let s = ClassBalanced::new(TopK::highest())
        .select(&scores, &labels, Budget::Fraction(0.5), &ctx(0, 0))
        .unwrap();
    assert_eq!(s.indices, vec![1, 3, 4]);
    // 1 % of a class of 20 still keeps one sample.
    assert_eq!(ClassBalanced::class_count(0.01, 20), 1);
}

#[test]
fn stratified_prunes_the_hardest_and_covers_the_range() {
    // 100 samples with scores 0..100: prune the top 10 (90..99), 9 bins over 0..89, budget 9:
    // one sample per bin, none of the pruned.
    let scores: Vec<f32> = (0..100).map(|i| i as f32).collect();
    let labels = vec![0u32; 100];
    let sel = Stratified::new(Direction::KeepHighest, 9, 0.1).unwrap();
    let s = sel.select(&scores, &labels, Budget::Count(9), &ctx(5, 0)).unwrap();
    assert!(s.indices.iter().all(|&i| i < 90), "{:?}", s.indices);
    let mut bins: Vec<usize> = s
        .indices
        .iter()
        .map(|&i| (i as f32 / (89.0 / 9.0)).min(8.0) as usize)
        .collect();
    bins.sort_unstable();
    bins.dedup();
    assert_eq!(bins.len(), 9, "{:?}", s.indices);
    assert!(Stratified::new(Direction::KeepHighest, 0, 0.1).is_err());
    assert!(Stratified::new(Direction::KeepHighest, 5, 1.0).is_err());
}

#[test]
fn random_selection_changes_with_seed_and_epoch() {
    let scores = vec![0f32; 1000];
    let labels = vec![0u32; 1000];
    let a = RandomSelector
        .select(&scores, &labels, Budget::Count(50), &ctx(1, 0))
        .unwrap();
    assert_ne!(
        a,
        RandomSelector
            .select(&scores, &labels, Budget::Count(50), &ctx(2, 0))
            .unwrap()
    );
    assert_ne!(
        a,
        RandomSelector
            .select(&scores, &labels, Budget::Count(50), &ctx(1, 1))
            .unwrap()
    );
}

#[test]
fn invalid_budgets_and_inputs_are_typed_errors() {
    let scores = [0.1f32, 0.2];
    let labels = [0u32, 1];
    for b in [
        Budget::Fraction(0.0),
        Budget::Fraction(1.5),
        Budget::Fraction(f64::NAN),
        Budget::Count(0),
        Budget::Count(3),
    ] {
        assert!(
            matches!(
                TopK::highest().select(&scores, &labels, b, &ctx(0, 0)),
                Err(Error::InvalidBudget(_))
            ),
            "{b:?}"
        );
    }
    assert!(matches!(
        TopK::highest().select(&[], &[], Budget::Fraction(0.5), &ctx(0, 0)),
        Err(Error::Empty(_))
    ));
    assert!(matches!(
        TopK::highest().select(&[0.1, f32::NAN], &labels, Budget::Count(1), &ctx(0, 0)),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        TopK::highest().select(&scores, &[0], Budget::Count(1), &ctx(0, 0)),
        Err(Error::ShapeMismatch { .. })
    ));
    assert_eq!(Budget::Fraction(1.0).count(7), 7);
}

/// Class-balanced selection groups by the labels present: a label value in the billions
/// allocates nothing extra and still balances.
#[test]
fn class_balanced_selection_is_not_sized_by_the_largest_label() {
    let labels: Vec<u32> = (0..100).map(|i| if i < 50 { 1 } else { u32::MAX }).collect();
    let scores: Vec<f32> = (0..100).map(|i| i as f32).collect();
    let sel = ClassBalanced::new(TopK::highest())
        .select(&scores, &labels, Budget::Fraction(0.1), &ctx(0, 0))
        .unwrap();
    assert_eq!(sel.indices, [45, 46, 47, 48, 49, 95, 96, 97, 98, 99]);
}
