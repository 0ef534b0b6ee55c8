//! `Wal::new` on an existing WAL: recovery (checksums verified, in parallel across
//! shards) and the index rebuilt, for 1,000,000 records of 100 bytes; and the same
//! open with `WalOptions::index_checkpoint`, which loads the index the last close
//! wrote (only the open is timed: each close writes the checkpoint again).

mod common;

use common::{fresh, keys, value, KEYS};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nano_wal::{Wal, WalOptions};

const RECORDS: u64 = 1_000_000;

fn recovery(c: &mut Criterion) {
    let keys = keys();
    let (dir, wal) = fresh(WalOptions::default());
    let v = value(100);
    for i in 0..RECORDS {
        wal.append_entry(&keys[(i % KEYS) as usize], v.clone(), false)
            .expect("append");
    }
    wal.close().expect("close");
    let path = dir.path().join("wal");

    let mut group = c.benchmark_group("reopen");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS));
    group.bench_function("1M records", |b| {
        b.iter(|| {
            let wal = Wal::new(&path, WalOptions::default()).expect("reopen");
            assert_eq!(wal.recovery_report().records, RECORDS);
            wal.close().expect("close");
        })
    });
    let checkpointed = WalOptions::default().with_index_checkpoint(true);
    // One close with the option on writes the first checkpoint.
    Wal::new(&path, checkpointed.clone())
        .and_then(|wal| wal.close())
        .expect("first checkpoint");
    group.bench_function("1M records, index checkpoint", |b| {
        b.iter_custom(|iters| {
            let mut took = std::time::Duration::ZERO;
            for _ in 0..iters {
                let began = std::time::Instant::now();
                let wal = Wal::new(&path, checkpointed.clone()).expect("reopen");
                took += began.elapsed();
                let report = wal.recovery_report();
                assert_eq!(report.checkpoints_loaded, wal.shard_count() as u64);
                assert_eq!(report.records, RECORDS);
                wal.close().expect("close");
            }
            took
        })
    });
    group.finish();
}

criterion_group!(benches, recovery);
criterion_main!(benches);
