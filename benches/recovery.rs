//! `Wal::new` on an existing WAL: recovery (checksums verified, in parallel across
//! shards) and the index rebuilt, for 1,000,000 records of 100 bytes.

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
    group.finish();
}

criterion_group!(benches, recovery);
criterion_main!(benches);
