//! Guarantee 4 with deferred seal syncs (format version 2): a sealed segment is
//! fsynced in the background, and a sync marker in a later segment vouches for it
//! once that fsync has returned. These cases rebuild, from a cleanly closed WAL, what a
//! power cut leaves before a seal's fsync finished (the sealed segment's last page
//! lost, no marker for it after), and check both sides of the rule: unvouched damage
//! is cut and the later segments go (none of their records was acknowledged as
//! durable); vouched damage, or damage in version-1 segments, is corruption.

mod common;

use bytes::Bytes;
use common::{
    encode_record, numbers, records_of_file, reseal_record, seal_note_of, segment_files,
    walk_markers, Layout, TestResult, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use nano_wal::inspect::{self, DamageKind};
use nano_wal::{RecoveryMode, Wal, WalError, WalOptions};
use std::path::{Path, PathBuf};

const RECORDS: usize = 300;

/// Length of a seal note of format version 4: a record header, then the sequence
/// number and sealed length of the segment before (two u64).
const SEAL_NOTE_LEN: usize = RECORD_HEADER_LEN + 16;

fn options(mode: RecoveryMode) -> WalOptions {
    WalOptions::default()
        .with_shards(1)
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(16 * 1024)
        .with_recovery_mode(mode)
}

fn value_of(i: usize) -> Bytes {
    Bytes::from(format!("{i:05}|{}", "v".repeat(100 + (i * 53) % 300)))
}

/// Writes `RECORDS` records under one key (every 40th durable) and closes.
fn write(root: &Path) -> Result<(PathBuf, Vec<PathBuf>), Box<dyn std::error::Error>> {
    let dir = root.join("wal");
    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    for i in 0..RECORDS {
        wal.append_entry("k", value_of(i), i % 40 == 0)?;
    }
    wal.close()?;
    let files = segment_files(&dir, 0)?;
    assert!(files.len() >= 4, "the test wants several sealed segments");
    Ok((dir, files))
}

/// Records in the files before `files[upto]`.
fn records_before(files: &[PathBuf], upto: usize) -> Result<usize, Box<dyn std::error::Error>> {
    let mut n = 0;
    for f in &files[..upto] {
        n += records_of_file(f)?.len();
    }
    Ok(n)
}

/// Zeroes `victim` from the start of the page after its first record to the end: the
/// pages a power cut took before the seal's fsync. Returns where the damage starts
/// (the first record it hits) and how many records stay.
fn lose_tail_pages(victim: &Path) -> Result<(u64, usize), Box<dyn std::error::Error>> {
    let mut data = std::fs::read(victim)?;
    let records = records_of_file(victim)?;
    let page = (records[0].offset / 4096 + 1) * 4096;
    assert!(
        page + 4096 <= data.len() as u64,
        "segment smaller than the test wants"
    );
    let kept = records
        .iter()
        .take_while(|r| r.offset + r.len <= page)
        .count();
    let cut = records[kept].offset;
    for b in &mut data[page as usize..] {
        *b = 0;
    }
    std::fs::write(victim, &data)?;
    Ok((cut, kept))
}

/// Whether a valid sync marker in `files` (as they are now) vouches for segment
/// `sequence`. Recovery keeps the records after a sealed segment only if one does:
/// without it, a power cut may have cut that segment short without a trace.
fn vouched(files: &[PathBuf], sequence: u64) -> Result<bool, Box<dyn std::error::Error>> {
    for f in files.iter().filter(|f| f.exists()) {
        let data = std::fs::read(f)?;
        if walk_markers(&data)
            .iter()
            .any(|m| m.synced_through >= sequence)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether recovery keeps the segment before `files[victim]` (index i is segment
/// i + 1) whole although a power cut took pages of the victim: a valid sync marker
/// vouches for it, or the seal note first in the victim names it with its length.
fn predecessor_kept(files: &[PathBuf], victim: usize) -> Result<bool, Box<dyn std::error::Error>> {
    if vouched(files, victim as u64)? {
        return Ok(true);
    }
    let Some(before) = victim.checked_sub(1) else {
        return Ok(false);
    };
    let note = seal_note_of(&std::fs::read(&files[victim])?);
    Ok(note == Some((victim as u64, std::fs::metadata(&files[before])?.len())))
}

/// Cuts every sync marker vouching for `sequence` (and whatever follows it) out of
/// `files`: a power cut before the marker reached the disk.
fn drop_markers_for(files: &[PathBuf], sequence: u64) -> TestResult {
    for f in files {
        let data = std::fs::read(f)?;
        if let Some(m) = walk_markers(&data)
            .into_iter()
            .find(|m| m.synced_through >= sequence)
        {
            std::fs::write(f, &data[..m.offset as usize])?;
        }
    }
    Ok(())
}

/// Rewrites `files` as version 1 wrote them: records back to back in the 20-byte
/// layout of versions 1 to 3, no sync markers, and version 1 in the header (whose
/// checksum is redone where those versions keep it).
fn make_version_1(files: &[PathBuf]) -> TestResult {
    for f in files {
        rewrite_without_markers(f, Some(1))?;
    }
    Ok(())
}

/// Rewrites segment `file` as its header, then its records back to back: no sync
/// markers. With `version` (1 to 3), the header says that version (its checksum at
/// 32 over bytes 0..32, zero at 36), the records are re-encoded in the 20-byte layout
/// of those versions (timestamps kept), and the seal note goes too (versions before 3
/// have none); without, the note stays and each record keeps its bytes, its checksum
/// redone for the offset it moves to (version-4 records are bound to their place).
fn rewrite_without_markers(file: &Path, version: Option<u32>) -> TestResult {
    let data = std::fs::read(file)?;
    let layout = Layout::of(&data);
    let records = records_of_file(file)?;
    let mut out = data[..SEGMENT_HEADER_LEN].to_vec();
    match version {
        Some(v) => {
            assert!(v < 4, "only the legacy header layout is rebuilt here");
            out[8..12].copy_from_slice(&v.to_le_bytes());
            out[32..40].fill(0);
            let crc = crc32c::crc32c(&out[0..32]);
            out[32..36].copy_from_slice(&crc.to_le_bytes());
            // The timestamp: at 16 in a version-4 record header, at 8 before.
            let timestamp_at = if layout.seed.is_some() { 16 } else { 8 };
            for r in &records {
                let at = out.len();
                let from = r.offset as usize + timestamp_at;
                let mut record = encode_record(None, at as u64, 0, &r.key, &r.value);
                record[8..16].copy_from_slice(&data[from..from + 8]);
                out.extend_from_slice(&record);
                reseal_record(&mut out, at);
            }
        }
        None => {
            if seal_note_of(&data).is_some() {
                let note_len = layout.header + 16;
                out.extend_from_slice(&data[SEGMENT_HEADER_LEN..SEGMENT_HEADER_LEN + note_len]);
            }
            for r in &records {
                let at = out.len();
                out.extend_from_slice(&data[r.offset as usize..(r.offset + r.len) as usize]);
                reseal_record(&mut out, at);
            }
        }
    }
    std::fs::write(file, &out)?;
    Ok(())
}

/// (file, offset, kind) of a damage the operator tool found.
type Found = (PathBuf, u64, DamageKind);

/// What the operator tool finds.
fn damage_found(dir: &Path) -> Result<Vec<Found>, Box<dyn std::error::Error>> {
    Ok(inspect::scan(dir)?
        .all_damage()
        .map(|d| (d.path.clone(), d.offset, d.kind))
        .collect())
}

/// A `Strict` open of `dir` fails with `Corruption` at `offset` of `file`.
fn strict_open_fails_at(dir: &Path, file: &Path, offset: u64) {
    match Wal::new(dir, options(RecoveryMode::Strict)) {
        Err(WalError::Corruption {
            path, offset: at, ..
        }) => {
            assert_eq!((path.as_path(), at), (file, offset));
        }
        other => panic!("expected Corruption, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_clean_close_leaves_a_marker_vouching_for_every_sealed_segment() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (_, files) = write(tmp.path())?;
    let newest = std::fs::read(files.last().ok_or("no segment")?)?;
    let vouched = walk_markers(&newest).iter().map(|m| m.synced_through).max();
    assert_eq!(vouched, Some(files.len() as u64 - 1));
    Ok(())
}

#[test]
fn an_unfinished_seal_is_cut_and_the_segments_after_it_are_dropped() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let n = files.len();
    let victim = n - 2; // the segment sealed last, whose fsync "had not finished"
    let before = records_before(&files, victim)?;
    let newest_len = std::fs::metadata(&files[n - 1])?.len();
    drop_markers_for(&files[victim + 1..], victim as u64 + 1)?;
    let newest_len_after = std::fs::metadata(&files[n - 1])?.len();
    let victim_len = std::fs::metadata(&files[victim])?.len();
    let (cut, kept) = lose_tail_pages(&files[victim])?;
    assert!(newest_len_after <= newest_len);
    // The marker vouching for the segment before the victim may have been in the
    // victim's lost pages: then the victim's first records go too (victim index i is
    // segment i + 1, so its predecessor is segment `victim`).
    let predecessor_vouched = predecessor_kept(&files, victim)?;
    let kept = if predecessor_vouched { kept } else { 0 };

    // The operator tool classifies it as recovery will, without changing anything.
    let damage = damage_found(&dir)?;
    assert_eq!(
        damage,
        vec![(files[victim].clone(), cut, DamageKind::TornTail)]
    );

    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    let report = wal.recovery_report().clone();
    let mut truncated = vec![
        (files[victim].clone(), cut, victim_len - cut),
        (files[n - 1].clone(), 0, newest_len_after),
    ];
    if !predecessor_vouched {
        truncated.push((files[victim].clone(), 0, cut));
    }
    assert_eq!(report.truncated, truncated);
    assert!(report.skipped.is_empty());
    assert_eq!(numbers(&wal, "k")?, (0..before + kept).collect::<Vec<_>>());
    assert!(
        !files[n - 1].exists(),
        "the segment after the cut is removed"
    );
    if predecessor_vouched {
        assert_eq!(std::fs::metadata(&files[victim])?.len(), cut);
    } else {
        assert!(!files[victim].exists());
    }

    // The writer goes on in the cut segment; a reopen finds everything.
    for i in before + kept..before + kept + 50 {
        wal.append_entry("k", value_of(i), i % 10 == 0)?;
    }
    wal.close()?;
    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    assert!(wal.recovery_report().truncated.is_empty());
    assert_eq!(
        numbers(&wal, "k")?,
        (0..before + kept + 50).collect::<Vec<_>>()
    );
    wal.close()?;
    Ok(())
}

#[test]
fn damage_in_a_vouched_sealed_segment_is_corruption() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let victim = files.len() - 2;
    let (cut, _) = lose_tail_pages(&files[victim])?;
    let damage = damage_found(&dir)?;
    assert_eq!(
        damage,
        vec![(files[victim].clone(), cut, DamageKind::Corrupt)]
    );
    strict_open_fails_at(&dir, &files[victim], cut);
    // SkipCorrupted skips the damage and keeps every later segment.
    let wal = Wal::new(&dir, options(RecoveryMode::SkipCorrupted))?;
    assert!(wal.recovery_report().truncated.is_empty());
    assert_eq!(wal.recovery_report().skipped.len(), 1);
    assert!(files.iter().all(|f| f.exists()));
    wal.close()?;
    Ok(())
}

#[test]
fn damage_in_a_version_1_sealed_segment_is_corruption_without_markers() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let victim = files.len() - 2;
    // Version 1 synced every seal before creating the next segment and wrote no
    // markers: rebuild that, then lose the same pages.
    make_version_1(&files)?;
    let (cut, _) = lose_tail_pages(&files[victim])?;
    strict_open_fails_at(&dir, &files[victim], cut);
    Ok(())
}

#[test]
fn version_1_segments_are_read_and_written_after() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    make_version_1(&files)?;
    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    assert_eq!(numbers(&wal, "k")?, (0..RECORDS).collect::<Vec<_>>());
    let more = RECORDS..RECORDS + 200;
    for i in more.clone() {
        wal.append_entry("k", value_of(i), i % 20 == 0)?;
    }
    wal.close()?;
    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    assert_eq!(numbers(&wal, "k")?, (0..more.end).collect::<Vec<_>>());
    wal.close()?;
    // The segments created since are version 4 (the format this build writes) and
    // carry markers.
    let files = segment_files(&dir, 0)?;
    let newest = std::fs::read(files.last().ok_or("no segment")?)?;
    assert_eq!(u32::from_le_bytes(newest[8..12].try_into()?), 4);
    assert!(!walk_markers(&newest).is_empty());
    Ok(())
}

#[test]
fn segments_filled_exactly_by_durable_records_still_get_their_markers() -> TestResult {
    // Each 1000-byte record fills a segment to the byte after its seal note (the
    // first segment, which has none, keeps a note's 44 bytes): no room for a marker
    // after it. Every durable answer must still leave a marker for every sealed segment
    // before it, or a flipped bit at a segment's end would pass for an unfinished
    // seal and take the acknowledged records of every later segment with it.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let options = |mode| {
        WalOptions::default()
            .with_shards(1)
            .with_max_key_size(1)
            .with_max_record_size(1000)
            .with_max_segment_size(
                (SEGMENT_HEADER_LEN + SEAL_NOTE_LEN + RECORD_HEADER_LEN + 1 + 1000) as u64,
            )
            .with_recovery_mode(mode)
    };
    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    for i in 0..10u8 {
        wal.log_entry("k", Bytes::from(vec![i; 1000]))?;
    }
    wal.close()?;
    let files = segment_files(&dir, 0)?;
    let vouched = files
        .iter()
        .map(|f| Ok(walk_markers(&std::fs::read(f)?)))
        .collect::<Result<Vec<_>, std::io::Error>>()?
        .into_iter()
        .flatten()
        .map(|m| m.synced_through)
        .max();
    assert_eq!(
        vouched,
        Some(files.len() as u64 - 1),
        "{} files",
        files.len()
    );

    // Flip the last byte of the second record's segment (the record fills it).
    let victim = files
        .iter()
        .filter(|f| records_of_file(f).is_ok_and(|r| r.len() == 1))
        .nth(1)
        .ok_or("no second record segment")?;
    let record_at = records_of_file(victim)?[0].offset;
    let mut data = std::fs::read(victim)?;
    assert!(record_at > SEGMENT_HEADER_LEN as u64, "after the seal note");
    let last = data.len() - 1;
    data[last] ^= 0x01;
    std::fs::write(victim, &data)?;
    strict_open_fails_at(&dir, victim, record_at);
    let wal = Wal::new(&dir, options(RecoveryMode::SkipCorrupted))?;
    assert_eq!(
        wal.enumerate_records("k")?.count(),
        9,
        "only the flipped record is lost"
    );
    wal.close()?;
    Ok(())
}

#[test]
fn a_failed_drop_leaves_a_prefix_for_the_next_open() -> TestResult {
    // Recovery removes the segments after an unfinished seal newest first, and cuts
    // the seal only after that. Make the removal fail in the middle (an immutable
    // file: root cannot unlink it either) and check that what is left is a prefix.
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let n = files.len();
    let victim = n - 3;
    let before = records_before(&files, victim)?;
    drop_markers_for(&files[victim + 1..], victim as u64 + 1)?;
    let (_, kept) = lose_tail_pages(&files[victim])?;
    // As in `an_unfinished_seal_is_cut_and_the_segments_after_it_are_dropped`; the
    // open that fails removes the newest segment, and its markers with it.
    let kept = if predecessor_kept(&files[..n - 1], victim)? {
        kept
    } else {
        0
    };
    let pinned = &files[victim + 1];
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(pinned)
            .status()
    };
    match chattr("+i") {
        Ok(status) if status.success() => {}
        other => {
            eprintln!("skipped: chattr +i is not available here ({other:?})");
            return Ok(());
        }
    }
    let failed = Wal::new(&dir, options(RecoveryMode::Strict));
    let restored = chattr("-i")?;
    assert!(restored.success());
    assert!(
        matches!(failed, Err(WalError::Io { .. })),
        "{:?}",
        failed.map(|_| ())
    );
    assert!(!files[n - 1].exists(), "the newest segment goes first");
    assert!(pinned.exists());
    let victim_len = std::fs::metadata(&files[victim])?.len();
    assert!(
        victim_len
            > records_of_file(&files[victim])?
                .last()
                .map_or(0, |r| r.offset + r.len),
        "the unfinished seal is not cut before the later segments are gone"
    );

    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    assert_eq!(numbers(&wal, "k")?, (0..before + kept).collect::<Vec<_>>());
    assert!(!pinned.exists());
    wal.close()?;
    Ok(())
}

/// Every record the segment files hold, in order.
fn records_in(files: &[PathBuf]) -> Result<usize, Box<dyn std::error::Error>> {
    records_before(files, files.len())
}

/// Rewrites the newest segment `file` without its sync markers (header, seal note
/// and records kept): what it holds when the seal before it had not been synced
/// when the writer was killed.
fn strip_markers(file: &Path) -> TestResult {
    rewrite_without_markers(file, None)
}

/// A `Strict` open of `dir` serves exactly records `0..count` of key `k`, and the
/// segment files `gone` no longer exist.
fn reopens_as(dir: &Path, count: usize, gone: &[PathBuf]) -> TestResult {
    let wal = Wal::new(dir, options(RecoveryMode::Strict))?;
    assert_eq!(numbers(&wal, "k")?, (0..count).collect::<Vec<_>>());
    for f in gone {
        assert!(!f.exists(), "{f:?} is still there");
    }
    wal.close()?;
    Ok(())
}

#[test]
fn a_whole_seal_without_a_marker_keeps_the_later_segments() -> TestResult {
    // What a `kill -9` leaves when the last seal's fsync had not returned: no marker
    // vouches for the sealed segment, but it is whole, and the seal note first in the
    // newest segment says so. Nothing is dropped (without the note, the newest
    // segment's records would go).
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let n = files.len();
    let victim = n - 2;
    strip_markers(&files[n - 1])?;
    assert!(!vouched(&files, victim as u64 + 1)?);
    assert!(!records_of_file(&files[n - 1])?.is_empty());
    assert_eq!(
        seal_note_of(&std::fs::read(&files[n - 1])?),
        Some((victim as u64 + 1, std::fs::metadata(&files[victim])?.len()))
    );
    let total = records_in(&files)?;
    assert_eq!(
        damage_found(&dir)?,
        vec![],
        "inspect agrees: nothing to cut"
    );
    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    assert!(wal.recovery_report().truncated.is_empty());
    assert_eq!(numbers(&wal, "k")?, (0..total).collect::<Vec<_>>());
    assert!(files.iter().all(|f| f.exists()));
    // The reopened writer syncs the unvouched seal before its first durable answer
    // and vouches for it: a later open needs no note.
    wal.log_entry("k", value_of(total))?;
    wal.close()?;
    assert!(vouched(&segment_files(&dir, 0)?, victim as u64 + 1)?);

    // The same state with the note's length one byte off is not shown whole.
    let (dir, files) = write(&tmp.path().join("off"))?;
    strip_markers(&files[n - 1])?;
    let mut data = std::fs::read(&files[n - 1])?;
    // The note's length field: after its record header and the sequence number.
    let at = SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 8;
    data[at] ^= 1;
    reseal_record(&mut data, SEGMENT_HEADER_LEN);
    std::fs::write(&files[n - 1], &data)?;
    let sealed_len = std::fs::metadata(&files[n - 2])?.len();
    assert_eq!(
        damage_found(&dir)?,
        vec![(files[n - 2].clone(), sealed_len, DamageKind::TornTail)],
        "inspect agrees: the later segment goes"
    );
    reopens_as(&dir, records_before(&files, n - 1)?, &files[n - 1..])
}

#[test]
fn a_seal_shorter_than_its_note_says_drops_the_later_segments() -> TestResult {
    // A power cut before the seal's fsync took the sealed segment's last records with
    // the length that held them: it ends cleanly, at a record boundary, shorter than
    // the note in its successor says. The later segments go, as without notes.
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let n = files.len();
    let victim = n - 3;
    drop_markers_for(&files[victim + 1..], victim as u64 + 1)?;
    let records = records_of_file(&files[victim])?;
    let keep = records.len() / 2;
    let end = records[keep].offset;
    let data = std::fs::read(&files[victim])?;
    std::fs::write(&files[victim], &data[..end as usize])?;
    let before = records_before(&files, victim)?;
    let kept = if predecessor_kept(&files, victim)? {
        keep
    } else {
        0
    };
    let found = damage_found(&dir)?;
    assert_eq!(
        found.last(),
        Some(&(files[victim].clone(), end, DamageKind::TornTail)),
        "{found:?}"
    );
    reopens_as(&dir, before + kept, &files[victim + 1..])
}

#[test]
fn a_note_naming_another_segment_proves_nothing() -> TestResult {
    // The successor of the unvouched seal is gone (its directory entry lost, say):
    // the next segment's note names that missing one, not the seal, so the seal is
    // not shown whole and the segments after it go.
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let n = files.len();
    let victim = n - 4;
    drop_markers_for(&files[victim + 1..], victim as u64 + 1)?;
    std::fs::remove_file(&files[victim + 1])?;
    let before = records_before(&files, victim + 1)?;
    let victim_len = std::fs::metadata(&files[victim])?.len();
    assert_eq!(
        damage_found(&dir)?,
        vec![(files[victim].clone(), victim_len, DamageKind::TornTail)],
        "inspect agrees: the later segments go"
    );
    reopens_as(&dir, before, &files[victim + 2..])
}

#[test]
fn a_newest_segment_recovered_empty_still_gets_its_seal_note() -> TestResult {
    // A kill after a segment was created and before anything was written into it
    // leaves it holding its header only, after a seal no marker vouches for. The next
    // writer must start it with the note it owes: a second kill, before that seal is
    // re-synced and marked, then still keeps everything.
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let n = files.len();
    strip_markers(&files[n - 1])?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[n - 1])?
        .set_len(SEGMENT_HEADER_LEN as u64)?;
    let before = records_before(&files, n - 1)?;
    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    assert!(wal.recovery_report().truncated.is_empty());
    for i in before..before + 5 {
        wal.append_entry("k", value_of(i), false)?;
    }
    wal.stats()?; // every append written
    let killed = common::snapshot(&dir)?;
    drop(wal);
    let copy = tmp.path().join("killed");
    common::restore(&killed, &copy)?;
    assert_eq!(
        seal_note_of(&std::fs::read(
            copy.join("shard-000")
                .join(files[n - 1].file_name().ok_or("name")?)
        )?),
        Some((n as u64 - 1, std::fs::metadata(&files[n - 2])?.len()))
    );
    let wal = Wal::new(&copy, options(RecoveryMode::Strict))?;
    assert!(wal.recovery_report().truncated.is_empty());
    assert_eq!(numbers(&wal, "k")?, (0..before + 5).collect::<Vec<_>>());
    wal.close()?;
    Ok(())
}

/// Writes the test's WAL, strips every sync marker (nothing vouches for any seal) and
/// removes the first segment: a power cut that lost its name while later names
/// reached the disk.
fn lose_the_first_segment(
    root: &Path,
) -> Result<(PathBuf, Vec<PathBuf>), Box<dyn std::error::Error>> {
    let (dir, files) = write(root)?;
    for f in &files {
        strip_markers(f)?;
    }
    std::fs::remove_file(&files[0])?;
    Ok((dir, files))
}

#[test]
fn a_missing_segment_named_by_the_oldest_ones_seal_note_drops_the_shard() -> TestResult {
    // A power cut can lose a new segment's name (its directory was not synced yet)
    // while a later segment's name reached the disk. With no older segment left to
    // carry the rule above (a fresh WAL, or compaction removed them), the oldest
    // segment's seal note still names the missing one: recovery drops the shard's
    // segments rather than serve records with a hole before them. Nothing was
    // acknowledged as durable after that segment was sealed: no marker vouches for it.
    let tmp = tempfile::tempdir()?;
    let (dir, files) = lose_the_first_segment(tmp.path())?;
    let found = damage_found(&dir)?;
    assert!(
        found.contains(&(files[1].clone(), 0, DamageKind::TornTail)),
        "inspect does not report the drop: {found:?}"
    );
    reopens_as(&dir, 0, &files[1..])?;
    // A note naming a segment that a marker vouches for is compaction's doing: kept.
    // (The markers of a clean close vouch for every sealed segment.)
    let (dir, files) = write(&tmp.path().join("vouched"))?;
    let first = records_in(&files[..1])?;
    std::fs::remove_file(&files[0])?;
    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    assert!(wal.recovery_report().truncated.is_empty());
    assert_eq!(numbers(&wal, "k")?, (first..RECORDS).collect::<Vec<_>>());
    wal.close()?;
    Ok(())
}

#[test]
fn a_kill_right_after_compaction_keeps_every_record() -> TestResult {
    // Compaction first makes the shard leave a marker vouching for every segment it
    // removes, so the oldest segment left, whose seal note names a removed one, is not
    // taken for one whose predecessor a power cut lost.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let options = WalOptions::default()
        .with_shards(1)
        .with_retention(std::time::Duration::from_millis(2))
        .with_segments(2)
        .with_max_key_size(8)
        .with_max_record_size(1000)
        .with_max_segment_size(4096);
    let wal = Wal::new(&dir, options.clone())?;
    let value = |i: usize| Bytes::from(format!("{i:04}").repeat(250));
    for i in 0..9 {
        wal.append_entry("old", value(i), false)?;
    }
    std::thread::sleep(std::time::Duration::from_millis(10));
    let report = wal.compact()?;
    assert!(report.segments_removed >= 3, "{report:?}");
    // Only non-durable appends after it, sealing segments: no marker but
    // compaction's vouches for what it removed.
    for i in 0..9 {
        wal.append_entry("new", value(i), false)?;
    }
    wal.stats()?; // every append written
    let killed = common::snapshot(&dir)?;
    drop(wal);
    let copy = tmp.path().join("killed");
    common::restore(&killed, &copy)?;
    let wal = Wal::new(&copy, options)?;
    assert!(wal.recovery_report().truncated.is_empty());
    let got: Vec<Bytes> = wal.enumerate_records("new")?.collect();
    assert_eq!(got, (0..9).map(value).collect::<Vec<_>>());
    wal.close()?;
    Ok(())
}

#[test]
fn a_record_less_segment_after_a_missing_one_goes_too_and_a_durable_append_then_survives(
) -> TestResult {
    // The segment after the lost one kept only its header and seal note (its first
    // record torn). Kept, it would still name a segment nothing can vouch for any
    // more, and the next open would drop the shard with the records acknowledged in
    // between; so it goes too.
    let tmp = tempfile::tempdir()?;
    let (dir, files) = lose_the_first_segment(tmp.path())?;
    // Only the second segment is left, holding its header and note.
    for f in &files[2..] {
        std::fs::remove_file(f)?;
    }
    let note_end = (SEGMENT_HEADER_LEN + SEAL_NOTE_LEN) as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[1])?
        .set_len(note_end)?;
    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    assert_eq!(wal.enumerate_records("k")?.count(), 0);
    assert!(!files[1].exists(), "the record-less segment was kept");
    wal.log_entry("k", Bytes::from_static(b"acknowledged"))?;
    wal.close()?;
    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    let got: Vec<Bytes> = wal.enumerate_records("k")?.collect();
    assert_eq!(got, vec![Bytes::from_static(b"acknowledged")]);
    wal.close()?;
    Ok(())
}

/// A page lost in the middle of an unfinished seal (no marker vouches for it) while
/// later pages of it reached the disk: damage before valid records may be bit rot in
/// synced data, so it is never taken for a torn tail. Strict refuses, naming the first
/// record it hits, and changes nothing; SkipCorrupted keeps every record that
/// verifies, in that segment and in the later ones.
#[test]
fn a_page_lost_inside_an_unfinished_seal_before_valid_records_is_refused_not_cut() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, files) = write(tmp.path())?;
    let n = files.len();
    let victim = n - 2;
    drop_markers_for(&files[victim + 1..], victim as u64 + 1)?;
    assert!(!vouched(&files, victim as u64 + 1)?);
    let mut data = std::fs::read(&files[victim])?;
    let records = records_of_file(&files[victim])?;
    let page = (records[0].offset / 4096 + 1) * 4096;
    let hole = page..page + 4096;
    let first_hit = records
        .iter()
        .find(|r| r.offset + r.len > hole.start)
        .ok_or("a record over the page")?
        .clone();
    assert!(
        records.iter().any(|r| r.offset >= hole.end),
        "a valid record must follow the lost page"
    );
    // Every record the lost page misses, in every segment (walked before the damage).
    let mut want = Vec::new();
    for (i, f) in files.iter().enumerate() {
        for r in records_of_file(f)? {
            let hit = i == victim && r.offset < hole.end && r.offset + r.len > hole.start;
            if !hit {
                want.push(std::str::from_utf8(&r.value[..5])?.parse::<usize>()?);
            }
        }
    }
    assert!(want.len() < RECORDS, "the lost page hits records");
    data[hole.start as usize..hole.end as usize].fill(0);
    std::fs::write(&files[victim], &data)?;

    assert_eq!(
        damage_found(&dir)?,
        vec![(files[victim].clone(), first_hit.offset, DamageKind::Corrupt)],
        "inspect agrees: damage, not a torn tail"
    );
    let before = common::snapshot(&dir)?;
    strict_open_fails_at(&dir, &files[victim], first_hit.offset);
    assert!(
        common::snapshot(&dir)? == before,
        "a refused open changed the directory"
    );

    let wal = Wal::new(&dir, options(RecoveryMode::SkipCorrupted))?;
    let report = wal.recovery_report().clone();
    assert!(report.truncated.is_empty(), "{report:?}");
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(
        (report.skipped[0].0.as_path(), report.skipped[0].1),
        (files[victim].as_path(), first_hit.offset)
    );
    assert!(files.iter().all(|f| f.exists()), "no segment removed");
    assert_eq!(numbers(&wal, "k")?, want);
    wal.close()?;
    Ok(())
}
