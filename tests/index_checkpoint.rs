//! `WalOptions::index_checkpoint`: a clean close writes each shard's index to
//! `shard-NNN/INDEX`, the next open loads it instead of scanning, and it is only
//! trusted while the segment files are exactly as that close left them.

mod common;

use bytes::Bytes;
use common::{noise, segment_files, shard_dir, TestResult};
use nano_wal::{RecoveryMode, Wal, WalOptions};
use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

type Model = BTreeMap<Vec<u8>, Vec<Bytes>>;

/// Length of a checkpoint's front header (version 2: magic, version, shard,
/// synced_through, segment count, key count, location count, directory length,
/// next_seq); the 80-byte segment entries follow it.
const INDEX_HEADER_LEN: usize = 64;
/// Length of one segment entry of a checkpoint's front.
const INDEX_SEGMENT_ENTRY_LEN: usize = 80;

const SHARDS: usize = 2;

/// Small segments, so each shard has several (sealed ones and an active one).
fn options(checkpoint: bool) -> WalOptions {
    WalOptions::default()
        .with_shards(SHARDS)
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(64 * 1024)
        .with_index_checkpoint(checkpoint)
}

/// Appends `records` records under 9 keys, numbered from `first`.
fn fill(wal: &Wal, model: &mut Model, first: usize, records: usize) -> TestResult {
    for i in first..first + records {
        let key = format!("key-{}", i % 9).into_bytes();
        let mut value = format!("{i:05}|").into_bytes();
        value.extend(noise(i as u64, i % 300));
        let value = Bytes::from(value);
        wal.append_entry(&key, value.clone(), i % 50 == 0)?;
        model.entry(key).or_default().push(value);
    }
    Ok(())
}

/// A WAL with checkpoints at `dir`, 2,000 records appended and cleanly closed.
fn written_and_closed(dir: &Path) -> Result<Model, Box<dyn std::error::Error>> {
    let mut model = Model::new();
    let wal = Wal::new(dir, options(true))?;
    fill(&wal, &mut model, 0, 2000)?;
    wal.close()?;
    Ok(model)
}

fn assert_matches(wal: &Wal, model: &Model) -> TestResult {
    for (key, values) in model {
        let got: Vec<Bytes> = wal.enumerate_records(key)?.collect();
        assert_eq!(
            &got,
            values,
            "records of {:?}",
            String::from_utf8_lossy(key)
        );
    }
    let mut keys: Vec<Vec<u8>> = wal.enumerate_keys()?.collect();
    keys.sort();
    assert_eq!(keys, model.keys().cloned().collect::<Vec<_>>());
    let stats = wal.stats()?;
    let records: u64 = stats.shards.iter().map(|s| s.records).sum();
    assert_eq!(records, model.values().map(|v| v.len() as u64).sum::<u64>());
    Ok(())
}

/// A scan finds every shard's checkpoint usable, one location per record.
fn assert_scan_finds_usable_checkpoints(dir: &Path) -> TestResult {
    let scan = nano_wal::inspect::scan(dir)?;
    assert!(
        scan.is_clean(),
        "{:?}",
        scan.all_damage().collect::<Vec<_>>()
    );
    for shard in &scan.shards {
        assert_eq!(
            shard.checkpoint,
            nano_wal::inspect::CheckpointCheck::Usable {
                keys: shard.keys,
                locations: shard.records()
            },
            "shard {}",
            shard.shard
        );
    }
    Ok(())
}

fn checkpoints(dir: &Path) -> Vec<bool> {
    (0..SHARDS)
        .map(|s| shard_dir(dir, s).join("INDEX").exists())
        .collect()
}

/// Three close/open rounds, appending in each: every open after a clean close
/// loads both shards' checkpoints and serves exactly what a full scan serves.
#[test]
fn a_reopen_loads_the_checkpoint_and_serves_what_a_scan_serves() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut model = Model::new();
    let wal = Wal::new(dir.path(), options(true))?;
    fill(&wal, &mut model, 0, 3000)?;
    wal.close()?;
    for round in 1..=3 {
        assert_eq!(checkpoints(dir.path()), vec![true; SHARDS]);
        let segments = segment_files(dir.path(), 0)?.len();
        assert!(
            segments >= 3,
            "round {round}: {segments} segments in shard 0"
        );
        let wal = Wal::new(dir.path(), options(true))?;
        let report = wal.recovery_report();
        assert_eq!(report.checkpoints_loaded, SHARDS as u64, "round {round}");
        assert!(report.checkpoints_ignored.is_empty(), "{report:?}");
        assert_eq!(
            report.records,
            model.values().map(|v| v.len() as u64).sum::<u64>()
        );
        // Open removed the checkpoints: from here on the segments change.
        assert_eq!(checkpoints(dir.path()), vec![false; SHARDS]);
        assert_matches(&wal, &model)?;
        fill(&wal, &mut model, round * 3000, 1000)?;
        assert_matches(&wal, &model)?;
        wal.close()?;
        assert_scan_finds_usable_checkpoints(dir.path())?;
    }
    // The same files, scanned.
    let wal = Wal::new(dir.path(), options(false))?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, 0);
    assert_matches(&wal, &model)?;
    wal.close()?;
    // Without the option, close writes none and open leaves none behind.
    assert_eq!(checkpoints(dir.path()), vec![false; SHARDS]);
    Ok(())
}

/// Segments that compaction removed are gone from the checkpoint too.
#[test]
fn a_checkpoint_after_compaction_lists_only_the_live_segments() -> TestResult {
    let dir = tempfile::tempdir()?;
    let options = options(true)
        .with_retention(Duration::from_millis(400))
        .with_segments(4);
    let mut model = Model::new();
    let wal = Wal::new(dir.path(), options.clone())?;
    fill(&wal, &mut model, 0, 500)?;
    std::thread::sleep(Duration::from_millis(700));
    model.clear();
    fill(&wal, &mut model, 500, 200)?;
    let compacted = wal.compact()?;
    assert!(compacted.segments_removed > 0, "{compacted:?}");
    wal.close()?;
    assert_scan_finds_usable_checkpoints(dir.path())?;
    let wal = Wal::new(dir.path(), options)?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, SHARDS as u64);
    assert_matches(&wal, &model)?;
    wal.close()?;
    Ok(())
}

/// Waits out the file-time tick: a change made in the same tick as the close's last
/// write leaves mtime and ctime as they were (the documented limit of the check).
fn next_tick() {
    std::thread::sleep(Duration::from_millis(50));
}

/// A checkpoint whose segments changed after the close is ignored, with the
/// reason, and the shard is scanned: a flipped byte in a sealed segment is then
/// found by the open, as without a checkpoint.
#[test]
fn a_segment_changed_after_the_close_sends_its_shard_to_a_scan() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wal = Wal::new(dir.path(), options(true))?;
    fill(&wal, &mut Model::new(), 0, 3000)?;
    wal.close()?;
    next_tick();
    let victim = segment_files(dir.path(), 0)?[0].clone();
    let mut data = std::fs::read(&victim)?;
    data[200] ^= 0x40;
    std::fs::write(&victim, &data)?;
    match Wal::new(dir.path(), options(true)) {
        Err(nano_wal::WalError::Corruption { path, .. }) => assert_eq!(path, victim),
        other => panic!("expected corruption in {}, got {other:?}", victim.display()),
    }
    // The refused open changed nothing: both checkpoints are still there, shard 1's
    // still loads. Skipping the damage opens, and shard 0's next close writes no
    // checkpoint (its damage must still be found by a strict open).
    assert_eq!(checkpoints(dir.path()), vec![true, true]);
    let options = options(true).with_recovery_mode(RecoveryMode::SkipCorrupted);
    let wal = Wal::new(dir.path(), options.clone())?;
    let report = wal.recovery_report();
    assert_eq!(report.checkpoints_loaded, 1);
    assert!(
        report.checkpoints_ignored[0].1.contains("changed"),
        "{report:?}"
    );
    assert!(!report.skipped.is_empty());
    wal.close()?;
    assert_eq!(checkpoints(dir.path()), vec![false, true]);
    let wal = Wal::new(dir.path(), options)?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, 1);
    wal.close()?;
    Ok(())
}

/// Each way the files can differ from the checkpoint: a segment removed, the
/// newest one grown, one put back from a copy (another inode), and a checkpoint
/// that is not one. Each time that shard is scanned, the other one loads.
#[test]
fn every_difference_from_the_checkpoint_is_caught() -> TestResult {
    type Change = fn(&Path) -> std::io::Result<()>;
    // (what the reason says, whether every record stays, the change to shard 0)
    let changes: [(&str, bool, Change); 4] = [
        ("lists", false, |dir| {
            std::fs::remove_file(&segment_files(dir, 0)?[0])
        }),
        ("changed", true, |dir| {
            let newest = segment_files(dir, 0)?.pop().expect("a segment");
            let f = std::fs::OpenOptions::new().append(true).open(newest)?;
            f.set_len(f.metadata()?.len() + 10)
        }),
        ("changed", true, |dir| {
            let first = segment_files(dir, 0)?[0].clone();
            let copy = shard_dir(dir, 0).join("copy");
            std::fs::copy(&first, &copy)?;
            std::fs::rename(&copy, &first)
        }),
        ("checksum", true, |dir| {
            let index = shard_dir(dir, 0).join("INDEX");
            let mut bytes = std::fs::read(&index)?;
            // The first segment entry's sequence number.
            bytes[INDEX_HEADER_LEN + 4] ^= 1;
            std::fs::write(&index, bytes)
        }),
    ];
    for (want, keeps_all, change) in changes {
        let dir = tempfile::tempdir()?;
        let mut model = Model::new();
        let wal = Wal::new(dir.path(), options(true))?;
        fill(&wal, &mut model, 0, 3000)?;
        wal.close()?;
        next_tick();
        change(dir.path())?;
        let wal = Wal::new(dir.path(), options(true))?;
        let report = wal.recovery_report();
        assert_eq!(report.checkpoints_loaded, 1, "{want}: {report:?}");
        let ignored = &report.checkpoints_ignored;
        assert_eq!(ignored.len(), 1, "{want}: {report:?}");
        assert!(ignored[0].0.ends_with("shard-000/INDEX"), "{ignored:?}");
        assert!(ignored[0].1.contains(want), "{want}: {ignored:?}");
        if keeps_all {
            assert_matches(&wal, &model)?;
        }
        wal.close()?;
    }
    Ok(())
}

/// A checkpoint that cannot be written fails `close` with an error naming it; the
/// records are durable all the same, and the next open scans.
#[test]
fn a_checkpoint_that_cannot_be_written_fails_close_and_loses_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut model = Model::new();
    let wal = Wal::new(dir.path(), options(true))?;
    fill(&wal, &mut model, 0, 2000)?;
    // A directory where the temporary file goes.
    let blocker = shard_dir(dir.path(), 1).join("INDEX.tmp");
    std::fs::create_dir(&blocker)?;
    let err = wal.close().expect_err("the checkpoint cannot be written");
    // What stands under the checkpoint's name is not a file of the WAL.
    assert!(
        matches!(&err, nano_wal::WalError::ForeignFile { path } if *path == blocker),
        "{err}"
    );
    std::fs::remove_dir(&blocker)?;
    assert_eq!(checkpoints(dir.path()), vec![true, false]);
    let wal = Wal::new(dir.path(), options(true))?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, 1);
    assert_matches(&wal, &model)?;
    wal.close()?;
    Ok(())
}

/// Compaction right after a load: the loaded segments keep their ages, so only
/// the expired ones go and every fresh record stays.
#[test]
fn compaction_after_a_load_drops_only_what_expired() -> TestResult {
    let dir = tempfile::tempdir()?;
    let options = options(true)
        .with_retention(Duration::from_millis(400))
        .with_segments(4);
    let wal = Wal::new(dir.path(), options.clone())?;
    fill(&wal, &mut Model::new(), 0, 500)?;
    wal.close()?;
    std::thread::sleep(Duration::from_millis(700));
    let wal = Wal::new(dir.path(), options)?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, SHARDS as u64);
    let old = wal.stats()?.shards.iter().map(|s| s.segments).sum::<u64>();
    let mut model = Model::new();
    fill(&wal, &mut model, 500, 300)?;
    let compacted = wal.compact()?;
    assert_eq!(compacted.segments_removed, old, "{compacted:?}");
    assert_eq!(compacted.records_removed, 500);
    assert_matches(&wal, &model)?;
    wal.close()?;
    Ok(())
}

/// An `INDEX` that is not a regular file is a foreign file: refused at once (a
/// FIFO is never opened, a symlink never followed) and left where it is. A refused
/// open also leaves the other shard's checkpoint, which still describes its files.
#[test]
fn an_index_that_is_not_a_file_is_refused_and_left_alone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wal = Wal::new(dir.path(), options(true))?;
    fill(&wal, &mut Model::new(), 0, 500)?;
    wal.close()?;
    let index = shard_dir(dir.path(), 0).join("INDEX");
    std::fs::remove_file(&index)?;
    let made = std::process::Command::new("mkfifo").arg(&index).status()?;
    assert!(made.success());
    for _ in 0..2 {
        match Wal::new(dir.path(), options(true)) {
            Err(nano_wal::WalError::ForeignFile { path }) => assert_eq!(path, index),
            other => panic!("expected a foreign file, got {other:?}"),
        }
        assert!(std::fs::symlink_metadata(&index)?.file_type().is_fifo());
        assert_eq!(checkpoints(dir.path()), vec![true, true]);
        // The same for a symlink to a file that would read forever.
        std::fs::remove_file(&index)?;
        std::os::unix::fs::symlink("/dev/zero", &index)?;
        match Wal::new(dir.path(), options(true)) {
            Err(nano_wal::WalError::ForeignFile { path }) => assert_eq!(path, index),
            other => panic!("expected a foreign file, got {other:?}"),
        }
        assert!(std::fs::symlink_metadata(&index)?.is_symlink());
        // A scan reports it as the foreign file it is, and shard 1's as usable.
        let scan = nano_wal::inspect::scan(dir.path())?;
        let damage: Vec<_> = scan.all_damage().collect();
        assert_eq!(damage.len(), 1, "{damage:?}");
        assert_eq!(damage[0].kind, nano_wal::inspect::DamageKind::ForeignFile);
        assert_eq!(damage[0].path, index);
        assert_eq!(
            scan.shards[0].checkpoint,
            nano_wal::inspect::CheckpointCheck::Absent
        );
        assert!(matches!(
            scan.shards[1].checkpoint,
            nano_wal::inspect::CheckpointCheck::Usable { .. }
        ));
        std::fs::remove_file(&index)?;
        let made = std::process::Command::new("mkfifo").arg(&index).status()?;
        assert!(made.success());
    }
    std::fs::remove_file(&index)?;
    let wal = Wal::new(dir.path(), options(true))?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, 1);
    wal.close()?;
    Ok(())
}

/// A key whose locations in the checkpoint are damaged (the front intact): its
/// reads fail with an error naming the checkpoint, never with wrong data; every
/// other key reads; compaction goes on; the close reports that it could not write
/// a checkpoint, and the next open scans and serves every record.
#[test]
fn damaged_locations_fail_that_key_s_reads_and_nothing_else() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut model = written_and_closed(dir.path())?;
    // The last bytes of shard 0's checkpoint are the last key's locations.
    let index = shard_dir(dir.path(), 0).join("INDEX");
    let mut bytes = std::fs::read(&index)?;
    let last = bytes.len() - 3;
    bytes[last] ^= 0x10;
    std::fs::write(&index, bytes)?;
    let wal = Wal::new(dir.path(), options(true))?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, SHARDS as u64);
    let mut failed = Vec::new();
    for (key, values) in &model {
        match wal.enumerate_records(key) {
            Ok(got) => assert_eq!(&got.collect::<Vec<_>>(), values),
            Err(nano_wal::WalError::Corruption { path, reason, .. }) => {
                assert_eq!(path, index, "{reason}");
                assert!(reason.contains("checksum"), "{reason}");
                failed.push(key.clone());
            }
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!(failed.len(), 1, "exactly the damaged key fails");
    // Compaction (nothing expired) and appends go on.
    assert_eq!(wal.compact()?.segments_removed, 0);
    fill(&wal, &mut model, 2000, 100)?;
    let err = wal
        .close()
        .expect_err("the damaged key cannot be checkpointed");
    assert!(err.to_string().contains("INDEX"), "{err}");
    let wal = Wal::new(dir.path(), options(true))?;
    let report = wal.recovery_report();
    assert_eq!(
        report.checkpoints_loaded, 1,
        "shard 1 wrote one, shard 0 not"
    );
    assert_matches(&wal, &model)?;
    wal.close()?;
    Ok(())
}

/// Compaction after a load that removes some of the checkpoint's segments: keys
/// with records in them are unpacked, keys without stay in the checkpoint, and
/// after appends, a close and a reopen from the new checkpoint, the WAL serves
/// what a scan of the same files serves.
#[test]
fn a_partial_compaction_after_a_load_keeps_loaded_and_unpacked_keys_right() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Segments sealed after 250 ms; the first records expire 1.6 s after they were
    // written, the later ones (written 0.6 s after them) have 0.5 s to spare.
    let options = options(true)
        .with_retention(Duration::from_millis(1500))
        .with_segments(6);
    let wal = Wal::new(dir.path(), options.clone())?;
    fill(&wal, &mut Model::new(), 0, 400)?;
    std::thread::sleep(Duration::from_millis(600));
    // Keys of their own, written later: their segments outlive the first ones.
    let mut model = Model::new();
    for i in 0..400 {
        let key = format!("late-{}", i % 5).into_bytes();
        let value = Bytes::from(format!("{i:05}|late"));
        wal.append_entry(&key, value.clone(), false)?;
        model.entry(key).or_default().push(value);
    }
    wal.close()?;
    let wal = Wal::new(dir.path(), options.clone())?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, SHARDS as u64);
    std::thread::sleep(Duration::from_millis(1000));
    let compacted = wal.compact()?;
    assert_eq!(compacted.records_removed, 400, "{compacted:?}");
    assert_matches(&wal, &model)?;
    fill(&wal, &mut model, 400, 300)?;
    assert_matches(&wal, &model)?;
    wal.close()?;
    let wal = Wal::new(dir.path(), options.clone())?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, SHARDS as u64);
    assert_matches(&wal, &model)?;
    wal.close()?;
    let wal = Wal::new(dir.path(), options.with_index_checkpoint(false))?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, 0);
    assert_matches(&wal, &model)?;
    wal.close()?;
    Ok(())
}

/// `inspect::scan` checks each shard's checkpoint as the next open would use it,
/// and every key's locations, which that open reads only when the key is read.
#[test]
fn a_scan_checks_the_checkpoint_the_next_open_would_load() -> TestResult {
    use nano_wal::inspect::{self, CheckpointCheck, DamageKind};
    let dir = tempfile::tempdir()?;
    let model = written_and_closed(dir.path())?;
    assert!(segment_files(dir.path(), 0)?.len() > 1, "several segments");
    assert_scan_finds_usable_checkpoints(dir.path())?;

    // One key's locations damaged (the last bytes of shard 0's file).
    let index = shard_dir(dir.path(), 0).join("INDEX");
    let good = std::fs::read(&index)?;
    let index1 = shard_dir(dir.path(), 1).join("INDEX");
    let good1 = std::fs::read(&index1)?;
    let mut bytes = good.clone();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x10;
    std::fs::write(&index, &bytes)?;
    let scan = inspect::scan(dir.path())?;
    assert!(!scan.is_clean());
    assert_eq!(scan.shards[0].checkpoint, CheckpointCheck::Damaged);
    let damage: Vec<_> = scan.all_damage().collect();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].kind, DamageKind::BadCheckpoint);
    assert_eq!(damage[0].path, index);
    assert!(
        damage[0].offset > 0 && damage[0].offset < last as u64,
        "{damage:?}"
    );
    assert!(
        damage[0].reason.contains("checksum"),
        "{}",
        damage[0].reason
    );
    assert!(matches!(
        scan.shards[1].checkpoint,
        CheckpointCheck::Usable { .. }
    ));

    // Record counts moved between two segments, the front's checksum made to match
    // (offsets of checkpoint version 2, `src/checkpoint.rs`): the open's checks
    // pass, the scan's counts not.
    let mut bytes = good.clone();
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let (first, second) = (
        INDEX_HEADER_LEN + 24,
        INDEX_HEADER_LEN + INDEX_SEGMENT_ENTRY_LEN + 24,
    );
    let moved = (u64_at(&bytes, first) + 1, u64_at(&bytes, second) - 1);
    bytes[first..first + 8].copy_from_slice(&moved.0.to_le_bytes());
    bytes[second..second + 8].copy_from_slice(&moved.1.to_le_bytes());
    // And segment 1's newest record a microsecond newer.
    let newest = INDEX_HEADER_LEN + 16;
    let later = u64_at(&bytes, newest) + 1;
    bytes[newest..newest + 8].copy_from_slice(&later.to_le_bytes());
    reseal(&mut bytes);
    std::fs::write(&index, &bytes)?;
    let scan = inspect::scan(dir.path())?;
    assert_eq!(scan.shards[0].checkpoint, CheckpointCheck::Damaged);
    let reasons: Vec<&str> = scan.all_damage().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    let counts = reasons.iter().filter(|r| r.contains("wrong record counts"));
    assert_eq!(counts.count(), 2, "{reasons:?}");
    assert!(reasons[1].contains("retention"), "{reasons:?}");
    // The open's own checks pass: it loads the checkpoint.
    let wal = Wal::new(dir.path(), options(true))?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, SHARDS as u64);
    drop(wal);
    // That open removed both checkpoints: put them back for what follows.
    std::fs::write(&index, &good)?;
    std::fs::write(&index1, &good1)?;

    // Two keys of the same length swapped in the key directory: each key's
    // locations then name the other key's records. The open's checks pass.
    let mut bytes = good.clone();
    let entries: Vec<(usize, usize)> = directory(&bytes)
        .keys
        .iter()
        .map(|k| (k.0 + 16, k.1.len()))
        .collect();
    let (a, b) = entries
        .iter()
        .enumerate()
        .find_map(|(i, x)| {
            entries[i + 1..]
                .iter()
                .find(|y| y.1 == x.1)
                .map(|y| (*x, *y))
        })
        .expect("two keys of one length");
    let key_a = bytes[a.0..a.0 + a.1].to_vec();
    bytes.copy_within(b.0..b.0 + b.1, a.0);
    bytes[b.0..b.0 + b.1].copy_from_slice(&key_a);
    reseal(&mut bytes);
    std::fs::write(&index, &bytes)?;
    let scan = inspect::scan(dir.path())?;
    assert_eq!(scan.shards[0].checkpoint, CheckpointCheck::Damaged);
    let reasons: Vec<&str> = scan.all_damage().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().all(|r| r.contains("no record of that key")),
        "{reasons:?}"
    );

    // A segment changed since the close: the next open ignores the checkpoint.
    std::fs::write(&index, &good)?;
    let newest = segment_files(dir.path(), 1)?.pop().expect("a segment");
    next_tick();
    // The same bytes, written again: only the file's times change.
    std::fs::write(&newest, std::fs::read(&newest)?)?;
    let scan = inspect::scan(dir.path())?;
    assert!(scan.is_clean());
    assert!(matches!(
        scan.shards[0].checkpoint,
        CheckpointCheck::Usable { .. }
    ));
    match &scan.shards[1].checkpoint {
        CheckpointCheck::Ignored { reason } => assert!(reason.contains("changed"), "{reason}"),
        other => panic!("expected Ignored, got {other:?}"),
    }
    // The open agrees: it loads shard 0's checkpoint and scans shard 1.
    let wal = Wal::new(dir.path(), options(true))?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, 1);
    assert_matches(&wal, &model)?;
    wal.close()?;
    Ok(())
}

/// A checkpoint's key directory, parsed (offsets of checkpoint version 2): per key,
/// where its entry is, the key, its group count and where its locations are.
struct Directory {
    /// Bytes of the front before its checksum.
    front: usize,
    keys: Vec<(usize, Vec<u8>, usize, usize)>,
}

fn directory(bytes: &[u8]) -> Directory {
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let (segments, keys, directory) = (u64_at(24) as usize, u64_at(32), u64_at(48) as usize);
    let table = INDEX_HEADER_LEN + INDEX_SEGMENT_ENTRY_LEN * segments;
    let front = table + directory;
    let (mut entry, mut run) = (table, front + 4);
    let mut out = Vec::new();
    for _ in 0..keys {
        let (len, count, groups) = (u32_at(entry), u32_at(entry + 4), u32_at(entry + 8));
        let key = bytes[entry + 16..entry + 16 + len].to_vec();
        out.push((entry, key, groups, run));
        entry += 16 + len;
        run += 8 * (groups + count);
    }
    Directory { front, keys: out }
}

/// Makes the front's checksum match again after an edit.
fn reseal(bytes: &mut [u8]) {
    let front = directory(bytes).front;
    let crc = crc32c::crc32c(&bytes[..front]);
    bytes[front..front + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The rest of what a scan checks of a checkpoint: a front that fails its checks
/// (the open ignores it, and so does the report), a sync-marker figure that is not
/// the segments', and a key's locations moved to another segment, where the
/// per-segment location counts no longer add up to the segments' records.
#[test]
fn a_scan_checks_the_checkpoint_s_front_sync_figure_and_counts() -> TestResult {
    use nano_wal::inspect::{self, CheckpointCheck};
    let dir = tempfile::tempdir()?;
    let mut model = Model::new();
    let wal = Wal::new(dir.path(), options(true))?;
    // A key whose three records are the first of its shard: one group, in the
    // shard's first segment.
    for i in 0..3 {
        let value = Bytes::from(format!("solo {i}"));
        wal.append_entry("solo", value.clone(), false)?;
        model.entry(b"solo".to_vec()).or_default().push(value);
    }
    fill(&wal, &mut model, 0, 2000)?;
    wal.close()?;
    let shard = (0..SHARDS)
        .find(|&s| {
            std::fs::read(shard_dir(dir.path(), s).join("INDEX"))
                .is_ok_and(|b| directory(&b).keys.iter().any(|k| k.1 == b"solo"))
        })
        .ok_or("no checkpoint lists the key")?;
    let index = shard_dir(dir.path(), shard).join("INDEX");
    let good = std::fs::read(&index)?;
    let scan = inspect::scan(dir.path())?;
    let vouched = scan.shards[shard]
        .segments
        .iter()
        .map(|s| s.vouches_through)
        .max()
        .unwrap_or(0);
    assert!(vouched > 0, "sync markers vouch for sealed segments");
    let only_damage = |expected: &[&str]| -> TestResult {
        let scan = inspect::scan(dir.path())?;
        assert_eq!(scan.shards[shard].checkpoint, CheckpointCheck::Damaged);
        let reasons: Vec<String> = scan.all_damage().map(|d| d.reason.clone()).collect();
        assert_eq!(reasons.len(), expected.len(), "{reasons:?}");
        for part in expected {
            assert_eq!(
                reasons.iter().filter(|r| r.contains(part)).count(),
                expected.iter().filter(|e| *e == part).count(),
                "{part}: {reasons:?}"
            );
        }
        Ok(())
    };

    // A flipped bit in the front: the open ignores the checkpoint, the scan says why.
    let mut bytes = good.clone();
    bytes[INDEX_HEADER_LEN + 4] ^= 0x01;
    std::fs::write(&index, &bytes)?;
    let scan = inspect::scan(dir.path())?;
    assert!(scan.is_clean());
    match &scan.shards[shard].checkpoint {
        CheckpointCheck::Ignored { reason } => {
            assert!(reason.contains("checksum mismatch"), "{reason}")
        }
        other => panic!("expected Ignored, got {other:?}"),
    }

    // The sync-marker figure one lower, resealed.
    let mut bytes = good.clone();
    bytes[16..24].copy_from_slice(&(vouched - 1).to_le_bytes());
    reseal(&mut bytes);
    std::fs::write(&index, &bytes)?;
    only_damage(&[&format!("vouch through {vouched}")])?;

    // The key's one group moved from the first segment's slot to the second's.
    let mut bytes = good.clone();
    let dir_of = directory(&bytes);
    let (entry, _, groups, run) = dir_of
        .keys
        .iter()
        .find(|k| k.1 == b"solo")
        .cloned()
        .ok_or("no key")?;
    assert_eq!(groups, 1);
    assert_eq!(bytes[run..run + 4], 0u32.to_le_bytes());
    bytes[run..run + 4].copy_from_slice(&1u32.to_le_bytes());
    let run_len = 8 * (1 + 3);
    let crc = crc32c::crc32c(&bytes[run..run + run_len]);
    bytes[entry + 12..entry + 16].copy_from_slice(&crc.to_le_bytes());
    reseal(&mut bytes);
    std::fs::write(&index, &bytes)?;
    only_damage(&[
        "no record of that key",
        "locations in segment",
        "locations in segment",
    ])?;
    // The open's checks pass (it reads no key's locations): it loads it.
    let wal = Wal::new(dir.path(), options(true))?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, SHARDS as u64);
    assert!(wal.enumerate_records("solo").is_err());
    Ok(())
}

/// Zero bytes after the newest segment's last record, with a checkpoint forged to
/// describe the file as it now is (the open's checks pass): a close never leaves
/// them, so the scan reports the checkpoint, and indeed records the open that loads
/// it writes land after the zeros, where a scanning open finds damage.
#[test]
fn a_scan_refuses_a_checkpoint_over_bytes_after_the_last_record() -> TestResult {
    use nano_wal::inspect::{self, CheckpointCheck, DamageKind};
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir()?;
    let mut model = written_and_closed(dir.path())?;
    let newest = segment_files(dir.path(), 0)?.pop().expect("a segment");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)?
        .write_all(&[0u8; 4096])?;
    let meta = std::fs::metadata(&newest)?;
    // The newest segment's entry is the front's last (offsets of checkpoint
    // version 2).
    let index = shard_dir(dir.path(), 0).join("INDEX");
    let mut bytes = std::fs::read(&index)?;
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let entry = INDEX_HEADER_LEN + INDEX_SEGMENT_ENTRY_LEN * (u64_at(&bytes, 24) as usize - 1);
    for (at, v) in [
        (32, meta.len() as i64),
        (48, meta.mtime()),
        (56, meta.mtime_nsec()),
        (64, meta.ctime()),
        (72, meta.ctime_nsec()),
    ] {
        bytes[entry + at..entry + at + 8].copy_from_slice(&v.to_le_bytes());
    }
    reseal(&mut bytes);
    std::fs::write(&index, &bytes)?;

    let scan = inspect::scan(dir.path())?;
    assert_eq!(scan.shards[0].checkpoint, CheckpointCheck::Damaged);
    let last = scan.shards[0].segments.last().expect("a segment");
    assert_eq!((last.free_len, last.damage.len()), (4096, 0), "{last:?}");
    let damage: Vec<_> = scan.all_damage().collect();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].kind, DamageKind::BadCheckpoint);
    assert_eq!(damage[0].path, index);
    assert!(
        damage[0]
            .reason
            .contains("4096 bytes after its last record"),
        "{}",
        damage[0].reason
    );

    // What the report warns of: the open loads it and writes after the zeros.
    let wal = Wal::new(dir.path(), options(true))?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, SHARDS as u64);
    fill(&wal, &mut model, 2000, 9)?;
    wal.close()?;
    for s in 0..SHARDS {
        std::fs::remove_file(shard_dir(dir.path(), s).join("INDEX"))?;
    }
    let scan = inspect::scan(dir.path())?;
    let damaged: Vec<_> = scan.all_damage().map(|d| d.path.clone()).collect();
    assert!(!damaged.is_empty());
    assert!(
        damaged
            .iter()
            .all(|p| p.starts_with(shard_dir(dir.path(), 0))),
        "{damaged:?}"
    );
    Ok(())
}

/// Damage in a segment that the close's checkpoint describes as it is (the bits
/// flipped while the WAL was open) is the segment's, not the checkpoint's: a scan
/// reports it once, and the open, which loads the checkpoint, fails only that
/// record's key.
#[test]
fn a_scan_blames_segment_damage_on_the_segment() -> TestResult {
    use nano_wal::inspect::{self, CheckpointCheck, DamageKind};
    let dir = tempfile::tempdir()?;
    let mut model = Model::new();
    let wal = Wal::new(dir.path(), options(true))?;
    fill(&wal, &mut model, 0, 2000)?;
    // A bit flipped in the middle of shard 0's first (sealed) segment.
    let sealed = segment_files(dir.path(), 0)?[0].clone();
    let mut bytes = std::fs::read(&sealed)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&sealed, &bytes)?;
    wal.close()?;
    let scan = inspect::scan(dir.path())?;
    let damage: Vec<_> = scan.all_damage().collect();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].kind, DamageKind::Corrupt);
    assert_eq!(damage[0].path, sealed);
    for shard in &scan.shards {
        assert!(
            matches!(shard.checkpoint, CheckpointCheck::Usable { .. }),
            "{:?}",
            shard.checkpoint
        );
    }
    let wal = Wal::new(dir.path(), options(true))?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, SHARDS as u64);
    let failed = model
        .keys()
        .filter(|key| wal.enumerate_records(key).is_err())
        .count();
    assert_eq!(failed, 1, "only the damaged record's key fails");
    Ok(())
}
