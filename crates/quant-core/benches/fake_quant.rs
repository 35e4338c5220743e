//! Fused vs composed LSQ fake-quant, forward and forward+backward.
//!
//! `cargo bench -p quarc-quant-core --bench fake_quant`
//!
//! Shapes from the brief: activations 64×256×8×8 (1 M elements, per-tensor, unsigned) and a
//! 512×512×3×3 weight (2.4 M elements, per-channel, signed), at 2 and 4 bits.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use candle_core::{DType, Device, Tensor, Var};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use quarc_quant_core::{Backend, Granularity, LsqOptions, QRange, lsq_fake_quant, lsq_grad_scale};

struct Workload {
    name: &'static str,
    shape: [usize; 4],
    per_channel: bool,
}

const WORKLOADS: [Workload; 2] = [
    Workload {
        name: "act_64x256x8x8",
        shape: [64, 256, 8, 8],
        per_channel: false,
    },
    Workload {
        name: "weight_512x512x3x3",
        shape: [512, 512, 3, 3],
        per_channel: true,
    },
];

fn setup(w: &Workload, bits: u32) -> (Var, Var, QRange, LsqOptions) {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, &w.shape, &dev).unwrap()).unwrap();
    let (range, granularity, channels) = if w.per_channel {
        (
            QRange::signed(bits).unwrap(),
            Granularity::PerChannel { axis: 0 },
            w.shape[0],
        )
    } else {
        (QRange::unsigned(bits).unwrap(), Granularity::PerTensor, 1)
    };
    let step = Var::from_tensor(&(Tensor::ones(channels, DType::F32, &dev).unwrap() * 0.1).unwrap()).unwrap();
    let numel: usize = w.shape.iter().product();
    let opts = LsqOptions {
        grad_scale: lsq_grad_scale(numel / channels, range),
        granularity,
        backend: Backend::Auto,
    };
    (x, step, range, opts)
}

fn bench(c: &mut Criterion) {
    for w in &WORKLOADS {
        let mut group = c.benchmark_group(w.name);
        group
            .sample_size(10)
            .warm_up_time(std::time::Duration::from_millis(500))
            .measurement_time(std::time::Duration::from_secs(3));
        group.throughput(Throughput::Elements(w.shape.iter().product::<usize>() as u64));
        for bits in [2u32, 4] {
            let (x, step, range, opts) = setup(w, bits);
            for (label, backend) in [("fused", Backend::Auto), ("composed", Backend::Composed)] {
                let opts = LsqOptions { backend, ..opts };
                group.bench_function(BenchmarkId::new(format!("fwd/{label}"), format!("{bits}bit")), |b| {
                    b.iter(|| lsq_fake_quant(x.as_tensor(), step.as_tensor(), range, opts).unwrap())
                });
                group.bench_function(
                    BenchmarkId::new(format!("fwd_bwd/{label}"), format!("{bits}bit")),
                    |b| {
                        b.iter(|| {
                            let y = lsq_fake_quant(x.as_tensor(), step.as_tensor(), range, opts).unwrap();
                            y.sum_all().unwrap().backward().unwrap()
                        })
                    },
                );
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
