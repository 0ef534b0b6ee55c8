//! Durable appends (`log_entry`) from 1, 4, 16 and 64 threads sharing one handle:
//! what group commit buys. Throughput is per durable append.

mod common;

use common::{keys, timed, value};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nano_wal::WalOptions;
use std::thread;

fn durable(c: &mut Criterion) {
    let keys = keys();
    let v = value(100);
    let mut group = c.benchmark_group("log_entry");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    for threads in [1u64, 4, 16, 64] {
        group.bench_with_input(BenchmarkId::new("threads", threads), &threads, |b, &n| {
            b.iter_custom(|iters| {
                timed(WalOptions::default(), |wal| {
                    thread::scope(|s| {
                        for t in 0..n {
                            let (keys, v) = (&keys, &v);
                            s.spawn(move || {
                                for i in (t..iters).step_by(n as usize) {
                                    wal.log_entry(&keys[(i % 10_000) as usize], v.clone())
                                        .expect("log");
                                }
                            });
                        }
                    });
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, durable);
criterion_main!(benches);
