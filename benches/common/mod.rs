//! Shared setup of the criterion benches: a fresh WAL per measurement, 10,000 keys.
#![allow(dead_code)] // each bench file uses a different part

use bytes::Bytes;
use nano_wal::{Wal, WalOptions};
use std::time::{Duration, Instant};

/// Distinct keys of the workloads.
pub const KEYS: u64 = 10_000;

/// The `i`-th key: `key-00000042`.
pub fn key(i: u64) -> Vec<u8> {
    format!("key-{:08}", i % KEYS).into_bytes()
}

/// All keys, built once so their formatting stays out of the measurement.
pub fn keys() -> Vec<Vec<u8>> {
    (0..KEYS).map(key).collect()
}

/// A value of `size` bytes.
pub fn value(size: usize) -> Bytes {
    Bytes::from(vec![b'v'; size])
}

/// A fresh WAL in a fresh temporary directory (kept alive by the returned guard).
pub fn fresh(options: WalOptions) -> (tempfile::TempDir, Wal) {
    let dir = tempfile::tempdir().expect("temp dir");
    let wal = Wal::new(dir.path().join("wal"), options).expect("open");
    (dir, wal)
}

/// Runs `work` on a fresh WAL and times it together with the final `sync`, leaving
/// opening and deleting the WAL out of the measurement.
pub fn timed(options: WalOptions, work: impl FnOnce(&Wal)) -> Duration {
    let (_dir, wal) = fresh(options);
    let started = Instant::now();
    work(&wal);
    wal.sync().expect("sync");
    let took = started.elapsed();
    wal.shutdown().expect("shutdown");
    took
}
