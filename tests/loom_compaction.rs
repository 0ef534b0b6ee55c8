//! Loom model: compaction's install step racing a reader.
#![cfg(loom)]

use bytes::Bytes;
use nano_wal::model::{mem_wal, set_clock};
use nano_wal::WalOptions;
use std::time::Duration;

const SECOND: u64 = 1_000_000;

fn options() -> WalOptions {
    // Tiny segments (the smallest these limits allow: header, seal note and one
    // largest record): a record and its seal note leave no room for a sync marker,
    // and the clock's jump between the two appends rotates by age.
    WalOptions::default()
        .with_shards(1)
        .with_retention(Duration::from_secs(10))
        .with_segments(10)
        .with_max_key_size(8)
        .with_max_record_size(8)
        .with_max_segment_size(40 + 44 + 28 + 8 + 8)
}

/// A reader racing compaction sees the old state or the new one, whole: never an
/// error from following a location into a removed segment, never a partial state.
#[test]
fn reader_sees_old_or_new_state_whole() {
    loom::model(|| {
        set_clock(1_000 * SECOND);
        let (wal, mem) = mem_wal(options()).expect("open");
        wal.log_entry(b"k", Bytes::from_static(b"old"))
            .expect("old");
        set_clock(1_020 * SECOND);
        wal.log_entry(b"k", Bytes::from_static(b"new"))
            .expect("new");
        let reader = {
            let wal = wal.clone();
            loom::thread::spawn(move || {
                let got: Vec<Bytes> = wal
                    .enumerate_records(b"k")
                    .expect("read during compaction")
                    .collect();
                let old_state = [Bytes::from_static(b"old"), Bytes::from_static(b"new")];
                let new_state = [Bytes::from_static(b"new")];
                assert!(got == old_state || got == new_state, "torn view: {got:?}");
            })
        };
        let report = wal.compact().expect("compact");
        assert_eq!(report.segments_removed, 1);
        reader.join().expect("reader");
        let after: Vec<Bytes> = wal.enumerate_records(b"k").expect("read").collect();
        assert_eq!(after, vec![Bytes::from_static(b"new")]);
        // "new"'s segment, and the one its durable answer started for the sync
        // markers (no room left for them in a segment this small).
        assert_eq!(mem.segment_count(), 2);
        wal.close().expect("close");
    });
}
