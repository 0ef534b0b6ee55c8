//! The real-file implementation of the storage traits, and the directory fsync.

use super::owned::{create_dir, dir_mode, open_file, open_file_if_exists, How};
use super::storage::PREALLOCATION_CHUNK;
use super::{DirLock, DirSync, Entry, Kind, ReadIo, SegmentIo, Storage, WriteSteps};
use crate::error::{Result, WalError};
use crate::format::names::{segment_path, shard_dir};
use crate::format::stamp::FileStamp;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `fsync` of a directory, so entries created, renamed or removed in it survive
/// power loss.
pub(crate) fn sync_directory(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| WalError::io("opening directory", dir, e))?;
    d.sync_all()
        .map_err(|e| WalError::io("syncing directory", dir, e))?;
    observed::dir_synced(dir);
    Ok(())
}

/// What recovery does to the segment files of a WAL on disk, as the storage calls of
/// the in-memory store's log (`Op`), for the power-cut model (`power_cut.rs`): it
/// follows a reopen with a run over memory and cuts the power anywhere after, so it
/// needs recovery's own cuts, fsyncs and removals in order, as they were made.
/// Recovery cuts, fsyncs and removes segment files through this module's functions,
/// and fsyncs directories through [`sync_directory`]; each of them both makes the
/// call and logs it, so the log cannot keep a call that the code no longer makes.
/// Logged only in the crate's unit tests, and only for a WAL directory a test
/// watches (tests run in parallel); elsewhere the functions just make the call.
pub(crate) mod observed {
    use std::path::Path;

    #[cfg(all(test, not(loom)))]
    mod watch {
        use crate::format::segment_header::parse_segment_file_name;
        use crate::testing::mem_storage::{Op, OpLog};
        use std::path::{Path, PathBuf};
        use std::sync::Mutex;

        static WATCHED: Mutex<Vec<(PathBuf, OpLog)>> = Mutex::new(Vec::new());

        /// Logs recovery's calls on the WAL at `root` into `log` until [`unwatch`].
        pub(crate) fn watch(root: &Path, log: OpLog) {
            WATCHED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((root.to_path_buf(), log));
        }

        pub(crate) fn unwatch(root: &Path) {
            WATCHED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(r, _)| r != root);
        }

        /// The shard of the shard directory `dir`, and the log of its watched WAL.
        fn shard_of(dir: &Path) -> Option<(u32, OpLog)> {
            let shard = dir
                .file_name()?
                .to_str()?
                .strip_prefix("shard-")?
                .parse()
                .ok()?;
            let root = dir.parent()?;
            let watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
            let (_, log) = watched.iter().find(|(r, _)| r == root)?;
            Some((shard, log.clone()))
        }

        pub(crate) fn segment(path: &Path, op: impl FnOnce((u32, u64)) -> Op) {
            let Some((shard, log)) = path.parent().and_then(shard_of) else {
                return;
            };
            let name = path.file_name().and_then(|n| n.to_str());
            if let Some(sequence) = name.and_then(parse_segment_file_name) {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(op((shard, sequence)));
            }
        }

        pub(crate) fn dir_synced(dir: &Path) {
            if let Some((shard, log)) = shard_of(dir) {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Op::SyncDir(shard));
            }
        }
    }
    #[cfg(all(test, not(loom)))]
    pub(crate) use watch::{unwatch, watch};

    /// Cuts segment file `path` (open as `file`) to `len` bytes, and logs it. The
    /// call and its entry in the log are one function, so that taking out a call of
    /// recovery takes its entry out too and the model sees the difference.
    pub(crate) fn set_len(file: &std::fs::File, path: &Path, len: u64) -> std::io::Result<()> {
        file.set_len(len)?;
        #[cfg(all(test, not(loom)))]
        watch::segment(path, |id| crate::testing::mem_storage::Op::Cut {
            file: id,
            len,
        });
        #[cfg(not(all(test, not(loom))))]
        let _ = path;
        Ok(())
    }

    /// `fsync`s segment file `path` (open as `file`: data and length), and logs it.
    pub(crate) fn sync_all(file: &std::fs::File, path: &Path) -> std::io::Result<()> {
        file.sync_all()?;
        #[cfg(all(test, not(loom)))]
        watch::segment(path, |id| crate::testing::mem_storage::Op::Sync {
            file: id,
            all: true,
        });
        #[cfg(not(all(test, not(loom))))]
        let _ = path;
        Ok(())
    }

    /// Removes segment file `path`, and logs it.
    pub(crate) fn remove_file(path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)?;
        #[cfg(all(test, not(loom)))]
        watch::segment(path, crate::testing::mem_storage::Op::Remove);
        Ok(())
    }

    /// Directory `dir` was fsynced (called by [`sync_directory`](super::sync_directory)
    /// only, right after its fsync).
    pub(super) fn dir_synced(dir: &Path) {
        #[cfg(all(test, not(loom)))]
        watch::dir_synced(dir);
        #[cfg(not(all(test, not(loom))))]
        let _ = dir;
    }
}

/// A segment backed by a file.
pub(crate) struct FileSegment {
    file: File,
    path: PathBuf,
}

impl FileSegment {
    /// Opens an existing segment for reading and appending (recovery). A symlink,
    /// FIFO or other special file under its name is [`WalError::ForeignFile`]: it is
    /// neither followed nor waited on (`owned.rs`).
    pub(crate) fn open(path: PathBuf) -> Result<FileSegment> {
        let file = open_file(&path, How::ReadWrite, "opening segment")?;
        Ok(FileSegment { file, path })
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

impl SegmentIo for FileSegment {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn read_up_to(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
    fn len(&self) -> io::Result<u64> {
        self.file.metadata().map(|m| m.len())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn preallocate(&self, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        // posix_fallocate returns the error number instead of setting errno.
        // SAFETY: the descriptor is owned by `self.file` and open for the whole call;
        // the call takes no pointers.
        match unsafe { libc::posix_fallocate(self.file.as_raw_fd(), 0, len) } {
            0 => Ok(()),
            code => Err(io::Error::from_raw_os_error(code)),
        }
    }
    fn cut_to(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

/// A file open for reading, its length taken when it was opened.
struct FileReader {
    file: File,
    path: PathBuf,
}

impl ReadIo for FileReader {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.file.metadata().map(|m| m.len())
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

/// The flock on a lock file, released when this is dropped.
///
/// Dropping unlocks explicitly before closing the descriptor: a process spawned by
/// another thread holds a copy of every descriptor until it execs, and an flock lives
/// as long as any copy does, so only closing ours could leave the directory locked
/// for a moment and refuse an immediate reopen (`exclusion_lock.rs`:
/// `close_then_reopen_while_the_process_spawns_children`). An unlock releases it for
/// every copy. If it fails, closing still releases the lock once the copies are gone.
struct FileLock(File);

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The files of the WAL directory `root`; what it creates gets permission bits
/// `file_mode` (`WalOptions::file_mode`; directories: `owned::dir_mode` of it). Every
/// name is opened without following a symlink (`owned.rs`).
pub(crate) struct FsStorage {
    root: PathBuf,
    file_mode: u32,
}

impl FsStorage {
    pub(crate) fn new(root: PathBuf, file_mode: u32) -> FsStorage {
        FsStorage { root, file_mode }
    }

    /// `path` under the root (`""`: the root itself).
    fn full(&self, path: &Path) -> PathBuf {
        if path.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }

    /// Creates the root, its parents as a plain `mkdir -p` would.
    fn create_root(&self) -> Result<()> {
        let dir = &self.root;
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            std::fs::create_dir_all(parent)
                .map_err(|e| WalError::io("creating directory", parent, e))?;
        }
        match std::fs::DirBuilder::new()
            .mode(dir_mode(self.file_mode))
            .create(dir)
        {
            Ok(()) => {}
            // Made by someone else since we looked; the open's checks judge what it is.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(WalError::io("creating directory", dir, e)),
        }
        if let Some(parent) = parent {
            // fsync the parent: the new WAL directory's name must survive a power loss.
            sync_directory(parent)?;
        }
        Ok(())
    }
}

impl Storage for FsStorage {
    fn create_segment(
        &self,
        shard: u32,
        sequence: u64,
        header: &[u8],
    ) -> Result<Arc<dyn SegmentIo>> {
        let path = self.full(&segment_path(shard, sequence));
        let file = open_file(&path, How::CreateNew(self.file_mode), "creating segment")?;
        file.write_all_at(header, 0)
            .map_err(|e| WalError::io("writing segment header", &path, e))?;
        Ok(Arc::new(FileSegment { file, path }))
    }

    fn open_segment(&self, shard: u32, sequence: u64) -> Result<Arc<dyn SegmentIo>> {
        let path = self.full(&segment_path(shard, sequence));
        Ok(Arc::new(FileSegment::open(path)?))
    }

    fn remove_segment(&self, shard: u32, sequence: u64) -> Result<()> {
        let path = self.full(&segment_path(shard, sequence));
        std::fs::remove_file(&path).map_err(|e| WalError::io("removing segment", &path, e))
    }

    fn sync_dir(&self, shard: u32) -> Result<()> {
        sync_directory(&self.full(&shard_dir(shard)))
    }

    fn preallocation_chunk(&self) -> u64 {
        PREALLOCATION_CHUNK
    }

    fn ensure_root(&self) -> Result<()> {
        // The root may be a symlink to a directory: followed, unlike the names in it.
        match std::fs::metadata(&self.root) {
            Ok(m) if !m.is_dir() => Err(WalError::NotADirectory {
                path: self.root.clone(),
            }),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.create_root(),
            Err(e) => Err(WalError::io("inspecting", &self.root, e)),
        }
    }

    fn list_dir(&self, dir: &Path) -> Result<Vec<Entry>> {
        let full = self.full(dir);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&full).map_err(|e| WalError::io("listing", &full, e))? {
            let entry = entry.map_err(|e| WalError::io("listing", &full, e))?;
            let kind = entry
                .file_type()
                .map_err(|e| WalError::io("inspecting", entry.path(), e))?;
            out.push(Entry {
                name: entry.file_name(),
                kind: kind_of(kind),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn create_dir(&self, dir: &Path) -> Result<()> {
        create_dir(&self.full(dir), dir_mode(self.file_mode))
    }

    fn sync_root(&self) -> Result<()> {
        sync_directory(&self.root)
    }

    fn read_file(&self, path: &Path, limit: u64, op: &'static str) -> Result<Option<Vec<u8>>> {
        let full = self.full(path);
        let Some(file) = open_file_if_exists(&full, How::Read, op)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| WalError::io(op, &full, e))?;
        Ok(Some(bytes))
    }

    fn open_read(&self, path: &Path, op: &'static str) -> Result<Option<Arc<dyn ReadIo>>> {
        let path = self.full(path);
        Ok(open_file_if_exists(&path, How::Read, op)?
            .map(|file| Arc::new(FileReader { file, path }) as Arc<dyn ReadIo>))
    }

    fn stamp(&self, path: &Path) -> Result<FileStamp> {
        let full = self.full(path);
        // Of the name itself: a symlink swapped in gives a stamp no file matches.
        let meta =
            std::fs::symlink_metadata(&full).map_err(|e| WalError::io("inspecting", &full, e))?;
        Ok(FileStamp::of(&meta))
    }

    fn write_file_atomically(
        &self,
        path: &Path,
        tmp: &Path,
        parts: &[&[u8]],
        dir_sync: DirSync,
        steps: WriteSteps,
    ) -> Result<()> {
        let (path, tmp) = (self.full(path), self.full(tmp));
        // A symlink or special file put in its place is refused, never followed.
        let mut file = open_file(&tmp, How::CreateOrTruncate(self.file_mode), steps.create)?;
        for part in parts {
            file.write_all(part)
                .map_err(|e| WalError::io(steps.write, &tmp, e))?;
        }
        // fsync the temporary file before the rename: its bytes must be on disk
        // before its name is the file's, or a power cut could leave the name on a
        // file that is empty or torn.
        file.sync_all()
            .map_err(|e| WalError::io(steps.sync, &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| WalError::io(steps.rename, &path, e))?;
        match (dir_sync, path.parent()) {
            // fsync the directory: makes the rename durable before the caller relies
            // on it.
            (DirSync::After, Some(dir)) => sync_directory(dir),
            _ => Ok(()),
        }
    }

    fn remove_file(&self, path: &Path, op: &'static str) -> Result<()> {
        let full = self.full(path);
        match std::fs::remove_file(&full) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(WalError::io(op, &full, e)),
        }
    }

    fn remove_dir_all(&self, dir: &Path) -> Result<()> {
        let full = self.full(dir);
        match std::fs::remove_dir_all(&full) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(WalError::io("removing", &full, e)),
        }
    }

    fn remove_root(&self) -> Result<bool> {
        // Only removes the directory if nothing else is in it.
        Ok(std::fs::remove_dir(&self.root).is_ok())
    }

    fn lock(&self, path: &Path) -> Result<DirLock> {
        let path = self.full(path);
        let file = open_file(
            &path,
            How::OpenOrCreate(self.file_mode),
            "opening lock file",
        )?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock::new(FileLock(file))),
            Err(std::fs::TryLockError::WouldBlock) => Err(WalError::Locked { path }),
            Err(std::fs::TryLockError::Error(e)) => Err(WalError::io("locking", &path, e)),
        }
    }

    fn is_locked(&self, path: &Path) -> bool {
        let path = self.full(path);
        let Ok(Some(file)) = open_file_if_exists(&path, How::ReadWrite, "probing lock file") else {
            return false;
        };
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) => true,
            // Unlocked explicitly, as `FileLock` does, for copies of the descriptor.
            Ok(()) => {
                drop(FileLock(file));
                false
            }
            Err(std::fs::TryLockError::Error(_)) => false,
        }
    }

    fn full_path(&self, path: &Path) -> PathBuf {
        self.full(path)
    }
}

fn kind_of(t: std::fs::FileType) -> Kind {
    if t.is_file() {
        Kind::File
    } else if t.is_dir() {
        Kind::Dir
    } else {
        Kind::Other
    }
}
