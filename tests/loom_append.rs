//! Loom model: append hand-off (visibility through the read barrier, per-key order).
#![cfg(loom)]

use bytes::Bytes;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use nano_wal::model::{mem_wal, small_options};

fn values(wal: &nano_wal::Wal, key: &[u8]) -> Vec<Bytes> {
    wal.enumerate_records(key).expect("read").collect()
}

/// A pipelined (non-durable) append that returned is visible to a reader on another
/// thread that learned of it; a reader that did not sees a prefix, in order.
#[test]
fn acknowledged_append_is_visible_in_order() {
    loom::model(|| {
        let (wal, _mem) = mem_wal(small_options(2)).expect("open");
        let acked = Arc::new(AtomicBool::new(false));
        let writer = {
            let (wal, acked) = (wal.clone(), acked.clone());
            loom::thread::spawn(move || {
                wal.append_entry(b"k", Bytes::from_static(b"1"), false)
                    .expect("append 1");
                wal.append_entry(b"k", Bytes::from_static(b"2"), false)
                    .expect("append 2");
                acked.store(true, Ordering::Release);
            })
        };
        let reader = {
            let (wal, acked) = (wal.clone(), acked.clone());
            loom::thread::spawn(move || {
                let saw_ack = acked.load(Ordering::Acquire);
                let got = values(&wal, b"k");
                let all = [Bytes::from_static(b"1"), Bytes::from_static(b"2")];
                if saw_ack {
                    assert_eq!(got, all, "acknowledged appends not visible");
                } else {
                    assert!(
                        all.starts_with(&got),
                        "not a prefix in append order: {got:?}"
                    );
                }
            })
        };
        writer.join().expect("writer");
        reader.join().expect("reader");
        wal.close().expect("close");
    });
}

/// Two threads append to one key; each thread's records come back in the order its
/// appends returned, and every acknowledged record is there.
#[test]
fn acknowledgements_keep_per_key_order() {
    loom::model(|| {
        let (wal, _mem) = mem_wal(small_options(2)).expect("open");
        let a = {
            let wal = wal.clone();
            loom::thread::spawn(move || {
                wal.append_entry(b"k", Bytes::from_static(b"a1"), false)
                    .expect("a1");
                wal.log_entry(b"k", Bytes::from_static(b"a2")).expect("a2");
            })
        };
        wal.append_entry(b"k", Bytes::from_static(b"b1"), false)
            .expect("b1");
        a.join().expect("a");
        let got = values(&wal, b"k");
        assert_eq!(got.len(), 3, "{got:?}");
        let pos = |v: &'static [u8]| got.iter().position(|g| g == v).expect("present");
        assert!(pos(b"a1") < pos(b"a2"), "{got:?}");
        wal.close().expect("close");
    });
}
