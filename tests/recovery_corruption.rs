//! Guarantee 4, damage before the tail: a flipped bit in a sealed segment, or in the
//! middle of the newest segment with valid records after it, is not a torn tail.
//! `RecoveryMode::Strict` refuses to open with `WalError::Corruption` naming the file
//! and the damaged record's offset (found here by walking the documented format) and
//! modifies nothing; `RecoveryMode::SkipCorrupted` opens without the damaged record,
//! keeps all the others, and reports what it skipped.

mod common;

use bytes::Bytes;
use common::{
    records_of_file, segment_files, snapshot, RecordPos, TestResult, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use nano_wal::{RecoveryMode, Wal, WalError, WalOptions};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const RECORDS: usize = 60;
const KEYS: usize = 5;

fn options() -> WalOptions {
    WalOptions::default()
        .with_shards(1)
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(4096)
}

fn key_of(i: usize) -> String {
    format!("key-{}", i % KEYS)
}

/// Value of record `i`; it starts with the record number, so a walked record names
/// which append it was.
fn value_of(i: usize) -> Bytes {
    Bytes::from(format!("{i:05}|{}", "v".repeat(180 + i % 23)))
}

fn index_of(r: &RecordPos) -> usize {
    std::str::from_utf8(&r.value[..5])
        .expect("utf-8")
        .parse()
        .expect("record number")
}

fn write_and_close(root: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let dir = root.join("wal");
    let wal = Wal::new(&dir, options())?;
    for i in 0..RECORDS {
        wal.append_entry(key_of(i), value_of(i), i % 10 == 9)?;
    }
    wal.close()?;
    let files = segment_files(&dir, 0)?;
    assert!(
        files.len() >= 3,
        "the test wants several segments, got {}",
        files.len()
    );
    let walked: usize = files
        .iter()
        .map(|f| records_of_file(f).map(|r| r.len()))
        .sum::<Result<_, _>>()?;
    assert_eq!(
        walked, RECORDS,
        "walking the documented format finds every record"
    );
    Ok(dir)
}

fn flip_bit(path: &Path, at: u64, bit: u8) -> TestResult {
    let mut data = std::fs::read(path)?;
    data[at as usize] ^= 1 << bit;
    std::fs::write(path, &data)?;
    Ok(())
}

/// Strict reopen fails with Corruption at (path, offset), twice (the failed open left
/// the lock free), and changes no byte on disk.
fn assert_strict_refuses(dir: &Path, path: &Path, offset: u64) -> TestResult {
    let before = snapshot(dir)?;
    for attempt in 0..2 {
        match Wal::new(dir, options()) {
            Err(WalError::Corruption {
                path: p,
                offset: o,
                reason,
            }) => {
                assert_eq!(
                    p, path,
                    "attempt {attempt}: corruption reported in the wrong file ({reason})"
                );
                assert_eq!(
                    o, offset,
                    "attempt {attempt}: corruption reported at the wrong offset ({reason})"
                );
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("attempt {attempt}: expected Corruption, got {other:?}"),
            Ok(_) => panic!("attempt {attempt}: Strict opened a damaged WAL"),
        }
    }
    let after = snapshot(dir)?;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "a refused open created or removed files"
    );
    for (p, data) in &before {
        assert!(after.get(p) == Some(data), "a refused open modified {p:?}");
    }
    Ok(())
}

/// Every record except those in `missing` is present, per key, in order.
fn assert_all_but(wal: &Wal, missing: &BTreeSet<usize>, extra: &[usize]) -> TestResult {
    for k in 0..KEYS {
        let got: Vec<Bytes> = wal.enumerate_records(format!("key-{k}"))?.collect();
        let want: Vec<Bytes> = (0..RECORDS)
            .filter(|i| i % KEYS == k && !missing.contains(i))
            .chain(extra.iter().copied().filter(|i| i % KEYS == k))
            .map(value_of)
            .collect();
        assert_eq!(got.len(), want.len(), "key-{k}: record count");
        assert!(got == want, "key-{k}: records differ");
    }
    Ok(())
}

/// Salvage with SkipCorrupted: opens, the damaged records are missing, the rest is
/// there, `skipped` is exactly `expect_skipped`; appends work and survive a reopen.
fn assert_salvaged(
    dir: &Path,
    missing: &BTreeSet<usize>,
    expect_skipped: Vec<(PathBuf, u64, u64)>,
) -> TestResult {
    let salvage = options().with_recovery_mode(RecoveryMode::SkipCorrupted);
    let wal = Wal::new(dir, salvage.clone())?;
    let report = wal.recovery_report().clone();
    assert_eq!(report.skipped, expect_skipped);
    assert!(report.truncated.is_empty(), "{report:?}");
    assert_eq!(report.records, (RECORDS - missing.len()) as u64);
    assert_all_but(&wal, missing, &[])?;
    assert_eq!(wal.stats()?.records(), (RECORDS - missing.len()) as u64);

    let extra: Vec<usize> = (RECORDS..RECORDS + 7).collect();
    for &i in &extra {
        wal.log_entry(key_of(i), value_of(i))?;
    }
    assert_all_but(&wal, missing, &extra)?;
    wal.close()?;

    let wal = Wal::new(dir, salvage)?;
    assert_all_but(&wal, missing, &extra)?;
    wal.close()?;
    Ok(())
}

#[test]
fn bit_flip_in_an_early_record_of_a_sealed_segment() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = write_and_close(tmp.path())?;
    let files = segment_files(&dir, 0)?;
    let sealed = &files[0];
    let records = records_of_file(sealed)?;
    let victim = records[2].clone();
    // A bit in the value.
    flip_bit(sealed, victim.offset + victim.len - 7, 3)?;

    assert_strict_refuses(&dir, sealed, victim.offset)?;
    assert_salvaged(
        &dir,
        &BTreeSet::from([index_of(&victim)]),
        vec![(sealed.clone(), victim.offset, victim.len)],
    )
}

#[test]
fn bit_flip_in_a_length_field_of_a_sealed_segment() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = write_and_close(tmp.path())?;
    let files = segment_files(&dir, 0)?;
    let sealed = &files[1];
    let records = records_of_file(sealed)?;
    let victim = records[1].clone();
    // A high bit of the record's `len` field: the walk can no longer trust lengths.
    flip_bit(sealed, victim.offset + 4 + 1, 6)?;

    assert_strict_refuses(&dir, sealed, victim.offset)?;
    assert_salvaged(
        &dir,
        &BTreeSet::from([index_of(&victim)]),
        vec![(sealed.clone(), victim.offset, victim.len)],
    )
}

#[test]
fn bit_flip_in_the_key_of_the_first_record_of_a_sealed_segment() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = write_and_close(tmp.path())?;
    let files = segment_files(&dir, 0)?;
    let sealed = &files[0];
    let victim = records_of_file(sealed)?[0].clone();
    assert_eq!(victim.offset, SEGMENT_HEADER_LEN as u64);
    flip_bit(sealed, victim.offset + RECORD_HEADER_LEN as u64 + 1, 0)?;

    assert_strict_refuses(&dir, sealed, victim.offset)?;
    assert_salvaged(
        &dir,
        &BTreeSet::from([index_of(&victim)]),
        vec![(sealed.clone(), victim.offset, victim.len)],
    )
}

#[test]
fn bit_flip_in_the_middle_of_the_newest_segment() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = write_and_close(tmp.path())?;
    let files = segment_files(&dir, 0)?;
    let newest = files.last().ok_or("no segment")?;
    let records = records_of_file(newest)?;
    assert!(
        records.len() >= 3,
        "newest segment holds {} records",
        records.len()
    );
    let victim = records[records.len() / 2].clone();
    assert!(
        victim.offset + victim.len < std::fs::metadata(newest)?.len(),
        "valid records follow"
    );
    flip_bit(newest, victim.offset + victim.len / 2, 5)?;

    assert_strict_refuses(&dir, newest, victim.offset)?;
    assert_salvaged(
        &dir,
        &BTreeSet::from([index_of(&victim)]),
        vec![(newest.clone(), victim.offset, victim.len)],
    )
}

/// A damaged header over records that verify may be bit rot in synced data, so the
/// segment is never dropped: Strict refuses at offset 0, SkipCorrupted skips only
/// the header and keeps every record of the segment.
#[test]
fn damaged_header_of_a_sealed_segment_is_refused_then_its_records_kept() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = write_and_close(tmp.path())?;
    let files = segment_files(&dir, 0)?;
    let sealed = &files[1];
    assert!(
        !records_of_file(sealed)?.is_empty(),
        "records follow the header"
    );
    // A bit of the creation time: only the header checksum can tell.
    flip_bit(sealed, 26, 1)?;

    assert_strict_refuses(&dir, sealed, 0)?;
    assert_salvaged(
        &dir,
        &BTreeSet::new(),
        vec![(sealed.clone(), 0, SEGMENT_HEADER_LEN as u64)],
    )
}

#[test]
fn two_damaged_records_in_two_segments_are_both_reported() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = write_and_close(tmp.path())?;
    let files = segment_files(&dir, 0)?;
    let a = records_of_file(&files[0])?[4].clone();
    let b = records_of_file(&files[2])?[0].clone();
    flip_bit(&files[0], a.offset + RECORD_HEADER_LEN as u64 + 10, 7)?; // a value byte
    flip_bit(&files[2], b.offset + 17, 2)?; // the timestamp (at 16 in a version-4 header)

    // Strict names the first damage found: the oldest segment's.
    assert_strict_refuses(&dir, &files[0], a.offset)?;
    assert_salvaged(
        &dir,
        &BTreeSet::from([index_of(&a), index_of(&b)]),
        vec![
            (files[0].clone(), a.offset, a.len),
            (files[2].clone(), b.offset, b.len),
        ],
    )
}

#[test]
fn damage_after_open_is_reported_by_reads_never_returned() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options())?;
    for i in 0..RECORDS {
        wal.append_entry(key_of(i), value_of(i), false)?;
    }
    wal.sync()?;
    let files = segment_files(&dir, 0)?;
    let victim = records_of_file(&files[0])?[3].clone();
    flip_bit(&files[0], victim.offset + victim.len - 1, 4)?;
    let key = std::str::from_utf8(&victim.key)?.to_string();
    match wal.enumerate_records(&key) {
        Err(WalError::Corruption { path, offset, .. }) => {
            assert_eq!(path, files[0]);
            assert_eq!(offset, victim.offset);
        }
        Err(other) => panic!("expected Corruption, got {other:?}"),
        Ok(records) => panic!(
            "damaged bytes returned as records: {} records",
            records.count()
        ),
    }
    // Other keys are unaffected.
    let other_key = key_of(index_of(&victim) + 1);
    let want: Vec<Bytes> = (0..RECORDS)
        .filter(|i| key_of(*i) == other_key)
        .map(value_of)
        .collect();
    assert_eq!(wal.enumerate_records(&other_key)?.collect::<Vec<_>>(), want);
    wal.close()?;
    Ok(())
}

#[test]
fn a_truncated_sealed_segment_is_corruption_not_a_torn_tail() -> TestResult {
    // Only the newest segment may end in a torn write: every older one was synced
    // before its successor was created.
    let tmp = tempfile::tempdir()?;
    let dir = write_and_close(tmp.path())?;
    let files = segment_files(&dir, 0)?;
    let sealed = &files[0];
    let victim = records_of_file(sealed)?
        .last()
        .ok_or("empty segment")?
        .clone();
    let cut = victim.offset + victim.len / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(sealed)?
        .set_len(cut)?;

    assert_strict_refuses(&dir, sealed, victim.offset)?;
    assert_salvaged(
        &dir,
        &BTreeSet::from([index_of(&victim)]),
        vec![(sealed.clone(), victim.offset, cut - victim.offset)],
    )
}
