//! Guarantee 3 on a clean stop: what was acknowledged is there, byte for byte, after
//! `close` + reopen and after dropping every handle + reopen; `shutdown` deletes
//! everything; after `close` every call on every clone is `WalError::Closed`.

mod common;

use bytes::Bytes;
use common::{noise, TestResult};
use nano_wal::{Wal, WalError, WalOptions};
use std::collections::BTreeMap;
use std::path::Path;

type Model = BTreeMap<Vec<u8>, Vec<Bytes>>;

fn options() -> WalOptions {
    WalOptions::default().with_shards(3)
}

/// Writes records of varied sizes (binary values up to 70 KiB) under 12 keys.
fn fill(wal: &Wal, durable: bool, records: usize) -> Result<Model, Box<dyn std::error::Error>> {
    let mut model = Model::new();
    for i in 0..records {
        let key = format!("key-{}", i % 12).into_bytes();
        let len = match i % 7 {
            0 => 0,
            1 => 70 * 1024,
            n => n * 37,
        };
        let value = Bytes::from(noise(i as u64 + 11, len));
        wal.append_entry(&key, value.clone(), durable)?;
        model.entry(key).or_default().push(value);
    }
    Ok(model)
}

fn assert_matches(wal: &Wal, model: &Model) -> TestResult {
    for (key, values) in model {
        let got: Vec<Bytes> = wal.enumerate_records(key)?.collect();
        assert_eq!(
            got.len(),
            values.len(),
            "record count of {:?}",
            String::from_utf8_lossy(key)
        );
        assert!(
            got == *values,
            "values of {:?} differ",
            String::from_utf8_lossy(key)
        );
    }
    let mut keys: Vec<Vec<u8>> = wal.enumerate_keys()?.collect();
    keys.sort();
    assert_eq!(keys, model.keys().cloned().collect::<Vec<_>>());
    let total: usize = model.values().map(Vec::len).sum();
    assert_eq!(wal.stats()?.records(), total as u64);
    Ok(())
}

fn assert_clean_recovery(wal: &Wal, model: &Model) {
    let report = wal.recovery_report();
    assert!(
        report.truncated.is_empty(),
        "clean stop left a torn tail: {report:?}"
    );
    assert!(
        report.skipped.is_empty(),
        "clean stop left damage: {report:?}"
    );
    assert_eq!(
        report.records,
        model.values().map(Vec::len).sum::<usize>() as u64
    );
}

#[test]
fn durable_records_survive_close_and_reopen() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options())?;
    let model = fill(&wal, true, 200)?;
    assert_matches(&wal, &model)?;
    wal.close()?;

    let wal = Wal::new(&dir, options())?;
    assert_clean_recovery(&wal, &model);
    assert_matches(&wal, &model)?;
    wal.close()?;
    Ok(())
}

#[test]
fn durable_records_survive_drop_without_close() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let model = {
        let wal = Wal::new(&dir, options())?;
        // A clone living on another thread is dropped there; the last drop closes.
        let clone = wal.clone();
        let model = fill(&wal, true, 150)?;
        std::thread::spawn(move || drop(clone))
            .join()
            .map_err(|_| "drop panicked")?;
        model
    };
    // No close call: dropping the last handle released the lock and kept the data.
    let wal = Wal::new(&dir, options())?;
    assert_clean_recovery(&wal, &model);
    assert_matches(&wal, &model)?;
    drop(wal);
    Ok(())
}

#[test]
fn non_durable_records_survive_a_clean_close() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options())?;
    let model = fill(&wal, false, 300)?;
    wal.close()?;
    let wal = Wal::new(&dir, options())?;
    assert_clean_recovery(&wal, &model);
    assert_matches(&wal, &model)?;
    wal.close()?;
    Ok(())
}

#[test]
fn non_durable_records_survive_a_drop() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let model = {
        let wal = Wal::new(&dir, options())?;
        fill(&wal, false, 300)?
    };
    let wal = Wal::new(&dir, options())?;
    assert_matches(&wal, &model)?;
    wal.close()?;
    Ok(())
}

#[test]
fn several_reopen_cycles_accumulate() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let mut model = Model::new();
    for cycle in 0..4 {
        let wal = Wal::new(&dir, options())?;
        assert_matches(&wal, &model)?;
        for i in 0..25 {
            let key = format!("cycle-key-{}", i % 4).into_bytes();
            let value = Bytes::from(format!("cycle {cycle} record {i}"));
            wal.append_entry(&key, value.clone(), i % 3 == 0)?;
            model.entry(key).or_default().push(value);
        }
        wal.close()?;
    }
    let wal = Wal::new(&dir, options())?;
    assert_matches(&wal, &model)?;
    wal.close()?;
    Ok(())
}

#[test]
fn reopen_keeps_the_stored_shard_count() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, WalOptions::default().with_shards(3))?;
    let model = fill(&wal, false, 60)?;
    wal.close()?;
    // A different `shards` option must not split keys across shards.
    let wal = Wal::new(&dir, WalOptions::default().with_shards(5))?;
    assert_eq!(wal.shard_count(), 3);
    assert_matches(&wal, &model)?;
    wal.close()?;
    Ok(())
}

fn dir_is_gone_or_empty(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[test]
fn shutdown_deletes_everything_and_reopen_is_empty() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options())?;
    fill(&wal, true, 50)?;
    let other = wal.clone();
    wal.shutdown()?;
    assert!(dir_is_gone_or_empty(&dir), "shutdown left files in {dir:?}");
    assert!(matches!(
        other.append_entry("k", Bytes::from("v"), false),
        Err(WalError::Closed)
    ));
    assert!(matches!(other.shutdown(), Err(WalError::Closed)));

    let wal = Wal::new(&dir, options())?;
    assert_eq!(wal.enumerate_keys::<Vec<u8>>()?.count(), 0);
    assert_eq!(wal.enumerate_records("key-0")?.count(), 0);
    assert_eq!(wal.stats()?.records(), 0);
    assert_eq!(wal.recovery_report().records, 0);
    wal.shutdown()?;
    assert!(dir_is_gone_or_empty(&dir));
    Ok(())
}

#[test]
fn shutdown_keeps_files_the_wal_does_not_own_outside_its_dir() -> TestResult {
    // The WAL directory is inside a directory holding a user's file: shutdown removes
    // the WAL directory only.
    let tmp = tempfile::tempdir()?;
    std::fs::write(tmp.path().join("user-file.txt"), b"keep me")?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options())?;
    wal.log_entry("k", Bytes::from("v"))?;
    wal.shutdown()?;
    assert!(dir_is_gone_or_empty(&dir));
    assert_eq!(std::fs::read(tmp.path().join("user-file.txt"))?, b"keep me");
    Ok(())
}

/// Every call on every clone after close returns Closed; close again is Ok.
fn assert_all_closed(wal: &Wal) {
    let what = |r: &str, e: &nano_wal::Result<()>| {
        assert!(
            matches!(e, Err(WalError::Closed)),
            "{r} after close returned {e:?}"
        );
    };
    what(
        "append_entry",
        &wal.append_entry("k", Bytes::from("v"), false),
    );
    what(
        "append_entry(durable)",
        &wal.append_entry("k", Bytes::from("v"), true),
    );
    what("log_entry", &wal.log_entry("k", Bytes::from("v")));
    what(
        "append_batch",
        &wal.append_batch([("k", Bytes::from("v"))], false),
    );
    what("enumerate_records", &wal.enumerate_records("k").map(|_| ()));
    what(
        "enumerate_keys",
        &wal.enumerate_keys::<Vec<u8>>().map(|_| ()),
    );
    what("compact", &wal.compact().map(|_| ()));
    what("sync", &wal.sync());
    what("stats", &wal.stats().map(|_| ()));
    assert!(wal.close().is_ok(), "close is idempotent");
    what("shutdown", &wal.shutdown());
    assert!(wal.close().is_ok(), "close after a refused shutdown");
}

#[test]
fn after_close_every_call_on_every_clone_is_closed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options())?;
    let clones: Vec<Wal> = (0..3).map(|_| wal.clone()).collect();
    wal.log_entry("k", Bytes::from("before close"))?;
    clones[1].close()?;
    assert_all_closed(&wal);
    for c in &clones {
        assert_all_closed(c);
    }
    // A clone made after close is closed too.
    assert_all_closed(&wal.clone());
    // The refused shutdown deleted nothing.
    drop(clones);
    drop(wal);
    let wal = Wal::new(&dir, options())?;
    assert_eq!(
        wal.enumerate_records("k")?.collect::<Vec<_>>(),
        vec![Bytes::from("before close")]
    );
    wal.close()?;
    Ok(())
}

#[test]
fn clones_on_other_threads_see_closed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::new(tmp.path().join("wal"), options())?;
    let clone = wal.clone();
    wal.close()?;
    std::thread::spawn(move || assert_all_closed(&clone))
        .join()
        .map_err(|_| "a call on a closed clone did not return Closed")?;
    Ok(())
}

#[test]
fn large_values_survive_byte_for_byte() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let options = WalOptions::default()
        .with_shards(2)
        .with_max_record_size(8 * 1024 * 1024);
    let wal = Wal::new(&dir, options.clone())?;
    let big = Bytes::from(noise(99, 8 * 1024 * 1024)); // exactly the limit
    let mid = Bytes::from(noise(98, 5 * 1024 * 1024 + 3));
    wal.append_entry("big", big.clone(), false)?;
    wal.append_entry("big", Bytes::from_static(b"small"), false)?;
    wal.log_entry("big", mid.clone())?;
    let want = vec![big, Bytes::from_static(b"small"), mid];
    assert!(wal.enumerate_records("big")?.collect::<Vec<_>>() == want);
    wal.close()?;
    let wal = Wal::new(&dir, options)?;
    assert!(
        wal.enumerate_records("big")?.collect::<Vec<_>>() == want,
        "large values differ after reopen"
    );
    wal.close()?;
    Ok(())
}

/// Records recovered from the newest segment may exist only in the page cache (a
/// killed process wrote them and never synced). `sync()` in the next process must
/// make them durable: it issues an fdatasync even though this process wrote nothing.
#[test]
fn sync_after_reopen_covers_recovered_records() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let options = WalOptions::default().with_shards(1);
    let wal = Wal::new(&dir, options.clone())?;
    for i in 0..100 {
        wal.append_entry("k", Bytes::from(format!("v{i}")), false)?;
    }
    drop(wal);
    let wal = Wal::new(&dir, options)?;
    assert_eq!(wal.enumerate_records("k")?.count(), 100);
    let before = wal.stats()?.fsyncs();
    wal.sync()?;
    assert_eq!(
        wal.stats()?.fsyncs(),
        before + 1,
        "sync() synced the recovered segment"
    );
    wal.close()?;
    Ok(())
}

/// The open file descriptors of this process that name a file under `dir`
/// (`/proc/self/fd`; the links of deleted files end in " (deleted)").
fn fds_under(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let dir = dir.to_string_lossy().into_owned();
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with(&dir))
        .collect()
}

/// A closed handle that is kept alive holds no segment file open (after `shutdown`,
/// no deleted file's space stays pinned), while an open one does.
#[test]
fn a_closed_handle_kept_alive_holds_no_segment_files() -> TestResult {
    for remove in [false, true] {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("wal");
        let wal = Wal::new(&dir, options())?;
        fill(&wal, true, 50)?;
        let kept = wal.clone();
        let open = fds_under(&dir);
        assert!(
            open.iter().any(|f| f.contains(".seg")),
            "an open WAL should hold its segments: {open:?}"
        );
        if remove {
            wal.shutdown()?;
        } else {
            wal.close()?;
        }
        drop(wal);
        let left = fds_under(&dir);
        assert!(left.is_empty(), "closed handle still holds {left:?}");
        assert!(matches!(
            kept.enumerate_records("key-0"),
            Err(WalError::Closed)
        ));
        assert!(matches!(
            kept.enumerate_keys::<Vec<u8>>(),
            Err(WalError::Closed)
        ));
    }
    Ok(())
}
