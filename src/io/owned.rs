//! The names a WAL owns (`LOCK`, `MANIFEST`, `MANIFEST.tmp`, `shard-NNN/`, segments,
//! `INDEX`, `INDEX.tmp`): each is opened without following a symlink and checked to
//! be what it should be, a regular file or a directory of the WAL. A symlink (even
//! one that points back into the WAL, or nowhere), a FIFO, a socket or a device under
//! one of these names is [`WalError::ForeignFile`]: following it would read or write
//! somewhere the WAL does not own, and opening a FIFO would block.
//!
//! What the WAL creates is private unless `WalOptions::file_mode` says otherwise:
//! files `0o600`, directories `0o700` (the user's umask applies on top).

use crate::error::{Result, WalError};
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The default mode of the files a WAL creates (directories: [`dir_mode`] of it).
pub(crate) const DEFAULT_FILE_MODE: u32 = 0o600;

/// The mode of the directories a WAL creates, for files of `file_mode`: the same
/// bits, plus search (x) wherever read (r) is set.
pub(crate) fn dir_mode(file_mode: u32) -> u32 {
    let mode = file_mode & 0o777;
    mode | ((mode & 0o444) >> 2)
}

/// How a WAL-owned file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// An existing file, for reading.
    Read,
    /// An existing file, for reading and writing.
    ReadWrite,
    /// For reading and writing, created with the mode if it is missing.
    OpenOrCreate(u32),
    /// For reading and writing, created with the mode; anything already there
    /// under the name is an error.
    CreateNew(u32),
    /// For writing, created with the mode if missing, else emptied.
    CreateOrTruncate(u32),
}

fn foreign(path: &Path) -> WalError {
    WalError::ForeignFile {
        path: path.to_path_buf(),
    }
}

/// Opens the WAL-owned file `path` as `how` says, without following a symlink and
/// without blocking on a FIFO. `op` names what was being done, for an I/O error.
/// Anything under the name that is not a regular file is [`WalError::ForeignFile`],
/// found before it is opened (so a device is never opened), and checked again on
/// the opened descriptor (in case it was swapped in between). A missing file that
/// `how` does not create is an I/O error of kind `NotFound` (see [`open_file_if_exists`]).
pub(crate) fn open_file(path: &Path, how: How, op: &'static str) -> Result<File> {
    match open_file_if_exists(path, how, op)? {
        Some(file) => Ok(file),
        None => Err(WalError::io(
            op,
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )),
    }
}

/// [`open_file`], with `None` for a missing file that `how` does not create.
pub(crate) fn open_file_if_exists(path: &Path, how: How, op: &'static str) -> Result<Option<File>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => return Err(foreign(path)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if matches!(how, How::Read | How::ReadWrite) {
                return Ok(None);
            }
        }
        Err(e) => return Err(WalError::io(op, path, e)),
    }
    let mut options = std::fs::OpenOptions::new();
    // O_NOFOLLOW: a symlink put under the name since the check above fails the open
    // (ELOOP) instead of being followed. O_NONBLOCK: a FIFO put there does not block
    // it (and is refused by the check of the descriptor below).
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    match how {
        How::Read => {
            options.read(true);
        }
        How::ReadWrite => {
            options.read(true).write(true);
        }
        How::OpenOrCreate(mode) => {
            options.read(true).write(true).create(true).mode(mode);
        }
        How::CreateNew(mode) => {
            options.read(true).write(true).create_new(true).mode(mode);
        }
        How::CreateOrTruncate(mode) => {
            options.write(true).create(true).truncate(true).mode(mode);
        }
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(foreign(path)),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && matches!(how, How::Read | How::ReadWrite) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(WalError::io(op, path, e)),
    };
    let meta = file.metadata().map_err(|e| WalError::io(op, path, e))?;
    if !meta.file_type().is_file() {
        return Err(foreign(path));
    }
    clear_nonblock(&file).map_err(|e| WalError::io(op, path, e))?;
    Ok(Some(file))
}

/// Takes `O_NONBLOCK` off a descriptor that turned out to be a regular file (Linux
/// ignores the flag for regular files; POSIX leaves it unspecified).
fn clear_nonblock(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is owned by `file`, open for both calls; they take no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the WAL-owned directory `path` exists: `false` if nothing is there,
/// [`WalError::ForeignFile`] if something other than a directory is (a symlink to
/// a directory included).
pub(crate) fn dir_exists(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_dir() => Ok(true),
        Ok(_) => Err(foreign(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(WalError::io("inspecting", path, e)),
    }
}

/// Creates the WAL-owned directory `path` with `mode` (the umask applies). `mkdir`
/// never follows a symlink: one under the name makes it fail.
pub(crate) fn create_dir(path: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| match dir_exists(path) {
            Err(foreign @ WalError::ForeignFile { .. }) => foreign,
            _ => WalError::io("creating directory", path, e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn directory_modes_add_search_where_read_is_set() {
        assert_eq!(dir_mode(0o600), 0o700);
        assert_eq!(dir_mode(0o640), 0o750);
        assert_eq!(dir_mode(0o644), 0o755);
        assert_eq!(dir_mode(0o660), 0o770);
        assert_eq!(dir_mode(0o620), 0o720);
    }

    #[test]
    fn symlinks_and_fifos_are_foreign_and_never_followed() -> Result<(), Box<dyn std::error::Error>>
    {
        let tmp = tempfile::tempdir()?;
        let target = tmp.path().join("target");
        std::fs::write(&target, b"keep")?;
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link)?;
        let dangling = tmp.path().join("dangling");
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), &dangling)?;
        let fifo = tmp.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())?;
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for path in [&link, &dangling, &fifo] {
            for how in [
                How::Read,
                How::ReadWrite,
                How::OpenOrCreate(0o600),
                How::CreateNew(0o600),
                How::CreateOrTruncate(0o600),
            ] {
                match open_file_if_exists(path, how, "opening") {
                    Err(WalError::ForeignFile { path: p }) => assert_eq!(&p, path),
                    other => panic!("{path:?} {how:?}: expected ForeignFile, got {other:?}"),
                }
            }
        }
        assert_eq!(std::fs::read(&target)?, b"keep");
        assert!(!tmp.path().join("nowhere").exists());
        assert!(matches!(
            dir_exists(&link),
            Err(WalError::ForeignFile { .. })
        ));
        assert!(matches!(
            create_dir(&dangling, 0o700),
            Err(WalError::ForeignFile { .. })
        ));
        assert!(!tmp.path().join("nowhere").exists());

        let file = tmp.path().join("new");
        open_file(&file, How::CreateNew(0o640), "creating")?;
        assert_eq!(
            std::fs::metadata(&file)?.permissions().mode() & 0o777,
            0o640 & !umask()
        );
        assert!(open_file_if_exists(&tmp.path().join("missing"), How::Read, "reading")?.is_none());
        Ok(())
    }

    fn umask() -> u32 {
        // SAFETY: umask takes no pointers; set back at once.
        let old = unsafe { libc::umask(0o022) };
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        old
    }
}
