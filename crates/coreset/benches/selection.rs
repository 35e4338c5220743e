//! Class-balanced top-10 % over 1.28 M scores and 1000 classes (ImageNet-sized), and global
//! top-k and stratified selection at the same size.
//!
//! `cargo bench -p quarc-coreset --bench selection`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use quarc_base::SplitMix64;
use quarc_coreset::{Budget, ClassBalanced, SelectContext, Selector, Stratified, TopK};

const N: usize = 1_280_000;
const CLASSES: u32 = 1000;

fn bench(c: &mut Criterion) {
    let mut rng = SplitMix64::new(1);
    let scores: Vec<f32> = (0..N).map(|_| rng.next_f64() as f32).collect();
    let labels: Vec<u32> = (0..N).map(|_| rng.below(CLASSES as usize) as u32).collect();
    let ctx = SelectContext { seed: 0, epoch: 0 };
    let mut group = c.benchmark_group("select_1.28M");
    group.sample_size(20);
    let balanced = ClassBalanced::new(TopK::highest());
    group.bench_function("class_balanced_top10pct_1000_classes", |b| {
        b.iter(|| balanced.select(&scores, &labels, Budget::Fraction(0.1), &ctx).unwrap())
    });
    group.bench_function("global_top10pct", |b| {
        b.iter(|| {
            TopK::highest()
                .select(&scores, &labels, Budget::Fraction(0.1), &ctx)
                .unwrap()
        })
    });
    let ccs = ClassBalanced::new(Stratified::default());
    group.bench_function("class_balanced_stratified10pct", |b| {
        b.iter(|| ccs.select(&scores, &labels, Budget::Fraction(0.1), &ctx).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
