//! Every loss against hand-computed values, and finite-difference gradient checks.
//!
//! Expected values from numpy (float64, rounded to float32 when printed; hence the 2e-7 relative tolerance):
//! ```python
//! import numpy as np
//! s = np.array([[[[1.0, 2.0], [0.5, -1.0]], [[0.0, 1.0], [2.0, 0.5]]],
//!               [[[-0.5, 0.3], [1.2, 0.7]], [[0.9, -0.2], [0.4, 1.1]]]])   # (2, 2, 2, 2)
//! r = np.array([[[[0.8, 1.5], [0.0, -0.5]], [[0.2, 1.4], [1.0, 0.0]]],
//!               [[[0.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]])
//! B = 2; fs, fr = s.reshape(B, -1), r.reshape(B, -1)
//! mse = ((fs - fr)**2).mean(1); nmse = ((fs - fr)**2).sum(1) / ((fr**2).sum(1) + 1e-8)
//! cos = 1 - (fs*fr).sum(1) / (np.sqrt((fs**2).sum(1) * (fr**2).sum(1)) + 1e-8)
//! def lsm(z, t=1.0):
//!     z = z / t; z = z - z.max(-1, keepdims=True); return z - np.log(np.exp(z).sum(-1, keepdims=True))
//! def kl(a, b, t=1.0):
//!     la, lb = lsm(a, t), lsm(b, t); return (np.exp(la) * (la - lb)).sum(-1)
//! kl_gap = kl(s.mean((2, 3)), r.mean((2, 3))); kl_gap_rev = kl(r.mean((2, 3)), s.mean((2, 3)))
//! kl_flat_t2 = kl(fs, fr, 2.0); kl_sp = kl(s.reshape(B, 2, -1), r.reshape(B, 2, -1)).sum(1)
//! zs = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]); zt = np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 1.0]])
//! kd_t2 = 4.0 * kl(zt, zs, 2.0); y = np.array([0, 2]); ce = -lsm(zs)[np.arange(2), y]
//! mix = 1.0 * kl(zt, zs) + 0.5 * ce; sce = -(np.exp(lsm(zt)) * lsm(zs)).sum(1)
//! ```

use candle_core::{DType, Device, Tensor, Var};
use quarc_correction::*;

const MSE: [f64; 2] = [0.28, 0.08625];
const NMSE: [f64; 2] = [0.364_820_837_974_548_34, 0.172_499_999_401_553_55];
const COS: [f64; 2] = [0.083_657_942_712_306_98, 0.079_738_102_853_298_19];
const KL_GAP: [f64; 2] = [0.000_308_274_553_390_219_8, 0.001_949_316_938_407_719_1];
const KL_GAP_REV: [f64; 2] = [0.000_308_850_634_610_280_4, 0.001_951_854_792_423_546_3];
const KL_FLAT_T2: [f64; 2] = [0.029_423_370_957_374_573, 0.009_068_991_988_897_324];
const KL_SPATIAL: [f64; 2] = [0.218_740_031_123_161_32, 0.060_315_940_529_108_05];
const KD_T2: [f64; 2] = [0.024_795_027_449_727_02, 0.212_070_360_779_762_27];
const KD_CE_MIX: [f64; 2] = [0.222_927_421_331_405_64, 0.402_636_289_596_557_6];
const SOFT_CE: [f64; 2] = [0.771_104_872_226_715_1, 1.235_502_958_297_729_5];

fn features() -> (Tensor, Tensor) {
    let dev = Device::Cpu;
    let s = Tensor::new(
        &[
            [[[1.0f64, 2.0], [0.5, -1.0]], [[0.0, 1.0], [2.0, 0.5]]],
            [[[-0.5, 0.3], [1.2, 0.7]], [[0.9, -0.2], [0.4, 1.1]]],
        ],
        &dev,
    )
    .unwrap();
    let r = Tensor::new(
        &[
            [[[0.8f64, 1.5], [0.0, -0.5]], [[0.2, 1.4], [1.0, 0.0]]],
            [[[0.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]],
        ],
        &dev,
    )
    .unwrap();
    (s, r)
}

fn logits() -> (Tensor, Tensor) {
    let dev = Device::Cpu;
    (
        Tensor::new(&[[1.0f64, 0.0, -1.0], [0.5, 0.5, 2.0]], &dev).unwrap(),
        Tensor::new(&[[2.0f64, 0.5, 0.0], [0.0, 1.0, 1.0]], &dev).unwrap(),
    )
}

fn close(got: &Tensor, want: &[f64], what: &str) {
    let g = got.to_vec1::<f64>().unwrap();
    for (a, b) in g.iter().zip(want) {
        assert!((a - b).abs() < 2e-7 * b.abs().max(1e-3), "{what}: {g:?} vs {want:?}");
    }
}

fn losses() -> Vec<(&'static str, Box<dyn AlignmentLoss>, Vec<f64>)> {
    vec![
        ("mse", Box::new(Mse), MSE.to_vec()),
        ("nmse", Box::new(NormalizedMse::default()), NMSE.to_vec()),
        ("cosine", Box::new(CosineDistance::default()), COS.to_vec()),
        ("kl gap", Box::new(FeatureKl::default()), KL_GAP.to_vec()),
        (
            "kl gap rev",
            Box::new(FeatureKl::new(SoftmaxAxis::ChannelAfterGap, 1.0, KlDirection::ReferenceToStudent).unwrap()),
            KL_GAP_REV.to_vec(),
        ),
        (
            "kl flat T2",
            Box::new(FeatureKl::new(SoftmaxAxis::Flattened, 2.0, KlDirection::StudentToReference).unwrap()),
            KL_FLAT_T2.to_vec(),
        ),
        (
            "kl spatial",
            Box::new(FeatureKl::new(SoftmaxAxis::SpatialPerChannel, 1.0, KlDirection::StudentToReference).unwrap()),
            KL_SPATIAL.to_vec(),
        ),
    ]
}

#[test]
fn feature_losses_hand_values() {
    let (s, r) = features();
    for (name, loss, want) in losses() {
        close(&loss.per_sample(&s, &r).unwrap(), &want, name);
        let mean = loss.forward(&s, &r).unwrap().to_scalar::<f64>().unwrap();
        let want_mean = (want[0] + want[1]) / 2.0;
        assert!((mean - want_mean).abs() < 2e-7 * want_mean, "{name} mean");
    }
}

#[test]
fn distillation_hand_values() {
    let (zs, zt) = logits();
    close(
        &Distillation::new(2.0, KdForm::Kl)
            .unwrap()
            .per_sample(&zs, &zt)
            .unwrap(),
        &KD_T2,
        "kd T=2",
    );
    let y = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
    close(
        &Distillation::default().with_labels(&zs, &zt, &y, 1.0, 0.5).unwrap(),
        &KD_CE_MIX,
        "kd + ce",
    );
    close(
        &Distillation::new(1.0, KdForm::SoftCrossEntropy)
            .unwrap()
            .per_sample(&zs, &zt)
            .unwrap(),
        &SOFT_CE,
        "soft ce",
    );
    assert!(Distillation::new(0.0, KdForm::Kl).is_err());
    let bad = Tensor::new(&[0u32, 3], &Device::Cpu).unwrap();
    assert!(Distillation::default().with_labels(&zs, &zt, &bad, 1.0, 0.5).is_err());
}

#[test]
fn weighted_mean_uses_sample_weights() {
    let (s, r) = features();
    let w = Tensor::new(&[3.0f64, 1.0], &Device::Cpu).unwrap();
    let got = Mse.weighted(&s, &r, &w).unwrap().to_scalar::<f64>().unwrap();
    assert!((got - (3.0 * MSE[0] + MSE[1]) / 4.0).abs() < 1e-12);
}

/// Central finite differences of Σ per_sample w.r.t. every student element, in f64.
fn fd_check(loss: &dyn AlignmentLoss, s: &Tensor, r: &Tensor, name: &str) {
    let v = Var::from_tensor(s).unwrap();
    let grads = loss
        .per_sample(v.as_tensor(), r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = grads
        .get(v.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let base = s.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let h = 1e-6;
    for i in 0..base.len() {
        let f = |d: f64| {
            let mut m = base.clone();
            m[i] += d;
            let t = Tensor::from_vec(m, s.dims(), &Device::Cpu).unwrap();
            loss.per_sample(&t, r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let fd = (f(h) - f(-h)) / (2.0 * h);
        assert!(
            (fd - g[i]).abs() < 1e-6 * fd.abs().max(1.0),
            "{name}[{i}]: autograd {} vs FD {fd}",
            g[i]
        );
    }
}

#[test]
fn gradients_match_finite_differences() {
    let (s, r) = features();
    for (name, loss, _) in losses() {
        fd_check(loss.as_ref(), &s, &r, name);
    }
    let (zs, zt) = logits();
    fd_check(&Distillation::new(2.0, KdForm::Kl).unwrap(), &zs, &zt, "kd");
    fd_check(
        &Distillation::new(1.0, KdForm::SoftCrossEntropy).unwrap(),
        &zs,
        &zt,
        "soft ce",
    );
}

#[test]
fn bad_inputs_are_typed_errors() {
    let (s, r) = features();
    let r3 = r.narrow(1, 0, 1).unwrap();
    assert!(matches!(Mse.per_sample(&s, &r3), Err(Error::ShapeMismatch { .. })));
    let nan = (s.clone() * f64::NAN).unwrap();
    assert!(matches!(
        CosineDistance::default().per_sample(&nan, &r),
        Err(Error::NonFinite { .. })
    ));
    let flat = Tensor::zeros((2, 5), DType::F64, &Device::Cpu).unwrap();
    let spatial = FeatureKl::new(SoftmaxAxis::SpatialPerChannel, 1.0, KlDirection::StudentToReference).unwrap();
    assert!(matches!(spatial.per_sample(&flat, &flat), Err(Error::InvalidConfig(_))));
    assert!(FeatureKl::new(SoftmaxAxis::Flattened, -1.0, KlDirection::StudentToReference).is_err());
}
