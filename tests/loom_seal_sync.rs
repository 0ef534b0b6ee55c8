//! Loom model: the seal syncer's hand-off. The actor seals a segment and goes on into
//! the next while the syncer thread fsyncs it; a durable answer must wait for that
//! fsync, and a failed one must fail the durable call and poison the shard.
#![cfg(loom)]

use bytes::Bytes;
use nano_wal::model::{mem_wal_with_syncer_thread, small_options, MemHandle};
use nano_wal::{WalError, WalOptions};

/// Segments of 168 bytes (40 + 44 + 48 + 36: a header, a seal note, the second
/// record and a sync marker). Segment 1 holds the first record, with a 64-byte value
/// (40 + 93 = 133 bytes); the second, with a 19-byte value (48 bytes), would take it
/// past 168, so the second append seals segment 1. In segment 2 it follows the
/// 44-byte seal note, and the 36-byte sync marker for segment 1 fits after it.
fn options() -> WalOptions {
    small_options(2)
        .with_max_key_size(1)
        .with_max_record_size(64)
        .with_max_segment_size(40 + 44 + 48 + 36)
}

fn first() -> Bytes {
    Bytes::from(vec![b'1'; 64])
}

fn later(digit: u8) -> Bytes {
    Bytes::from(vec![digit; 19])
}

/// A model WAL whose seals are synced on the syncer thread, with segment 1 holding
/// one 64-byte value (the next append seals it).
fn open_with_segment_1() -> (nano_wal::Wal, MemHandle) {
    let (wal, mem) = mem_wal_with_syncer_thread(options()).expect("open");
    wal.append_entry(b"k", first(), false).expect("append");
    (wal, mem)
}

#[test]
fn durable_answer_waits_for_the_seal_fsync() {
    loom::model(|| {
        let (wal, mem) = open_with_segment_1();
        // Seals segment 1 (its fsync goes to the syncer thread) and writes segment 2.
        wal.log_entry(b"k", later(b'2')).expect("durable append");
        assert!(
            mem.fully_synced(0, 1),
            "durable answer before the sealed segment's fsync"
        );
        assert_eq!(
            mem.synced_values(0, b"k", 2),
            vec![first().to_vec(), later(b'2').to_vec()]
        );
        wal.close().expect("close");
    });
}

#[test]
fn failed_seal_fsync_fails_the_durable_call_and_poisons() {
    loom::model(|| {
        let (wal, mem) = open_with_segment_1();
        mem.fail_syncs(true);
        let durable = wal.log_entry(b"k", later(b'2'));
        mem.fail_syncs(false);
        assert!(durable.is_err(), "durable Ok after a failed seal fsync");
        let after = wal.log_entry(b"k", later(b'3'));
        assert!(
            matches!(after, Err(WalError::Poisoned { shard: 0, .. })),
            "{after:?}"
        );
        assert!(!mem.fully_synced(0, 1));
        assert!(wal.close().is_err(), "close must report the poisoned shard");
    });
}
