//! Segments and records dated in the future (a clock that stepped back, or files
//! from a machine whose clock was fast): time rotation and retention must still
//! make progress. A segment created later than now is due for rotation at once; a
//! record stamped later than now counts as written when the WAL first saw it, so it
//! expires at most `entry_retention` after that (docs/ARCHITECTURE.md, "Rotation
//! and retention").
//!
//! The files are rewritten by the documented format (docs/FORMAT.md, version 4):
//! the segment header's `created` (offset 24, u64 LE microseconds) with its CRC32C
//! (offset 36, over bytes 0..36), and each data record's timestamp (offset 16 of
//! the record) with its checksum (offset 0, over the record's binding and bytes
//! 4..len: `common::reseal_record`).

mod common;

use bytes::Bytes;
use common::{records_of_file, reseal_record, segment_files, TestResult};
use nano_wal::{Wal, WalOptions};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Five years, in microseconds.
const YEARS_AHEAD_US: u64 = 5 * 365 * 24 * 60 * 60 * 1_000_000;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Sets the `created` field of segment file `path`'s header, with its checksum.
fn set_created(path: &Path, created_us: u64) -> TestResult {
    let mut data = std::fs::read(path)?;
    data[24..32].copy_from_slice(&created_us.to_le_bytes());
    let crc = crc32c::crc32c(&data[0..36]);
    data[36..40].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, &data)?;
    Ok(())
}

fn created_of(path: &Path) -> std::io::Result<u64> {
    Ok(u64_at(&std::fs::read(path)?, 24))
}

/// Moves every data record's timestamp in segment file `path` `shift_us` ahead,
/// with its checksum. Returns how many records it moved.
fn shift_record_times(path: &Path, shift_us: u64) -> Result<usize, Box<dyn std::error::Error>> {
    let records = records_of_file(path)?;
    let mut data = std::fs::read(path)?;
    for r in &records {
        let at = r.offset as usize;
        let stamp = u64_at(&data, at + 16) + shift_us;
        data[at + 16..at + 24].copy_from_slice(&stamp.to_le_bytes());
        reseal_record(&mut data, at);
    }
    std::fs::write(path, &data)?;
    // Still valid by the format: the walk finds every record again.
    assert_eq!(records_of_file(path)?.len(), records.len());
    Ok(records.len())
}

/// Dates every segment of shard 0 (header and, if `records`, every data record)
/// `YEARS_AHEAD_US` in the future.
fn move_shard_ahead(dir: &Path, records: bool) -> TestResult {
    let files = segment_files(dir, 0)?;
    assert!(!files.is_empty());
    for f in &files {
        let ahead = created_of(f)? + YEARS_AHEAD_US;
        set_created(f, ahead)?;
        if records {
            shift_record_times(f, YEARS_AHEAD_US)?;
        }
    }
    Ok(())
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("{i:04}"))
}

/// Calls `compact` until `done` holds, for at most `limit`; true if it did.
fn compact_until(wal: &Wal, limit: Duration, mut done: impl FnMut(&Wal) -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        wal.compact().expect("compact");
        if done(wal) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_segment_created_in_the_future_is_sealed_by_age() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    // 10 s segments: no segment is due by age while the test runs.
    let options = WalOptions::default()
        .with_shards(1)
        .with_retention(Duration::from_secs(20))
        .with_segments(2)
        .with_index_checkpoint(true);
    let wal = Wal::new(&dir, options.clone())?;
    for i in 0..10 {
        wal.append_entry("k", value(i), false)?;
    }
    wal.close()?;
    let files = segment_files(&dir, 0)?;
    assert_eq!(files.len(), 1);
    set_created(&files[0], now_us() + YEARS_AHEAD_US)?;

    let wal = Wal::new(&dir, options.clone())?;
    assert_eq!(wal.enumerate_records("k")?.count(), 10);
    assert_eq!(wal.stats()?.segments(), 1);
    // The first write finds the active segment due: it is sealed and the record
    // goes into a new segment, dated now.
    wal.log_entry("k", value(10))?;
    assert_eq!(
        wal.stats()?.segments(),
        2,
        "the future-dated segment was not sealed"
    );
    let files = segment_files(&dir, 0)?;
    assert_eq!(files.len(), 2);
    let created = created_of(&files[1])?;
    assert!(
        created <= now_us(),
        "the new segment is dated by the clock ({created})"
    );
    // The new segment is not future-dated: later writes stay in it (one rotation per
    // step back, not one per write).
    for i in 11..40 {
        wal.append_entry("k", value(i), i % 10 == 0)?;
    }
    assert_eq!(wal.stats()?.segments(), 2);
    let want: Vec<Bytes> = (0..40).map(value).collect();
    assert_eq!(wal.enumerate_records("k")?.collect::<Vec<_>>(), want);
    wal.close()?;

    // The checkpoint written at close (with the header's future time as it is)
    // loads, and every record reads back in order.
    let wal = Wal::new(&dir, options)?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, 1);
    assert_eq!(wal.enumerate_records("k")?.collect::<Vec<_>>(), want);
    wal.close()?;
    Ok(())
}

#[test]
fn an_idle_future_dated_segment_is_sealed_and_dropped_by_compaction() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, WalOptions::default().with_shards(1))?;
    for i in 0..10 {
        wal.append_entry("old", value(i), false)?;
    }
    wal.close()?;
    // Files from a machine whose clock was five years fast: header and records.
    move_shard_ahead(&dir, true)?;
    let old_files = segment_files(&dir, 0)?;

    let retention = Duration::from_millis(1500);
    let options = WalOptions::default()
        .with_shards(1)
        .with_retention(retention)
        .with_segments(2);
    let opened = Instant::now();
    let wal = Wal::new(&dir, options.clone())?;
    // Seen just now: not expired yet (the retention counts from the open).
    wal.compact()?;
    if opened.elapsed() < retention {
        assert_eq!(wal.enumerate_records("old")?.count(), 10, "dropped early");
    }
    // No write at all: compaction alone seals the segment (its creation lies in the
    // future) and drops it once the retention has passed since the open.
    let gone = compact_until(&wal, Duration::from_secs(30), |w| {
        w.enumerate_records("old").is_ok_and(|r| r.count() == 0)
    });
    assert!(gone, "records stamped in the future never expired");
    assert!(
        opened.elapsed() >= retention,
        "expired before the retention"
    );
    assert_eq!(wal.stats()?.records(), 0);
    // (A record-less segment may hold the sync marker compaction left.)
    for f in &old_files {
        assert!(!f.exists(), "{f:?} outlived its records");
    }
    // The WAL goes on.
    wal.log_entry("new", value(0))?;
    wal.close()?;
    let wal = Wal::new(&dir, options)?;
    assert_eq!(wal.enumerate_records("old")?.count(), 0);
    assert_eq!(
        wal.enumerate_records("new")?.collect::<Vec<_>>(),
        vec![value(0)]
    );
    wal.close()?;
    Ok(())
}

#[test]
fn records_stamped_in_the_future_expire_even_in_a_segment_dated_now() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, WalOptions::default().with_shards(1))?;
    for i in 0..10 {
        wal.append_entry("old", value(i), false)?;
    }
    wal.close()?;
    // Only the records are in the future; the header keeps its (true) time, so
    // the segment is sealed by age as usual.
    for f in segment_files(&dir, 0)? {
        assert_eq!(shift_record_times(&f, YEARS_AHEAD_US)?, 10);
    }
    let options = WalOptions::default()
        .with_shards(1)
        .with_retention(Duration::from_millis(300))
        .with_segments(2);
    let opened = Instant::now();
    let wal = Wal::new(&dir, options)?;
    // New records, stamped now, after the future ones.
    wal.log_entry("old", value(10))?;
    let gone = compact_until(&wal, Duration::from_secs(30), |w| {
        w.enumerate_records("old").is_ok_and(|r| r.count() == 0)
    });
    assert!(gone, "records stamped in the future never expired");
    assert!(opened.elapsed() >= Duration::from_millis(300));
    wal.close()?;
    Ok(())
}

#[test]
fn several_future_dated_segments_expire_oldest_first() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let small = WalOptions::default()
        .with_shards(1)
        .with_max_segment_size(4096);
    let wal = Wal::new(&dir, small.clone())?;
    const N: usize = 200;
    for i in 0..N {
        wal.append_entry(
            "old",
            Bytes::from(format!("{i:04}:{}", "x".repeat(200))),
            false,
        )?;
    }
    wal.close()?;
    let old_files = segment_files(&dir, 0)?;
    assert!(old_files.len() >= 5, "{} segments", old_files.len());
    move_shard_ahead(&dir, true)?;

    let retention = Duration::from_millis(400);
    let options = small.with_retention(retention).with_segments(2);
    let wal = Wal::new(&dir, options.clone())?;
    assert_eq!(wal.enumerate_records("old")?.count(), N);
    // Keep writing while compacting: what is left of "old" is always a suffix of
    // what was written (a prefix is dropped, whole segments at a time), and in the
    // end all of it goes.
    let all: Vec<Bytes> = (0..N)
        .map(|i| Bytes::from(format!("{i:04}:{}", "x".repeat(200))))
        .collect();
    let mut written = 0;
    let gone = compact_until(&wal, Duration::from_secs(30), |w| {
        w.log_entry("new", value(written)).expect("append");
        written += 1;
        let left: Vec<Bytes> = w.enumerate_records("old").expect("read").collect();
        assert!(all.ends_with(&left), "not a suffix: {} left", left.len());
        left.is_empty()
    });
    assert!(gone, "future-dated segments never expired");
    // Every old segment file is gone.
    for f in &old_files {
        assert!(!f.exists(), "{f:?} outlived its records");
    }
    wal.close()?;
    let wal = Wal::new(&dir, options)?;
    assert_eq!(wal.enumerate_records("old")?.count(), 0);
    // "new" records may have expired too (short retention); what is left is a suffix.
    let want: Vec<Bytes> = (0..written).map(value).collect();
    let got: Vec<Bytes> = wal.enumerate_records("new")?.collect();
    assert!(want.ends_with(&got));
    wal.close()?;
    Ok(())
}
