//! Guarantee 7 (failed I/O is never hidden) and guarantee 3 (durability) on a disk
//! that fills up: a 2 MiB tmpfs is mounted for each test, the WAL ingests until the
//! disk is full, and then:
//! - the failing call returns the I/O error (`WalError::Io` with `StorageFull`, or
//!   `Poisoned` carrying it when a pipelined append's write failed first);
//! - the shard is poisoned: every later call on it fails, even once space is free
//!   again (nothing is retried and reported as Ok), and `close()` reports it;
//! - after space is freed (remount bigger, or a ballast file deleted) the WAL reopens
//!   with a per-shard prefix of what was written that includes every record whose
//!   durable append returned Ok, and takes appends again;
//! - with two shards, the other shard keeps working while the full one is poisoned.
//!
//! Mounting needs root: otherwise (or if `mount` is refused, as in an unprivileged
//! container) each test prints why and returns early. The tmpfs is unmounted by a
//! drop guard, also when the test fails.
//!
//! That a failed **fsync** is never retried and reported as Ok cannot be provoked on
//! a real file system here; it is covered with a fault-injecting in-memory storage
//! (`storage::MemStorage`, `faults.fail_syncs` / `faults.fail_writes`) by the unit
//! tests in `src/wal.rs`: `failed_fsync_poisons_the_shard_and_is_never_retried` and
//! `failed_write_fails_every_waiter_of_the_batch`.

mod common;

use bytes::Bytes;
use common::TestResult;
use nano_wal::{Wal, WalError, WalOptions};
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a directory; unmounted on drop.
struct TmpfsMount {
    dir: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (e.g. "2m") on `dir`, or says why it cannot.
    fn new(dir: &Path, size: &str) -> Result<TmpfsMount, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| format!("cannot run `id -u`: {e}"))?;
        let uid = String::from_utf8_lossy(&uid.stdout).trim().to_string();
        if uid != "0" {
            return Err(format!("not root (uid {uid}): cannot mount a tmpfs"));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {dir:?}: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs refused: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(TmpfsMount {
            dir: dir.to_path_buf(),
        })
    }

    fn resize(&self, size: &str) -> TestResult {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()?;
        if !out.status.success() {
            return Err(format!("remount: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it open (a failing test's WAL): detach it lazily.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Mounts, or prints why the test is skipped.
fn mount_or_skip(dir: &Path, size: &str, test: &str) -> Option<TmpfsMount> {
    match TmpfsMount::new(dir, size) {
        Ok(m) => Some(m),
        Err(reason) => {
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
    }
}

fn options(shards: usize) -> WalOptions {
    WalOptions::default()
        .with_shards(shards)
        .with_max_key_size(64)
        .with_max_record_size(4096)
        .with_max_segment_size(256 * 1024)
}

fn value_of(i: usize) -> Bytes {
    Bytes::from(format!("{i:07}|{}", "d".repeat(1000 + i % 97)))
}

fn index_of(value: &[u8]) -> usize {
    std::str::from_utf8(&value[..7])
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("a value written by this test")
}

/// The first error of a full disk: the I/O error itself, or `Poisoned` carrying it.
fn assert_disk_full(e: &WalError) {
    let io = match e {
        WalError::Io { source, .. } => source,
        WalError::Poisoned { cause, .. } => match cause.as_ref() {
            WalError::Io { source, .. } => source,
            other => panic!("poisoned by something else than I/O: {other:?}"),
        },
        other => panic!("expected an I/O error, got {other:?}"),
    };
    assert_eq!(io.kind(), ErrorKind::StorageFull, "{e:?}");
}

fn is_poisoned(r: &Result<(), WalError>, shard: usize) -> bool {
    matches!(r, Err(WalError::Poisoned { shard: s, .. }) if *s == shard)
}

/// Every call that touches shard `shard` through `key` fails with `Poisoned`.
fn assert_poisoned(wal: &Wal, key: &[u8], shard: usize, when: &str) {
    for round in 0..3 {
        let results = [
            (
                "append",
                wal.append_entry(key, Bytes::from_static(b"x"), false),
            ),
            ("log_entry", wal.log_entry(key, Bytes::from_static(b"x"))),
            (
                "append_batch",
                wal.append_batch([(key, Bytes::from_static(b"x"))], true),
            ),
            ("sync", wal.sync()),
            ("read", wal.enumerate_records(key).map(|_| ())),
            ("keys", wal.enumerate_keys::<Vec<u8>>().map(|_| ())),
            ("compact", wal.compact().map(|_| ())),
        ];
        for (what, r) in results {
            assert!(
                is_poisoned(&r, shard),
                "{when}, round {round}: {what} on the poisoned shard gave {r:?}"
            );
        }
    }
}

/// Appends `value_of(i)` under `key` for i = `from`.. until one fails (three in four
/// durable). Returns (indices whose durable append returned Ok, index that failed,
/// its error).
fn ingest_until_full(
    wal: &Wal,
    key: &[u8],
    from: usize,
) -> Result<(Vec<usize>, usize, WalError), Box<dyn std::error::Error>> {
    let mut acked = Vec::new();
    for i in from..from + 100_000 {
        let durable = i % 4 != 3;
        match wal.append_entry(key, value_of(i), durable) {
            Ok(()) if durable => acked.push(i),
            Ok(()) => {}
            Err(e) => return Ok((acked, i, e)),
        }
    }
    Err("the disk never filled up".into())
}

/// The records of `key` are a prefix `from..end` of what was appended under it, with
/// `end` covering every acknowledged durable append and nothing past `failed`.
fn assert_prefix(wal: &Wal, key: &[u8], from: usize, acked: &[usize], failed: usize) -> TestResult {
    let got: Vec<usize> = wal.enumerate_records(key)?.map(|v| index_of(&v)).collect();
    let end = from + got.len();
    assert_eq!(got, (from..end).collect::<Vec<_>>(), "not a prefix");
    if let Some(&last_acked) = acked.last() {
        assert!(
            end > last_acked,
            "acknowledged record {last_acked} lost (kept ..{end})"
        );
    }
    assert!(
        end <= failed + 1,
        "records past the failure: ..{end}, failed at {failed}"
    );
    for v in wal.enumerate_records(key)? {
        assert_eq!(v, value_of(index_of(&v)), "record content");
    }
    Ok(())
}

#[test]
fn one_shard_fills_the_disk_is_poisoned_and_recovers_after_remount() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let Some(mount) = mount_or_skip(&tmp.path().join("mnt"), "2m", "full disk, one shard") else {
        return Ok(());
    };
    let dir = mount.dir.join("wal");
    let key = b"full";
    let (acked, failed, last) = {
        let wal = Wal::new(&dir, options(1))?;
        let (acked, failed, err) = ingest_until_full(&wal, key, 0)?;
        assert_disk_full(&err);
        assert!(
            acked.len() > 500,
            "only {} durable appends fit in 2 MiB",
            acked.len()
        );
        assert_poisoned(&wal, key, 0, "disk full");
        // Space comes back; the shard still refuses: nothing is retried.
        mount.resize("8m")?;
        assert_poisoned(&wal, key, 0, "after remount");
        assert!(wal.stats().is_ok(), "stats still report a poisoned shard");
        let closed = wal.close();
        assert!(
            is_poisoned(&closed, 0) || matches!(&closed, Err(WalError::Io { .. })),
            "close must report the failure: {closed:?}"
        );
        (acked, failed, err)
    };
    eprintln!(
        "disk full after {failed} appends ({} durable acknowledged): {last}",
        acked.len()
    );

    let wal = Wal::new(&dir, options(1))?;
    let report = wal.recovery_report().clone();
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_prefix(&wal, key, 0, &acked, failed)?;
    let kept = wal.enumerate_records(key)?.count();
    assert_eq!(report.records, kept as u64);
    // Appends work again and survive a reopen.
    let more: Vec<usize> = (failed + 1..failed + 21).collect();
    for &i in &more {
        wal.log_entry(key, value_of(i))?;
    }
    wal.close()?;
    // A closed handle still holds its segment files open until dropped.
    drop(wal);
    let wal = Wal::new(&dir, options(1))?;
    assert!(wal.recovery_report().truncated.is_empty());
    let got: Vec<usize> = wal.enumerate_records(key)?.map(|v| index_of(&v)).collect();
    let want: Vec<usize> = (0..kept).chain(more.iter().copied()).collect();
    assert_eq!(got, want);
    wal.close()?;
    drop(wal); // releases the segment files before the guard unmounts
    drop(mount);
    Ok(())
}

/// A key that routes to `shard` of `shards`: XXH3-64 (seed 0) of the key bytes,
/// modulo the shard count (docs/FORMAT.md, "Routing").
fn key_for_shard(shard: u64, shards: u64) -> Vec<u8> {
    (0u32..)
        .map(|i| format!("key-{i}").into_bytes())
        .find(|k| xxhash_rust::xxh3::xxh3_64(k) % shards == shard)
        .expect("some key routes there")
}

#[test]
fn two_shards_the_full_one_is_poisoned_the_other_keeps_working() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let Some(mount) = mount_or_skip(&tmp.path().join("mnt"), "2m", "full disk, two shards") else {
        return Ok(());
    };
    let dir = mount.dir.join("wal");
    let (full, other) = (key_for_shard(0, 2), key_for_shard(1, 2));
    // Ballast: deleting it later frees space while the WAL is open.
    let ballast = mount.dir.join("ballast");
    std::fs::write(&ballast, vec![0xA5u8; 512 * 1024])?;

    let wal = Wal::new(&dir, options(2))?;
    let mut other_written: Vec<usize> = Vec::new();
    for i in 1_000_000..1_000_010 {
        wal.log_entry(&other, value_of(i))?;
        other_written.push(i);
    }
    let (acked, failed, err) = ingest_until_full(&wal, &full, 0)?;
    assert_disk_full(&err);
    assert!(acked.len() > 100, "{} durable appends", acked.len());
    assert_poisoned(&wal, &full, 0, "disk full");

    std::fs::remove_file(&ballast)?;
    // The full shard stays poisoned; the other one takes durable appends and reads.
    assert_poisoned(&wal, &full, 0, "after freeing space");
    for i in 1_000_010..1_000_030 {
        wal.log_entry(&other, value_of(i))?;
        other_written.push(i);
    }
    let got: Vec<usize> = wal
        .enumerate_records(&other)?
        .map(|v| index_of(&v))
        .collect();
    assert_eq!(got, other_written);
    assert!(wal.close().is_err(), "close reports the poisoned shard");
    drop(wal);

    let wal = Wal::new(&dir, options(2))?;
    assert!(wal.recovery_report().skipped.is_empty());
    assert_prefix(&wal, &full, 0, &acked, failed)?;
    let got: Vec<usize> = wal
        .enumerate_records(&other)?
        .map(|v| index_of(&v))
        .collect();
    assert_eq!(got, other_written, "the healthy shard kept everything");
    // Routing is as documented: each key's records are in its shard's directory.
    for (shard, key) in [(0, &full), (1, &other)] {
        let mut found = BTreeMap::new();
        for f in common::segment_files(&dir, shard)? {
            for r in common::records_of_file(&f)? {
                *found.entry(r.key).or_insert(0) += 1;
            }
        }
        assert_eq!(found.keys().collect::<Vec<_>>(), vec![key], "shard {shard}");
    }
    wal.close()?;
    drop(wal); // releases the segment files before the guard unmounts
    drop(mount);
    Ok(())
}
