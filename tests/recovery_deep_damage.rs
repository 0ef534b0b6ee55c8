//! Guarantee 4 far into a segment: recovery streams a segment until the first byte
//! that does not start a valid record and judges the rest of the file from that
//! byte's page on. These cases put the damage tens of KiB into large segments, so
//! every offset recovery reports comes from that second read: a torn tail, a lost
//! (zero) page in the newest segment with valid records after it (refused, then
//! skipped), and a bit flip in a sealed segment, in both recovery modes.

mod common;

use bytes::Bytes;
use common::{
    numbers, records_of_file, segment_files, snapshot, walk_markers, RecordPos, TestResult,
};
use nano_wal::{RecoveryMode, Wal, WalError, WalOptions};
use std::path::{Path, PathBuf};

const RECORDS: usize = 400;

fn options() -> WalOptions {
    WalOptions::default()
        .with_shards(1)
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(64 * 1024)
}

/// Value of record `i`: its number first, then 150-400 bytes of filler.
fn value_of(i: usize) -> Bytes {
    Bytes::from(format!("{i:05}|{}", "d".repeat(150 + (i * 37) % 250)))
}

/// Writes `RECORDS` records under one key and closes; returns the WAL directory and
/// its segment files (at least two, so the first is sealed).
fn write(root: &Path) -> Result<(PathBuf, Vec<PathBuf>), Box<dyn std::error::Error>> {
    let dir = root.join("wal");
    let wal = Wal::new(&dir, options())?;
    for i in 0..RECORDS {
        wal.append_entry("k", value_of(i), i % 50 == 0)?;
    }
    wal.close()?;
    let files = segment_files(&dir, 0)?;
    assert!(files.len() >= 2, "the test wants a sealed segment");
    Ok((dir, files))
}

fn number_of(r: &RecordPos) -> usize {
    std::str::from_utf8(&r.value[..5])
        .expect("utf-8")
        .parse()
        .expect("record number")
}

#[test]
fn a_torn_last_record_deep_in_the_newest_segment_is_cut_at_its_offset() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let newest = files.last().expect("a segment");
    let records = records_of_file(newest)?;
    let last = records.last().expect("a record");
    assert!(
        last.offset > 16 * 1024,
        "the cut must lie past the first pages"
    );
    let cut_at = last.offset + last.len / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(newest)?
        .set_len(cut_at)?;

    let wal = Wal::new(&dir, options())?;
    assert_eq!(
        wal.recovery_report().truncated,
        vec![(newest.clone(), last.offset, cut_at - last.offset)]
    );
    let want: Vec<usize> = (0..RECORDS).filter(|&i| i != number_of(last)).collect();
    assert_eq!(numbers(&wal, "k")?, want);
    wal.close()?;
    Ok(())
}

/// A lost (zero) page deep in the newest segment with valid records after it:
/// damage before valid records may be bit rot in synced data, so it is never cut.
/// Strict names the first record it hits and changes nothing; SkipCorrupted skips
/// to the next valid record and keeps every record that verifies.
#[test]
fn a_lost_page_deep_in_the_newest_segment_before_valid_records_is_refused_then_skipped(
) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let newest = files.last().expect("a segment");
    let records = records_of_file(newest)?;
    // Zero a page-aligned page near the end: a page the disk never got, with valid
    // records after it (written later, they reached the disk first).
    let mut data = std::fs::read(newest)?;
    let markers = walk_markers(&data);
    let page = (data.len() as u64 / 4096 - 2) * 4096;
    let hole = page..page + 4096;
    assert!(page > 16 * 1024, "the hole must lie past the first pages");
    let first_hit = records
        .iter()
        .find(|r| r.offset + r.len > page)
        .expect("a record over the page")
        .clone();
    // The first valid record (or sync marker) after the hole: where skipping ends.
    let next_valid = records
        .iter()
        .map(|r| r.offset)
        .chain(markers.iter().map(|m| m.offset))
        .filter(|&at| at >= hole.end)
        .min()
        .expect("a valid record must follow the hole");
    // Every record whose bytes the hole misses, in every segment (walked before the
    // damage: the walk stops at it).
    let mut want = Vec::new();
    for f in &files {
        for r in records_of_file(f)? {
            let hit = f == newest && r.offset < hole.end && r.offset + r.len > hole.start;
            if !hit {
                want.push(number_of(&r));
            }
        }
    }
    assert!(want.len() < RECORDS, "the hole hits records");
    data[page as usize..hole.end as usize].fill(0);
    std::fs::write(newest, &data)?;

    let before = snapshot(&dir)?;
    match Wal::new(&dir, options()) {
        Err(WalError::Corruption {
            path,
            offset,
            reason,
        }) => {
            assert_eq!(
                (path, offset),
                (newest.clone(), first_hit.offset),
                "{reason}"
            );
            assert!(reason.contains("valid record follows"), "{reason}");
        }
        other => panic!("expected Corruption, got {:?}", other.map(|_| ())),
    }
    assert!(
        snapshot(&dir)? == before,
        "a refused open changed the directory"
    );

    let salvage = options().with_recovery_mode(RecoveryMode::SkipCorrupted);
    let wal = Wal::new(&dir, salvage)?;
    let report = wal.recovery_report().clone();
    assert!(report.truncated.is_empty(), "{report:?}");
    assert_eq!(
        report.skipped,
        vec![(
            newest.clone(),
            first_hit.offset,
            next_valid - first_hit.offset
        )]
    );
    // Exactly the records the hole missed, in order: nothing lost, nothing invented.
    let kept = numbers(&wal, "k")?;
    assert!(
        kept.iter().any(|&i| i > number_of(&first_hit)),
        "records after the hole kept"
    );
    assert_eq!(kept, want);
    assert_eq!(report.records, want.len() as u64);
    wal.close()?;
    Ok(())
}

/// The same lost pages deep in the newest segment with nothing valid after them
/// (every page from there to the end never reached the disk): nothing after the
/// damage can be read back, so it is a torn tail, cut at the first record it hits.
#[test]
fn lost_last_pages_deep_in_the_newest_segment_are_a_torn_tail() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let newest = files.last().expect("a segment");
    let records = records_of_file(newest)?;
    let mut data = std::fs::read(newest)?;
    let page = (data.len() as u64 / 4096 - 2) * 4096;
    assert!(page > 16 * 1024, "the damage must lie past the first pages");
    let first_hit = records
        .iter()
        .find(|r| r.offset + r.len > page)
        .expect("a record over the page")
        .clone();
    // Keep the hit record's header so that it reads as a record that fails its
    // checks, not as free space.
    let from = page.max(first_hit.offset + 32) as usize;
    data[from..].fill(0);
    std::fs::write(newest, &data)?;

    let wal = Wal::new(&dir, options())?;
    let report = wal.recovery_report().clone();
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(
        report.truncated,
        vec![(
            newest.clone(),
            first_hit.offset,
            data.len() as u64 - first_hit.offset
        )]
    );
    assert_eq!(std::fs::metadata(newest)?.len(), first_hit.offset);
    assert_eq!(
        numbers(&wal, "k")?,
        (0..number_of(&first_hit)).collect::<Vec<_>>()
    );
    wal.close()?;
    Ok(())
}

#[test]
fn a_bit_flip_deep_in_a_sealed_segment_is_named_and_can_be_skipped() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let sealed = &files[0];
    let records = records_of_file(sealed)?;
    let hit = records
        .iter()
        .find(|r| r.offset > 20 * 1024)
        .expect("a record past 20 KiB")
        .clone();
    let mut data = std::fs::read(sealed)?;
    data[(hit.offset + hit.len - 3) as usize] ^= 0x10;
    std::fs::write(sealed, &data)?;

    match Wal::new(&dir, options()) {
        Err(WalError::Corruption { path, offset, .. }) => {
            assert_eq!((path, offset), (sealed.clone(), hit.offset));
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    let salvage = options().with_recovery_mode(RecoveryMode::SkipCorrupted);
    let wal = Wal::new(&dir, salvage)?;
    assert_eq!(
        wal.recovery_report().skipped,
        vec![(sealed.clone(), hit.offset, hit.len)]
    );
    let want: Vec<usize> = (0..RECORDS).filter(|&i| i != number_of(&hit)).collect();
    assert_eq!(numbers(&wal, "k")?, want);
    wal.close()?;
    Ok(())
}
