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
//! file or directory, never followed through a symlink (`owned.rs`). Every file is
//! reached through the storage (`io/`), so the in-memory one runs the open too.

use crate::error::{Result, WalError};
use crate::format::manifest::{Manifest, MANIFEST_LEN};
use crate::format::names::{
    checkpoint_paths, is_shard_like, parse_shard_dir_name, shard_dir, shard_dir_name, LOCK_FILE,
    MANIFEST_FILE, MANIFEST_TMP_FILE,
};
use crate::io::{DirSync, FsStorage, Kind, Storage, WriteSteps};
use crate::options::WalOptions;
use crate::recovery::{recover_shard, RecoveredShard, RecoveryReport};
use std::path::{Path, PathBuf};

pub(crate) use crate::io::DirLock;

/// A directory that is open: its lock, shard count and recovered shards.
pub(crate) struct Opened {
    pub(crate) lock: DirLock,
    pub(crate) shards: Vec<RecoveredShard>,
    pub(crate) report: RecoveryReport,
    /// The manifest's salt, which the writers bind new records with.
    pub(crate) salt: u32,
}

/// What the steps of the manifest's write are called in its errors.
const MANIFEST_STEPS: WriteSteps = WriteSteps {
    create: "creating manifest",
    write: "writing manifest",
    sync: "syncing manifest",
    rename: "renaming manifest",
};

/// Reads and checks the manifest, if there is one (a regular file: a symlink or
/// special file under the name is [`WalError::ForeignFile`]).
pub(crate) fn read_manifest(storage: &dyn Storage) -> Result<Option<Manifest>> {
    let path = Path::new(MANIFEST_FILE);
    // One byte more than the longest manifest, to tell a longer file.
    let limit = MANIFEST_LEN as u64 + 1;
    match storage.read_file(path, limit, "reading manifest")? {
        Some(bytes) => Manifest::decode(&bytes, &storage.full_path(path)).map(Some),
        None => Ok(None),
    }
}

/// [`read_manifest`] of the WAL at `dir`, for inspect, which still names its files
/// by path: a missing manifest is an I/O error of kind `NotFound`.
pub(crate) fn read_manifest_in(dir: &Path) -> Result<Manifest> {
    let storage = FsStorage::new(dir.to_path_buf(), crate::io::owned::DEFAULT_FILE_MODE);
    read_manifest(&storage)?.ok_or_else(|| {
        WalError::io(
            "reading manifest",
            dir.join(MANIFEST_FILE),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })
}

/// Writes the manifest `m` atomically (version 2): `MANIFEST.tmp`, fsync, rename to
/// `MANIFEST`, and an fsync of the directory, which makes the rename (the commit
/// point of a creation or of an upgrade) durable before anything relies on it.
pub(crate) fn write_manifest(storage: &dyn Storage, m: &Manifest) -> Result<()> {
    storage.write_file_atomically(
        Path::new(MANIFEST_FILE),
        Path::new(MANIFEST_TMP_FILE),
        &[&m.encode()],
        DirSync::After,
        MANIFEST_STEPS,
    )
}

/// One entry of the WAL directory: its name, its path (for errors) and its kind.
struct Listed {
    name: String,
    path: PathBuf,
    kind: Kind,
}

/// The entries of the WAL directory, sorted by name, each with its kind as the
/// directory lists it (a symlink is a symlink, not what it points to).
fn entry_names(storage: &dyn Storage) -> Result<Vec<Listed>> {
    Ok(storage
        .list_dir(Path::new(""))?
        .into_iter()
        .map(|e| Listed {
            path: storage.full_path(Path::new(&e.name)),
            name: e.name.to_string_lossy().into_owned(),
            kind: e.kind,
        })
        .collect())
}

/// What the WAL directory is, found without changing anything in it.
enum Checked {
    /// No manifest, and nothing but a lock file and a manifest's temporary file: a
    /// WAL to create.
    Fresh,
    /// A WAL whose directory agrees with its manifest.
    Existing {
        manifest: Manifest,
        /// Shard directories to create (a creation was interrupted before them).
        missing: Vec<u32>,
        /// A `MANIFEST.tmp` a crash left behind, to remove.
        stale_tmp: bool,
    },
}

/// Reads the manifest and checks the WAL directory against it, changing nothing.
fn check(storage: &dyn Storage) -> Result<Checked> {
    let entries = entry_names(storage)?;
    // The names the WAL owns at the top are regular files or directories of the WAL.
    for e in &entries {
        let owned_file = [LOCK_FILE, MANIFEST_FILE, MANIFEST_TMP_FILE].contains(&e.name.as_str());
        if owned_file && e.kind != Kind::File {
            return Err(WalError::ForeignFile {
                path: e.path.clone(),
            });
        }
    }
    let Some(manifest) = read_manifest(storage)? else {
        // Refuse before writing anything: a directory that is not ours stays untouched.
        if entries
            .iter()
            .any(|e| e.kind == Kind::Dir && is_shard_like(&e.name))
        {
            return Err(WalError::ManifestMismatch {
                path: storage.full_path(Path::new(MANIFEST_FILE)),
                reason: "the manifest is missing but shard directories exist".into(),
            });
        }
        if let Some(e) = entries
            .into_iter()
            .find(|e| e.name != LOCK_FILE && e.name != MANIFEST_TMP_FILE)
        {
            return Err(WalError::ForeignFile { path: e.path });
        }
        return Ok(Checked::Fresh);
    };
    let shards = manifest.shards as usize;
    let mut present = vec![false; shards];
    let mut stale_tmp = false;
    for Listed { name, path, kind } in entries {
        match name.as_str() {
            LOCK_FILE | MANIFEST_FILE => continue,
            MANIFEST_TMP_FILE => {
                // Left by a crash while a manifest was written; MANIFEST itself is whole.
                stale_tmp = true;
                continue;
            }
            _ => {}
        }
        match parse_shard_dir_name(&name).map(|n| n as usize) {
            Some(_) if kind != Kind::Dir => return Err(WalError::ForeignFile { path }),
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
    let missing: Vec<u32> = (0..shards)
        .filter(|&n| !present[n])
        .map(|n| n as u32)
        .collect();
    if let Some(&first_missing) = missing.first() {
        // Creation makes every shard directory before any shard writes a segment, so
        // a missing one is an interrupted creation only while every shard directory
        // there is still empty. Otherwise the manifest is not this directory's.
        for n in (0..shards).filter(|&n| present[n]) {
            if let Some(entry) = storage.list_dir(&shard_dir(n as u32))?.first() {
                return Err(WalError::ManifestMismatch {
                    path: storage.full_path(&shard_dir(first_missing)),
                    reason: format!(
                        "the manifest says {shards} shards but {} of them {} missing, \
                         while {} holds {}: the manifest does not match the directory",
                        missing.len(),
                        if missing.len() == 1 { "is" } else { "are" },
                        shard_dir_name(n as u32),
                        entry.name.to_string_lossy()
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

/// Recovers shard `shard` of a WAL whose manifest has salt `salt`.
pub(crate) type Recover<'a> = dyn Fn(u32, Option<u32>) -> Result<RecoveredShard> + Sync + 'a;

/// Opens (creating if needed) the WAL at `dir`.
pub(crate) fn open_dir(dir: &Path, options: &WalOptions) -> Result<Opened> {
    let storage = FsStorage::new(dir.to_path_buf(), options.file_mode);
    let (mode, use_checkpoint) = (options.recovery_mode, options.index_checkpoint);
    let recover = |shard: u32, salt| {
        let sdir = dir.join(shard_dir_name(shard));
        recover_shard(&sdir, shard, mode, use_checkpoint, salt)
    };
    open_with(&storage, options, &recover)
}

/// Opens (creating if needed) the WAL in `storage`, each shard recovered by
/// `recover` (recovery still reads its files by path: `recovery/`).
pub(crate) fn open_with(
    storage: &dyn Storage,
    options: &WalOptions,
    recover: &Recover<'_>,
) -> Result<Opened> {
    storage.ensure_root()?;
    // Checked before the lock is taken, so that a refused open does not even create
    // the lock file, and again once it is held: only then is nobody else changing it.
    if let Err(e) = check(storage) {
        // Someone holding the lock may be in the middle of changing the directory (a
        // shutdown removing it): report that, not the state it is passing through.
        let lock = Path::new(LOCK_FILE);
        if storage.is_locked(lock) {
            return Err(WalError::Locked {
                path: storage.full_path(lock),
            });
        }
        return Err(e);
    }
    let lock = storage.lock(Path::new(LOCK_FILE))?;
    let (manifest, missing) = match check(storage)? {
        Checked::Fresh => {
            let m = Manifest::new(options.shards as u32);
            write_manifest(storage, &m)?;
            (m, (0..m.shards).collect())
        }
        Checked::Existing {
            manifest,
            missing,
            stale_tmp,
        } => {
            if stale_tmp {
                storage.remove_file(Path::new(MANIFEST_TMP_FILE), "removing")?;
            }
            (manifest, missing)
        }
    };
    let shards = manifest.shards as usize;
    for &shard in &missing {
        storage.create_dir(&shard_dir(shard))?;
    }
    if !missing.is_empty() {
        // fsync the WAL directory: new shard directories must survive a power loss
        // before segments are created in them.
        storage.sync_root()?;
    }
    let recovered: Vec<Result<RecoveredShard>> = {
        use rayon::prelude::*;
        (0..shards)
            .into_par_iter()
            .map(|shard| recover(shard as u32, manifest.salt))
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
        (0..shards)
            .into_par_iter()
            .try_for_each(|shard| remove_checkpoint(storage, shard as u32))?;
    }
    // A WAL written before format version 4 has no salt yet: it gets one now, after
    // recovery succeeded (a refused open changes nothing) and before any writer
    // writes a version-4 segment bound with it.
    let salt = match manifest.salt {
        Some(salt) => salt,
        None => {
            let upgraded = Manifest::new(manifest.shards);
            write_manifest(storage, &upgraded)?;
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

/// Removes shard `shard`'s checkpoint, used or not, once the open has succeeded:
/// from here on the writer changes the segments, so the checkpoint would describe
/// them as they were. (A refused open leaves it: nothing changed.)
fn remove_checkpoint(storage: &dyn Storage, shard: u32) -> Result<()> {
    let (path, tmp) = checkpoint_paths(shard);
    for stale in [path, tmp] {
        // No directory fsync: should a power cut bring the file back, its segment
        // stamps no longer match once the writer has changed a segment (a new
        // segment's name is fsynced into the directory, and appends change the
        // length), and if nothing changed, the checkpoint still describes the files.
        storage.remove_file(&stale, "removing index checkpoint")?;
    }
    Ok(())
}

/// Removes everything `open_dir` created in `dir` (shutdown). Called while the lock is
/// still held; the lock file goes last, then the directory if it is empty.
pub(crate) fn remove_dir_files(dir: &Path, shards: usize) -> Result<()> {
    let storage = FsStorage::new(dir.to_path_buf(), crate::io::owned::DEFAULT_FILE_MODE);
    for shard in 0..shards {
        storage.remove_dir_all(&shard_dir(shard as u32))?;
    }
    for name in [MANIFEST_FILE, MANIFEST_TMP_FILE, LOCK_FILE] {
        storage.remove_file(Path::new(name), "removing")?;
    }
    // Only removes the directory if nothing else is in it; a non-empty one stays.
    if !storage.remove_root()? {
        // fsync the directory so the removals are durable when it stays.
        storage.sync_root()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mem_storage::{MemStorage, Op, OpLog};

    #[test]
    fn a_manifest_is_written_whole_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new(dir.path().to_path_buf(), 0o600);
        assert_eq!(read_manifest(&storage).unwrap(), None);
        let m = Manifest {
            shards: 5,
            salt: Some(0x0102_0304),
        };
        write_manifest(&storage, &m).unwrap();
        assert_eq!(read_manifest(&storage).unwrap(), Some(m));
        assert_eq!(read_manifest_in(dir.path()).unwrap(), m);
        assert!(!dir.path().join(MANIFEST_TMP_FILE).exists());
        let good = std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap();
        assert_eq!(good.len(), MANIFEST_LEN);
        // A longer file is read far enough to be refused.
        std::fs::write(dir.path().join(MANIFEST_FILE), [&good[..], b"x"].concat()).unwrap();
        assert!(matches!(
            read_manifest(&storage),
            Err(WalError::Corruption { .. })
        ));
        let missing = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_manifest_in(missing.path()),
            Err(WalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound
        ));
    }

    /// Shards recovered as empty: the memory store holds no segments to recover.
    fn empty(_: u32, _: Option<u32>) -> Result<RecoveredShard> {
        Ok(RecoveredShard::empty())
    }

    /// The open runs over the memory store as over files: every call it makes is
    /// the store's, in order, and a second open finds what the first made.
    #[test]
    fn an_open_over_memory_makes_each_call_through_the_store() {
        let log = OpLog::default();
        let storage = MemStorage::recording(log.clone(), 0);
        let options = WalOptions::default().with_shards(2);
        let opened = open_with(&storage, &options, &empty).unwrap();
        let ops: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .map(|op| format!("{op:?}"))
            .collect();
        assert_eq!(
            ops,
            [
                "Lock",
                "Put { path: \"MANIFEST.tmp\", bytes: [..] }",
                "SyncFile(\"MANIFEST.tmp\")",
                "Rename { from: \"MANIFEST.tmp\", to: \"MANIFEST\" }",
                "SyncRoot",
                "MakeDir(\"shard-000\")",
                "MakeDir(\"shard-001\")",
                "SyncRoot",
            ]
            .map(|s| s.replace("[..]", &format!("{:?}", opened_manifest(&storage))))
        );
        // Held: a second open is refused, and changes nothing.
        assert!(matches!(
            open_with(&storage, &options, &empty),
            Err(WalError::Locked { .. })
        ));
        let salt = opened.salt;
        drop(opened);
        log.lock().unwrap().clear();
        let again = open_with(&storage, &options, &empty).unwrap();
        assert_eq!(again.salt, salt);
        let ops = log.lock().unwrap().clone();
        assert!(matches!(ops[..], [Op::Lock]), "{ops:?}");
    }

    fn opened_manifest(storage: &MemStorage) -> Vec<u8> {
        read_manifest(storage).unwrap().unwrap().encode().to_vec()
    }
}
