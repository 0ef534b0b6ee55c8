//! Unit tests of [`Wal`](super::Wal) over in-memory storage: fault injection
//! (failed writes and fsyncs), group commit, durable waiting and compaction order.

use super::*;
use crate::testing::mem_storage::MemStorage;
use std::sync::atomic::Ordering as StdOrdering;
use std::time::Duration;

fn mem_wal(shards: usize) -> (Wal, std::sync::Arc<MemStorage>) {
    mem_wal_with(WalOptions::default().with_shards(shards))
}

fn mem_wal_with(options: WalOptions) -> (Wal, std::sync::Arc<MemStorage>) {
    let storage = std::sync::Arc::new(MemStorage::default());
    let wal = Wal::with_mem_storage(options, storage.clone()).unwrap();
    (wal, storage)
}

#[test]
fn a_lone_durable_caller_polls_for_as_long_as_the_disk_syncs() {
    let (wal, storage) = mem_wal(1);
    let shard = &wal.inner.shards[0].shared;
    assert_eq!(
        shard.poll_budget(),
        crate::shard::wait::POLL_BUDGET_MIN,
        "nothing timed yet"
    );
    // A 0.3 ms fdatasync (at least: a sleep never ends early): polling 0.25 ms
    // would end just before most answers.
    storage
        .faults
        .data_sync_delay_us
        .store(300, StdOrdering::SeqCst);
    for i in 0..20 {
        wal.log_entry(b"k", Bytes::from(format!("{i}"))).unwrap();
    }
    let budget = shard.poll_budget();
    assert!(
        budget >= Duration::from_micros(600),
        "polls {budget:?} for a 0.3 ms fdatasync"
    );
    // A 5 ms fdatasync: a wake-up no longer matters, so nobody polls.
    storage
        .faults
        .data_sync_delay_us
        .store(5_000, StdOrdering::SeqCst);
    for i in 0..20 {
        wal.log_entry(b"k", Bytes::from(format!("slow {i}")))
            .unwrap();
    }
    assert_eq!(shard.poll_budget(), Duration::ZERO);
    assert_eq!(wal.enumerate_records(b"k").unwrap().count(), 40);
}

#[test]
fn failed_fsync_poisons_the_shard_and_is_never_retried() {
    let (wal, storage) = mem_wal(1);
    wal.log_entry(b"k", Bytes::from_static(b"before")).unwrap();
    let syncs_before = storage.faults.syncs.load(StdOrdering::SeqCst);
    storage.faults.fail_syncs.store(true, StdOrdering::SeqCst);
    let err = wal
        .log_entry(b"k", Bytes::from_static(b"lost"))
        .unwrap_err();
    assert!(matches!(err, WalError::Io { op: "syncing", .. }), "{err:?}");
    // The disk "recovers"; the shard must not pretend the failed sync happened.
    storage.faults.fail_syncs.store(false, StdOrdering::SeqCst);
    for result in [
        wal.append_entry(b"k", Bytes::from_static(b"x"), false),
        wal.log_entry(b"k", Bytes::from_static(b"x")),
        wal.sync(),
        wal.enumerate_records(b"k").map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(WalError::Poisoned { shard: 0, .. })),
            "{result:?}"
        );
    }
    assert!(wal.close().is_err(), "close must report the poisoned shard");
    assert_eq!(storage.faults.syncs.load(StdOrdering::SeqCst), syncs_before);
}

#[test]
fn a_failed_seal_fsync_poisons_the_shard_and_nothing_after_it_is_durable() {
    // Room for one 100-byte record per segment: every append seals the previous.
    let (wal, storage) = mem_wal_with(
        WalOptions::default()
            .with_shards(1)
            .with_max_record_size(100)
            .with_max_key_size(8)
            .with_max_segment_size(
                (crate::format::segment_header::SEGMENT_HEADER_LEN
                    + crate::format::record::SEAL_NOTE_LEN
                    + crate::format::record::encoded_len(8, 100)) as u64,
            ),
    );
    let value = Bytes::from(vec![7u8; 100]);
    wal.append_entry(b"k", value.clone(), false).unwrap();
    storage.faults.fail_syncs.store(true, StdOrdering::SeqCst);
    // Seals segment 1; its fsync fails on the syncer thread.
    wal.append_entry(b"k", value.clone(), false).unwrap();
    // A durable answer waits for that seal and must get its error, even though the
    // disk "recovers" before the request is served.
    let err = loop {
        match wal.append_entry(b"k", value.clone(), false) {
            Ok(()) => std::thread::yield_now(),
            Err(e) => break e,
        }
    };
    storage.faults.fail_syncs.store(false, StdOrdering::SeqCst);
    assert!(
        matches!(
            &err,
            WalError::Io {
                op: "syncing sealed segment",
                ..
            }
        ) || matches!(&err, WalError::Poisoned { shard: 0, .. }),
        "{err:?}"
    );
    for result in [wal.log_entry(b"k", value.clone()), wal.sync()] {
        assert!(
            matches!(result, Err(WalError::Poisoned { shard: 0, .. })),
            "{result:?}"
        );
    }
    assert!(wal.close().is_err(), "close must report the poisoned shard");
    assert!(storage.segment(0, 1).unwrap().synced().is_empty());
}

#[test]
fn a_durable_answer_comes_after_every_seal_before_it_is_synced() {
    let (wal, storage) = mem_wal_with(
        WalOptions::default()
            .with_shards(1)
            .with_max_record_size(1000)
            .with_max_key_size(8)
            .with_max_segment_size(4096),
    );
    // Before the first seal: every seal's fsync takes 2 ms.
    storage
        .faults
        .seal_sync_delay_us
        .store(2_000, StdOrdering::SeqCst);
    for round in 0..20 {
        for _ in 0..30 {
            wal.append_entry(b"k", Bytes::from(vec![round as u8; 900]), false)
                .unwrap();
        }
        wal.log_entry(b"k", Bytes::from_static(b"durable")).unwrap();
        let newest = wal.stats().unwrap().shards[0].segments;
        for sequence in 1..newest {
            let seg = storage.segment(0, sequence).unwrap();
            assert_eq!(
                seg.synced().len(),
                seg.data_len(),
                "round {round}: segment {sequence} of {newest} not synced at a durable answer"
            );
        }
    }
    wal.close().unwrap();
}

#[test]
fn failed_write_fails_every_waiter_of_the_batch() {
    let (wal, storage) = mem_wal(1);
    storage.faults.fail_writes.store(true, StdOrdering::SeqCst);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let wal = wal.clone();
                s.spawn(move || wal.log_entry(format!("k{i}"), Bytes::from_static(b"v")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    assert_eq!(storage.faults.syncs.load(StdOrdering::SeqCst), 0);
}

#[test]
fn durable_appends_share_fsyncs() {
    let (wal, storage) = mem_wal(1);
    std::thread::scope(|s| {
        for t in 0..16 {
            let wal = wal.clone();
            s.spawn(move || {
                for i in 0..50 {
                    wal.log_entry(format!("t{t}"), Bytes::from(format!("{i}")))
                        .unwrap();
                }
            });
        }
    });
    let syncs = storage.faults.syncs.load(StdOrdering::SeqCst);
    assert!(
        syncs < 800,
        "800 durable appends took {syncs} fsyncs: no group commit"
    );
    for t in 0..16 {
        let got: Vec<Bytes> = wal.enumerate_records(format!("t{t}")).unwrap().collect();
        let want: Vec<Bytes> = (0..50).map(|i| Bytes::from(format!("{i}"))).collect();
        assert_eq!(got, want);
    }
    let seg = storage.segment(0, 1).expect("segment 1 exists");
    assert!(
        seg.synced().len() > 800 * 20,
        "acknowledged records were not synced"
    );
    assert_eq!(storage.segment_count(), 1);
}

#[test]
#[cfg(not(loom))]
fn compaction_unlinks_oldest_first_with_a_directory_fsync_after_each() {
    use crate::testing::mem_storage::{Op, OpLog};
    let log = OpLog::default();
    let storage = std::sync::Arc::new(MemStorage::recording(log.clone(), 0));
    let wal = Wal::with_mem_storage(expiring_small_segments(2), storage).unwrap();
    // Three 1,000-byte values fill a 4 KiB segment: about six seals per shard.
    for i in 0..40 {
        wal.append_entry(format!("k{}", i % 4), Bytes::from(vec![b'v'; 1000]), false)
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(10));
    let before = log.lock().unwrap().len();
    let report = wal.compact().unwrap();
    assert!(report.segments_removed >= 8, "{report:?}");
    let ops: Vec<Op> = log.lock().unwrap()[before..].to_vec();
    let mut removals = 0;
    for shard in 0..2u32 {
        // This shard's removals and directory fsyncs, in order.
        let steps: Vec<&Op> = ops
            .iter()
            .filter(|op| match op {
                Op::Remove((s, _)) => *s == shard,
                Op::SyncDir(s) => *s == shard,
                _ => false,
            })
            .collect();
        let mut last_removed = 0;
        for pair in steps.windows(2) {
            if let Op::Remove((_, sequence)) = pair[0] {
                assert!(*sequence > last_removed, "shard {shard}: out of order");
                last_removed = *sequence;
                removals += 1;
                assert!(
                    matches!(pair[1], Op::SyncDir(s) if *s == shard),
                    "shard {shard}: segment {sequence} unlinked without a directory fsync before the next step"
                );
            }
        }
        assert!(
            matches!(steps.last(), Some(Op::SyncDir(_))),
            "shard {shard}: compaction ended without a directory fsync"
        );
    }
    assert_eq!(removals, report.segments_removed);
    wal.close().unwrap();
}

/// `shards` shards of 4 KiB segments (three 1,000-byte values each) whose records
/// expire after 2 ms, segments rotating every 1 ms.
#[cfg(not(loom))]
fn expiring_small_segments(shards: usize) -> WalOptions {
    WalOptions::default()
        .with_shards(shards)
        .with_retention(std::time::Duration::from_millis(2))
        .with_segments(2)
        .with_max_key_size(8)
        .with_max_record_size(1000)
        .with_max_segment_size(4096)
}

/// A one-shard WAL over a memory store that logs its calls and takes 20 ms per
/// segment removal, holding three sealed segments that expire 2 ms after their
/// last record, and what lists the segments removed so far (from the log).
#[cfg(not(loom))]
fn slow_unlinks() -> (Wal, impl Fn() -> Vec<u64>) {
    use crate::testing::mem_storage::{Op, OpLog};
    let log = OpLog::default();
    let storage = std::sync::Arc::new(MemStorage::recording(log.clone(), 0));
    storage
        .faults
        .remove_delay_us
        .store(20_000, StdOrdering::SeqCst);
    let wal = Wal::with_mem_storage(expiring_small_segments(1), storage).unwrap();
    for _ in 0..10 {
        wal.append_entry("k", Bytes::from(vec![b'v'; 1000]), false)
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(10));
    let removed = {
        let log = log.clone();
        move || {
            log.lock()
                .unwrap()
                .iter()
                .filter_map(|op| match op {
                    Op::Remove((_, sequence)) => Some(*sequence),
                    _ => None,
                })
                .collect::<Vec<u64>>()
        }
    };
    (wal, removed)
}

/// Starts a compaction of `wal` on another thread and waits until `removed()` lists
/// a removal: the compaction is then unlinking.
#[cfg(not(loom))]
fn compact_until_unlinking(
    wal: &Wal,
    removed: &impl Fn() -> Vec<u64>,
) -> std::thread::JoinHandle<Result<CompactionReport>> {
    let compacting = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.compact())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while removed().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no compaction began");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    compacting
}

#[test]
#[cfg(not(loom))]
fn close_waits_for_a_running_compactions_unlinks() {
    let (wal, removed) = slow_unlinks();
    let compacting = compact_until_unlinking(&wal, &removed);
    wal.close().unwrap();
    let at_close = removed().len();
    let report = compacting.join().unwrap().unwrap();
    assert!(report.segments_removed >= 3, "{report:?}");
    assert_eq!(
        at_close as u64, report.segments_removed,
        "close returned while the compaction still unlinked"
    );
}

#[test]
#[cfg(not(loom))]
fn concurrent_compactions_unlink_oldest_first() {
    let (wal, removed) = slow_unlinks();
    let first = compact_until_unlinking(&wal, &removed);
    // Newer segments expire while the first compaction still unlinks; a second
    // compaction retires them.
    for _ in 0..7 {
        wal.append_entry("k", Bytes::from(vec![b'w'; 1000]), false)
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    let second = wal.compact().unwrap();
    let first = first.join().unwrap().unwrap();
    assert!(first.segments_removed >= 3 && second.segments_removed >= 2);
    let order = removed();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "segments unlinked out of order: {order:?}"
    );
    wal.close().unwrap();
}
