//! Opening a WAL directory: checks, lock, manifest, parallel recovery, actors.
//!
//! ```text
//! DIR/LOCK                      advisory lock (flock), held while open
//! DIR/MANIFEST                  format version, shard count, routing hash
//! DIR/shard-NNN/SSSS…SSSS.seg   segments of shard NNN, 20-digit sequence numbers
//! ```
//! Order on creation: the manifest first (its rename is the commit point), then the
//! shard directories, which a reopen creates if a crash left them missing: only then,
//! while no shard directory holds anything yet. Once a shard holds a segment, the
//! directory must agree with the manifest exactly (one `shard-NNN` per shard, none
//! beyond), or the open fails with [`WalError::ManifestMismatch`] and changes
//! nothing: routing keys by a wrong shard count would hide most records. A directory
//! without a manifest is adopted only if it holds nothing but our lock file, so a
//! wrong path never gets files written into it. Every name the WAL owns is a regular
//! file or directory, never followed through a symlink (`owned.rs`).

use crate::error::{Result, WalError};
use crate::format::manifest::{Manifest, MANIFEST_FILE, MANIFEST_TMP_FILE};
use crate::io::owned::{dir_mode, open_file, How};
use crate::io::{shard_dir_name, sync_directory};
use crate::options::WalOptions;
use crate::recovery::{recover_shard, RecoveredShard, RecoveryReport};
use std::fs::{File, FileType};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub(crate) const LOCK_FILE: &str = "LOCK";

/// The directory lock: an flock on `DIR/LOCK`, held until this is dropped.
///
/// Dropping unlocks explicitly before closing the descriptor: a process spawned by
/// another thread holds a copy of every descriptor until it execs, and an flock lives
/// as long as any copy does, so only closing ours could leave the directory locked
/// for a moment and refuse an immediate reopen (`exclusion_lock.rs`:
/// `close_then_reopen_while_the_process_spawns_children`). An unlock releases it for
/// every copy. If it fails, closing still releases the lock once the copies are gone.
pub(crate) struct DirLock(File);

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// A directory that is open: its lock, shard count and recovered shards.
pub(crate) struct Opened {
    pub(crate) lock: DirLock,
    pub(crate) shards: Vec<RecoveredShard>,
    pub(crate) report: RecoveryReport,
    /// The manifest's salt, which the writers bind new records with.
    pub(crate) salt: u32,
}

/// The entries of `dir`, sorted by name, each with its type as the directory lists
/// it (a symlink is a symlink, not what it points to).
fn entry_names(dir: &Path) -> Result<Vec<(String, PathBuf, FileType)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| WalError::io("listing", dir, e))? {
        let entry = entry.map_err(|e| WalError::io("listing", dir, e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| WalError::io("inspecting", &path, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push((name, path, kind));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn lock_dir(dir: &Path, file_mode: u32) -> Result<DirLock> {
    let path = dir.join(LOCK_FILE);
    let file = open_file(&path, How::OpenOrCreate(file_mode), "opening lock file")?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(WalError::Locked { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(WalError::io("locking", &path, e)),
    }
}

/// What `dir` is, found without changing anything in it.
enum Checked {
    /// No manifest, and nothing but a lock file and a manifest's temporary file: a
    /// WAL to create.
    Fresh,
    /// A WAL whose directory agrees with its manifest.
    Existing {
        manifest: Manifest,
        /// Shard directories to create (a creation was interrupted before them).
        missing: Vec<PathBuf>,
        /// A `MANIFEST.tmp` a crash left behind, to remove.
        stale_tmp: Option<PathBuf>,
    },
}

/// Reads `dir`'s manifest and checks the directory against it, changing nothing.
fn check(dir: &Path) -> Result<Checked> {
    let entries = entry_names(dir)?;
    // The names the WAL owns at the top are regular files or directories of the WAL.
    for (name, path, kind) in &entries {
        let owned_file = [LOCK_FILE, MANIFEST_FILE, MANIFEST_TMP_FILE].contains(&name.as_str());
        if owned_file && !kind.is_file() {
            return Err(WalError::ForeignFile { path: path.clone() });
        }
    }
    let Some(manifest) = Manifest::read_if_exists(dir)? else {
        // Refuse before writing anything: a directory that is not ours stays untouched.
        if entries
            .iter()
            .any(|(name, _, kind)| kind.is_dir() && name.starts_with("shard-"))
        {
            return Err(WalError::ManifestMismatch {
                path: dir.join(MANIFEST_FILE),
                reason: "the manifest is missing but shard directories exist".into(),
            });
        }
        if let Some((_, path, _)) = entries
            .into_iter()
            .find(|(name, _, _)| name != LOCK_FILE && name != MANIFEST_TMP_FILE)
        {
            return Err(WalError::ForeignFile { path });
        }
        return Ok(Checked::Fresh);
    };
    let shards = manifest.shards as usize;
    let mut present = vec![false; shards];
    let mut stale_tmp = None;
    for (name, path, kind) in entries {
        match name.as_str() {
            LOCK_FILE | MANIFEST_FILE => continue,
            MANIFEST_TMP_FILE => {
                // Left by a crash while a manifest was written; MANIFEST itself is whole.
                stale_tmp = Some(path);
                continue;
            }
            _ => {}
        }
        let shard = name
            .strip_prefix("shard-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| u32::try_from(n).is_ok_and(|n| name == shard_dir_name(n)));
        match shard {
            Some(_) if !kind.is_dir() => return Err(WalError::ForeignFile { path }),
            Some(n) if n < shards => present[n] = true,
            Some(_) => {
                return Err(WalError::ManifestMismatch {
                    path,
                    reason: format!(
                        "{name} exists but the manifest says {shards} shard{}",
                        if shards == 1 { "" } else { "s" }
                    ),
                });
            }
            None => return Err(WalError::ForeignFile { path }),
        }
    }
    let shard_dir = |n: usize| dir.join(shard_dir_name(n as u32));
    let missing: Vec<PathBuf> = (0..shards)
        .filter(|&n| !present[n])
        .map(shard_dir)
        .collect();
    if let Some(first_missing) = missing.first() {
        // Creation makes every shard directory before any shard writes a segment, so
        // a missing one is an interrupted creation only while every shard directory
        // there is still empty. Otherwise the manifest is not this directory's.
        for n in (0..shards).filter(|&n| present[n]) {
            let sdir = shard_dir(n);
            let mut listing =
                std::fs::read_dir(&sdir).map_err(|e| WalError::io("listing", &sdir, e))?;
            if let Some(entry) = listing.next() {
                let entry = entry.map_err(|e| WalError::io("listing", &sdir, e))?;
                return Err(WalError::ManifestMismatch {
                    path: first_missing.clone(),
                    reason: format!(
                        "the manifest says {shards} shards but {} of them {} missing, \
                         while {} holds {}: the manifest does not match the directory",
                        missing.len(),
                        if missing.len() == 1 { "is" } else { "are" },
                        shard_dir_name(n as u32),
                        entry.file_name().to_string_lossy()
                    ),
                });
            }
        }
    }
    Ok(Checked::Existing {
        manifest,
        missing,
        stale_tmp,
    })
}

/// Creates the WAL directory `dir` (mode from `file_mode`), and its parents as a
/// plain `mkdir -p` would, if it does not exist.
fn create_wal_dir(dir: &Path, file_mode: u32) -> Result<()> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent)
            .map_err(|e| WalError::io("creating directory", parent, e))?;
    }
    match std::fs::DirBuilder::new()
        .mode(dir_mode(file_mode))
        .create(dir)
    {
        Ok(()) => {}
        // Made by someone else since we looked; the checks below judge what it is.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(WalError::io("creating directory", dir, e)),
    }
    if let Some(parent) = parent {
        // fsync the parent: the new WAL directory's name must survive a power loss.
        sync_directory(parent)?;
    }
    Ok(())
}

/// Opens (creating if needed) the WAL at `dir`.
pub(crate) fn open_dir(dir: &Path, options: &WalOptions) -> Result<Opened> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(WalError::NotADirectory {
                path: dir.to_path_buf(),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_wal_dir(dir, options.file_mode)?;
        }
        Err(e) => return Err(WalError::io("inspecting", dir, e)),
    }
    // Checked before the lock is taken, so that a refused open does not even create
    // the lock file, and again once it is held: only then is nobody else changing it.
    if let Err(e) = check(dir) {
        // Someone holding the lock may be in the middle of changing the directory (a
        // shutdown removing it): report that, not the state it is passing through.
        let lock = dir.join(LOCK_FILE);
        if let Ok(Some(file)) =
            crate::io::owned::open_file_if_exists(&lock, How::ReadWrite, "probing lock file")
        {
            match file.try_lock() {
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(WalError::Locked { path: lock })
                }
                // Unlocked explicitly, as `DirLock` does, for copies of the descriptor.
                Ok(()) => drop(DirLock(file)),
                Err(std::fs::TryLockError::Error(_)) => {}
            }
        }
        return Err(e);
    }
    let lock = lock_dir(dir, options.file_mode)?;
    let (manifest, missing) = match check(dir)? {
        Checked::Fresh => {
            let m = Manifest::new(options.shards as u32);
            m.write_with_mode(dir, options.file_mode)?;
            let missing = (0..m.shards).map(|n| dir.join(shard_dir_name(n))).collect();
            (m, missing)
        }
        Checked::Existing {
            manifest,
            missing,
            stale_tmp,
        } => {
            if let Some(path) = stale_tmp {
                std::fs::remove_file(&path).map_err(|e| WalError::io("removing", &path, e))?;
            }
            (manifest, missing)
        }
    };
    let shards = manifest.shards as usize;
    for sdir in &missing {
        crate::io::owned::create_dir(sdir, dir_mode(options.file_mode))?;
    }
    if !missing.is_empty() {
        // fsync the WAL directory: new shard directories must survive a power loss
        // before segments are created in them.
        sync_directory(dir)?;
    }
    let (mode, use_checkpoint) = (options.recovery_mode, options.index_checkpoint);
    let recovered: Vec<Result<RecoveredShard>> = {
        use rayon::prelude::*;
        (0..shards)
            .into_par_iter()
            .map(|shard| {
                let sdir = dir.join(shard_dir_name(shard as u32));
                recover_shard(&sdir, shard as u32, mode, use_checkpoint, manifest.salt)
            })
            .collect()
    };
    let mut report = RecoveryReport::default();
    let mut out = Vec::with_capacity(shards);
    for r in recovered {
        let mut r = r?;
        report.merge(std::mem::take(&mut r.report));
        out.push(r);
    }
    {
        // In parallel: unlinking a checkpoint that no shard keeps open drops its
        // pages from the page cache, about 0.3 ms for a million records' worth.
        use rayon::prelude::*;
        (0..shards).into_par_iter().try_for_each(|shard| {
            crate::format::checkpoint::remove(&dir.join(shard_dir_name(shard as u32)))
        })?;
    }
    // A WAL written before format version 4 has no salt yet: it gets one now, after
    // recovery succeeded (a refused open changes nothing) and before any writer
    // writes a version-4 segment bound with it.
    let salt = match manifest.salt {
        Some(salt) => salt,
        None => {
            let upgraded = Manifest::new(manifest.shards);
            upgraded.write_with_mode(dir, options.file_mode)?;
            upgraded.salt.unwrap_or(0)
        }
    };
    Ok(Opened {
        lock,
        shards: out,
        report,
        salt,
    })
}

/// Removes everything `open_dir` created in `dir` (shutdown). Called while the lock is
/// still held; the lock file goes last, then the directory if it is empty.
pub(crate) fn remove_dir_files(dir: &Path, shards: usize) -> Result<()> {
    for shard in 0..shards {
        let sdir = dir.join(shard_dir_name(shard as u32));
        match std::fs::remove_dir_all(&sdir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(WalError::io("removing", &sdir, e)),
        }
    }
    for name in [MANIFEST_FILE, MANIFEST_TMP_FILE, LOCK_FILE] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(WalError::io("removing", &path, e)),
        }
    }
    // Only removes the directory if nothing else is in it; a non-empty one stays.
    if std::fs::remove_dir(dir).is_err() {
        // fsync the directory so the removals are durable when it stays.
        sync_directory(dir)?;
    }
    Ok(())
}
