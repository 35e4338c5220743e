//! Noise diagnostics through the orchestrator, and which scorers read labels.

use candle_core::{Device, Tensor};
use quarc_base::{ModelOutput, Progress};
use quarc_coreset::*;

#[test]
fn diagnostics_count_a_hand_built_case() {
    // 8 samples, 2 classes; samples 0 and 5 are noisy. Scores favour 1, 2 (class 0) and 5, 7 (class 1).
    let labels = vec![0u32, 0, 0, 0, 1, 1, 1, 1];
    let scores = [0.1f32, 0.9, 0.8, 0.2, 0.3, 0.95, 0.1, 0.7];
    struct Fixed([f32; 8]);
    impl Scorer for Fixed {
        fn name(&self) -> String {
            "fixed".into()
        }
        fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
            Ok(Tensor::from_vec(
                input.indices.iter().map(|&i| self.0[i]).collect::<Vec<_>>(),
                input.len(),
                &Device::Cpu,
            )?)
        }
    }
    let mut c = Coreset::new(
        Box::new(Fixed(scores)),
        Box::new(ClassBalanced::new(TopK::highest())),
        SelectionSchedule::one_shot(),
        Budget::Fraction(0.5),
        labels.clone(),
        2,
        0,
    )
    .unwrap();
    let flags: Vec<bool> = (0..8).map(|i| i == 0 || i == 5).collect();
    c.begin_scoring(Progress::new(0, 1)).unwrap();
    let out = ModelOutput::logits_only(Tensor::zeros((8, 2), candle_core::DType::F32, &Device::Cpu).unwrap());
    let y = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    c.feed(&ScoreInput {
        indices: &[0, 1, 2, 3, 4, 5, 6, 7],
        labels: &y,
        student: &out,
        reference: None,
    })
    .unwrap();
    assert_eq!(c.select().unwrap().indices, vec![1, 2, 5, 7]);
    // Diagnostics are computed outside the orchestrator, from the selection and the flags.
    let d = NoiseDiagnostics::compute(&c.current().unwrap().indices, &flags).unwrap();
    assert!(NoiseDiagnostics::compute(&c.current().unwrap().indices, &flags[..3]).is_err());
    // noisy in set: 2/8; selected noisy: {5} → 1/4; dropped {0, 3, 4, 6}: noisy {0} → 1/4; recall 1/2
    assert_eq!(
        (
            d.dataset_noise_rate,
            d.selected_noisy_share,
            d.drop_precision,
            d.drop_recall
        ),
        (0.25, 0.25, 0.25, 0.5)
    );
}

#[test]
fn diagnostics_refuse_bad_selections_and_take_any_order() {
    let noisy = [true, false, false, true, false];
    // unsorted is fine: same counts as sorted
    let a = NoiseDiagnostics::compute(&[3, 1], &noisy).unwrap();
    let b = NoiseDiagnostics::compute(&[1, 3], &noisy).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        (a.selected_noisy_share, a.drop_precision, a.drop_recall),
        (0.5, 1.0 / 3.0, 0.5)
    );
    assert!(matches!(
        NoiseDiagnostics::compute(&[1, 5], &noisy),
        Err(Error::IndexOutOfRange {
            index: 5,
            num_samples: 5
        })
    ));
    // a duplicate would count one noisy sample twice (and used to underflow)
    assert!(matches!(
        NoiseDiagnostics::compute(&[0, 3, 0], &noisy),
        Err(Error::DuplicateSelection { index: 0 })
    ));
    // nothing selected: every noisy sample dropped
    let e = NoiseDiagnostics::compute(&[], &noisy).unwrap();
    assert_eq!(
        (e.selected_noisy_share, e.drop_precision, e.drop_recall),
        (0.0, 0.4, 1.0)
    );
}

#[test]
fn label_reading_scorers_see_the_noisy_label_ds_reads_none() {
    let dev = Device::Cpu;
    let s = ModelOutput::logits_only(Tensor::new(&[[2f32, 0.0, -1.0]], &dev).unwrap());
    let r = ModelOutput::logits_only(Tensor::new(&[[1f32, 1.0, 0.0]], &dev).unwrap());
    let (clean, noisy) = (Tensor::new(&[0u32], &dev).unwrap(), Tensor::new(&[2u32], &dev).unwrap());
    let p = Progress::new(0, 1);
    let score = |sc: &mut dyn Scorer, y: &Tensor| {
        sc.score(
            &ScoreInput {
                indices: &[0],
                labels: y,
                student: &s,
                reference: Some(&r),
            },
            &p,
        )
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0]
    };
    for (name, sc) in [
        ("evs", &mut ErrorVector as &mut dyn Scorer),
        ("el2n", &mut El2n::default()),
        ("loss", &mut Loss::default()),
    ] {
        assert!(sc.needs().labels, "{name}");
        assert!(
            score(sc, &noisy) > score(sc, &clean),
            "{name}: a wrong label must raise the score"
        );
    }
    assert!(!Disagreement.needs().labels);
    assert_eq!(score(&mut Disagreement, &noisy), score(&mut Disagreement, &clean));
}
