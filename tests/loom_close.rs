//! Loom model: close racing appends, and the last handle dropped while the actor works.
#![cfg(loom)]

use bytes::Bytes;
use nano_wal::model::{mem_wal, small_options};
use nano_wal::WalError;

/// Every append racing close either returns Ok and is on storage (synced) after
/// close, or returns `Closed`. Nothing hangs; close is idempotent across clones.
#[test]
fn close_racing_appends() {
    loom::model(|| {
        let (wal, mem) = mem_wal(small_options(2)).expect("open");
        let durable = {
            let wal = wal.clone();
            loom::thread::spawn(move || wal.log_entry(b"d", Bytes::from_static(b"1")))
        };
        let pipelined = {
            let wal = wal.clone();
            loom::thread::spawn(move || {
                let r = wal.append_entry(b"p", Bytes::from_static(b"2"), false);
                (r, wal.close())
            })
        };
        let closed = wal.close();
        let d = durable.join().expect("durable");
        let (p, second_close) = pipelined.join().expect("pipelined");
        assert!(closed.is_ok(), "{closed:?}");
        assert!(
            second_close.is_ok(),
            "close is not idempotent: {second_close:?}"
        );
        for (key, result) in [(&b"d"[..], &d), (&b"p"[..], &p)] {
            match result {
                Ok(()) => assert_eq!(
                    mem.synced_values(0, key, 4).len(),
                    1,
                    "acknowledged record lost"
                ),
                Err(WalError::Closed) => assert!(mem.synced_values(0, key, 4).is_empty()),
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        assert!(matches!(
            wal.append_entry(b"x", Bytes::new(), false),
            Err(WalError::Closed)
        ));
        assert!(matches!(wal.enumerate_records(b"d"), Err(WalError::Closed)));
    });
}

/// Dropping the last handle while the actor still has queued work drains and syncs
/// it: no acknowledged record is lost, and the actor thread is joined.
#[test]
fn last_handle_dropped_while_busy() {
    loom::model(|| {
        let (wal, mem) = mem_wal(small_options(2)).expect("open");
        let other = wal.clone();
        let t = loom::thread::spawn(move || {
            other
                .append_entry(b"a", Bytes::from_static(b"1"), false)
                .expect("a");
            drop(other);
        });
        wal.append_entry(b"b", Bytes::from_static(b"2"), false)
            .expect("b");
        drop(wal);
        t.join().expect("thread");
        assert_eq!(mem.synced_values(0, b"a", 4), vec![b"1".to_vec()]);
        assert_eq!(mem.synced_values(0, b"b", 4), vec![b"2".to_vec()]);
    });
}
