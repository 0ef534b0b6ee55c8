//! Tests of `checkpoint_check.rs` against real WALs closed with `index_checkpoint`.

use super::super::scan::tests::{shard_files, TestResult};
use super::super::scan::{scan, CHANGED_WHILE_READ};
use crate::error::WalError;
use crate::inspect::report::{CheckpointCheck, DamageKind};
use crate::io::shard_dir_name;
use std::path::PathBuf;

/// A fresh WAL of two shards, 50 records of 30 bytes over 5 keys, closed with
/// `index_checkpoint` set: each shard has its `INDEX`. Returns its temp dir, its
/// path, and how to reopen it.
fn checkpointed_wal() -> std::result::Result<
    (tempfile::TempDir, PathBuf, impl Fn() -> crate::WalOptions),
    Box<dyn std::error::Error>,
> {
    let options = || {
        crate::WalOptions::default()
            .with_shards(2)
            .with_index_checkpoint(true)
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("wal");
    let wal = crate::Wal::new(&path, options())?;
    for i in 0..50u32 {
        let key = format!("key-{}", i % 5);
        wal.append_entry(key.as_bytes(), bytes::Bytes::from(vec![b'v'; 30]), false)?;
    }
    wal.close()?;
    Ok((dir, path, options))
}

/// A segment that a writer changes while the scan reads it: the scan cannot
/// tell whether the shard's checkpoint describes it, so it says the checkpoint
/// is ignored and why, and checks nothing against it; the other shard's is
/// checked as usual. Once the writer is done, the next scan compares the
/// changed file with the checkpoint, and the open scans that shard.
#[test]
fn a_segment_changed_while_scanned_makes_the_check_give_up_and_say_so() -> TestResult {
    let (_dir, path, options) = checkpointed_wal()?;
    let segment = path
        .join(shard_dir_name(0))
        .join(crate::format::segment_header::segment_file_name(1));
    assert!(segment.is_file(), "{} expected", segment.display());

    let writer = CHANGED_WHILE_READ.arm(segment.clone());
    let first = scan(&path)?;
    drop(writer);
    assert_eq!(
        first.shards[0].checkpoint,
        CheckpointCheck::Ignored {
            reason: format!("{} changed while it was scanned", segment.display())
        }
    );
    assert!(
        first.shards[0].damage.is_empty(),
        "the scan read the segment before the writer's bytes, and checked nothing \
         against the checkpoint: {:?}",
        first.shards[0].damage
    );
    assert!(
        matches!(first.shards[1].checkpoint, CheckpointCheck::Usable { .. }),
        "{:?}",
        first.shards[1].checkpoint
    );

    let rescan = scan(&path)?;
    assert!(
        matches!(&rescan.shards[0].checkpoint, CheckpointCheck::Ignored { reason }
            if reason.contains(&crate::format::segment_header::segment_file_name(1))),
        "the changed file no longer matches the checkpoint: {:?}",
        rescan.shards[0].checkpoint
    );
    let wal = crate::Wal::new(&path, options())?;
    let report = wal.recovery_report();
    assert_eq!(
        report.checkpoints_loaded, 1,
        "shard 1's checkpoint still loads"
    );
    let ignored = &report.checkpoints_ignored;
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert_eq!(
        ignored[0].0,
        path.join(shard_dir_name(0))
            .join(crate::format::checkpoint::CHECKPOINT_FILE)
    );
    wal.close()?;
    Ok(())
}

/// An `INDEX` whose read fails with an I/O error: the scan reports the
/// checkpoint as damaged with the error, the open with `index_checkpoint` set
/// fails with that error and changes nothing, and once reads work again the
/// same open loads the checkpoint and every record is there.
#[test]
fn a_checkpoint_that_cannot_be_read_is_damaged_and_the_open_fails_as_reported() -> TestResult {
    let (_dir, path, options) = checkpointed_wal()?;
    let index = path
        .join(shard_dir_name(1))
        .join(crate::format::checkpoint::CHECKPOINT_FILE);
    let unreadable = crate::testing::hooks::FAILING_CHECKPOINT_READS.arm(index.clone());

    let scan = scan(&path)?;
    assert_eq!(scan.shards[1].checkpoint, CheckpointCheck::Damaged);
    assert!(
        matches!(scan.shards[0].checkpoint, CheckpointCheck::Usable { .. }),
        "the other shard's checkpoint is untouched: {:?}",
        scan.shards[0].checkpoint
    );
    let damage = &scan.shards[1].damage;
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].kind, DamageKind::BadCheckpoint);
    assert_eq!(damage[0].path, index);
    assert!(
        damage[0].reason.contains("injected read error")
            && damage[0]
                .reason
                .contains("an open with index_checkpoint set fails the same way"),
        "{}",
        damage[0].reason
    );

    let before = shard_files(&path, 2)?;
    let refused = match crate::Wal::new(&path, options()) {
        Ok(_) => return Err("the open loaded an unreadable checkpoint".into()),
        Err(e) => e,
    };
    assert!(
        matches!(&refused, WalError::Io { path: p, .. } if *p == index),
        "{refused:?}"
    );
    assert!(
        damage[0].reason.contains(&refused.to_string()),
        "the scan reports the open's error: {} / {refused}",
        damage[0].reason
    );
    assert!(index.exists(), "a refused open leaves the checkpoint");
    assert_eq!(
        shard_files(&path, 2)?,
        before,
        "a refused open changes no file"
    );

    drop(unreadable);
    let wal = crate::Wal::new(&path, options())?;
    let report = wal.recovery_report();
    assert_eq!(
        report.checkpoints_loaded, 2,
        "{:?}",
        report.checkpoints_ignored
    );
    for k in 0..5u32 {
        let key = format!("key-{k}");
        assert_eq!(wal.enumerate_records(key.as_bytes())?.count(), 10, "{key}");
    }
    wal.close()?;
    Ok(())
}
