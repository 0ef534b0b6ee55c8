//! Stress on real threads: 64 threads share one handle doing durable and pipelined
//! appends, reads and key listings, while compaction runs and, finally, close races
//! them. Checked afterwards, on a reopen, against the set of acknowledged appends.

use bytes::Bytes;
use nano_wal::{Wal, WalError, WalOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const THREADS: usize = 64;
const KEYS: usize = 32;
const OPS_PER_THREAD: u64 = 1_500;

fn value(key: usize, thread: usize, seq: u64) -> Bytes {
    Bytes::from(format!(
        "{key}|{thread}|{seq}|{}",
        "x".repeat(seq as usize % 40)
    ))
}

/// Parses a value back; `None` means foreign bytes.
fn parse(v: &[u8]) -> Option<(usize, usize, u64)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.split('|');
    let (k, t, q, pad) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let parsed = (k.parse().ok()?, t.parse().ok()?, q.parse().ok()?);
    (it.next().is_none() && pad.len() == parsed.2 as usize % 40 && pad.bytes().all(|b| b == b'x'))
        .then_some(parsed)
}

fn options() -> WalOptions {
    WalOptions::default()
        .with_shards(4)
        .with_retention(Duration::from_secs(3))
        .with_segments(3)
        .with_channel_capacity(256)
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(64 * 1024)
}

/// Checks a key's records: no foreign bytes, no duplicates, each thread's records
/// in increasing sequence. Returns (thread, seq) pairs.
fn check_key(key: usize, records: &[Bytes]) -> BTreeSet<(usize, u64)> {
    let mut last: BTreeMap<usize, u64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for r in records {
        let (k, t, q) = parse(r).unwrap_or_else(|| panic!("foreign bytes under key {key}: {r:?}"));
        assert_eq!(k, key, "record of key {k} returned under key {key}");
        if let Some(&prev) = last.get(&t) {
            assert!(q > prev, "key {key}, thread {t}: seq {q} after {prev}");
        }
        last.insert(t, q);
        assert!(seen.insert((t, q)), "duplicate record {key}|{t}|{q}");
    }
    seen
}

#[test]
fn sixty_four_threads_with_compaction_and_close_racing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("wal");
    // Phase 0: old records that retention will drop during the stress.
    {
        let wal = Wal::new(&path, options())?;
        for i in 0..200u64 {
            wal.append_entry(
                format!("old-{}", i % 10),
                Bytes::from(format!("old {i}")),
                false,
            )?;
        }
        wal.close()?;
    }
    std::thread::sleep(Duration::from_millis(3_300));

    let wal = Wal::new(&path, options())?;
    let acked: Arc<Mutex<BTreeSet<(usize, usize, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    std::thread::scope(|s| -> TestResult {
        for t in 0..THREADS {
            let (wal, acked, stop, ops) = (wal.clone(), acked.clone(), stop.clone(), ops.clone());
            s.spawn(move || {
                let mut mine = Vec::new();
                let mut rng = (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                for seq in 0..OPS_PER_THREAD {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let key = (rng % KEYS as u64) as usize;
                    let op = rng % 100;
                    let result = match op {
                        0..=64 => wal.append_entry(key.to_string(), value(key, t, seq), false),
                        65..=79 => wal.log_entry(key.to_string(), value(key, t, seq)),
                        80..=94 => wal.enumerate_records(key.to_string()).map(|records| {
                            let records: Vec<Bytes> = records.collect();
                            let seen = check_key(key, &records);
                            // Visibility: every record this thread was acked for is there.
                            for &(k, q) in &mine {
                                if k == key {
                                    assert!(
                                        seen.contains(&(t, q)),
                                        "acked {key}|{t}|{q} not visible"
                                    );
                                }
                            }
                        }),
                        _ => wal.enumerate_keys::<Vec<u8>>().map(|keys| {
                            let keys: Vec<Vec<u8>> = keys.collect();
                            let unique: BTreeSet<&Vec<u8>> = keys.iter().collect();
                            assert_eq!(unique.len(), keys.len(), "a key listed twice");
                        }),
                    };
                    match result {
                        Ok(()) if op < 80 => {
                            mine.push((key, seq));
                            acked.lock().expect("acked").insert((key, t, seq));
                        }
                        Ok(()) => {}
                        Err(WalError::Closed) => break,
                        Err(e) => panic!("thread {t}: unexpected error {e}"),
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Compaction racing the workers: the old segments expire, nothing else does.
        let compactor = {
            let wal = wal.clone();
            s.spawn(move || -> Result<u64, WalError> {
                let mut removed = 0;
                for _ in 0..5 {
                    match wal.compact() {
                        Ok(r) => removed += r.segments_removed,
                        Err(WalError::Closed) => break,
                        Err(e) => return Err(e),
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(removed)
            })
        };
        // Close races the workers once they are well under way.
        while ops.load(Ordering::Relaxed) < (THREADS as u64 * OPS_PER_THREAD) / 2
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        wal.close()?;
        stop.store(true, Ordering::Relaxed);
        let removed = compactor.join().map_err(|_| "compactor panicked")??;
        assert!(
            removed >= 1,
            "the expired phase-0 segments were not compacted"
        );
        Ok(())
    })?;

    let acked = acked.lock().map_err(|_| "poisoned")?.clone();
    assert!(
        acked.len() > 10_000,
        "too little work acknowledged: {}",
        acked.len()
    );
    let wal = Wal::new(&path, options())?;
    let mut found = BTreeSet::new();
    for key in 0..KEYS {
        let records: Vec<Bytes> = wal.enumerate_records(key.to_string())?.collect();
        for (t, q) in check_key(key, &records) {
            found.insert((key, t, q));
        }
    }
    let missing: Vec<_> = acked.difference(&found).take(5).collect();
    assert!(missing.is_empty(), "acknowledged records lost: {missing:?}");
    let keys: BTreeSet<Vec<u8>> = wal.enumerate_keys()?.collect();
    assert!(
        !keys.iter().any(|k| k.starts_with(b"old-")),
        "expired keys still listed"
    );
    for i in 0..10 {
        assert_eq!(wal.enumerate_records(format!("old-{i}"))?.count(), 0);
    }
    wal.close()?;
    Ok(())
}
