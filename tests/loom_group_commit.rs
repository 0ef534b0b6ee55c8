//! Loom model: group commit and poisoning.
#![cfg(loom)]

use bytes::Bytes;
use nano_wal::model::{mem_wal, small_options};
use nano_wal::WalError;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when some explored schedule covered two durable appends with one fsync.
static SHARED_SYNC_SEEN: AtomicBool = AtomicBool::new(false);

/// No durable append returns Ok before the fsync covering its record; one fsync may
/// cover several appends.
#[test]
fn durable_ack_only_after_covering_sync() {
    loom::model(|| {
        let (wal, mem) = mem_wal(small_options(4)).expect("open");
        let mem = std::sync::Arc::new(mem);
        let threads: Vec<_> = [b"a", b"b"]
            .into_iter()
            .map(|key| {
                let (wal, mem) = (wal.clone(), mem.clone());
                loom::thread::spawn(move || {
                    wal.log_entry(key, Bytes::from_static(b"v"))
                        .expect("durable append");
                    assert_eq!(
                        mem.synced_values(0, key, 4),
                        vec![b"v".to_vec()],
                        "acked before synced"
                    );
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let syncs = mem.syncs();
        assert!(
            (1..=2).contains(&syncs),
            "{syncs} fsyncs for 2 durable appends"
        );
        if syncs == 1 {
            SHARED_SYNC_SEEN.store(true, Ordering::SeqCst);
        }
        wal.close().expect("close");
    });
    assert!(
        SHARED_SYNC_SEEN.load(Ordering::SeqCst),
        "no schedule shared one fsync between two waiters: group commit is not happening"
    );
}

/// A failed fsync fails every waiter of its batch and poisons the shard for good:
/// no later call returns Ok, and the failed sync is not retried.
#[test]
fn failed_sync_fails_the_batch_and_poisons() {
    loom::model(|| {
        let (wal, mem) = mem_wal(small_options(4)).expect("open");
        let mem = std::sync::Arc::new(mem);
        let failer = {
            let mem = mem.clone();
            loom::thread::spawn(move || mem.fail_syncs(true))
        };
        let other = {
            let wal = wal.clone();
            loom::thread::spawn(move || wal.log_entry(b"b", Bytes::from_static(b"v")))
        };
        let mine = wal.log_entry(b"a", Bytes::from_static(b"v"));
        failer.join().expect("failer");
        let theirs = other.join().expect("other");
        for (key, result) in [(&b"a"[..], &mine), (&b"b"[..], &theirs)] {
            if result.is_ok() {
                assert_eq!(
                    mem.synced_values(0, key, 4),
                    vec![b"v".to_vec()],
                    "Ok without a sync"
                );
            }
        }
        mem.fail_syncs(false);
        let later = wal.log_entry(b"c", Bytes::from_static(b"v"));
        if mine.is_err() || theirs.is_err() {
            assert!(matches!(later, Err(WalError::Poisoned { .. })), "{later:?}");
            assert!(wal.sync().is_err(), "sync after a failed fsync returned Ok");
            assert!(wal.close().is_err(), "close hid the failed fsync");
        } else {
            // Both were synced before the failure was switched on.
            assert!(later.is_ok() || matches!(later, Err(WalError::Poisoned { .. })));
            let _ = wal.close();
        }
    });
}
