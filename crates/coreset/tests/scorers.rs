//! Every built-in scorer against hand-computed values.
//!
//! Expected numbers come from this numpy snippet (float64, printed as float32):
//! ```python
//! import numpy as np
//! zq = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]])   # student logits
//! zf = np.array([[1.5, 1.0, -0.5], [0.0, 0.0, 1.0], [0.0, 2.0, 1.0]])    # reference logits
//! y = np.array([0, 2, 1])
//! def sm(z, t=1.0):
//!     z = z / t; z = z - z.max(1, keepdims=True); e = np.exp(z); return e / e.sum(1, keepdims=True)
//! pq, pf = sm(zq), sm(zf); oh = np.eye(3)[y]
//! evs = np.linalg.norm(pq - oh, axis=1); ds = np.linalg.norm(pq - pf, axis=1)
//! kl_qf = (pq * (np.log(pq) - np.log(pf))).sum(1); kl_fq = (pf * (np.log(pf) - np.log(pq))).sum(1)
//! m = 0.5 * (pq + pf); js = 0.5 * (pq * np.log(pq / m)).sum(1) + 0.5 * (pf * np.log(pf / m)).sum(1)
//! pq2, pf2 = sm(zq, 2.0), sm(zf, 2.0); kl_t2 = (pq2 * (np.log(pq2) - np.log(pf2))).sum(1)
//! ce_f = -np.log(pf[np.arange(3), y]); el2n_f = np.linalg.norm(pf - oh, axis=1)
//! ent_f = -(pf * np.log(pf)).sum(1); s = np.sort(pf, 1); margin_f = 1 - (s[:, -1] - s[:, -2])
//! h = np.array([[1.0, 2.0], [0.0, 0.0], [3.0, 4.0]])
//! gn = np.linalg.norm(pf - oh, axis=1) * np.sqrt((h**2).sum(1) + 1)
//! beta = np.cos(np.pi * 3 / (2 * 10)); acs = beta * evs + (1 - beta) * ds   # t = 3, E = 10
//! ```

use candle_core::{Device, Tensor};
use quarc_base::{FeatureMap, ModelOutput, Progress};
use quarc_coreset::*;

const EVS: [f32; 3] = [0.279_687_58, 0.775_383_3, 0.080_821_9];
const DS: [f32; 3] = [0.275_900_75, 0.256_886_84, 0.343_514_23];
const KL_QF: [f32; 3] = [0.099_242_66, 0.088_992_04, 0.214_201_17];
const KL_FQ: [f32; 3] = [0.112_257_38, 0.090_197_49, 0.327_796_04];
const JS: [f32; 3] = [0.026_055_7, 0.022_224_264, 0.062_029_816];
const KL_T2: [f32; 3] = [0.030_845_655, 0.021_531_362, 0.110_038_68];
const CE_F: [f32; 3] = [0.554_956_9, 0.551_444_7, 0.407_605_98];
const EL2N_F: [f32; 3] = [0.555_588_3, 0.519_148_65, 0.424_336_14];
const ENT_F: [f32; 3] = [0.884_451_8, 0.975_327_85, 0.832_395_55];
const MARGIN_F: [f32; 3] = [0.774_110_4, 0.635_824_7, 0.579_487_5];
const GRADNORM_F: [f32; 3] = [1.360_907_9, 0.519_148_65, 2.163_698_2];
const ACS_T3: [f32; 3] = [0.279_274_85, 0.718_870_5, 0.109_453_65];

struct Fixture {
    student: ModelOutput,
    reference: ModelOutput,
    labels: Tensor,
    indices: Vec<usize>,
}

fn fixture() -> Fixture {
    let dev = Device::Cpu;
    let zq = Tensor::new(&[[2.0f32, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]], &dev).unwrap();
    let zf = Tensor::new(&[[1.5f32, 1.0, -0.5], [0.0, 0.0, 1.0], [0.0, 2.0, 1.0]], &dev).unwrap();
    let mut features = FeatureMap::new();
    features.insert(
        "penultimate",
        Tensor::new(&[[1.0f32, 2.0], [0.0, 0.0], [3.0, 4.0]], &dev).unwrap(),
    );
    Fixture {
        student: ModelOutput::logits_only(zq),
        reference: ModelOutput { logits: zf, features },
        labels: Tensor::new(&[0u32, 2, 1], &dev).unwrap(),
        indices: vec![10, 11, 12],
    }
}

fn run(scorer: &mut dyn Scorer, f: &Fixture, p: Progress) -> Vec<f32> {
    let input = ScoreInput {
        indices: &f.indices,
        labels: &f.labels,
        student: &f.student,
        reference: Some(&f.reference),
    };
    let raw = scorer.score(&input, &p).unwrap();
    let cols = if raw.rank() == 1 {
        vec![raw.to_vec1::<f32>().unwrap()]
    } else {
        raw.t().unwrap().to_vec2::<f32>().unwrap()
    };
    let slices: Vec<&[f32]> = cols.iter().map(Vec::as_slice).collect();
    scorer.combine(&slices, &[0, 2, 1], &p).unwrap()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 2e-6, "{what}: {got:?} vs {want:?}");
    }
}

#[test]
fn acs_scores_and_their_mix() {
    let f = fixture();
    let p = Progress::new(3, 10);
    assert_close(&run(&mut ErrorVector, &f, p), &EVS, "evs");
    assert_close(&run(&mut Disagreement, &f, p), &DS, "ds");
    assert_close(&run(&mut Annealed::acs(), &f, p), &ACS_T3, "acs");
    // At t = 0 ACS is EVS alone; with the code's cosine at t = E/2 it is the plain mean.
    assert_close(&run(&mut Annealed::acs(), &f, Progress::new(0, 10)), &EVS, "acs t=0");
    let mean: Vec<f32> = EVS.iter().zip(DS).map(|(a, b)| 0.5 * (a + b)).collect();
    assert_close(
        &run(
            &mut Annealed::acs_with(BetaSchedule::CodeCosine, Normalization::None),
            &f,
            Progress::new(5, 10),
        ),
        &mean,
        "code cosine",
    );
}

#[test]
fn relative_entropy_directions_and_temperature() {
    let f = fixture();
    let p = Progress::new(0, 1);
    assert_close(&run(&mut RelativeEntropy::default(), &f, p), &KL_QF, "kl q‖f");
    assert_close(
        &run(
            &mut RelativeEntropy::new(Divergence::ReferenceToQuantized, 1.0).unwrap(),
            &f,
            p,
        ),
        &KL_FQ,
        "kl f‖q",
    );
    let sym: Vec<f32> = KL_QF.iter().zip(KL_FQ).map(|(a, b)| a + b).collect();
    assert_close(
        &run(&mut RelativeEntropy::new(Divergence::Symmetric, 1.0).unwrap(), &f, p),
        &sym,
        "symmetric",
    );
    assert_close(
        &run(
            &mut RelativeEntropy::new(Divergence::JensenShannon, 1.0).unwrap(),
            &f,
            p,
        ),
        &JS,
        "js",
    );
    assert_close(
        &run(
            &mut RelativeEntropy::new(Divergence::QuantizedToReference, 2.0).unwrap(),
            &f,
            p,
        ),
        &KL_T2,
        "T=2",
    );
    assert!(RelativeEntropy::new(Divergence::Symmetric, 0.0).is_err());
}

#[test]
fn quarc_score_is_acs_plus_lambda_res() {
    let f = fixture();
    let p = Progress::new(3, 10);
    let want: Vec<f32> = ACS_T3.iter().zip(KL_QF).map(|(a, r)| a + 0.5 * r).collect();
    let mut q = WeightedSum::quarc(0.5).unwrap();
    assert_eq!(q.columns(), vec!["evs", "ds", "res"]);
    assert_close(&run(&mut q, &f, p), &want, "quarc");
    assert!(q.needs().reference && q.needs().labels);
    assert_eq!(q.mixing_weights(&p)[0].0, "beta");
}

#[test]
fn baselines_on_the_reference() {
    let f = fixture();
    let p = Progress::new(0, 1);
    assert_close(&run(&mut Loss::default(), &f, p), &CE_F, "loss");
    assert_close(&run(&mut El2n::default(), &f, p), &EL2N_F, "el2n");
    assert_close(&run(&mut Entropy::default(), &f, p), &ENT_F, "entropy");
    assert_close(&run(&mut Margin::default(), &f, p), &MARGIN_F, "margin");
    assert_close(
        &run(&mut GradNormLastLayer::new("penultimate"), &f, p),
        &GRADNORM_F,
        "grad norm",
    );
    // On the student, EL2N is EVS.
    assert_close(
        &run(
            &mut El2n {
                source: ModelSource::Student,
            },
            &f,
            p,
        ),
        &EVS,
        "el2n student",
    );
}

#[test]
fn random_scores_depend_only_on_seed_and_index() {
    let f = fixture();
    let a = run(&mut RandomScore::new(3), &f, Progress::new(0, 4));
    let b = run(&mut RandomScore::new(3), &f, Progress::new(2, 4));
    assert_eq!(a, b);
    assert!(a.iter().all(|v| (0.0..1.0).contains(v)));
    assert_ne!(a, run(&mut RandomScore::new(4), &f, Progress::new(0, 4)));
    let mut resample = RandomScore {
        seed: 3,
        resample_each_selection: true,
    };
    assert_ne!(
        run(&mut resample, &f, Progress::new(0, 4)),
        run(&mut resample, &f, Progress::new(2, 4))
    );
}

#[test]
fn forgetting_counts_events_and_round_trips_its_state() {
    let dev = Device::Cpu;
    let mut fg = Forgetting::new(3).unwrap();
    let labels = Tensor::new(&[0u32, 1, 2], &dev).unwrap();
    let idx = [0usize, 1, 2];
    let p = Progress::new(0, 3);
    // Predictions per observation (argmax): sample 0: right, wrong, right, wrong → 2 events;
    // sample 1: always wrong → never learned; sample 2: always right → 0.
    for preds in [[0u32, 0, 2], [1, 0, 2], [0, 2, 2], [2, 0, 2]] {
        let z: Vec<Vec<f32>> = preds
            .iter()
            .map(|&c| (0..3).map(|k| if k == c as usize { 5.0 } else { 0.0 }).collect())
            .collect();
        let out = ModelOutput::logits_only(Tensor::new(z, &dev).unwrap());
        fg.observe(
            &ScoreInput {
                indices: &idx,
                labels: &labels,
                student: &out,
                reference: None,
            },
            &p,
        )
        .unwrap();
    }
    let out = ModelOutput::logits_only(Tensor::zeros((3, 3), candle_core::DType::F32, &dev).unwrap());
    let input = ScoreInput {
        indices: &idx,
        labels: &labels,
        student: &out,
        reference: None,
    };
    let s = fg.score(&input, &p).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(s, vec![2.0, 5.0, 0.0]); // never learned: observations + 1 = 5
    let mut restored = Forgetting::new(3).unwrap();
    restored.load_state(&fg.state()).unwrap();
    assert_eq!(restored.score(&input, &p).unwrap().to_vec1::<f32>().unwrap(), s);
    assert!(Forgetting::new(2).unwrap().load_state(&fg.state()).is_err());
    assert!(fg.needs().observe_training);
}

#[test]
fn moderate_prefers_the_median_distance() {
    let dev = Device::Cpu;
    // One class, 1-D features 0, 1, 2, 3, 10: median feature 2, distances 2, 1, 0, 1, 8, median distance 1
    // → scores −|d − 1| = −1, 0, −1, 0, −7.
    let mut m = Moderate::new("feat");
    m.source = ModelSource::Student;
    let mut features = FeatureMap::new();
    features.insert(
        "feat",
        Tensor::new(&[[0f32], [1.0], [2.0], [3.0], [10.0]], &dev).unwrap(),
    );
    let out = ModelOutput {
        logits: Tensor::zeros((5, 2), candle_core::DType::F32, &dev).unwrap(),
        features,
    };
    let labels = Tensor::new(&[0u32; 5], &dev).unwrap();
    let idx = [0usize, 1, 2, 3, 4];
    let p = Progress::new(0, 1);
    let raw = m
        .score(
            &ScoreInput {
                indices: &idx,
                labels: &labels,
                student: &out,
                reference: None,
            },
            &p,
        )
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let s = m.combine(&[&raw], &[0; 5], &p).unwrap();
    assert_eq!(s, vec![-1.0, 0.0, -1.0, 0.0, -7.0]);
}

#[test]
fn missing_inputs_are_typed_errors() {
    let f = fixture();
    let input = ScoreInput {
        indices: &f.indices,
        labels: &f.labels,
        student: &f.student,
        reference: None,
    };
    let p = Progress::new(0, 1);
    assert!(matches!(
        Disagreement.score(&input, &p),
        Err(Error::MissingInput { .. })
    ));
    assert!(matches!(
        RelativeEntropy::default().score(&input, &p),
        Err(Error::MissingInput { .. })
    ));
    let with_ref = ScoreInput {
        reference: Some(&f.reference),
        ..input
    };
    assert!(matches!(
        GradNormLastLayer::new("nope").score(&with_ref, &p),
        Err(Error::MissingInput { .. })
    ));
}

#[test]
fn normalisations() {
    let v = [2.0f32, 4.0, 6.0];
    assert_eq!(Normalization::MinMax.apply(&v), vec![0.0, 0.5, 1.0]);
    let z = Normalization::ZScore.apply(&v);
    assert!((z[0] + 1.224_744_9).abs() < 1e-6 && z[1].abs() < 1e-7 && (z[2] - 1.224_744_9).abs() < 1e-6);
    assert_eq!(Normalization::Rank.apply(&v), vec![0.0, 0.5, 1.0]);
    assert_eq!(Normalization::MinMax.apply(&[3.0, 3.0]), vec![0.0, 0.0]);
    assert_eq!(Normalization::None.apply(&v), v.to_vec());
}
