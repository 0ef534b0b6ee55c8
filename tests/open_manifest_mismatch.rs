//! Guarantee 6, a manifest that does not match its directory: a `MANIFEST` whose
//! shard count is not the number of `shard-NNN` directories is refused with
//! `WalError::ManifestMismatch` naming the directory that is missing or extra, and
//! nothing on disk changes (no shard directory, not even the lock file, is created).
//! The one exception is a creation that was interrupted after the manifest was
//! written: while no shard directory holds anything yet, the missing ones are
//! created and the WAL opens.

mod common;

use bytes::Bytes;
use common::{salt_of, segment_files, shard_dir, TestResult};
use nano_wal::{Wal, WalError, WalOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn options(shards: usize) -> WalOptions {
    WalOptions::default()
        .with_shards(shards)
        .with_max_key_size(16)
        .with_max_record_size(100)
        .with_max_segment_size(64 * 1024)
}

/// The 28 bytes of a version-2 manifest for `shards` shards with salt `salt`,
/// encoded from the layout at the top of `src/manifest.rs`.
fn manifest_bytes(shards: u32, salt: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(28);
    b.extend_from_slice(b"NANOWALM");
    b.extend_from_slice(&2u32.to_le_bytes()); // manifest version
    b.extend_from_slice(&shards.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // routing hash: XXH3-64 seed 0
    b.extend_from_slice(&salt.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// A salt for the manifests these tests write before any WAL exists.
const SALT: u32 = 0x5a17_c0de;

/// Every entry under `dir`, with contents (`<dir>` for directories).
fn tree(dir: &Path) -> Result<BTreeMap<PathBuf, Vec<u8>>, Box<dyn std::error::Error>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if std::fs::symlink_metadata(&p)?.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                stack.push(p);
            } else {
                let data = std::fs::read(&p)?;
                out.insert(p, data);
            }
        }
    }
    Ok(out)
}

const RECORDS: usize = 40;

/// A closed WAL of `shards` shards with `RECORDS` records, every shard holding a
/// segment (checked).
fn wal_with_data(dir: &Path, shards: usize) -> TestResult {
    let wal = Wal::new(dir, options(shards))?;
    for i in 0..RECORDS {
        wal.append_entry(format!("k{}", i % 10), Bytes::from(format!("v{i}")), true)?;
    }
    wal.close()?;
    for shard in 0..shards {
        assert!(
            !segment_files(dir, shard)?.is_empty(),
            "shard {shard} got no segment; pick other keys"
        );
    }
    Ok(())
}

/// Opens `dir` with the manifest's own shard count and checks every record.
fn assert_data_intact(dir: &Path, shards: usize) -> TestResult {
    // `options(1)`: an existing WAL keeps the count in its manifest.
    let wal = Wal::new(dir, options(1))?;
    assert_eq!(wal.stats()?.shards.len(), shards);
    assert_eq!(wal.stats()?.records(), RECORDS as u64);
    for k in 0..10 {
        let want: Vec<Bytes> = (0..RECORDS)
            .filter(|i| i % 10 == k)
            .map(|i| Bytes::from(format!("v{i}")))
            .collect();
        assert_eq!(
            wal.enumerate_records(format!("k{k}"))?.collect::<Vec<_>>(),
            want
        );
    }
    wal.close()?;
    Ok(())
}

/// Expects `ManifestMismatch` naming `path`, and returns its reason.
fn expect_mismatch(result: nano_wal::Result<Wal>, path: &Path) -> Result<String, String> {
    match result {
        Err(WalError::ManifestMismatch { path: p, reason }) => {
            if p == path {
                Ok(reason)
            } else {
                Err(format!("ManifestMismatch names {p:?}, expected {path:?}"))
            }
        }
        Err(other) => Err(format!(
            "expected ManifestMismatch at {path:?}, got {other:?}"
        )),
        Ok(_) => Err(format!("opened; expected ManifestMismatch at {path:?}")),
    }
}

#[test]
fn a_manifest_with_more_shards_than_the_directory_is_refused_and_creates_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    wal_with_data(&dir, 2)?;
    let manifest = dir.join("MANIFEST");
    let good = std::fs::read(&manifest)?;
    // The WAL's own salt: the only field the test cannot know in advance.
    let salt = salt_of(&dir)?;
    assert_eq!(
        good,
        manifest_bytes(2, salt),
        "the test encodes manifests as the WAL does"
    );
    std::fs::write(&manifest, manifest_bytes(4, salt))?;
    // Without its lock file, too: a refused open does not even create that.
    std::fs::remove_file(dir.join("LOCK"))?;
    let before = tree(&dir)?;

    for shards in [1, 2, 4, 8] {
        let reason = expect_mismatch(Wal::new(&dir, options(shards)), &shard_dir(&dir, 2))?;
        assert!(
            reason.contains('4'),
            "the reason gives the manifest's count: {reason}"
        );
    }
    assert!(!shard_dir(&dir, 2).exists());
    assert!(!shard_dir(&dir, 3).exists());
    assert!(
        !dir.join("LOCK").exists(),
        "a refused open created the lock file"
    );
    assert_eq!(tree(&dir)?, before, "a refused open changed the directory");

    std::fs::write(&manifest, &good)?;
    assert_data_intact(&dir, 2)
}

#[test]
fn a_shard_directory_gone_from_a_wal_in_use_is_refused_not_recreated() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    wal_with_data(&dir, 3)?;
    // Shard 1 (in the middle) moved away, then shard 2 (the last) too.
    let aside = tmp.path().join("aside");
    std::fs::create_dir(&aside)?;
    std::fs::rename(shard_dir(&dir, 1), aside.join("shard-001"))?;
    let before = tree(&dir)?;
    expect_mismatch(Wal::new(&dir, options(3)), &shard_dir(&dir, 1))?;
    assert_eq!(tree(&dir)?, before, "a refused open changed the directory");
    std::fs::rename(shard_dir(&dir, 2), aside.join("shard-002"))?;
    let reason = expect_mismatch(Wal::new(&dir, options(3)), &shard_dir(&dir, 1))?;
    assert!(
        reason.contains("shard-000"),
        "names the shard in use: {reason}"
    );
    assert!(!shard_dir(&dir, 1).exists() && !shard_dir(&dir, 2).exists());

    std::fs::rename(aside.join("shard-001"), shard_dir(&dir, 1))?;
    std::fs::rename(aside.join("shard-002"), shard_dir(&dir, 2))?;
    assert_data_intact(&dir, 3)
}

#[test]
fn a_manifest_with_fewer_shards_than_the_directory_is_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    wal_with_data(&dir, 4)?;
    let manifest = dir.join("MANIFEST");
    let good = std::fs::read(&manifest)?;
    let salt = salt_of(&dir)?;
    assert_eq!(
        good,
        manifest_bytes(4, salt),
        "the test encodes manifests as the WAL does"
    );
    for (count, first_extra) in [(1u32, 1usize), (2, 2), (3, 3)] {
        std::fs::write(&manifest, manifest_bytes(count, salt))?;
        let before = tree(&dir)?;
        let reason = expect_mismatch(Wal::new(&dir, options(4)), &shard_dir(&dir, first_extra))?;
        assert!(
            reason.contains(&format!("shard-{first_extra:03}")),
            "{count}: {reason}"
        );
        assert_eq!(
            tree(&dir)?,
            before,
            "{count}: a refused open changed the directory"
        );
    }
    std::fs::write(&manifest, &good)?;
    assert_data_intact(&dir, 4)?;

    // An empty shard directory beyond the count is refused as well: it is not ours.
    let extra = shard_dir(&dir, 4);
    std::fs::create_dir(&extra)?;
    expect_mismatch(Wal::new(&dir, options(4)), &extra)?;
    std::fs::remove_dir(&extra)?;
    assert_data_intact(&dir, 4)
}

#[test]
fn an_interrupted_creation_without_shard_directories_is_completed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    // What a crash right after the manifest's rename leaves: the lock file and the
    // manifest, no shard directory.
    std::fs::create_dir(&dir)?;
    std::fs::write(dir.join("LOCK"), b"")?;
    std::fs::write(dir.join("MANIFEST"), manifest_bytes(4, SALT))?;
    // The options' count is not used: the manifest's is.
    let wal = Wal::new(&dir, options(2))?;
    assert_eq!(wal.stats()?.shards.len(), 4);
    for shard in 0..4 {
        assert!(shard_dir(&dir, shard).is_dir(), "shard {shard} not created");
    }
    assert!(!shard_dir(&dir, 4).exists());
    for i in 0..RECORDS {
        wal.append_entry(format!("k{}", i % 10), Bytes::from(format!("v{i}")), true)?;
    }
    wal.close()?;
    // The manifest is the one the interrupted creation wrote, salt and all.
    assert_eq!(
        std::fs::read(dir.join("MANIFEST"))?,
        manifest_bytes(4, SALT)
    );
    assert_data_intact(&dir, 4)
}

#[test]
fn an_interrupted_creation_with_some_shard_directories_is_completed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    // A crash part way through making the shard directories: 0 and 2 exist (empty),
    // 1 and 3 do not; a stale MANIFEST.tmp is left from a retried creation.
    std::fs::create_dir(&dir)?;
    std::fs::write(dir.join("MANIFEST"), manifest_bytes(4, SALT))?;
    std::fs::write(dir.join("MANIFEST.tmp"), manifest_bytes(4, SALT))?;
    std::fs::create_dir(shard_dir(&dir, 0))?;
    std::fs::create_dir(shard_dir(&dir, 2))?;
    let wal = Wal::new(&dir, options(4))?;
    assert_eq!(wal.stats()?.shards.len(), 4);
    for shard in 0..4 {
        assert!(shard_dir(&dir, shard).is_dir(), "shard {shard} not created");
    }
    assert!(
        !dir.join("MANIFEST.tmp").exists(),
        "the stale temporary stays"
    );
    wal.log_entry("k", Bytes::from("v"))?;
    wal.close()?;
    let wal = Wal::new(&dir, options(4))?;
    assert_eq!(
        wal.enumerate_records("k")?.collect::<Vec<_>>(),
        vec![Bytes::from("v")]
    );
    wal.close()?;
    Ok(())
}

#[test]
fn missing_shard_directories_beside_a_foreign_file_in_a_shard_are_refused() -> TestResult {
    // A shard directory that holds anything at all (here a stray file, no segment)
    // means the WAL was in use: the missing ones are not created.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    std::fs::create_dir(&dir)?;
    std::fs::write(dir.join("MANIFEST"), manifest_bytes(2, SALT))?;
    std::fs::create_dir(shard_dir(&dir, 0))?;
    std::fs::write(shard_dir(&dir, 0).join("notes.txt"), b"hi")?;
    let before = tree(&dir)?;
    expect_mismatch(Wal::new(&dir, options(2)), &shard_dir(&dir, 1))?;
    assert_eq!(tree(&dir)?, before, "a refused open changed the directory");
    assert!(!dir.join("LOCK").exists());
    Ok(())
}

#[test]
fn a_wal_open_elsewhere_is_reported_locked_even_while_its_directory_looks_wrong() -> TestResult {
    // A holder may be changing the directory (a shutdown removes it shard by shard):
    // a second open reports the lock, not the state the directory passes through.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    wal_with_data(&dir, 2)?;
    let holder = Wal::new(&dir, options(2))?;
    let extra = shard_dir(&dir, 2);
    std::fs::create_dir(&extra)?;
    match Wal::new(&dir, options(2)) {
        Err(WalError::Locked { path }) => assert_eq!(path, dir.join("LOCK")),
        other => panic!("expected Locked, got {:?}", other.err()),
    }
    holder.close()?;
    // Once nobody holds it, the mismatch itself is the answer, and the probe of the
    // lock left it free.
    expect_mismatch(Wal::new(&dir, options(2)), &extra)?;
    std::fs::remove_dir(&extra)?;
    assert_data_intact(&dir, 2)
}
