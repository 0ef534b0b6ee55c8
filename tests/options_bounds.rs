//! Every field of `WalOptions` at 0, at its documented maximum, just past it, and at
//! its type's maximum: each value is either refused by `validate` (and `Wal::new`)
//! with `InvalidOptions` naming the field, or the WAL opens and an append, a read, a
//! compaction and a close work. No value may panic or abort the process.

mod common;

use bytes::Bytes;
use common::TestResult;
use nano_wal::{
    Wal, WalError, WalOptions, MAX_BATCH, MAX_CHANNEL_CAPACITY, MAX_KEY_SIZE, MAX_READ_CACHE_BYTES,
    MAX_RECORD_SIZE, MAX_SEGMENTS, MAX_SEGMENT_SIZE, MAX_SHARDS, MIN_SEGMENT_SIZE,
};
use std::time::Duration;

/// Small options the cases start from (few shards, so a case opens quickly).
fn base() -> WalOptions {
    WalOptions::default().with_shards(2)
}

/// `options` must be refused, naming `field`, by `validate` and by `Wal::new`,
/// which must then create nothing.
fn refused(options: WalOptions, field: &str) -> TestResult {
    match options.validate() {
        Err(WalError::InvalidOptions { option, reason }) => {
            assert_eq!(option, field, "{reason}");
            assert!(!reason.is_empty());
        }
        other => panic!("{field}: expected InvalidOptions from validate, got {other:?}"),
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    match Wal::new(&dir, options) {
        Err(WalError::InvalidOptions { option, .. }) => assert_eq!(option, field),
        Err(other) => panic!("{field}: expected InvalidOptions, got {other:?}"),
        Ok(_) => panic!("{field}: invalid options accepted by Wal::new"),
    }
    assert!(!dir.exists(), "{field}: refused options created {dir:?}");
    Ok(())
}

/// `options` must be valid, and a WAL opened with them must take appends (one of
/// them durable), read them back, compact, close, and reopen with them intact.
/// Keys and values are one byte, so the smallest limits take them.
fn opens(options: WalOptions) -> TestResult {
    options.validate()?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options.clone())?;
    let values: Vec<Bytes> = (b'0'..b'5').map(|c| Bytes::from(vec![c])).collect();
    for v in &values {
        wal.append_entry("k", v.clone(), false)?;
    }
    wal.log_entry("d", Bytes::from_static(b"d"))?;
    wal.append_batch(vec![("b", Bytes::from_static(b"b"))], true)?;
    assert_eq!(wal.enumerate_records("k")?.collect::<Vec<_>>(), values);
    // Default retention (or longer): nothing is old enough to go.
    assert_eq!(wal.compact()?.records_removed, 0);
    assert_eq!(wal.enumerate_records("d")?.count(), 1);
    wal.close()?;
    let wal = Wal::new(&dir, options)?;
    assert_eq!(wal.enumerate_records("k")?.collect::<Vec<_>>(), values);
    assert_eq!(
        wal.enumerate_records("b")?.collect::<Vec<_>>(),
        vec![Bytes::from_static(b"b")]
    );
    wal.close()?;
    Ok(())
}

#[test]
fn entry_retention_bounds() -> TestResult {
    refused(base().with_retention(Duration::ZERO), "entry_retention")?;
    // Below 1 ms per segment.
    refused(
        base()
            .with_retention(Duration::from_micros(999))
            .with_segments(1),
        "entry_retention",
    )?;
    // Durations beyond any microsecond count: kept for ever, nothing overflows.
    opens(base().with_retention(Duration::from_micros(u64::MAX)))?;
    opens(base().with_retention(Duration::MAX))?;
    opens(
        base()
            .with_retention(Duration::MAX)
            .with_segments(MAX_SEGMENTS),
    )?;
    opens(base().with_retention(Duration::new(u64::MAX, 0)))?;
    Ok(())
}

#[test]
fn a_one_millisecond_retention_opens_and_works() -> TestResult {
    // Records may expire between the calls of `opens`, so checked here on its own.
    let tmp = tempfile::tempdir()?;
    let options = base()
        .with_retention(Duration::from_millis(1))
        .with_segments(1);
    let wal = Wal::new(tmp.path().join("wal"), options)?;
    wal.log_entry("k", Bytes::from_static(b"v"))?;
    std::thread::sleep(Duration::from_millis(5));
    wal.log_entry("k", Bytes::from_static(b"w"))?;
    wal.compact()?;
    // Whatever expired is a prefix: what is left ends with the newest record.
    let both = [Bytes::from_static(b"v"), Bytes::from_static(b"w")];
    let left: Vec<Bytes> = wal.enumerate_records("k")?.collect();
    assert!(both.ends_with(&left), "{left:?}");
    wal.close()?;
    Ok(())
}

#[test]
fn segments_bounds() -> TestResult {
    refused(base().with_segments(0), "segments")?;
    opens(base().with_segments(1))?;
    opens(base().with_segments(MAX_SEGMENTS))?;
    refused(base().with_segments(MAX_SEGMENTS + 1), "segments")?;
    refused(base().with_segments(usize::MAX), "segments")?;
    // Too many segments for the retention: each would be shorter than 1 ms.
    refused(
        base()
            .with_retention(Duration::from_secs(1))
            .with_segments(MAX_SEGMENTS),
        "entry_retention",
    )?;
    Ok(())
}

#[test]
fn shards_bounds() -> TestResult {
    refused(base().with_shards(0), "shards")?;
    opens(base().with_shards(1))?;
    opens(base().with_shards(MAX_SHARDS).with_read_cache_bytes(0))?;
    refused(base().with_shards(MAX_SHARDS + 1), "shards")?;
    refused(base().with_shards(usize::MAX), "shards")?;
    Ok(())
}

#[test]
fn max_segment_size_bounds() -> TestResult {
    refused(base().with_max_segment_size(0), "max_segment_size")?;
    refused(
        base().with_max_segment_size(MIN_SEGMENT_SIZE - 1),
        "max_segment_size",
    )?;
    // Small thresholds with the default key and value limits (16 MiB + 64 KiB).
    opens(base().with_max_segment_size(MIN_SEGMENT_SIZE))?;
    opens(base().with_max_segment_size(4096))?;
    opens(base().with_max_segment_size(64 * 1024))?;
    opens(base().with_max_segment_size(1024 * 1024))?;
    opens(base().with_max_segment_size(MAX_SEGMENT_SIZE))?;
    assert_eq!(MAX_SEGMENT_SIZE, u64::from(u32::MAX));
    refused(
        base().with_max_segment_size(MAX_SEGMENT_SIZE + 1),
        "max_segment_size",
    )?;
    refused(base().with_max_segment_size(u64::MAX), "max_segment_size")?;
    Ok(())
}

#[test]
fn channel_capacity_bounds() -> TestResult {
    refused(base().with_channel_capacity(0), "channel_capacity")?;
    opens(base().with_channel_capacity(1))?;
    // The queue allocates as it fills: its largest capacity costs nothing up front.
    opens(base().with_channel_capacity(MAX_CHANNEL_CAPACITY))?;
    refused(
        base().with_channel_capacity(MAX_CHANNEL_CAPACITY + 1),
        "channel_capacity",
    )?;
    refused(base().with_channel_capacity(1 << 40), "channel_capacity")?;
    refused(base().with_channel_capacity(usize::MAX), "channel_capacity")?;
    Ok(())
}

#[test]
fn a_capacity_of_one_still_takes_many_concurrent_appends() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::new(
        tmp.path().join("wal"),
        base()
            .with_shards(1)
            .with_channel_capacity(1)
            .with_max_batch(1),
    )?;
    std::thread::scope(|s| {
        for t in 0..4 {
            let wal = &wal;
            s.spawn(move || {
                for i in 0..200 {
                    wal.append_entry(format!("t{t}"), Bytes::from(format!("{i}")), i % 50 == 0)
                        .unwrap();
                }
            });
        }
    });
    for t in 0..4 {
        let got: Vec<Bytes> = wal.enumerate_records(format!("t{t}"))?.collect();
        let want: Vec<Bytes> = (0..200).map(|i| Bytes::from(format!("{i}"))).collect();
        assert_eq!(got, want, "t{t}");
    }
    wal.close()?;
    Ok(())
}

#[test]
fn max_batch_bounds() -> TestResult {
    refused(base().with_max_batch(0), "max_batch")?;
    opens(base().with_max_batch(1))?;
    opens(base().with_max_batch(MAX_BATCH))?;
    refused(base().with_max_batch(MAX_BATCH + 1), "max_batch")?;
    refused(base().with_max_batch(usize::MAX), "max_batch")?;
    Ok(())
}

#[test]
fn max_key_size_bounds() -> TestResult {
    refused(base().with_max_key_size(0), "max_key_size")?;
    opens(base().with_max_key_size(1))?;
    opens(base().with_max_key_size(MAX_KEY_SIZE))?;
    refused(base().with_max_key_size(MAX_KEY_SIZE + 1), "max_key_size")?;
    refused(base().with_max_key_size(usize::MAX), "max_key_size")?;
    Ok(())
}

#[test]
fn max_record_size_bounds() -> TestResult {
    refused(base().with_max_record_size(0), "max_record_size")?;
    opens(base().with_max_record_size(1))?;
    opens(base().with_max_record_size(MAX_RECORD_SIZE))?;
    refused(
        base().with_max_record_size(MAX_RECORD_SIZE + 1),
        "max_record_size",
    )?;
    refused(base().with_max_record_size(usize::MAX), "max_record_size")?;
    Ok(())
}

#[test]
fn read_cache_bytes_bounds() -> TestResult {
    opens(base().with_read_cache_bytes(0))?;
    opens(base().with_read_cache_bytes(1))?;
    let max = usize::try_from(MAX_READ_CACHE_BYTES)?;
    opens(base().with_read_cache_bytes(max))?;
    refused(base().with_read_cache_bytes(max + 1), "read_cache_bytes")?;
    refused(base().with_read_cache_bytes(usize::MAX), "read_cache_bytes")?;
    Ok(())
}

#[test]
fn index_checkpoint_either_way() -> TestResult {
    opens(base().with_index_checkpoint(false))?;
    opens(base().with_index_checkpoint(true))?;
    Ok(())
}

#[test]
fn every_field_at_its_maximum_at_once() -> TestResult {
    let options = WalOptions::default()
        .with_retention(Duration::MAX)
        .with_segments(MAX_SEGMENTS)
        .with_shards(4)
        .with_max_segment_size(MAX_SEGMENT_SIZE)
        .with_channel_capacity(MAX_CHANNEL_CAPACITY)
        .with_max_batch(MAX_BATCH)
        .with_max_key_size(MAX_KEY_SIZE)
        .with_max_record_size(MAX_RECORD_SIZE)
        .with_read_cache_bytes(usize::try_from(MAX_READ_CACHE_BYTES)?)
        .with_index_checkpoint(true);
    opens(options.clone())?;
    // And the smallest segments with the largest records allowed.
    opens(options.with_max_segment_size(MIN_SEGMENT_SIZE))
}

#[test]
fn every_field_at_its_minimum_at_once() -> TestResult {
    let options = WalOptions::default()
        .with_retention(Duration::from_secs(1))
        .with_segments(1)
        .with_shards(1)
        .with_max_segment_size(MIN_SEGMENT_SIZE)
        .with_channel_capacity(1)
        .with_max_batch(1)
        .with_max_key_size(1)
        .with_max_record_size(1)
        .with_read_cache_bytes(0);
    opens(options)
}
