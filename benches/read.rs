//! `enumerate_records`: one key of 100 records, and every record of 1,000 keys, from a
//! WAL holding 1,000,000 records of 100 bytes over 10,000 keys.

mod common;

use common::{fresh, keys, value, KEYS};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nano_wal::WalOptions;

const RECORDS: u64 = 1_000_000;

fn read(c: &mut Criterion) {
    let keys = keys();
    let (_dir, wal) = fresh(WalOptions::default());
    let v = value(100);
    for i in 0..RECORDS {
        wal.append_entry(&keys[(i % KEYS) as usize], v.clone(), false)
            .expect("append");
    }
    wal.sync().expect("sync");
    let per_key = RECORDS / KEYS;

    let mut group = c.benchmark_group("enumerate_records");
    group.throughput(Throughput::Elements(per_key));
    group.bench_function("one key (100 records)", |b| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % keys.len();
            let n = wal.enumerate_records(&keys[k]).expect("read").count() as u64;
            assert_eq!(n, per_key);
        })
    });
    group.throughput(Throughput::Elements(per_key * 1_000));
    group.sample_size(10);
    group.bench_function("1000 keys", |b| {
        b.iter(|| {
            let n: usize = keys[..1_000]
                .iter()
                .map(|k| wal.enumerate_records(k).expect("read").count())
                .sum();
            assert_eq!(n as u64, per_key * 1_000);
        })
    });
    group.finish();
    wal.shutdown().expect("shutdown");
}

criterion_group!(benches, read);
criterion_main!(benches);
