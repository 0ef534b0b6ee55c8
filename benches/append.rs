//! Non-durable `append_entry`: one thread and 16 threads sharing one handle, with
//! 100-byte and 4 KiB values. Each measurement starts from an empty WAL and includes
//! the final `sync`.

mod common;

use common::{keys, timed, value};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nano_wal::WalOptions;
use std::thread;

fn append(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("append_entry");
    group.sample_size(10);
    for size in [100usize, 4096] {
        let v = value(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("1 thread", size), &size, |b, _| {
            b.iter_custom(|iters| {
                timed(WalOptions::default(), |wal| {
                    for i in 0..iters {
                        wal.append_entry(&keys[(i % 10_000) as usize], v.clone(), false)
                            .expect("append");
                    }
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("16 threads", size), &size, |b, _| {
            b.iter_custom(|iters| {
                timed(WalOptions::default(), |wal| {
                    thread::scope(|s| {
                        for t in 0..16 {
                            let (keys, v) = (&keys, &v);
                            s.spawn(move || {
                                for i in (t..iters).step_by(16) {
                                    wal.append_entry(
                                        &keys[(i % 10_000) as usize],
                                        v.clone(),
                                        false,
                                    )
                                    .expect("append");
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

criterion_group!(benches, append);
criterion_main!(benches);
