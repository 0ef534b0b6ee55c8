//! `max_segment_size` is a rotation threshold: small thresholds (64 KiB, 1 MiB)
//! open with the default key and value limits; records smaller than the threshold
//! fill segments up to it; a record larger than the threshold gets a segment of its
//! own; everything reads back in order, also after a reopen.

mod common;

use bytes::Bytes;
use common::{records_of_file, segment_files, walked_end, TestResult};
use nano_wal::{Wal, WalOptions};
use std::path::{Path, PathBuf};

const KIB: u64 = 1024;

fn options(threshold: u64) -> WalOptions {
    // Default max_key_size (64 KiB) and max_record_size (16 MiB): one maximal record
    // is far larger than the threshold.
    WalOptions::default()
        .with_shards(1)
        .with_max_segment_size(threshold)
}

fn value(i: usize, len: usize) -> Bytes {
    let mut v = format!("{i:06}:").into_bytes();
    v.resize(len, b'a' + (i % 26) as u8);
    Bytes::from(v)
}

/// One segment file: path, file length, data records in it, where its records end.
type SegmentLayout = (PathBuf, u64, usize, u64);

/// Each segment file of shard 0, oldest first.
fn layout(dir: &Path) -> Result<Vec<SegmentLayout>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for f in segment_files(dir, 0)? {
        let data = std::fs::read(&f)?;
        out.push((
            f.clone(),
            data.len() as u64,
            records_of_file(&f)?.len(),
            walked_end(&data),
        ));
    }
    Ok(out)
}

/// Writes `n` records of `len` bytes under one key, below a `threshold`, and checks
/// the segments on disk: all within the threshold, each sealed one full (the next
/// record would not have fitted), as many as the bytes need.
fn fill_small_segments(threshold: u64, n: usize, len: usize) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options(threshold))?;
    let values: Vec<Bytes> = (0..n).map(|i| value(i, len)).collect();
    for (i, v) in values.iter().enumerate() {
        wal.append_entry("k", v.clone(), i % 100 == 99)?;
    }
    assert_eq!(wal.enumerate_records("k")?.collect::<Vec<_>>(), values);
    wal.close()?;

    let segments = layout(&dir)?;
    // 20 bytes of record header and 1 of key at least per record.
    let bytes = (n * (len + 21)) as u64;
    assert!(
        segments.len() as u64 >= bytes / threshold,
        "{} segments for {bytes} bytes at {threshold}",
        segments.len()
    );
    // Rotation at the threshold, not long before it: a sealed segment leaves less
    // room than a record and a sync marker (and a seal note) need.
    let slack = (len + 64 + 64 + 64) as u64;
    for (i, (path, file_len, records, end)) in segments.iter().enumerate() {
        assert!(
            *file_len <= threshold,
            "{path:?}: {file_len} bytes, above the {threshold}-byte threshold"
        );
        assert_eq!(*file_len, *end, "{path:?}: bytes after its last record");
        assert!(*records > 0, "{path:?} holds no record");
        if i + 1 < segments.len() {
            assert!(
                file_len + slack > threshold,
                "{path:?}: sealed at {file_len} bytes, far below {threshold}"
            );
        }
    }
    let total: usize = segments.iter().map(|s| s.2).sum();
    assert_eq!(total, n);

    let wal = Wal::new(&dir, options(threshold))?;
    assert_eq!(wal.enumerate_records("k")?.collect::<Vec<_>>(), values);
    wal.close()?;
    Ok(())
}

#[test]
fn a_64_kib_threshold_opens_with_default_limits_and_fills_segments() -> TestResult {
    fill_small_segments(64 * KIB, 1000, 1000)
}

#[test]
fn a_1_mib_threshold_opens_with_default_limits_and_fills_segments() -> TestResult {
    fill_small_segments(1024 * KIB, 1500, 4000)
}

#[test]
fn a_record_larger_than_the_threshold_gets_a_segment_of_its_own() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let threshold = 64 * KIB;
    let wal = Wal::new(&dir, options(threshold))?;
    let small = |i| value(i, 100);
    let big = value(99, 200 * 1024);
    wal.append_entry("k", small(0), false)?;
    wal.append_entry("k", small(1), false)?;
    wal.log_entry("k", big.clone())?;
    // While the WAL is open: the big record's file ends at the record (nothing was
    // preallocated past the threshold for it), and no file is preallocated past the
    // threshold or its data, whichever is larger.
    {
        let segments = layout(&dir)?;
        let big_ones: Vec<_> = segments.iter().filter(|s| s.3 > threshold).collect();
        assert_eq!(big_ones.len(), 1, "{segments:?}");
        let (path, file_len, records, end) = big_ones[0];
        assert_eq!(*records, 1, "{path:?}");
        assert_eq!(file_len, end, "{path:?} preallocated past its big record");
        for (path, file_len, _, end) in &segments {
            assert!(*file_len <= threshold.max(*end), "{path:?}: {file_len}");
        }
    }
    wal.append_entry("k", small(2), true)?;
    let want = vec![small(0), small(1), big.clone(), small(2)];
    assert_eq!(wal.enumerate_records("k")?.collect::<Vec<_>>(), want);
    wal.close()?;

    let segments = layout(&dir)?;
    let records: Vec<usize> = segments.iter().map(|s| s.2).collect();
    assert_eq!(records, vec![2, 1, 1], "{segments:?}");
    let (_, big_len, _, big_end) = &segments[1];
    assert!(*big_len > threshold && big_len == big_end);
    let big_on_disk = records_of_file(&segments[1].0)?;
    assert_eq!(big_on_disk[0].value, big.to_vec());
    for (path, len, _, _) in [&segments[0], &segments[2]] {
        assert!(*len <= threshold, "{path:?}: {len}");
    }

    let wal = Wal::new(&dir, options(threshold))?;
    assert_eq!(wal.enumerate_records("k")?.collect::<Vec<_>>(), want);
    // Appends go on after the reopen, into the small segment.
    wal.log_entry("k", small(3))?;
    assert_eq!(wal.enumerate_records("k")?.count(), 5);
    wal.close()?;
    Ok(())
}

#[test]
fn a_batch_of_several_large_records_is_split_one_per_segment() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let threshold = 64 * KIB;
    let wal = Wal::new(&dir, options(threshold))?;
    let large: Vec<Bytes> = (0..5).map(|i| value(i, 150 * 1024 + i * 1000)).collect();
    let mut entries: Vec<(String, Bytes)> = Vec::new();
    for (i, v) in large.iter().enumerate() {
        entries.push((format!("big-{i}"), v.clone()));
        entries.push(("small".into(), value(i, 10)));
    }
    wal.append_batch(entries.clone(), true)?;
    // And a second batch, not durable, of large records only.
    wal.append_batch(large.iter().map(|v| ("again", v.clone())), false)?;
    let check = |wal: &Wal| -> TestResult {
        for (i, v) in large.iter().enumerate() {
            assert_eq!(
                wal.enumerate_records(format!("big-{i}"))?
                    .collect::<Vec<_>>(),
                vec![v.clone()]
            );
        }
        let smalls: Vec<Bytes> = (0..5).map(|i| value(i, 10)).collect();
        assert_eq!(wal.enumerate_records("small")?.collect::<Vec<_>>(), smalls);
        assert_eq!(wal.enumerate_records("again")?.collect::<Vec<_>>(), large);
        Ok(())
    };
    check(&wal)?;
    wal.close()?;

    let segments = layout(&dir)?;
    for (path, len, records, end) in &segments {
        assert_eq!(len, end, "{path:?}");
        if *len > threshold {
            // Past the threshold only with one large record alone.
            let recs = records_of_file(path)?;
            assert_eq!(*records, 1, "{path:?}");
            assert!(recs[0].value.len() > threshold as usize / 2);
        }
    }
    let total: usize = segments.iter().map(|s| s.2).sum();
    assert_eq!(total, 15);
    // Ten large records, each alone: at least ten segments, and no record-less
    // segment piled up (only the newest may hold just a seal note and a sync
    // marker, started by close to vouch for the last seal).
    assert!(segments.len() >= 10, "{}", segments.len());
    let (_, older) = segments.split_last().ok_or("no segment")?;
    assert!(older.iter().all(|s| s.2 > 0), "{segments:?}");

    let wal = Wal::new(&dir, options(threshold))?;
    check(&wal)?;
    wal.close()?;
    Ok(())
}

#[test]
fn durable_large_records_do_not_make_empty_segments() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let threshold = 64 * KIB;
    let wal = Wal::new(&dir, options(threshold))?;
    let values: Vec<Bytes> = (0..12).map(|i| value(i, 100 * 1024)).collect();
    for v in &values {
        // Each durable: the sync marker for the previous seal has no room in the
        // full segment, and must not cost a segment of its own each time.
        wal.log_entry("k", v.clone())?;
    }
    assert_eq!(wal.enumerate_records("k")?.collect::<Vec<_>>(), values);
    wal.close()?;
    let segments = layout(&dir)?;
    let with_records = segments.iter().filter(|s| s.2 > 0).count();
    assert_eq!(with_records, 12, "one segment per large record");
    assert!(
        segments.len() <= 13,
        "{} segments for 12 records",
        segments.len()
    );
    let wal = Wal::new(&dir, options(threshold))?;
    assert_eq!(wal.enumerate_records("k")?.collect::<Vec<_>>(), values);
    wal.close()?;
    Ok(())
}

#[test]
fn the_smallest_threshold_takes_the_largest_key_and_a_large_value() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let o = options(nano_wal::MIN_SEGMENT_SIZE).with_max_key_size(nano_wal::MAX_KEY_SIZE);
    let wal = Wal::new(&dir, o.clone())?;
    let key = vec![b'k'; 1024 * 1024];
    let values: Vec<Bytes> = (0..3).map(|i| value(i, 300 * 1024)).collect();
    for v in &values {
        wal.append_entry(&key, v.clone(), false)?;
    }
    wal.append_entry("s", value(7, 1), true)?;
    assert_eq!(wal.enumerate_records(&key)?.collect::<Vec<_>>(), values);
    wal.close()?;
    let segments = layout(&dir)?;
    assert!(segments.iter().all(|s| s.2 <= 1), "{segments:?}");
    let wal = Wal::new(&dir, o)?;
    assert_eq!(wal.enumerate_records(&key)?.collect::<Vec<_>>(), values);
    assert_eq!(wal.enumerate_records("s")?.count(), 1);
    wal.close()?;
    Ok(())
}
