//! The real-file implementation of the storage traits, and the directory fsync.

use super::storage::{SegmentIo, Storage, PREALLOCATION_CHUNK};
use crate::error::{Result, WalError};
use crate::format::segment_header::segment_file_name;
use crate::index::ShardIndex;
use crate::writer::active_segment::Segment;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of shard `shard`'s directory.
pub(crate) fn shard_dir_name(shard: u32) -> String {
    format!("shard-{shard:03}")
}

/// `fsync` of a directory, so entries created or removed in it survive power loss.
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
        let file = crate::io::owned::open_file(
            &path,
            crate::io::owned::How::ReadWrite,
            "opening segment",
        )?;
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

/// Segments as files under `root/shard-NNN/`, created with permission bits
/// `file_mode` (`WalOptions::file_mode`).
pub(crate) struct FsStorage {
    root: PathBuf,
    file_mode: u32,
}

impl FsStorage {
    pub(crate) fn new(root: PathBuf, file_mode: u32) -> FsStorage {
        FsStorage { root, file_mode }
    }

    pub(crate) fn shard_dir(&self, shard: u32) -> PathBuf {
        self.root.join(shard_dir_name(shard))
    }

    fn segment_path(&self, shard: u32, sequence: u64) -> PathBuf {
        self.shard_dir(shard).join(segment_file_name(sequence))
    }
}

impl Storage for FsStorage {
    fn create_segment(
        &self,
        shard: u32,
        sequence: u64,
        header: &[u8],
    ) -> Result<Arc<dyn SegmentIo>> {
        let path = self.segment_path(shard, sequence);
        let file = crate::io::owned::open_file(
            &path,
            crate::io::owned::How::CreateNew(self.file_mode),
            "creating segment",
        )?;
        file.write_all_at(header, 0)
            .map_err(|e| WalError::io("writing segment header", &path, e))?;
        Ok(Arc::new(FileSegment { file, path }))
    }

    fn remove_segment(&self, shard: u32, sequence: u64) -> Result<()> {
        let path = self.segment_path(shard, sequence);
        std::fs::remove_file(&path).map_err(|e| WalError::io("removing segment", &path, e))
    }

    fn sync_dir(&self, shard: u32) -> Result<()> {
        sync_directory(&self.shard_dir(shard))
    }

    fn preallocation_chunk(&self) -> u64 {
        PREALLOCATION_CHUNK
    }

    fn write_checkpoint(
        &self,
        shard: u32,
        synced_through: u64,
        next_seq: u64,
        segments: &[Segment],
        index: &ShardIndex,
    ) -> Result<()> {
        let dir = self.shard_dir(shard);
        crate::format::checkpoint::write(
            &dir,
            shard,
            synced_through,
            next_seq,
            segments,
            index,
            self.file_mode,
        )
    }
}
