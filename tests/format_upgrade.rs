//! A WAL written by the previous release (format version 3, manifest version 1:
//! `tests/fixtures/wal-v3`, 300 records over 7 keys in 2 shards, written by
//! nano-wal 0.6.0 before format version 4) opens with every record in order; the
//! open upgrades the manifest to version 2 (a salt), the writer seals the old active
//! segment and writes on in version-4 segments, and the mixed WAL reopens whole.

mod common;

use bytes::Bytes;
use common::{segment_files, TestResult};
use nano_wal::{Wal, WalOptions};
use std::path::Path;

const FIXTURE: &str = "tests/fixtures/wal-v3";

/// The value the fixture's writer gave record `i` (key `key-{i % 7}`).
fn fixture_value(i: usize) -> Bytes {
    Bytes::from(format!("{i:05}|{}", "x".repeat((i * 37) % 300)))
}

fn expected(key: usize, upto: usize) -> Vec<Bytes> {
    (0..upto)
        .filter(|i| i % 7 == key)
        .map(fixture_value)
        .collect()
}

/// Copies the fixture into `to` (tests never change the checked-in files).
fn copy_fixture(to: &Path) -> TestResult {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let snap = common::snapshot(&from)?;
    common::restore(&snap, to)?;
    Ok(())
}

fn options() -> WalOptions {
    WalOptions::default()
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(4096)
}

#[test]
fn a_version_3_wal_opens_whole_and_is_upgraded() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    copy_fixture(&dir)?;
    assert_eq!(
        std::fs::read(dir.join("MANIFEST"))?.len(),
        24,
        "a version-1 manifest"
    );
    let old_files: Vec<_> = (0..2)
        .map(|s| segment_files(&dir, s))
        .collect::<Result<_, _>>()?;
    for files in &old_files {
        for f in files {
            let data = std::fs::read(f)?;
            assert_eq!(u32::from_le_bytes(data[8..12].try_into()?), 3, "{f:?}");
        }
    }
    let wal = Wal::new(&dir, options())?;
    assert!(wal.recovery_report().truncated.is_empty());
    assert!(wal.recovery_report().skipped.is_empty());
    assert_eq!(wal.recovery_report().records, 300);
    for key in 0..7 {
        let got: Vec<Bytes> = wal.enumerate_records(format!("key-{key}"))?.collect();
        assert_eq!(got, expected(key, 300), "key-{key}");
    }
    // The manifest now has a salt (version 2), written before any new segment.
    let manifest = std::fs::read(dir.join("MANIFEST"))?;
    assert_eq!(manifest.len(), 28);
    assert_eq!(u32::from_le_bytes(manifest[8..12].try_into()?), 2);
    // New records go to version-4 segments; the old files keep their bytes.
    for i in 300..340 {
        wal.append_entry(format!("key-{}", i % 7), fixture_value(i), i % 5 == 0)?;
    }
    wal.close()?;
    for (s, files) in old_files.iter().enumerate() {
        let now = segment_files(&dir, s)?;
        let newest_old = files.last().ok_or("old segments")?;
        for f in &now[..files.len()] {
            let data = std::fs::read(f)?;
            assert_eq!(
                u32::from_le_bytes(data[8..12].try_into()?),
                3,
                "{f:?} stays version 3"
            );
        }
        assert!(now.len() > files.len(), "shard {s}: a new segment");
        for f in &now[files.len()..] {
            let data = std::fs::read(f)?;
            assert_eq!(u32::from_le_bytes(data[8..12].try_into()?), 4, "{f:?}");
        }
        // The old active segment was sealed, not appended to in another format.
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
        let name = newest_old.file_name().ok_or("name")?;
        let original = std::fs::read(fixture.join(format!("shard-{s:03}")).join(name))?;
        assert_eq!(
            std::fs::read(newest_old)?,
            original,
            "shard {s}: old active segment unchanged"
        );
    }
    // The mixed WAL reopens whole, with the index checkpoint too.
    for checkpoint in [false, true, true] {
        let wal = Wal::new(&dir, options().with_index_checkpoint(checkpoint))?;
        assert!(wal.recovery_report().truncated.is_empty());
        assert_eq!(wal.recovery_report().records, 340);
        for key in 0..7 {
            let got: Vec<Bytes> = wal.enumerate_records(format!("key-{key}"))?.collect();
            assert_eq!(
                got,
                expected(key, 340),
                "key-{key}, checkpoint {checkpoint}"
            );
        }
        wal.close()?;
    }
    Ok(())
}

#[test]
fn a_refused_version_3_open_leaves_the_manifest_unupgraded() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    copy_fixture(&dir)?;
    // Damage the first record of shard 0's first segment: records follow, so Strict
    // refuses, and the manifest must stay version 1 (a refused open changes nothing).
    let first = segment_files(&dir, 0)?[0].clone();
    let mut data = std::fs::read(&first)?;
    data[40 + 25] ^= 0x40;
    std::fs::write(&first, &data)?;
    let before = common::snapshot(&dir)?;
    match Wal::new(&dir, options()) {
        Err(nano_wal::WalError::Corruption { path, offset, .. }) => {
            assert_eq!((path, offset), (first.clone(), 40));
        }
        Err(e) => panic!("expected Corruption, got {e}"),
        Ok(_) => panic!("Strict opened a damaged version-3 segment"),
    }
    // Nothing changed but the lock file, which every open takes before recovery.
    let mut after = common::snapshot(&dir)?;
    assert_eq!(after.remove(Path::new("LOCK")), Some(Vec::new()));
    assert_eq!(after, before, "nothing changed");
    assert_eq!(std::fs::read(dir.join("MANIFEST"))?.len(), 24);
    Ok(())
}
