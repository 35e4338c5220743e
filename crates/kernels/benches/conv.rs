//! quarc conv2d against candle's, forward / input gradient / weight gradient, on ResNet-18
//! CIFAR layers, SmallCnn's and MobileNetV2's depthwise layer (batch 64).
//! `cargo bench -p quarc-kernels --bench conv`; the side-by-side table with PyTorch is
//! `bench/run.sh` (see docs/performance.md).

#![allow(missing_docs)]

use candle_core::{Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use quarc_kernels::{Conv2dParams, conv2d, conv2d_grad_input, conv2d_grad_weight, conv2d_reference};

struct Layer {
    name: &'static str,
    c_in: usize,
    c_out: usize,
    hw: usize,
    k: usize,
    stride: usize,
    groups: usize,
}

const LAYERS: [Layer; 5] = [
    Layer {
        name: "r18-64x64@32-s1",
        c_in: 64,
        c_out: 64,
        hw: 32,
        k: 3,
        stride: 1,
        groups: 1,
    },
    Layer {
        name: "r18-256x256@8-s1",
        c_in: 256,
        c_out: 256,
        hw: 8,
        k: 3,
        stride: 1,
        groups: 1,
    },
    Layer {
        name: "r18-64x128@32-s2",
        c_in: 64,
        c_out: 128,
        hw: 32,
        k: 3,
        stride: 2,
        groups: 1,
    },
    Layer {
        name: "smallcnn-32x64@28-s2",
        c_in: 32,
        c_out: 64,
        hw: 28,
        k: 3,
        stride: 2,
        groups: 1,
    },
    Layer {
        name: "mbv2-dw96@16-s2",
        c_in: 96,
        c_out: 96,
        hw: 16,
        k: 3,
        stride: 2,
        groups: 96,
    },
];

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let batch = 64;
    let mut group = c.benchmark_group("conv2d");
    group.sample_size(10);
    for l in LAYERS {
        let p = Conv2dParams {
            padding: l.k / 2,
            stride: l.stride,
            dilation: 1,
            groups: l.groups,
        };
        let x = Tensor::randn(0f32, 1.0, (batch, l.c_in, l.hw, l.hw), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.1, (l.c_out, l.c_in / l.groups, l.k, l.k), &dev).unwrap();
        let y = conv2d_reference(&x, &w, &p).unwrap();
        let flops = 2 * y.elem_count() * l.c_in / l.groups * l.k * l.k;
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(BenchmarkId::new("quarc-fwd", l.name), |b| {
            b.iter(|| conv2d(&x, &w, &p).unwrap())
        });
        group.bench_function(BenchmarkId::new("candle-fwd", l.name), |b| {
            b.iter(|| conv2d_reference(&x, &w, &p).unwrap())
        });
        group.bench_function(BenchmarkId::new("quarc-grad-input", l.name), |b| {
            b.iter(|| conv2d_grad_input(&y, &w, (l.hw, l.hw), &p).unwrap())
        });
        group.bench_function(BenchmarkId::new("quarc-grad-weight", l.name), |b| {
            b.iter(|| conv2d_grad_weight(&x, &y, (l.k, l.k), &p).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
