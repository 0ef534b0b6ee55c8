//! Guarantee 6 (bad input): over-long keys and values, bad options, a path that is not
//! a directory, a foreign directory or file, a manifest that does not match: each is
//! a specific error, nothing is written, and the WAL keeps working. Also the edges
//! that are *not* bad input: empty and non-UTF-8 keys, every key type.

mod common;

use bytes::Bytes;
use common::{shard_dir, TestResult};
use nano_wal::{Wal, WalError, WalOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn options() -> WalOptions {
    WalOptions::default()
        .with_shards(2)
        .with_max_key_size(16)
        .with_max_record_size(100)
        .with_max_segment_size(64 * 1024)
}

fn sorted_keys(wal: &Wal) -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error>> {
    let mut keys: Vec<Vec<u8>> = wal.enumerate_keys()?.collect();
    keys.sort();
    Ok(keys)
}

/// Every file under `dir`, with contents.
fn tree(dir: &Path) -> Result<BTreeMap<PathBuf, Vec<u8>>, Box<dyn std::error::Error>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
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

#[test]
fn over_long_key_is_refused_and_nothing_is_written() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options())?;
    wal.log_entry("good", Bytes::from("1"))?;
    let before = wal.stats()?;

    let long_key = vec![b'k'; 17];
    for durable in [false, true] {
        match wal.append_entry(&long_key, Bytes::from("v"), durable) {
            Err(WalError::KeyTooLong { len, max }) => assert_eq!((len, max), (17, 16)),
            other => panic!("expected KeyTooLong, got {other:?}"),
        }
    }
    assert!(matches!(
        wal.log_entry(&long_key, Bytes::from("v")),
        Err(WalError::KeyTooLong { len: 17, max: 16 })
    ));
    let after = wal.stats()?;
    assert_eq!(after.records(), before.records());
    assert_eq!(after.bytes(), before.bytes(), "no bytes were written");
    assert_eq!(sorted_keys(&wal)?, vec![b"good".to_vec()]);
    assert_eq!(wal.enumerate_records(&long_key)?.count(), 0);

    // The limit itself is accepted, and the WAL keeps working.
    let max_key = vec![b'k'; 16];
    wal.log_entry(&max_key, Bytes::from("at the limit"))?;
    wal.append_entry("good", Bytes::from("2"), false)?;
    assert_eq!(
        wal.enumerate_records(&max_key)?.collect::<Vec<_>>(),
        vec![Bytes::from("at the limit")]
    );
    assert_eq!(
        wal.enumerate_records("good")?.collect::<Vec<_>>(),
        vec![Bytes::from("1"), Bytes::from("2")]
    );
    wal.close()?;

    let wal = Wal::new(&dir, options())?;
    assert_eq!(sorted_keys(&wal)?, vec![b"good".to_vec(), max_key]);
    assert_eq!(wal.stats()?.records(), 3);
    wal.close()?;
    Ok(())
}

#[test]
fn over_long_value_is_refused_and_nothing_is_written() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options())?;
    let before = wal.stats()?;

    let big = Bytes::from(vec![7u8; 101]);
    for durable in [false, true] {
        match wal.append_entry("victim", big.clone(), durable) {
            Err(WalError::RecordTooLarge { len, max }) => assert_eq!((len, max), (101, 100)),
            other => panic!("expected RecordTooLarge, got {other:?}"),
        }
    }
    assert!(matches!(
        wal.log_entry("victim", big),
        Err(WalError::RecordTooLarge { .. })
    ));
    let after = wal.stats()?;
    assert_eq!(after.records(), before.records());
    assert_eq!(after.bytes(), before.bytes());
    assert_eq!(wal.enumerate_records("victim")?.count(), 0);
    assert!(
        sorted_keys(&wal)?.is_empty(),
        "a refused record created its key"
    );

    let at_limit = Bytes::from(vec![9u8; 100]);
    wal.log_entry("victim", at_limit.clone())?;
    assert_eq!(
        wal.enumerate_records("victim")?.collect::<Vec<_>>(),
        vec![at_limit.clone()]
    );
    wal.close()?;
    let wal = Wal::new(&dir, options())?;
    assert_eq!(
        wal.enumerate_records("victim")?.collect::<Vec<_>>(),
        vec![at_limit]
    );
    assert_eq!(wal.stats()?.records(), 1);
    wal.close()?;
    Ok(())
}

#[test]
fn a_batch_with_one_bad_entry_writes_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options())?;
    wal.log_entry("existing", Bytes::from("0"))?;
    let before = wal.stats()?;

    // Good entries on several keys (so several shards), the bad one last.
    let mut good: Vec<(Vec<u8>, Bytes)> = (0..20)
        .map(|i| {
            (
                format!("batch-{i}").into_bytes(),
                Bytes::from(format!("v{i}")),
            )
        })
        .collect();
    for (bad, durable) in [
        ((vec![b'x'; 17], Bytes::from("v")), false),
        ((b"batch-bad".to_vec(), Bytes::from(vec![0u8; 101])), true),
    ] {
        let mut entries = good.clone();
        entries.push(bad);
        let result = wal.append_batch(entries, durable);
        assert!(
            matches!(
                result,
                Err(WalError::KeyTooLong { .. } | WalError::RecordTooLarge { .. })
            ),
            "{result:?}"
        );
    }
    // The bad one first, too.
    let mut entries = vec![(vec![b'y'; 40], Bytes::from("v"))];
    entries.append(&mut good.clone());
    assert!(matches!(
        wal.append_batch(entries, false),
        Err(WalError::KeyTooLong { len: 40, max: 16 })
    ));

    let after = wal.stats()?;
    assert_eq!(
        after.records(),
        before.records(),
        "a refused batch wrote records"
    );
    assert_eq!(after.bytes(), before.bytes());
    assert_eq!(sorted_keys(&wal)?, vec![b"existing".to_vec()]);
    for (k, _) in &good {
        assert_eq!(wal.enumerate_records(k)?.count(), 0);
    }

    // The same batch without the bad entry goes through.
    wal.append_batch(good.drain(..5), true)?;
    assert_eq!(wal.stats()?.records(), before.records() + 5);
    assert_eq!(
        wal.enumerate_records("batch-3")?.collect::<Vec<_>>(),
        vec![Bytes::from("v3")]
    );
    wal.close()?;
    let wal = Wal::new(&dir, options())?;
    assert_eq!(wal.stats()?.records(), 6);
    wal.close()?;
    Ok(())
}

#[test]
fn empty_and_non_utf8_keys_round_trip() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options())?;
    let keys: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0xff, 0xfe, 0x00, 0x80],
        vec![0x00],
        vec![0xc3, 0x28], // invalid UTF-8 sequence
        "ключ-✓".as_bytes().to_vec(),
    ];
    for (i, k) in keys.iter().enumerate() {
        wal.append_entry(k, Bytes::from(format!("first {i}")), false)?;
        wal.log_entry(k, Bytes::new())?; // empty value
    }
    let check = |wal: &Wal| -> TestResult {
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                wal.enumerate_records(k)?.collect::<Vec<_>>(),
                vec![Bytes::from(format!("first {i}")), Bytes::new()],
                "key {k:?}"
            );
        }
        let mut want = keys.clone();
        want.sort();
        assert_eq!(sorted_keys(wal)?, want);
        // Any `From<Vec<u8>>` type works for enumerate_keys.
        let mut as_bytes: Vec<Bytes> = wal.enumerate_keys()?.collect();
        as_bytes.sort();
        assert_eq!(
            as_bytes,
            want.iter()
                .map(|k| Bytes::from(k.clone()))
                .collect::<Vec<_>>()
        );
        Ok(())
    };
    check(&wal)?;
    wal.close()?;
    let wal = Wal::new(&dir, options())?;
    check(&wal)?;
    wal.close()?;
    Ok(())
}

#[test]
// The point is to pass a `Vec<u8>` key, which clippy would turn back into a slice.
#[allow(clippy::unnecessary_to_owned)]
fn every_key_type_names_the_same_key() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::new(tmp.path().join("wal"), options())?;
    wal.append_entry("same", Bytes::from("str"), false)?;
    wal.append_entry(String::from("same"), Bytes::from("String"), false)?;
    wal.append_entry(b"same", Bytes::from("byte string"), false)?;
    wal.append_entry(&b"same"[..], Bytes::from("slice"), false)?;
    wal.append_entry(b"same".to_vec(), Bytes::from("Vec"), true)?;
    let want: Vec<Bytes> = ["str", "String", "byte string", "slice", "Vec"]
        .into_iter()
        .map(Bytes::from)
        .collect();
    assert_eq!(wal.enumerate_records("same")?.collect::<Vec<_>>(), want);
    assert_eq!(
        wal.enumerate_records(b"same".to_vec())?.collect::<Vec<_>>(),
        want
    );
    assert_eq!(sorted_keys(&wal)?, vec![b"same".to_vec()]);
    wal.close()?;
    Ok(())
}

#[test]
fn invalid_options_name_the_field_and_create_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cases: Vec<(&str, WalOptions, &str)> = vec![
        ("shards-0", WalOptions::default().with_shards(0), "shards"),
        (
            "shards-too-many",
            WalOptions::default().with_shards(100_000),
            "shards",
        ),
        (
            "segments-0",
            WalOptions::default().with_segments(0),
            "segments",
        ),
        (
            "retention-0",
            WalOptions {
                entry_retention: Duration::ZERO,
                ..WalOptions::default()
            },
            "entry_retention",
        ),
        (
            // 10 ms split into 100 segments: each would be 0.1 ms, under the 1 ms floor.
            "retention-too-short-for-segments",
            WalOptions::default()
                .with_retention(Duration::from_millis(10))
                .with_segments(100),
            "entry_retention",
        ),
        (
            "max-key-0",
            WalOptions::default().with_max_key_size(0),
            "max_key_size",
        ),
        (
            "max-record-0",
            WalOptions::default().with_max_record_size(0),
            "max_record_size",
        ),
        (
            "channel-0",
            WalOptions::default().with_channel_capacity(0),
            "channel_capacity",
        ),
        (
            "batch-0",
            WalOptions::default().with_max_batch(0),
            "max_batch",
        ),
        (
            "segment-too-small",
            WalOptions::default().with_max_segment_size(100),
            "max_segment_size",
        ),
    ];
    for (name, opts, field) in cases {
        let dir = tmp.path().join(name);
        match Wal::new(&dir, opts) {
            Err(WalError::InvalidOptions { option, reason }) => {
                assert_eq!(option, field, "{name}: {reason}");
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("{name}: expected InvalidOptions, got {other:?}"),
            Ok(_) => panic!("{name}: invalid options accepted"),
        }
        assert!(!dir.exists(), "{name}: invalid options created {dir:?}");
    }
    // Nothing at all appeared in the parent.
    assert_eq!(std::fs::read_dir(tmp.path())?.count(), 0);

    // An existing WAL opened with invalid options is left as it was.
    let dir = tmp.path().join("existing");
    let wal = Wal::new(&dir, options())?;
    wal.log_entry("k", Bytes::from("v"))?;
    wal.close()?;
    let before = tree(&dir)?;
    assert!(matches!(
        Wal::new(&dir, options().with_segments(0)),
        Err(WalError::InvalidOptions {
            option: "segments",
            ..
        })
    ));
    assert_eq!(tree(&dir)?, before);
    Ok(())
}

#[test]
fn a_regular_file_is_not_a_directory() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("a-file");
    std::fs::write(&path, b"user data")?;
    match Wal::new(&path, options()) {
        Err(WalError::NotADirectory { path: p }) => assert_eq!(p, path),
        other => panic!("expected NotADirectory, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path)?, b"user data");
    assert_eq!(
        std::fs::read_dir(tmp.path())?.count(),
        1,
        "nothing created next to the file"
    );
    Ok(())
}

#[test]
fn a_foreign_directory_is_refused_and_left_untouched() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("photos");
    std::fs::create_dir_all(dir.join("2024"))?;
    std::fs::write(dir.join("holiday.jpg"), b"\xff\xd8 not really a jpeg")?;
    std::fs::write(dir.join("2024").join("notes.txt"), b"notes")?;
    let before = tree(&dir)?;

    match Wal::new(&dir, options()) {
        Err(WalError::ForeignFile { path }) => {
            assert!(path.starts_with(&dir), "{path:?}");
            assert!(
                before.contains_key(&path),
                "the error names an entry that exists: {path:?}"
            );
        }
        other => panic!("expected ForeignFile, got {other:?}"),
    }
    assert_eq!(tree(&dir)?, before, "the foreign directory was modified");
    assert!(!dir.join("LOCK").exists());
    assert!(!dir.join("MANIFEST").exists());
    Ok(())
}

#[test]
fn a_directory_with_a_single_foreign_file_is_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("one");
    std::fs::create_dir(&dir)?;
    std::fs::write(dir.join("README"), b"hi")?;
    match Wal::new(&dir, options()) {
        Err(WalError::ForeignFile { path }) => assert_eq!(path, dir.join("README")),
        other => panic!("expected ForeignFile, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(&dir)?.count(),
        1,
        "the WAL wrote into a foreign directory"
    );
    Ok(())
}

#[test]
fn an_empty_existing_directory_is_adopted() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::new(tmp.path(), options())?;
    wal.log_entry("k", Bytes::from("v"))?;
    wal.close()?;
    let wal = Wal::new(tmp.path(), options())?;
    assert_eq!(
        wal.enumerate_records("k")?.collect::<Vec<_>>(),
        vec![Bytes::from("v")]
    );
    wal.close()?;
    Ok(())
}

fn wal_with_data(dir: &Path) -> TestResult {
    let wal = Wal::new(dir, options())?;
    for i in 0..20 {
        wal.append_entry(format!("k{}", i % 4), Bytes::from(format!("v{i}")), false)?;
    }
    wal.close()?;
    Ok(())
}

fn assert_data_intact(dir: &Path) -> TestResult {
    let wal = Wal::new(dir, options())?;
    assert_eq!(wal.stats()?.records(), 20);
    let want: Vec<Bytes> = (0..20)
        .filter(|i| i % 4 == 1)
        .map(|i| Bytes::from(format!("v{i}")))
        .collect();
    assert_eq!(wal.enumerate_records("k1")?.collect::<Vec<_>>(), want);
    wal.close()?;
    Ok(())
}

#[test]
fn a_foreign_file_in_a_shard_directory_is_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    wal_with_data(&dir)?;
    let intruder = shard_dir(&dir, 1).join("notes.txt");
    std::fs::write(&intruder, b"who put this here")?;
    let before = tree(&dir)?;
    match Wal::new(&dir, options()) {
        Err(WalError::ForeignFile { path }) => assert_eq!(path, intruder),
        other => panic!("expected ForeignFile, got {other:?}"),
    }
    assert_eq!(tree(&dir)?, before, "a refused open modified the WAL");
    // A file named almost like a segment is foreign too.
    std::fs::remove_file(&intruder)?;
    let lookalike = shard_dir(&dir, 0).join("123.seg");
    std::fs::write(&lookalike, b"")?;
    match Wal::new(&dir, options()) {
        Err(WalError::ForeignFile { path }) => assert_eq!(path, lookalike),
        other => panic!("expected ForeignFile, got {other:?}"),
    }
    std::fs::remove_file(&lookalike)?;
    // Once removed, the WAL opens with its data.
    assert_data_intact(&dir)
}

#[test]
fn a_foreign_file_at_the_top_of_a_wal_is_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    wal_with_data(&dir)?;
    let intruder = dir.join("backup.tar");
    std::fs::write(&intruder, b"tar")?;
    match Wal::new(&dir, options()) {
        Err(WalError::ForeignFile { path }) => assert_eq!(path, intruder),
        other => panic!("expected ForeignFile, got {other:?}"),
    }
    std::fs::remove_file(&intruder)?;
    assert_data_intact(&dir)
}

#[test]
fn a_manifest_that_does_not_match_is_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    wal_with_data(&dir)?;

    // A shard directory beyond the manifest's shard count.
    let extra = shard_dir(&dir, 5);
    std::fs::create_dir(&extra)?;
    assert!(
        matches!(
            Wal::new(&dir, options()),
            Err(WalError::ManifestMismatch { .. })
        ),
        "an extra shard directory was accepted"
    );
    std::fs::remove_dir(&extra)?;

    // A damaged manifest.
    let manifest = dir.join("MANIFEST");
    let good = std::fs::read(&manifest)?;
    let mut bad = good.clone();
    bad[12] ^= 0x01; // the shard count
    std::fs::write(&manifest, &bad)?;
    let result = Wal::new(&dir, options());
    assert!(
        matches!(&result, Err(WalError::Corruption { path, .. } | WalError::ManifestMismatch { path, .. }) if *path == manifest),
        "{result:?}"
    );
    std::fs::write(&manifest, &good)?;

    // A missing manifest with shard directories present: not silently recreated.
    std::fs::remove_file(&manifest)?;
    assert!(
        Wal::new(&dir, options()).is_err(),
        "a WAL without its manifest was opened"
    );
    assert!(
        !manifest.exists(),
        "a new manifest was written over an existing WAL"
    );
    std::fs::write(&manifest, &good)?;

    assert_data_intact(&dir)
}

/// A read-only directory: a read-only tmpfs when running as root (permission bits do
/// not stop root), a 0o555 directory otherwise. `None` (with the reason printed) if
/// neither can be had here.
struct ReadOnlyDir {
    path: std::path::PathBuf,
    mounted: bool,
}

impl ReadOnlyDir {
    fn new(path: std::path::PathBuf) -> Result<Option<ReadOnlyDir>, Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        use std::process::Command;
        std::fs::create_dir(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555))?;
        if std::fs::write(path.join("probe"), b"").is_err() {
            return Ok(Some(ReadOnlyDir {
                path,
                mounted: false,
            }));
        }
        // Root writes through permission bits: mount a read-only tmpfs instead.
        std::fs::remove_file(path.join("probe"))?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("SKIPPED: cannot make a read-only directory here (root, and mount refused)");
            return Ok(None);
        }
        Ok(Some(ReadOnlyDir {
            path,
            mounted: true,
        }))
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg(&self.path)
                .status();
        }
    }
}

#[test]
fn an_unwritable_directory_is_an_io_error_naming_it() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let Some(ro) = ReadOnlyDir::new(tmp.path().join("ro"))? else {
        return Ok(());
    };
    // Adopting the read-only directory itself, and creating a WAL inside it.
    for path in [ro.path.clone(), ro.path.join("wal")] {
        match Wal::new(&path, options()) {
            Err(WalError::Io { path: at, .. }) => {
                assert!(
                    at.starts_with(&ro.path),
                    "{at:?} is not under {:?}",
                    ro.path
                )
            }
            Err(other) => return Err(format!("{path:?}: expected Io, got {other}").into()),
            Ok(_) => return Err(format!("{path:?}: a read-only directory was opened").into()),
        }
        assert_eq!(std::fs::read_dir(&ro.path)?.count(), 0, "nothing written");
    }
    // The failed opens left nothing behind that stops a WAL elsewhere.
    let wal = Wal::new(tmp.path().join("elsewhere"), options())?;
    wal.log_entry("k", Bytes::from("v"))?;
    assert_eq!(wal.enumerate_records("k")?.count(), 1);
    wal.close()?;
    Ok(())
}
