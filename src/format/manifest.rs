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
//! Version 1 is 24 bytes: no salt, the checksum at offset 20. Written atomically
//! (`open.rs`): `MANIFEST.tmp`, fsync, rename to `MANIFEST`, fsync of the directory. Once when the
//! WAL is created, and once more when an open upgrades a version-1 manifest (before
//! the first version-4 segment is written).

use crate::error::{Result, WalError};
use crate::format::codec::{Reader, Writer};
use crate::format::names::MAX_SHARDS;
use crate::hash::HASH_ALGORITHM_ID;
use std::path::Path;

// The names moved to `names.rs`; inspect still names them here.
pub(crate) use crate::format::names::{MANIFEST_FILE, MANIFEST_TMP_FILE};
const MANIFEST_MAGIC: &[u8; 8] = b"NANOWALM";
/// The manifest's own layout version (segments have theirs, `segment::FORMAT_VERSION`).
const MANIFEST_VERSION: u32 = 2;
/// Bytes of a manifest: version 2, and version 1 (no salt).
pub(crate) const MANIFEST_LEN: usize = 28;
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

    /// The manifest's bytes (version 2).
    pub(crate) fn encode(&self) -> [u8; MANIFEST_LEN] {
        let mut w = Writer::with_capacity(MANIFEST_LEN);
        w.bytes(MANIFEST_MAGIC)
            .u32(MANIFEST_VERSION)
            .u32(self.shards)
            .u32(HASH_ALGORITHM_ID)
            .u32(self.salt.unwrap_or(0));
        let crc = crc32c::crc32c(w.since(0));
        w.u32(crc);
        w.into_array()
    }

    /// Checks and decodes `b`, the bytes of the manifest at `path` (for errors): all
    /// of them, or at least one more than [`MANIFEST_LEN`] to tell a longer file.
    pub(crate) fn decode(b: &[u8], path: &Path) -> Result<Manifest> {
        let path = path.to_path_buf();
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
        // Every field is there: the length was checked.
        let short = |s: crate::format::codec::Short| {
            WalError::corruption(&path, s.at as u64, "manifest ends inside a field")
        };
        let mut r = Reader::new(b);
        if r.take(8).map_err(short)? != MANIFEST_MAGIC {
            return Err(WalError::corruption(
                &path,
                0,
                "manifest magic is not NANOWALM",
            ));
        }
        let (version, shards, hash) = (
            r.u32().map_err(short)?,
            r.u32().map_err(short)?,
            r.u32().map_err(short)?,
        );
        let salt_field = if b.len() == MANIFEST_LEN {
            Some(r.u32().map_err(short)?)
        } else {
            None
        };
        let crc_at = r.position();
        if crc32c::crc32c(&b[0..crc_at]) != r.u32().map_err(short)? {
            return Err(WalError::corruption(
                &path,
                crc_at as u64,
                "manifest checksum mismatch",
            ));
        }
        let expected = if b.len() == MANIFEST_LEN { 2 } else { 1 };
        if version != expected {
            return Err(WalError::UnsupportedVersion {
                path,
                found: version,
                supported: MANIFEST_VERSION,
            });
        }
        if shards == 0 || shards as usize > MAX_SHARDS {
            return Err(WalError::ManifestMismatch {
                path,
                reason: format!("shard count {shards} is outside 1..={MAX_SHARDS}"),
            });
        }
        if hash != HASH_ALGORITHM_ID {
            return Err(WalError::ManifestMismatch {
                path,
                reason: format!(
                    "routing hash id {hash} is unknown (this build uses {HASH_ALGORITHM_ID})"
                ),
            });
        }
        let salt = salt_field.filter(|_| version == 2);
        Ok(Manifest { shards, salt })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(b: &[u8]) -> Result<Manifest> {
        Manifest::decode(b, Path::new("MANIFEST"))
    }

    #[test]
    fn round_trip_and_every_damage_refused() {
        let m = Manifest {
            shards: 5,
            salt: Some(0x0102_0304),
        };
        let good = m.encode();
        assert_eq!(read(&good).unwrap(), m);
        assert_eq!(good.len(), MANIFEST_LEN);
        assert_eq!(&good[20..24], &0x0102_0304u32.to_le_bytes());
        for at in 0..good.len() {
            let mut bad = good;
            bad[at] ^= 0x04;
            assert!(read(&bad).is_err(), "flip at byte {at} accepted");
        }
        assert!(matches!(
            read(&good[..10]),
            Err(WalError::Corruption { .. })
        ));
        let longer = [&good[..], b"x"].concat();
        assert!(matches!(read(&longer), Err(WalError::Corruption { .. })));
    }

    #[test]
    fn a_version_1_manifest_reads_without_a_salt() {
        let mut b = Vec::new();
        b.extend_from_slice(MANIFEST_MAGIC);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&HASH_ALGORITHM_ID.to_le_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            read(&b).unwrap(),
            Manifest {
                shards: 3,
                salt: None
            }
        );
        // A 24-byte file claiming version 2 is refused.
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&b[..20]);
        b[20..24].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(read(&b), Err(WalError::UnsupportedVersion { .. })));
    }

    #[test]
    fn new_wals_get_different_salts() {
        let salts: std::collections::HashSet<u32> =
            (0..64).map(|_| Manifest::new(1).salt.unwrap()).collect();
        assert!(salts.len() > 60, "{} distinct salts of 64", salts.len());
    }
}
