//! Building a Maglev table: M = 65537, N = 1000 (the NSDI 2016 paper reports 1.8 ms).

use criterion::{criterion_group, criterion_main, Criterion};
use dataplane::maglev::{MaglevTable, DEFAULT_TABLE_SIZE};
use std::hint::black_box;

fn build(c: &mut Criterion) {
    let servers: Vec<(String, u32)> = (0..1000).map(|i| (format!("server-{i:04}"), 1)).collect();
    c.bench_function("maglev_build_m65537_n1000", |b| {
        b.iter(|| MaglevTable::build(black_box(&servers), DEFAULT_TABLE_SIZE))
    });
    let weighted: Vec<(String, u32)> = (0..1000)
        .map(|i| (format!("server-{i:04}"), 1 + (i % 4)))
        .collect();
    c.bench_function("maglev_build_m65537_n1000_weighted", |b| {
        b.iter(|| MaglevTable::build(black_box(&weighted), DEFAULT_TABLE_SIZE))
    });
}

criterion_group!(benches, build);
criterion_main!(benches);
