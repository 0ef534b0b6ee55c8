//! Guarantee 4, the torn tail: the newest segment of a shard cut in the middle of its
//! last record, or followed by garbage or by zeroes, reopens as exactly the valid
//! prefix; the cut is reported; appends continue after it; the next reopen is clean.

mod common;

use bytes::Bytes;
use common::{
    noise, records_of_file, segment_files, snapshot, RecordPos, TestResult, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use nano_wal::{RecoveryMode, Wal, WalError, WalOptions};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

fn options() -> WalOptions {
    WalOptions::default()
        .with_shards(1)
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(4096)
}

fn key_of(i: usize) -> String {
    format!("torn-{}", i % 3)
}

fn value_of(i: usize) -> Bytes {
    Bytes::from(format!("record {i} {}", "p".repeat(40 + i % 17)))
}

/// Writes `n` records (key `torn-{i%3}`) durably and closes. Returns the WAL dir.
fn write_and_close(root: &Path, n: usize) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let dir = root.join("wal");
    let wal = Wal::new(&dir, options())?;
    for i in 0..n {
        wal.append_entry(key_of(i), value_of(i), i % 4 == 0)?;
    }
    wal.close()?;
    Ok(dir)
}

/// The expected records of every key after keeping records `0..kept` (in order).
fn expected(kept: usize, key: usize) -> Vec<Bytes> {
    (0..kept).filter(|i| i % 3 == key).map(value_of).collect()
}

fn assert_prefix(wal: &Wal, kept: usize) -> TestResult {
    for k in 0..3 {
        let got: Vec<Bytes> = wal.enumerate_records(format!("torn-{k}"))?.collect();
        assert_eq!(
            got,
            expected(kept, k),
            "key torn-{k} after keeping {kept} records"
        );
    }
    assert_eq!(wal.stats()?.records(), kept as u64);
    Ok(())
}

/// Newest segment file of the only shard and its last record.
fn newest_and_last(dir: &Path) -> Result<(PathBuf, RecordPos, usize), Box<dyn std::error::Error>> {
    let files = segment_files(dir, 0)?;
    let newest = files.last().ok_or("no segment")?.clone();
    let records = records_of_file(&newest)?;
    let last = records
        .last()
        .ok_or("newest segment holds no record")?
        .clone();
    assert_eq!(
        last.offset + last.len,
        std::fs::metadata(&newest)?.len(),
        "the walk reaches the end of the file"
    );
    let total: usize = files
        .iter()
        .map(|f| records_of_file(f).map(|r| r.len()))
        .sum::<Result<_, _>>()?;
    Ok((newest, last, total))
}

/// After a torn tail was cut: appends work, are read back in order, and the next
/// reopen is clean and still holds everything.
fn continue_after_repair(dir: &Path, kept: usize) -> TestResult {
    let wal = Wal::new(dir, options())?;
    assert!(
        wal.recovery_report().truncated.is_empty(),
        "second reopen truncated again"
    );
    let more = 10;
    for i in kept..kept + more {
        wal.append_entry(key_of(i), value_of(i), i % 2 == 0)?;
    }
    assert_prefix(&wal, kept + more)?;
    wal.close()?;

    let wal = Wal::new(dir, options())?;
    let report = wal.recovery_report();
    assert!(report.truncated.is_empty(), "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(report.records, (kept + more) as u64);
    assert_prefix(&wal, kept + more)?;
    wal.close()?;
    Ok(())
}

#[test]
fn cut_in_the_middle_of_the_last_record() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let n = 120;
    let dir = write_and_close(tmp.path(), n)?;
    let (newest, last, total) = newest_and_last(&dir)?;
    assert_eq!(total, n);
    assert!(
        segment_files(&dir, 0)?.len() > 1,
        "the test wants several segments"
    );
    let cut = last.offset + last.len / 2;
    OpenOptions::new().write(true).open(&newest)?.set_len(cut)?;

    let wal = Wal::new(&dir, options())?;
    let report = wal.recovery_report().clone();
    assert_eq!(
        report.truncated,
        vec![(newest.clone(), last.offset, last.len / 2)]
    );
    assert!(report.skipped.is_empty());
    assert_eq!(report.records, (n - 1) as u64);
    assert_prefix(&wal, n - 1)?;
    // The cut is on disk: the file ends at the last whole record.
    assert_eq!(std::fs::metadata(&newest)?.len(), last.offset);
    // Appending right after the cut works and reads back in order.
    wal.log_entry(key_of(n - 1), value_of(n - 1))?;
    assert_prefix(&wal, n)?;
    wal.close()?;
    continue_after_repair(&dir, n)
}

#[test]
fn cut_inside_the_last_records_header() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let n = 20;
    let dir = write_and_close(tmp.path(), n)?;
    let (newest, last, _) = newest_and_last(&dir)?;
    let cut = last.offset + (RECORD_HEADER_LEN as u64) / 2;
    OpenOptions::new().write(true).open(&newest)?.set_len(cut)?;

    let wal = Wal::new(&dir, options())?;
    assert_eq!(
        wal.recovery_report().truncated,
        vec![(newest, last.offset, cut - last.offset)]
    );
    assert_prefix(&wal, n - 1)?;
    wal.close()?;
    continue_after_repair(&dir, n - 1)
}

#[test]
fn garbage_after_the_last_valid_record() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let n = 30;
    let dir = write_and_close(tmp.path(), n)?;
    let (newest, last, _) = newest_and_last(&dir)?;
    let end = last.offset + last.len;
    let garbage = noise(0xDEAD_BEEF, 777);
    OpenOptions::new()
        .append(true)
        .open(&newest)?
        .write_all(&garbage)?;

    let wal = Wal::new(&dir, options())?;
    let report = wal.recovery_report().clone();
    assert_eq!(
        report.truncated,
        vec![(newest.clone(), end, garbage.len() as u64)]
    );
    assert!(report.skipped.is_empty());
    assert_prefix(&wal, n)?;
    assert_eq!(std::fs::metadata(&newest)?.len(), end);
    wal.close()?;
    continue_after_repair(&dir, n)
}

#[test]
fn garbage_that_looks_like_a_record_header() -> TestResult {
    // A plausible header (length fits in the file, key length fits) with a bad checksum.
    let tmp = tempfile::tempdir()?;
    let n = 12;
    let dir = write_and_close(tmp.path(), n)?;
    let (newest, last, _) = newest_and_last(&dir)?;
    let end = last.offset + last.len;
    let mut fake = Vec::new();
    fake.extend_from_slice(&0x1234_5678u32.to_le_bytes()); // wrong crc
    fake.extend_from_slice(&60u32.to_le_bytes()); // len
    fake.extend_from_slice(&1u64.to_le_bytes()); // seq
    fake.extend_from_slice(&1u64.to_le_bytes()); // timestamp
    fake.extend_from_slice(&7u32.to_le_bytes()); // key_len
    fake.extend_from_slice(b"torn-0\0");
    assert_eq!(
        fake.len(),
        RECORD_HEADER_LEN + 7,
        "the version-4 header layout"
    );
    fake.extend(noise(5, 60 - fake.len()));
    OpenOptions::new()
        .append(true)
        .open(&newest)?
        .write_all(&fake)?;

    let wal = Wal::new(&dir, options())?;
    assert_eq!(
        wal.recovery_report().truncated,
        vec![(newest, end, fake.len() as u64)]
    );
    assert_prefix(&wal, n)?;
    wal.close()?;
    continue_after_repair(&dir, n)
}

#[test]
fn zeroes_after_the_last_valid_record() -> TestResult {
    // What a crash leaves in the newest segment: the preallocated space the writer had
    // not reached yet (or a file that grew while its data pages never reached disk).
    // All-zero space is free space: nothing is reported, nothing is lost, appends go
    // on into it, and a clean close cuts the file back to its data.
    let tmp = tempfile::tempdir()?;
    let n = 15;
    let dir = write_and_close(tmp.path(), n)?;
    let (newest, last, _) = newest_and_last(&dir)?;
    let end = last.offset + last.len;
    OpenOptions::new()
        .write(true)
        .open(&newest)?
        .set_len(end + 4096)?;

    let wal = Wal::new(&dir, options())?;
    assert!(wal.recovery_report().truncated.is_empty());
    assert!(wal.recovery_report().skipped.is_empty());
    assert_prefix(&wal, n)?;
    wal.close()?;
    assert_eq!(
        std::fs::metadata(&newest)?.len(),
        end,
        "close cut the free space"
    );
    continue_after_repair(&dir, n)
}

#[test]
fn torn_last_record_then_zeroes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let n = 15;
    let dir = write_and_close(tmp.path(), n)?;
    let (newest, last, _) = newest_and_last(&dir)?;
    // The last record's second half is zeroed and the file extended with zeroes.
    let mut data = std::fs::read(&newest)?;
    let half = (last.offset + last.len / 2) as usize;
    data.truncate(half);
    data.resize(half + 1000, 0);
    std::fs::write(&newest, &data)?;

    let wal = Wal::new(&dir, options())?;
    assert_eq!(
        wal.recovery_report().truncated,
        vec![(newest, last.offset, data.len() as u64 - last.offset)]
    );
    assert_prefix(&wal, n - 1)?;
    wal.close()?;
    continue_after_repair(&dir, n - 1)
}

#[test]
fn torn_header_of_a_new_segment_is_dropped() -> TestResult {
    // A crash right after creating the next segment file, before its header was whole.
    let tmp = tempfile::tempdir()?;
    let n = 25;
    let dir = write_and_close(tmp.path(), n)?;
    let files = segment_files(&dir, 0)?;
    let newest = files.last().ok_or("no segment")?;
    let name = newest.file_name().and_then(|s| s.to_str()).ok_or("name")?;
    let seq: u64 = name.trim_end_matches(".seg").parse()?;
    let torn = newest.with_file_name(format!("{:020}.seg", seq + 1));
    let header = std::fs::read(newest)?;
    std::fs::write(&torn, &header[..17])?;

    let wal = Wal::new(&dir, options())?;
    assert_eq!(wal.recovery_report().truncated, vec![(torn.clone(), 0, 17)]);
    assert!(!torn.exists(), "the torn segment file was removed");
    assert_prefix(&wal, n)?;
    wal.close()?;
    continue_after_repair(&dir, n)
}

#[test]
fn appends_after_reopen_cross_into_new_segments() -> TestResult {
    // After the cut, enough appends to rotate several times: all read back in order.
    let tmp = tempfile::tempdir()?;
    let n = 10;
    let dir = write_and_close(tmp.path(), n)?;
    let (newest, last, _) = newest_and_last(&dir)?;
    OpenOptions::new()
        .write(true)
        .open(&newest)?
        .set_len(last.offset + 3)?;

    let wal = Wal::new(&dir, options())?;
    assert_eq!(wal.recovery_report().truncated.len(), 1);
    let before = wal.stats()?.segments();
    let total = n - 1 + 200;
    for i in n - 1..total {
        wal.append_entry(key_of(i), value_of(i), false)?;
    }
    let after = wal.stats()?.segments();
    assert!(
        after > before + 2,
        "appends rotated into new segments: {before} -> {after}"
    );
    assert_prefix(&wal, total)?;
    wal.close()?;
    let wal = Wal::new(&dir, options())?;
    assert!(wal.recovery_report().truncated.is_empty());
    assert_prefix(&wal, total)?;
    wal.close()?;
    Ok(())
}

#[test]
fn cut_in_the_first_record_of_the_newest_segment() -> TestResult {
    // The newest segment is left with its header only; it stays usable.
    let tmp = tempfile::tempdir()?;
    let n = 120;
    let dir = write_and_close(tmp.path(), n)?;
    let files = segment_files(&dir, 0)?;
    assert!(files.len() > 1);
    let newest = files.last().ok_or("no segment")?.clone();
    let in_newest = records_of_file(&newest)?;
    let first = in_newest.first().ok_or("empty newest segment")?.clone();
    OpenOptions::new()
        .write(true)
        .open(&newest)?
        .set_len(first.offset + first.len - 1)?;
    let kept = n - in_newest.len();

    let wal = Wal::new(&dir, options())?;
    assert_eq!(
        wal.recovery_report().truncated,
        vec![(newest.clone(), first.offset, first.len - 1)]
    );
    assert_prefix(&wal, kept)?;
    assert_eq!(std::fs::metadata(&newest)?.len(), first.offset);
    wal.close()?;
    continue_after_repair(&dir, kept)
}

/// A Strict open of `dir` fails with `Corruption` naming `file` at `offset` because
/// valid records follow the damage, and leaves every byte of `dir` as it was.
fn assert_strict_refuses(dir: &Path, options: &WalOptions, file: &Path, offset: u64) -> TestResult {
    let before = snapshot(dir)?;
    match Wal::new(
        dir,
        options.clone().with_recovery_mode(RecoveryMode::Strict),
    ) {
        Err(WalError::Corruption {
            path,
            offset: at,
            reason,
        }) => {
            assert_eq!((path.as_path(), at), (file, offset), "{reason}");
            assert!(
                reason.contains("valid record follows") || reason.contains("valid records follow"),
                "{reason}"
            );
        }
        other => panic!("expected Corruption, got {:?}", other.map(|_| ())),
    }
    assert!(
        snapshot(dir)? == before,
        "a refused open changed the directory"
    );
    Ok(())
}

/// A power cut can persist pages out of order: the first bytes of an unsynced record
/// and a later record reach the disk, a page in between does not (preallocated blocks
/// read back as zeros). Damage before a valid record may as well be bit rot in synced
/// data, so it is never cut: Strict refuses, naming the damaged record, and changes
/// nothing; SkipCorrupted skips it and keeps every record that verifies.
#[test]
fn a_page_lost_inside_a_record_before_a_valid_one_is_refused_then_skipped() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let options = WalOptions::default()
        .with_shards(1)
        .with_max_key_size(64)
        .with_max_record_size(64 * 1024);
    let wal = Wal::new(&dir, options.clone())?;
    wal.log_entry("a", Bytes::from("synced"))?;
    // 12 KiB of non-zero bytes, then a small record after it.
    let big = Bytes::from(vec![b'x'; 12 * 1024]);
    wal.append_entry("b", big, false)?;
    wal.append_entry("c", Bytes::from("after"), false)?;
    wal.close()?;

    let newest = segment_files(&dir, 0)?.pop().ok_or("no segment")?;
    let records = records_of_file(&newest)?;
    assert_eq!(records.len(), 3);
    let torn = &records[1];
    // The second page-aligned page inside the big record never reached the disk.
    let page = (torn.offset as usize).div_ceil(4096) * 4096 + 4096;
    assert!(page + 4096 <= (torn.offset + torn.len) as usize);
    let mut data = std::fs::read(&newest)?;
    data[page..page + 4096].fill(0);
    std::fs::write(&newest, &data)?;

    assert_strict_refuses(&dir, &options, &newest, torn.offset)?;

    let salvage = options.with_recovery_mode(RecoveryMode::SkipCorrupted);
    let wal = Wal::new(&dir, salvage.clone())?;
    let report = wal.recovery_report().clone();
    assert!(report.truncated.is_empty(), "{report:?}");
    assert_eq!(
        report.skipped,
        vec![(newest.clone(), torn.offset, records[2].offset - torn.offset)]
    );
    assert_eq!(report.records, 2);
    assert_eq!(
        wal.enumerate_records("a")?.collect::<Vec<_>>(),
        vec![Bytes::from("synced")]
    );
    assert_eq!(wal.enumerate_records("b")?.count(), 0, "nothing invented");
    assert_eq!(
        wal.enumerate_records("c")?.collect::<Vec<_>>(),
        vec![Bytes::from("after")],
        "the valid record after the damage is kept"
    );
    wal.log_entry("d", Bytes::from("goes on"))?;
    wal.close()?;
    let wal = Wal::new(&dir, salvage)?;
    assert!(wal.recovery_report().truncated.is_empty());
    assert_eq!(wal.enumerate_records("c")?.count(), 1);
    assert_eq!(wal.enumerate_records("d")?.count(), 1);
    wal.close()?;
    Ok(())
}

/// The same lost page inside the newest segment's last record, nothing valid after
/// it: no fsync covered anything from that record on, so it is a torn tail, cut
/// there, nothing reported as damage.
#[test]
fn a_page_lost_inside_the_last_unsynced_record_is_a_torn_tail() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let options = WalOptions::default()
        .with_shards(1)
        .with_max_key_size(64)
        .with_max_record_size(64 * 1024);
    let wal = Wal::new(&dir, options.clone())?;
    wal.log_entry("a", Bytes::from("synced"))?;
    let big = Bytes::from(vec![b'x'; 12 * 1024]);
    wal.append_entry("b", big, false)?;
    wal.close()?;

    let newest = segment_files(&dir, 0)?.pop().ok_or("no segment")?;
    let records = records_of_file(&newest)?;
    assert_eq!(records.len(), 2);
    let torn = &records[1];
    let page = (torn.offset as usize).div_ceil(4096) * 4096 + 4096;
    assert!(page + 4096 <= (torn.offset + torn.len) as usize);
    let mut data = std::fs::read(&newest)?;
    data[page..page + 4096].fill(0);
    // Whatever followed the record (the close's marker) never reached the disk.
    data.truncate((torn.offset + torn.len) as usize);
    std::fs::write(&newest, &data)?;

    let wal = Wal::new(&dir, options.clone())?;
    assert_eq!(
        wal.recovery_report().truncated,
        vec![(newest.clone(), torn.offset, data.len() as u64 - torn.offset)]
    );
    assert!(wal.recovery_report().skipped.is_empty());
    assert_eq!(std::fs::metadata(&newest)?.len(), torn.offset);
    assert_eq!(
        wal.enumerate_records("a")?.collect::<Vec<_>>(),
        vec![Bytes::from("synced")]
    );
    assert_eq!(wal.enumerate_records("b")?.count(), 0);
    wal.log_entry("d", Bytes::from("goes on"))?;
    wal.close()?;
    let wal = Wal::new(&dir, options)?;
    assert!(wal.recovery_report().truncated.is_empty());
    assert_eq!(wal.enumerate_records("d")?.count(), 1);
    wal.close()?;
    Ok(())
}

/// The first page of the newest segment lost (its header reads as zeros) while later
/// pages holding valid records reached the disk. Damage before valid records may be
/// bit rot in synced data, so the segment is never removed: Strict refuses at offset
/// 0 and changes nothing; SkipCorrupted keeps every record in it that verifies.
#[test]
fn a_newest_segment_whose_header_page_was_lost_is_refused_then_its_records_kept() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let n = 120;
    let dir = write_and_close(tmp.path(), n)?;
    let files = segment_files(&dir, 0)?;
    assert!(files.len() > 1);
    let newest = files.last().ok_or("no segment")?.clone();
    let in_newest = records_of_file(&newest)?;
    assert!(!in_newest.is_empty());
    let mut data = std::fs::read(&newest)?;
    data[..SEGMENT_HEADER_LEN].fill(0);
    std::fs::write(&newest, &data)?;

    assert_strict_refuses(&dir, &options(), &newest, 0)?;

    let salvage = options().with_recovery_mode(RecoveryMode::SkipCorrupted);
    let wal = Wal::new(&dir, salvage.clone())?;
    let report = wal.recovery_report().clone();
    assert!(report.truncated.is_empty(), "{report:?}");
    assert_eq!(
        report.skipped,
        vec![(newest.clone(), 0, SEGMENT_HEADER_LEN as u64)]
    );
    assert_eq!(report.records, n as u64);
    assert!(newest.exists());
    assert_prefix(&wal, n)?;
    // Appends go on and survive a reopen, with the kept records before them.
    let more = 10;
    for i in n..n + more {
        wal.append_entry(key_of(i), value_of(i), i % 2 == 0)?;
    }
    assert_prefix(&wal, n + more)?;
    wal.close()?;
    let wal = Wal::new(&dir, salvage)?;
    assert!(wal.recovery_report().truncated.is_empty());
    assert_prefix(&wal, n + more)?;
    wal.close()?;
    Ok(())
}

/// A power cut that lost the whole first page of the newest segment, header and
/// records alike, with nothing valid after it: any fsync of that file would have
/// persisted its first page, so nothing in it was acknowledged; it is removed.
#[test]
fn a_newest_segment_whose_only_page_was_lost_is_removed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let n = 120;
    let dir = write_and_close(tmp.path(), n)?;
    let files = segment_files(&dir, 0)?;
    assert!(files.len() > 1);
    let newest = files.last().ok_or("no segment")?.clone();
    let in_newest = records_of_file(&newest)?.len();
    let data = vec![0u8; 4096];
    std::fs::write(&newest, &data)?;

    let wal = Wal::new(&dir, options())?;
    assert_eq!(
        wal.recovery_report().truncated,
        vec![(newest.clone(), 0, data.len() as u64)]
    );
    assert!(!newest.exists());
    assert_prefix(&wal, n - in_newest)?;
    wal.close()?;
    continue_after_repair(&dir, n - in_newest)
}
