//! Guarantee 5 (exclusion): a second open of a WAL directory, from this process or
//! from another one, fails with `WalError::Locked` while the first is open, leaves the
//! open WAL undisturbed, and succeeds once the first is closed, dropped, or its
//! process is gone (killed with SIGKILL: the kernel releases the lock, and every
//! durable record is still there).
//!
//! The other process is this test binary itself, re-run with `HOLDER_DIR_ENV` set so
//! that only the helper test `lock_holder_child` runs; without the variable that
//! helper returns at once.

mod common;

use bytes::Bytes;
use common::TestResult;
use nano_wal::{Wal, WalError, WalOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOLDER_DIR_ENV: &str = "NANO_WAL_TEST_LOCK_HOLDER_DIR";
const HOLDER_RECORDS: usize = 40;

fn options() -> WalOptions {
    WalOptions::default().with_shards(2)
}

fn assert_locked(result: nano_wal::Result<Wal>, dir: &Path) {
    match result {
        Err(WalError::Locked { path }) => assert_eq!(path, dir.join("LOCK")),
        Err(other) => panic!("expected Locked, got {other:?}"),
        Ok(_) => panic!("a second open of {dir:?} succeeded while the first holds it"),
    }
}

#[test]
fn second_open_in_the_same_process_is_locked_until_close() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let first = Wal::new(&dir, options())?;
    first.log_entry("k", Bytes::from("one"))?;

    assert_locked(Wal::new(&dir, options()), &dir);
    // Whatever options the second open asks for.
    assert_locked(Wal::new(&dir, options().with_shards(7)), &dir);
    // From another thread, too.
    let d = dir.clone();
    let from_thread = std::thread::spawn(move || Wal::new(&d, options()).map(|_| ()))
        .join()
        .map_err(|_| "thread panicked")?;
    assert!(
        matches!(from_thread, Err(WalError::Locked { .. })),
        "{from_thread:?}"
    );

    // The refused opens did not disturb the open WAL.
    first.log_entry("k", Bytes::from("two"))?;
    assert_eq!(
        first.enumerate_records("k")?.collect::<Vec<_>>(),
        vec![Bytes::from("one"), Bytes::from("two")]
    );
    // A clone kept alive does not keep the lock once the WAL is closed.
    let clone = first.clone();
    first.close()?;

    let second = Wal::new(&dir, options())?;
    assert_eq!(
        second.enumerate_records("k")?.collect::<Vec<_>>(),
        vec![Bytes::from("one"), Bytes::from("two")]
    );
    assert_locked(Wal::new(&dir, options()), &dir);
    drop(clone);
    second.close()?;
    Ok(())
}

#[test]
fn dropping_the_last_handle_releases_the_lock() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let first = Wal::new(&dir, options())?;
    let clone = first.clone();
    drop(first);
    // A clone is still alive: the WAL is still open.
    assert_locked(Wal::new(&dir, options()), &dir);
    drop(clone);
    let second = Wal::new(&dir, options())?;
    second.close()?;
    Ok(())
}

#[test]
fn shutdown_releases_the_lock() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let first = Wal::new(&dir, options())?;
    first.shutdown()?;
    let second = Wal::new(&dir, options())?;
    second.close()?;
    Ok(())
}

// ---- the other process ----

fn ready_file(dir: &Path) -> PathBuf {
    dir.with_extension("ready")
}

fn release_file(dir: &Path) -> PathBuf {
    dir.with_extension("release")
}

/// Helper run in the child process: opens the WAL, logs records durably, announces it
/// holds the lock, and waits (at most 60 s) for the parent's release file.
#[test]
fn lock_holder_child() -> TestResult {
    let Some(dir) = std::env::var_os(HOLDER_DIR_ENV) else {
        return Ok(()); // not the child: nothing to do
    };
    let dir = PathBuf::from(dir);
    let wal = Wal::new(&dir, options())?;
    for i in 0..HOLDER_RECORDS {
        wal.log_entry(
            format!("child-{}", i % 4),
            Bytes::from(format!("from child {i}")),
        )?;
    }
    std::fs::write(ready_file(&dir), b"ready")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !release_file(&dir).exists() {
        if Instant::now() > deadline {
            return Err("the parent never released the child".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    wal.close()?;
    Ok(())
}

fn spawn_holder(dir: &Path) -> Result<Child, Box<dyn std::error::Error>> {
    let child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "lock_holder_child",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(HOLDER_DIR_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(child)
}

/// Waits until the child announces it holds the lock.
fn wait_ready(child: &mut Child, dir: &Path) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready_file(dir).exists() {
        if let Some(status) = child.try_wait()? {
            return Err(format!("the lock holder exited early: {status}").into());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the lock holder never became ready".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn assert_child_records(wal: &Wal) -> TestResult {
    for k in 0..4 {
        let want: Vec<Bytes> = (0..HOLDER_RECORDS)
            .filter(|i| i % 4 == k)
            .map(|i| Bytes::from(format!("from child {i}")))
            .collect();
        assert_eq!(
            wal.enumerate_records(format!("child-{k}"))?
                .collect::<Vec<_>>(),
            want
        );
    }
    Ok(())
}

#[test]
fn second_open_from_another_process_is_locked() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let mut child = spawn_holder(&dir)?;
    wait_ready(&mut child, &dir)?;

    let attempt = Wal::new(&dir, options());
    let locked = matches!(&attempt, Err(WalError::Locked { .. }));
    drop(attempt);
    // Release the child whatever happened, so it never outlives the test.
    std::fs::write(release_file(&dir), b"go")?;
    let status = child.wait()?;
    assert!(
        locked,
        "an open while another process holds the WAL was not refused with Locked"
    );
    assert!(status.success(), "the lock holder failed: {status}");

    let wal = Wal::new(&dir, options())?;
    assert_child_records(&wal)?;
    wal.close()?;
    Ok(())
}

#[test]
fn lock_is_released_when_the_holder_is_killed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let mut child = spawn_holder(&dir)?;
    wait_ready(&mut child, &dir)?;
    let attempt = Wal::new(&dir, options());
    let locked = matches!(&attempt, Err(WalError::Locked { .. }));
    drop(attempt);
    // kill -9: no close, no drop, no final sync in the child.
    child.kill()?;
    let status = child.wait()?;
    assert!(
        locked,
        "an open while another process holds the WAL was not refused with Locked"
    );
    assert!(!status.success());

    let wal = Wal::new(&dir, options())?;
    // Everything the child logged durably survived the kill.
    assert_child_records(&wal)?;
    wal.log_entry("after", Bytes::from("kill"))?;
    wal.close()?;
    Ok(())
}

/// Closing releases the lock even while another thread of the process is spawning
/// processes. A spawned child holds a copy of every descriptor until it execs, and an
/// flock lives until its last descriptor is closed, so a close that only dropped its
/// descriptor could leave the directory locked for a moment, and an immediate reopen
/// failed with `Locked` (seen as a flaky `bad_input` test while another test ran
/// `mount`). Close unlocks explicitly.
#[test]
fn close_then_reopen_while_the_process_spawns_children() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut spawned = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut child) = Command::new("true").stdin(Stdio::null()).spawn() {
                    let _ = child.wait();
                    spawned += 1;
                }
            }
            spawned
        })
    };
    let mut outcome = Ok(());
    for cycle in 0..300 {
        let result = Wal::new(&dir, options()).and_then(|wal| {
            wal.append_entry("k", Bytes::from(format!("v{cycle}")), false)?;
            wal.close()
        });
        if let Err(e) = result {
            outcome = Err(format!("cycle {cycle}: {e}"));
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let spawned = spawner.join().map_err(|_| "spawner panicked")?;
    assert!(spawned > 0, "no child was spawned during the test");
    outcome?;
    let wal = Wal::new(&dir, options())?;
    assert_eq!(wal.enumerate_records("k")?.count(), 300);
    Ok(())
}
