//! The manifest: what a WAL directory is (layout version, shard count, routing hash,
//! salt).
//!
//! ```text
//! offset  size  field
//!      0     8  magic      b"NANOWALM"
//!      8     4  version    manifest layout version (2; 1 is still read)
//!     12     4  shards     shard count
//!     16     4  hash       routing hash id (1 = XXH3-64 seed 0)
//!     20     4  salt       random, chosen at creation; binds records (`record.rs`)
//!     24     4  crc32c     CRC32C of bytes 0..24
//! ```
//! Version 1 is 24 bytes: no salt, the checksum at offset 20. Written atomically:
//! `MANIFEST.tmp`, fsync, rename to `MANIFEST`, fsync of the directory. Once when the
//! WAL is created, and once more when an open upgrades a version-1 manifest (before
//! the first version-4 segment is written).

use crate::error::{Result, WalError};
use crate::hash::HASH_ALGORITHM_ID;
use crate::io::owned::{open_file, open_file_if_exists, How};
use crate::io::sync_directory;
use std::io::{Read, Write};
use std::path::Path;

pub(crate) const MANIFEST_FILE: &str = "MANIFEST";
pub(crate) const MANIFEST_TMP_FILE: &str = "MANIFEST.tmp";
const MANIFEST_MAGIC: &[u8; 8] = b"NANOWALM";
/// The manifest's own layout version (segments have theirs, `segment::FORMAT_VERSION`).
const MANIFEST_VERSION: u32 = 2;
const MANIFEST_LEN: usize = 28;
const LEGACY_MANIFEST_LEN: usize = 24;

/// The decoded manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) shards: u32,
    /// The salt records of version-4 segments are bound with; `None` in a version-1
    /// manifest (a WAL written before version 4, upgraded by its next open).
    pub(crate) salt: Option<u32>,
}

/// A salt for a new WAL: random per process (std's hasher keys come from the
/// operating system) and mixed with the time and process id.
pub(crate) fn new_salt() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    let x = h.finish();
    (x ^ (x >> 32)) as u32
}

impl Manifest {
    /// A manifest for a new WAL of `shards` shards.
    pub(crate) fn new(shards: u32) -> Manifest {
        Manifest {
            shards,
            salt: Some(new_salt()),
        }
    }

    fn encode(&self) -> [u8; MANIFEST_LEN] {
        let mut b = [0u8; MANIFEST_LEN];
        b[0..8].copy_from_slice(MANIFEST_MAGIC);
        b[8..12].copy_from_slice(&MANIFEST_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.shards.to_le_bytes());
        b[16..20].copy_from_slice(&HASH_ALGORITHM_ID.to_le_bytes());
        b[20..24].copy_from_slice(&self.salt.unwrap_or(0).to_le_bytes());
        let crc = crc32c::crc32c(&b[0..24]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
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

    fn read_from(file: std::fs::File, path: &Path) -> Result<Manifest> {
        let path = path.to_path_buf();
        // One byte more than the longest manifest, to tell a longer file.
        let mut b = Vec::with_capacity(MANIFEST_LEN + 1);
        file.take(MANIFEST_LEN as u64 + 1)
            .read_to_end(&mut b)
            .map_err(|e| WalError::io("reading manifest", &path, e))?;
        if b.len() != MANIFEST_LEN && b.len() != LEGACY_MANIFEST_LEN {
            return Err(WalError::corruption(
                &path,
                0,
                format!(
                    "manifest is {}{} bytes, expected {MANIFEST_LEN} (or {LEGACY_MANIFEST_LEN} for version 1)",
                    if b.len() > MANIFEST_LEN { "more than " } else { "" },
                    b.len().min(MANIFEST_LEN)
                ),
            ));
        }
        if &b[0..8] != MANIFEST_MAGIC {
            return Err(WalError::corruption(
                &path,
                0,
                "manifest magic is not NANOWALM",
            ));
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let crc_at = b.len() - 4;
        if crc32c::crc32c(&b[0..crc_at]) != u32_at(crc_at) {
            return Err(WalError::corruption(
                &path,
                crc_at as u64,
                "manifest checksum mismatch",
            ));
        }
        let version = u32_at(8);
        let expected = if b.len() == MANIFEST_LEN { 2 } else { 1 };
        if version != expected {
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
        let salt = (version == 2).then(|| u32_at(20));
        Ok(Manifest { shards, salt })
    }

    /// Writes `dir/MANIFEST` atomically (version 2), with the default file mode
    /// (tests).
    #[cfg(test)]
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        self.write_with_mode(dir, crate::io::owned::DEFAULT_FILE_MODE)
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
        // fsync the directory: makes the rename (the commit point of creation or of
        // the upgrade) durable before anything relies on it.
        sync_directory(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_damage_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest {
            shards: 5,
            salt: Some(0x0102_0304),
        };
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);
        assert!(!dir.path().join(MANIFEST_TMP_FILE).exists());
        let good = std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap();
        assert_eq!(good.len(), MANIFEST_LEN);
        assert_eq!(&good[20..24], &0x0102_0304u32.to_le_bytes());
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

    #[test]
    fn a_version_1_manifest_reads_without_a_salt() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Vec::new();
        b.extend_from_slice(MANIFEST_MAGIC);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&HASH_ALGORITHM_ID.to_le_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(dir.path().join(MANIFEST_FILE), &b).unwrap();
        assert_eq!(
            Manifest::read(dir.path()).unwrap(),
            Manifest {
                shards: 3,
                salt: None
            }
        );
        // A 24-byte file claiming version 2 is refused.
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&b[..20]);
        b[20..24].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(dir.path().join(MANIFEST_FILE), &b).unwrap();
        assert!(matches!(
            Manifest::read(dir.path()),
            Err(WalError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn new_wals_get_different_salts() {
        let salts: std::collections::HashSet<u32> =
            (0..64).map(|_| Manifest::new(1).salt.unwrap()).collect();
        assert!(salts.len() > 60, "{} distinct salts of 64", salts.len());
    }
}
