//! Per-sample functional ops: hand values, temperature, finite-difference gradients, typed
//! errors; and the feature map.

use candle_core::{DType, Device, Tensor, Var};
use quarc_base::functional::*;
use quarc_base::*;

fn logits() -> Tensor {
    Tensor::new(&[[1.0f64, 2.0, 0.5], [-1.0, 0.0, 3.0]], &Device::Cpu).unwrap()
}

#[test]
fn hand_values() {
    // numpy: p = softmax([[1,2,.5],[-1,0,3]]); q = softmax([[0,0,0],[1,1,1]]) = 1/3
    // kl(p‖q) = Σ p (log p − log ⅓); entropy = −Σ p log p
    let z = logits();
    let u = Tensor::new(&[[0f64, 0.0, 0.0], [1.0, 1.0, 1.0]], &Device::Cpu).unwrap();
    let p = softmax(&z, 1.0).unwrap().to_vec2::<f64>().unwrap();
    let expect_p0 = [
        0.231_223_897_622_149_07,
        0.628_531_719_211_762_4,
        0.140_244_383_166_088_48,
    ];
    for (a, b) in p[0].iter().zip(expect_p0) {
        assert!((a - b).abs() < 1e-12);
    }
    let h = entropy_per_sample(&z, 1.0).unwrap().to_vec1::<f64>().unwrap();
    let kl = kl_per_sample(&z, &u, 1.0).unwrap().to_vec1::<f64>().unwrap();
    for i in 0..2 {
        let hi: f64 = -p[i].iter().map(|v| v * v.ln()).sum::<f64>();
        assert!((h[i] - hi).abs() < 1e-12);
        assert!((kl[i] - (3f64.ln() - hi)).abs() < 1e-12); // KL to uniform = ln K − H
    }
    // soft CE = KL + H(target)
    let ce = soft_cross_entropy_per_sample(&u, &z, 1.0)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let kl_rev = kl_per_sample(&u, &z, 1.0).unwrap().to_vec1::<f64>().unwrap();
    for i in 0..2 {
        assert!((ce[i] - (kl_rev[i] + 3f64.ln())).abs() < 1e-12);
    }
    // error vector and disagreement
    let y = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
    let e = error_vector_norm(&z, &y).unwrap().to_vec1::<f64>().unwrap();
    let e0 = (p[0][0].powi(2) + (p[0][1] - 1.0).powi(2) + p[0][2].powi(2)).sqrt();
    assert!((e[0] - e0).abs() < 1e-12);
    let d = probability_distance(&z, &u).unwrap().to_vec1::<f64>().unwrap();
    let d0 = p[0].iter().map(|v| (v - 1.0 / 3.0).powi(2)).sum::<f64>().sqrt();
    assert!((d[0] - d0).abs() < 1e-12);
}

#[test]
fn temperature_and_stability() {
    let z = Tensor::new(&[[1000f32, 0.0]], &Device::Cpu).unwrap();
    let lp = log_softmax(&z, 1.0).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(lp[0][0], 0.0);
    assert_eq!(lp[0][1], -1000.0);
    // T = 2 halves the logits
    let a = softmax(&Tensor::new(&[[2f64, 0.0]], &Device::Cpu).unwrap(), 2.0).unwrap();
    let b = softmax(&Tensor::new(&[[1f64, 0.0]], &Device::Cpu).unwrap(), 1.0).unwrap();
    assert_eq!(a.to_vec2::<f64>().unwrap(), b.to_vec2::<f64>().unwrap());
    assert!(softmax(&z, 0.0).is_err());
}

#[test]
fn kl_gradient_matches_finite_differences() {
    let z = logits();
    let t = Tensor::new(&[[0.3f64, -0.2, 0.9], [2.0, 1.0, -1.0]], &Device::Cpu).unwrap();
    let v = Var::from_tensor(&z).unwrap();
    let g = kl_per_sample(&t, v.as_tensor(), 2.0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = g.get(v.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
    let base = z.to_vec2::<f64>().unwrap();
    let h = 1e-6;
    for i in 0..2 {
        for j in 0..3 {
            let f = |d: f64| {
                let mut m = base.clone();
                m[i][j] += d;
                let zt = Tensor::new(m, &Device::Cpu).unwrap();
                kl_per_sample(&t, &zt, 2.0)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let fd = (f(h) - f(-h)) / (2.0 * h);
            assert!((fd - g[i][j]).abs() < 1e-8, "({i},{j}) {fd} vs {}", g[i][j]);
        }
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let z = logits();
    let short = Tensor::new(&[[1f64, 2.0]], &Device::Cpu).unwrap();
    assert!(matches!(
        kl_per_sample(&z, &short, 1.0),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        error_vector_norm(&z, &Tensor::new(&[0u32, 3], &Device::Cpu).unwrap()),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        error_vector_norm(&z, &Tensor::new(&[0u32], &Device::Cpu).unwrap()),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        error_vector_norm(&z, &Tensor::new(&[0f32, 1.0], &Device::Cpu).unwrap()),
        Err(Error::UnsupportedDType { .. })
    ));
    assert!(log_softmax(&Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(), 1.0).is_err());
}

#[test]
fn feature_map_keeps_order_and_replaces_in_place() {
    let dev = Device::Cpu;
    let mut f = FeatureMap::new();
    f.insert("b", Tensor::new(&[1f32], &dev).unwrap());
    f.insert("a", Tensor::new(&[2f32], &dev).unwrap());
    f.insert("b", Tensor::new(&[3f32], &dev).unwrap());
    assert_eq!(f.names().collect::<Vec<_>>(), vec!["b", "a"]);
    assert_eq!(f.get("b").unwrap().to_vec1::<f32>().unwrap(), vec![3.0]);
    assert!(f.get("c").is_none());
    assert_eq!(Progress::new(5, 20).fraction(), 0.25);
}
