//! The workspace's candle-core stores the first gradient of a node directly instead of adding it
//! into zeros (vendor/candle-core/QUARC-PATCH.md). These tests pin what that must not change:
//! fan-in still sums, broadcast and view gradients come back whole and contiguous, and gradients
//! through quarc's custom ops equal the composed ones.

use candle_core::{Device, Tensor, Var};

fn var(values: &[f32], dims: &[usize]) -> Var {
    Var::from_tensor(&Tensor::from_slice(values, dims, &Device::Cpu).unwrap()).unwrap()
}

type BatchNorm = fn(
    &Tensor,
    &Tensor,
    &Tensor,
    f64,
    quarc::kernels::Activation,
) -> candle_core::Result<(Tensor, quarc::kernels::BatchStats)>;

/// Training BatchNorm (ε = 1e-5) + ReLU through `f`.
fn bn_relu(f: BatchNorm, x: &Var, gamma: &Var, beta: &Var) -> Tensor {
    let act = quarc::kernels::Activation::Relu;
    f(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-5, act)
        .unwrap()
        .0
}

/// `x` reaches the loss three times (fan-in 3): `d/dx Σ (x·x + x) = 2x + 1`.
#[test]
fn fan_in_gradients_still_sum() {
    let x = var(&[1.0, -2.0, 0.5], &[3]);
    let loss = ((x.as_tensor() * x.as_tensor()).unwrap() + x.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let g: Vec<f32> = grads.get(x.as_tensor()).unwrap().to_vec1().unwrap();
    assert_eq!(g, vec![3.0, -3.0, 2.0]);
}

/// The gradient of a sum is a broadcast of the incoming one; stored first, it must still be a
/// whole contiguous tensor (the optimizers read it as one slice).
#[test]
fn broadcast_first_gradients_are_stored_contiguous() {
    let w = var(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let loss = (w.as_tensor().sum_keepdim(1).unwrap() * 2.0)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let g = grads.get(w.as_tensor()).unwrap();
    assert!(g.is_contiguous());
    assert_eq!(g.to_vec2::<f32>().unwrap(), vec![vec![2.0; 3], vec![2.0; 3]]);
}

/// A view's gradient (narrow) and a subtracting rule (`Sub`'s right-hand side, still seeded with
/// zeros) in one graph: `d/dx Σ(x[0..2] − x[1..3])` is `[1, 0, −1]`.
#[test]
fn view_and_subtract_gradients_combine() {
    let x = var(&[4.0, 5.0, 6.0], &[3]);
    let t = x.as_tensor();
    let loss = (t.narrow(0, 0, 2).unwrap() - t.narrow(0, 1, 2).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let g: Vec<f32> = grads.get(t).unwrap().to_vec1().unwrap();
    assert_eq!(g, vec![1.0, 0.0, -1.0]);
}

/// BatchNorm + ReLU through quarc's fused op and through composed candle ops give the same input
/// gradient (the fused op's gradient is stored first, the composed graph's fans in).
#[test]
fn custom_op_gradients_match_the_composed_graph() {
    use quarc::kernels::{batch_norm_train, batch_norm_train_reference};
    // no value at its channel's mean: the ReLU's tie at 0 would separate the two paths by rounding
    let values: Vec<f32> = (0..24)
        .map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0 + 0.013 * i as f32)
        .collect();
    let x = var(&values, &[2, 3, 2, 2]);
    let (gamma, beta) = (var(&[1.0, 0.5, 2.0], &[3]), var(&[0.1, -0.2, 0.0], &[3]));
    let dy: Vec<f32> = (0..24).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
    let dy = Tensor::from_slice(&dy, (2, 3, 2, 2), &Device::Cpu).unwrap();
    let grad = |fused: bool| {
        let f = if fused {
            batch_norm_train
        } else {
            batch_norm_train_reference
        };
        let y = bn_relu(f, &x, &gamma, &beta);
        let grads = (y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        g
    };
    let (fused, composed) = (grad(true), grad(false));
    assert!(fused.iter().any(|v| v.abs() > 1e-3));
    for (a, b) in fused.iter().zip(&composed) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

/// Elements in the buffer behind a CPU tensor (not only those its view shows).
fn buffer_len(t: &Tensor) -> usize {
    let (storage, _) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => v.len(),
        _ => panic!("expected an f32 CPU tensor"),
    }
}

/// A small gradient returned beside a large one (BatchNorm's dγ and dβ, a fake-quant step's)
/// lives in a buffer of its own: a view into the packed backward buffer, stored directly, would
/// keep an activation-sized buffer alive in the gradient store until the optimizer step.
#[test]
fn small_gradients_do_not_hold_the_large_buffer() {
    use quarc::kernels::batch_norm_train;
    use quarc::quant_core::{LsqOptions, QRange, lsq_fake_quant};
    let values: Vec<f32> = (0..4 * 3 * 8 * 8)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let x = var(&values, &[4, 3, 8, 8]);
    let (gamma, beta) = (var(&[1.0, 0.5, 2.0], &[3]), var(&[0.1, -0.2, 0.0], &[3]));
    let y = bn_relu(batch_norm_train, &x, &gamma, &beta);
    let step = var(&[0.1], &[]);
    let q = lsq_fake_quant(
        &y,
        step.as_tensor(),
        QRange::unsigned(2).unwrap(),
        LsqOptions::default(),
    )
    .unwrap();
    let grads = q.sum_all().unwrap().backward().unwrap();
    for (name, v) in [("γ", &gamma), ("β", &beta), ("step", &step)] {
        let g = grads.get(v.as_tensor()).unwrap();
        assert_eq!(buffer_len(g), g.elem_count(), "{name}'s gradient");
    }
    let gx = grads.get(x.as_tensor()).unwrap();
    assert!(
        buffer_len(gx) <= gx.elem_count() + 6,
        "x's gradient keeps at most dγ and dβ's room"
    );
}
