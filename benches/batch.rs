//! `append_batch` against the same records through `append_entry`: 1,000 records of
//! 100 bytes per call, non-durable and durable.

mod common;

use bytes::Bytes;
use common::{keys, timed, value};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nano_wal::WalOptions;

const PER_CALL: usize = 1_000;

fn batch(c: &mut Criterion) {
    let keys = keys();
    let v = value(100);
    let entries: Vec<(&[u8], Bytes)> = (0..PER_CALL)
        .map(|i| (keys[i * 7 % keys.len()].as_slice(), v.clone()))
        .collect();
    let mut group = c.benchmark_group("batch of 1000");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PER_CALL as u64));
    for durable in [false, true] {
        group.bench_with_input(
            BenchmarkId::new("append_batch", durable),
            &durable,
            |b, &d| {
                b.iter_custom(|iters| {
                    timed(WalOptions::default(), |wal| {
                        for _ in 0..iters {
                            wal.append_batch(entries.iter().cloned(), d).expect("batch");
                        }
                    })
                })
            },
        );
    }
    group.bench_function("append_entry x1000", |b| {
        b.iter_custom(|iters| {
            timed(WalOptions::default(), |wal| {
                for _ in 0..iters {
                    for (k, v) in &entries {
                        wal.append_entry(k, v.clone(), false).expect("append");
                    }
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, batch);
criterion_main!(benches);
