//! The manifest: what a WAL directory is (format version, shard count, routing hash).
//!
//! ```text
//! offset  size  field
//!      0     8  magic      b"NANOWALM"
//!      8     4  version    format version (1)
//!     12     4  shards     shard count
//!     16     4  hash       routing hash id (1 = XXH3-64 seed 0)
//!     20     4  crc32c     CRC32C of bytes 0..20
//! ```
//! Written once, when the WAL is created, atomically: `MANIFEST.tmp`, fsync, rename to
//! `MANIFEST`, fsync of the directory.

use crate::error::{Result, WalError};
use crate::hash::HASH_ALGORITHM_ID;
use crate::owned::{open_file, open_file_if_exists, How};
use crate::storage::sync_directory;
use std::io::{Read, Write};
use std::path::Path;

pub(crate) const MANIFEST_FILE: &str = "MANIFEST";
pub(crate) const MANIFEST_TMP_FILE: &str = "MANIFEST.tmp";
const MANIFEST_MAGIC: &[u8; 8] = b"NANOWALM";
const MANIFEST_LEN: usize = 24;
/// The manifest's own layout version (segments have theirs, `segment::FORMAT_VERSION`).
const MANIFEST_VERSION: u32 = 1;

/// The decoded manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) shards: u32,
}

impl Manifest {
    fn encode(&self) -> [u8; MANIFEST_LEN] {
        let mut b = [0u8; MANIFEST_LEN];
        b[0..8].copy_from_slice(MANIFEST_MAGIC);
        b[8..12].copy_from_slice(&MANIFEST_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.shards.to_le_bytes());
        b[16..20].copy_from_slice(&HASH_ALGORITHM_ID.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..20]);
        b[20..24].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads and checks `dir/MANIFEST` (a regular file: a symlink or special file
    /// under the name is [`WalError::ForeignFile`]).
    pub(crate) fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let file = open_file(&path, How::Read, "reading manifest")?;
        Self::read_from(file, &path)
    }

    /// [`read`](Self::read), with `None` if there is no `dir/MANIFEST`.
    pub(crate) fn read_if_exists(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE);
        match open_file_if_exists(&path, How::Read, "reading manifest")? {
            Some(file) => Self::read_from(file, &path).map(Some),
            None => Ok(None),
        }
    }

    fn read_from(mut file: std::fs::File, path: &Path) -> Result<Manifest> {
        let path = path.to_path_buf();
        let len = file
            .metadata()
            .map_err(|e| WalError::io("reading manifest", &path, e))?
            .len();
        if len != MANIFEST_LEN as u64 {
            return Err(WalError::corruption(
                &path,
                0,
                format!("manifest is {len} bytes, expected {MANIFEST_LEN}"),
            ));
        }
        let mut b = [0u8; MANIFEST_LEN];
        file.read_exact(&mut b)
            .map_err(|e| WalError::io("reading manifest", &path, e))?;
        if &b[0..8] != MANIFEST_MAGIC {
            return Err(WalError::corruption(
                &path,
                0,
                "manifest magic is not NANOWALM",
            ));
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if crc32c::crc32c(&b[0..20]) != u32_at(20) {
            return Err(WalError::corruption(
                &path,
                20,
                "manifest checksum mismatch",
            ));
        }
        let version = u32_at(8);
        if version != MANIFEST_VERSION {
            return Err(WalError::UnsupportedVersion {
                path,
                found: version,
                supported: MANIFEST_VERSION,
            });
        }
        let shards = u32_at(12);
        if shards == 0 || shards as usize > crate::options::MAX_SHARDS {
            return Err(WalError::ManifestMismatch {
                path,
                reason: format!(
                    "shard count {shards} is outside 1..={}",
                    crate::options::MAX_SHARDS
                ),
            });
        }
        let hash = u32_at(16);
        if hash != HASH_ALGORITHM_ID {
            return Err(WalError::ManifestMismatch {
                path,
                reason: format!(
                    "routing hash id {hash} is unknown (this build uses {HASH_ALGORITHM_ID})"
                ),
            });
        }
        Ok(Manifest { shards })
    }

    /// Writes `dir/MANIFEST` atomically, with the default file mode (tests).
    #[cfg(test)]
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        self.write_with_mode(dir, crate::owned::DEFAULT_FILE_MODE)
    }

    /// Writes `dir/MANIFEST` atomically, created with permission bits `mode`.
    pub(crate) fn write_with_mode(&self, dir: &Path, mode: u32) -> Result<()> {
        let tmp = dir.join(MANIFEST_TMP_FILE);
        let path = dir.join(MANIFEST_FILE);
        let mut f = open_file(&tmp, How::CreateOrTruncate(mode), "creating manifest")?;
        f.write_all(&self.encode())
            .map_err(|e| WalError::io("writing manifest", &tmp, e))?;
        // fsync the temporary file: its bytes must be on disk before the rename makes
        // it the manifest, or a crash could leave an empty MANIFEST.
        f.sync_all()
            .map_err(|e| WalError::io("syncing manifest", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| WalError::io("renaming manifest", &path, e))?;
        // fsync the directory: makes the rename (the commit point of creation) durable.
        sync_directory(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_damage_refused() {
        let dir = tempfile::tempdir().unwrap();
        Manifest { shards: 5 }.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), Manifest { shards: 5 });
        assert!(!dir.path().join(MANIFEST_TMP_FILE).exists());
        let good = std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x04;
            std::fs::write(dir.path().join(MANIFEST_FILE), &bad).unwrap();
            assert!(
                Manifest::read(dir.path()).is_err(),
                "flip at byte {at} accepted"
            );
        }
        std::fs::write(dir.path().join(MANIFEST_FILE), &good[..10]).unwrap();
        assert!(matches!(
            Manifest::read(dir.path()),
            Err(WalError::Corruption { .. })
        ));
    }
}
