//! The names a WAL owns (`LOCK`, `MANIFEST`, `MANIFEST.tmp`, `shard-NNN/`, segments,
//! `INDEX`, `INDEX.tmp`) are regular files and directories of the WAL. A symlink
//! under one of them (to a file outside the WAL, or dangling), a FIFO or a socket is
//! refused as `WalError::ForeignFile` naming it: never followed, never waited on,
//! nothing created outside the WAL, the target untouched. And what the WAL creates
//! is private: files 0600, directories 0700, unless `WalOptions::file_mode` widens it.

mod common;

use bytes::Bytes;
use common::{segment_files, shard_dir, TestResult};
use nano_wal::{Wal, WalError, WalOptions};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

fn options() -> WalOptions {
    WalOptions::default()
        .with_shards(2)
        .with_max_key_size(16)
        .with_max_record_size(100)
        .with_max_segment_size(64 * 1024)
}

const RECORDS: usize = 20;

/// A closed 2-shard WAL with `RECORDS` records in both shards.
fn wal_with_data(dir: &Path, options: WalOptions) -> TestResult {
    let wal = Wal::new(dir, options)?;
    for i in 0..RECORDS {
        wal.append_entry(format!("k{}", i % 4), Bytes::from(format!("v{i}")), true)?;
    }
    wal.close()?;
    for shard in 0..2 {
        assert!(
            !segment_files(dir, shard)?.is_empty(),
            "shard {shard} is empty"
        );
    }
    Ok(())
}

fn assert_data_intact(dir: &Path, options: WalOptions) -> TestResult {
    let wal = Wal::new(dir, options)?;
    assert_eq!(wal.stats()?.records(), RECORDS as u64);
    wal.close()?;
    Ok(())
}

/// Runs `Wal::new(dir, options)` on a thread and waits at most 20 s for it: an open
/// that blocks on a FIFO fails the test instead of hanging it.
fn open_with_timeout(dir: &Path, options: WalOptions) -> Result<nano_wal::Result<Wal>, String> {
    let (tx, rx) = mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(Wal::new(&dir, options));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .map_err(|_| "the open blocked (on a FIFO?) for 20 s".to_string())
}

fn expect_foreign(result: nano_wal::Result<Wal>, path: &Path) -> TestResult {
    match result {
        Err(WalError::ForeignFile { path: p }) if p == path => Ok(()),
        Err(other) => Err(format!("expected ForeignFile at {path:?}, got {other:?}").into()),
        Ok(_) => Err(format!("opened; expected ForeignFile at {path:?}").into()),
    }
}

fn mkfifo(path: &Path) -> TestResult {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// A file outside the WAL, with known contents, and a path next to it that must
/// never come into existence.
struct Outside {
    file: PathBuf,
    absent: PathBuf,
}

const KEEP: &[u8] = b"the user's own file";

fn outside(tmp: &Path) -> Result<Outside, Box<dyn std::error::Error>> {
    let d = tmp.join("outside");
    std::fs::create_dir(&d)?;
    let file = d.join("precious");
    std::fs::write(&file, KEEP)?;
    Ok(Outside {
        file,
        absent: d.join("created-by-the-wal"),
    })
}

impl Outside {
    fn assert_untouched(&self) -> TestResult {
        assert_eq!(
            std::fs::read(&self.file)?,
            KEEP,
            "the symlink's target changed"
        );
        assert!(
            std::fs::symlink_metadata(&self.absent).is_err(),
            "the WAL created {:?} through a symlink",
            self.absent
        );
        Ok(())
    }
}

/// Where `name` is kept while something else stands in for it: outside the WAL
/// (`tmp`), so that it is not a foreign file of the WAL itself.
fn aside(tmp: &Path, name: &Path) -> PathBuf {
    let file = name.file_name().map(|n| n.to_string_lossy().into_owned());
    tmp.join(format!("aside-{}", file.unwrap_or_default()))
}

/// Replaces `name` with a symlink to `target`, runs `check`, and puts `name` back.
fn with_symlink(
    tmp: &Path,
    name: &Path,
    target: &Path,
    check: impl FnOnce() -> TestResult,
) -> TestResult {
    let aside = aside(tmp, name);
    let had = std::fs::symlink_metadata(name).is_ok();
    if had {
        std::fs::rename(name, &aside)?;
    }
    symlink(target, name)?;
    let result = check();
    std::fs::remove_file(name)?;
    if had {
        std::fs::rename(&aside, name)?;
    }
    result
}

#[test]
fn a_lock_symlink_is_refused_and_nothing_is_created_outside() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = outside(tmp.path())?;
    // The case: a new WAL directory whose LOCK points outside it, dangling.
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir(&fresh)?;
    symlink(&out.absent, fresh.join("LOCK"))?;
    expect_foreign(Wal::new(&fresh, options()), &fresh.join("LOCK"))?;
    assert!(!fresh.join("MANIFEST").exists(), "a manifest was written");
    out.assert_untouched()?;

    // An existing WAL, LOCK pointing at a file outside, and dangling.
    let dir = tmp.path().join("wal");
    wal_with_data(&dir, options())?;
    let lock = dir.join("LOCK");
    for target in [&out.file, &out.absent] {
        with_symlink(tmp.path(), &lock, target, || {
            expect_foreign(Wal::new(&dir, options()), &lock)?;
            out.assert_untouched()
        })?;
    }
    assert_data_intact(&dir, options())
}

#[test]
fn a_manifest_symlink_is_refused_even_to_a_valid_manifest() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = outside(tmp.path())?;
    let dir = tmp.path().join("wal");
    wal_with_data(&dir, options())?;
    let manifest = dir.join("MANIFEST");
    // A copy of the WAL's own manifest outside: still not the WAL's file.
    let copy = tmp.path().join("outside").join("MANIFEST-copy");
    std::fs::copy(&manifest, &copy)?;
    with_symlink(tmp.path(), &manifest, &copy, || {
        expect_foreign(Wal::new(&dir, options()), &manifest)
    })?;
    // Dangling: not mistaken for a WAL without a manifest, nothing written through it.
    with_symlink(tmp.path(), &manifest, &out.absent, || {
        expect_foreign(Wal::new(&dir, options()), &manifest)?;
        out.assert_untouched()
    })?;
    assert_data_intact(&dir, options())
}

#[test]
fn a_manifest_tmp_symlink_is_refused_and_its_target_not_truncated() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = outside(tmp.path())?;
    for (name, target) in [("to-file", &out.file), ("dangling", &out.absent)] {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir)?;
        symlink(target, dir.join("MANIFEST.tmp"))?;
        expect_foreign(Wal::new(&dir, options()), &dir.join("MANIFEST.tmp"))?;
        assert!(
            !dir.join("MANIFEST").exists(),
            "{name}: a manifest was written"
        );
        out.assert_untouched()?;
    }
    Ok(())
}

#[test]
fn a_shard_directory_symlink_is_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = outside(tmp.path())?;
    let dir = tmp.path().join("wal");
    wal_with_data(&dir, options())?;
    let sdir = shard_dir(&dir, 1);
    // The real shard directory moved outside and linked back: its files are intact,
    // and still refused, because the WAL's directory does not hold them.
    let moved = tmp.path().join("outside").join("shard-001");
    std::fs::rename(&sdir, &moved)?;
    let listing = |d: &Path| -> std::io::Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        v.sort();
        Ok(v)
    };
    let before = listing(&moved)?;
    symlink(&moved, &sdir)?;
    expect_foreign(Wal::new(&dir, options()), &sdir)?;
    assert_eq!(listing(&moved)?, before, "files were created in the target");
    std::fs::remove_file(&sdir)?;
    // Dangling: refused, not replaced by a new directory.
    symlink(&out.absent, &sdir)?;
    expect_foreign(Wal::new(&dir, options()), &sdir)?;
    assert!(std::fs::symlink_metadata(&sdir)?.file_type().is_symlink());
    out.assert_untouched()?;
    std::fs::remove_file(&sdir)?;
    std::fs::rename(&moved, &sdir)?;
    assert_data_intact(&dir, options())
}

#[test]
fn a_segment_symlink_is_refused_and_its_target_untouched() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = outside(tmp.path())?;
    let dir = tmp.path().join("wal");
    wal_with_data(&dir, options())?;
    let segment = segment_files(&dir, 0)?
        .pop()
        .ok_or("shard 0 has no segment")?;
    let copy = tmp.path().join("outside").join("segment-copy");
    std::fs::copy(&segment, &copy)?;
    let bytes = std::fs::read(&copy)?;
    for target in [&copy, &out.absent] {
        with_symlink(tmp.path(), &segment, target, || {
            expect_foreign(Wal::new(&dir, options()), &segment)?;
            out.assert_untouched()
        })?;
    }
    assert_eq!(
        std::fs::read(&copy)?,
        bytes,
        "the segment's copy was changed"
    );
    assert_data_intact(&dir, options())
}

#[test]
fn a_symlink_under_the_name_of_the_next_segment_is_not_written_through() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = outside(tmp.path())?;
    let dir = tmp.path().join("wal");
    wal_with_data(&dir, options())?;
    // Small segments, so that appends make the shard create new ones.
    let small = options().with_max_segment_size(1024);
    let wal = Wal::new(&dir, small.clone())?;
    let newest = segment_files(&dir, 0)?
        .iter()
        .filter_map(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
        .max()
        .ok_or("shard 0 has no segment")?;
    let links: Vec<PathBuf> = (newest + 1..newest + 4)
        .map(|s| shard_dir(&dir, 0).join(format!("{s:020}.seg")))
        .collect();
    for link in &links {
        symlink(&out.absent, link)?;
    }
    let mut refused = None;
    for i in 0..200 {
        if let Err(e) = wal.append_entry(format!("k{}", i % 4), Bytes::from(vec![b'x'; 90]), true) {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.ok_or("every append succeeded over a symlinked segment name")?;
    assert!(
        links
            .iter()
            .any(|l| refused.to_string().contains(&*l.to_string_lossy())),
        "the error names the symlink: {refused}"
    );
    assert!(refused.to_string().contains("foreign"), "{refused}");
    let _ = wal.close();
    out.assert_untouched()?;
    for link in &links {
        assert!(std::fs::symlink_metadata(link)?.file_type().is_symlink());
        std::fs::remove_file(link)?;
    }
    let wal = Wal::new(&dir, small)?;
    assert!(wal.stats()?.records() >= RECORDS as u64);
    wal.close()?;
    Ok(())
}

#[test]
fn an_index_checkpoint_symlink_is_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = outside(tmp.path())?;
    let dir = tmp.path().join("wal");
    let checkpointed = options().with_index_checkpoint(true);
    wal_with_data(&dir, checkpointed.clone())?;
    let index = shard_dir(&dir, 0).join("INDEX");
    assert!(index.is_file(), "the close wrote no checkpoint");
    let copy = tmp.path().join("outside").join("INDEX-copy");
    std::fs::copy(&index, &copy)?;
    let bytes = std::fs::read(&copy)?;
    for target in [&copy, &out.absent] {
        with_symlink(tmp.path(), &index, target, || {
            expect_foreign(Wal::new(&dir, checkpointed.clone()), &index)?;
            out.assert_untouched()
        })?;
    }
    assert_eq!(
        std::fs::read(&copy)?,
        bytes,
        "the checkpoint's copy was changed"
    );
    // INDEX.tmp too, even with checkpoints off.
    let index_tmp = shard_dir(&dir, 1).join("INDEX.tmp");
    with_symlink(tmp.path(), &index_tmp, &out.file, || {
        expect_foreign(Wal::new(&dir, options()), &index_tmp)?;
        out.assert_untouched()
    })?;
    assert_data_intact(&dir, checkpointed)
}

#[test]
fn a_fifo_or_socket_under_an_owned_name_is_refused_without_hanging() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    wal_with_data(&dir, options())?;
    let segment = segment_files(&dir, 1)?
        .pop()
        .ok_or("shard 1 has no segment")?;
    let names = [
        dir.join("LOCK"),
        dir.join("MANIFEST"),
        segment,
        shard_dir(&dir, 0).join("INDEX"),
    ];
    for name in &names {
        let aside = aside(tmp.path(), name);
        let had = name.exists();
        if had {
            std::fs::rename(name, &aside)?;
        }
        mkfifo(name)?;
        expect_foreign(open_with_timeout(&dir, options())?, name)?;
        std::fs::remove_file(name)?;
        let listener = std::os::unix::net::UnixListener::bind(name)?;
        expect_foreign(open_with_timeout(&dir, options())?, name)?;
        drop(listener);
        std::fs::remove_file(name)?;
        if had {
            std::fs::rename(&aside, name)?;
        }
    }
    // A new WAL directory holding a FIFO as its MANIFEST.tmp or LOCK.
    for name in ["MANIFEST.tmp", "LOCK"] {
        let fresh = tmp.path().join(format!("fresh-{name}"));
        std::fs::create_dir(&fresh)?;
        mkfifo(&fresh.join(name))?;
        expect_foreign(open_with_timeout(&fresh, options())?, &fresh.join(name))?;
        assert!(!fresh.join("MANIFEST").exists());
    }
    assert_data_intact(&dir, options())
}

/// Sets the umask the modes below are computed against (the tests of this file
/// that look at modes all set the same one).
fn umask_022() {
    // SAFETY: umask takes no pointers and cannot fail.
    unsafe { libc::umask(0o022) };
}

fn mode(path: &Path) -> std::io::Result<u32> {
    Ok(std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777)
}

/// Checks every file and directory of the WAL at `dir` (itself included).
fn assert_modes(dir: &Path, file: u32, directory: u32, min_files: usize) -> TestResult {
    assert_eq!(mode(dir)?, directory, "{dir:?}");
    let mut checked = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            let meta = std::fs::symlink_metadata(&p)?;
            if meta.is_dir() {
                assert_eq!(mode(&p)?, directory, "{p:?}: {:o}", mode(&p)?);
                checked.1 += 1;
                stack.push(p);
            } else {
                assert_eq!(mode(&p)?, file, "{p:?}: {:o}", mode(&p)?);
                checked.0 += 1;
            }
        }
    }
    assert!(
        checked.0 >= min_files && checked.1 == 2,
        "checked {checked:?}"
    );
    Ok(())
}

fn write_everything(dir: &Path, options: WalOptions) -> TestResult {
    // With checkpoints, so the close writes INDEX files too.
    wal_with_data(dir, options.with_index_checkpoint(true))?;
    for shard in 0..2 {
        assert!(shard_dir(dir, shard).join("INDEX").is_file());
    }
    Ok(())
}

#[test]
fn created_files_are_0600_and_directories_0700_by_default() -> TestResult {
    umask_022();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("parent").join("wal");
    write_everything(&dir, options())?;
    // LOCK, MANIFEST, a segment and a checkpoint per shard.
    assert_modes(&dir, 0o600, 0o700, 6)?;
    // The parent the open made is an ordinary directory, not a private one.
    assert_eq!(mode(&tmp.path().join("parent"))?, 0o755);
    // A reopen that creates segments keeps them private too.
    let wal = Wal::new(&dir, options().with_max_segment_size(1024))?;
    for i in 0..50 {
        wal.append_entry(format!("k{}", i % 4), Bytes::from(vec![b'x'; 90]), false)?;
    }
    wal.close()?;
    assert!(segment_files(&dir, 0)?.len() > 1);
    assert_modes(&dir, 0o600, 0o700, 5)
}

#[test]
fn file_mode_widens_what_is_created_and_the_umask_still_applies() -> TestResult {
    umask_022();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("group");
    write_everything(&dir, options().with_file_mode(0o640))?;
    assert_modes(&dir, 0o640, 0o750, 6)?;

    // 0o666 under a umask of 0o022: 0o644 and 0o755.
    let dir = tmp.path().join("world");
    write_everything(&dir, options().with_file_mode(0o666))?;
    assert_modes(&dir, 0o644, 0o755, 6)?;

    // An existing directory is adopted without changing its mode.
    let adopted = tmp.path().join("adopted");
    std::fs::create_dir(&adopted)?;
    std::fs::set_permissions(&adopted, std::fs::Permissions::from_mode(0o711))?;
    write_everything(&adopted, options())?;
    assert_eq!(mode(&adopted)?, 0o711);
    assert_eq!(mode(&adopted.join("MANIFEST"))?, 0o600);
    assert_eq!(mode(&shard_dir(&adopted, 0))?, 0o700);
    Ok(())
}

#[test]
fn invalid_file_modes_are_refused_naming_the_field_and_create_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    for bad in [
        0o000,
        0o400,
        0o200,
        0o700,
        0o610,
        0o601,
        0o1600,
        0o4600,
        0o10600,
        u32::MAX,
    ] {
        let dir = tmp.path().join(format!("wal-{bad:o}"));
        match options().with_file_mode(bad).validate() {
            Err(WalError::InvalidOptions { option, .. }) => assert_eq!(option, "file_mode"),
            other => panic!("{bad:#o}: expected InvalidOptions, got {other:?}"),
        }
        match Wal::new(&dir, options().with_file_mode(bad)) {
            Err(WalError::InvalidOptions { option, reason }) => {
                assert_eq!(option, "file_mode", "{bad:#o}: {reason}");
            }
            other => panic!("{bad:#o}: expected InvalidOptions, got {:?}", other.err()),
        }
        assert!(!dir.exists(), "{bad:#o}: created {dir:?}");
    }
    for good in [0o600, 0o620, 0o640, 0o644, 0o660, 0o666] {
        assert!(
            options().with_file_mode(good).validate().is_ok(),
            "{good:#o}"
        );
    }
    assert_eq!(WalOptions::default().file_mode, 0o600);
    Ok(())
}
