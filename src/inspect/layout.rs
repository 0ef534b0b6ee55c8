//! Reading a WAL directory's layout without reading any segment: the manifest, the
//! shard directories (`recovery::read_shard_dir`, the engine's own listing) and
//! their segment files, and what does not belong.

use super::report::{Damage, DamageKind, SegmentFile, ShardLayout, WalLayout};
use crate::error::{Result, WalError};
use crate::format::manifest::{MANIFEST_FILE, MANIFEST_TMP_FILE};
use crate::io::shard_dir_name;
use crate::recovery::read_shard_dir;
use std::fmt;
use std::path::{Path, PathBuf};

/// Name of the lock file an open `Wal` holds (never taken here).
const LOCK_FILE: &str = "LOCK";

/// Why an entry of a WAL directory is damage.
#[derive(Debug, thiserror::Error)]
enum Reason<'e> {
    #[error("not created by the WAL; Wal::new refuses a directory holding it")]
    ForeignInWal,
    #[error("not a segment file; Wal::new refuses a shard directory holding it")]
    ForeignInShard,
    #[error("{error}; shard count inferred from the shard directories: {inferred}")]
    BadManifest {
        error: ErrorReason<'e>,
        inferred: u32,
    },
    #[error("shard directory beyond the manifest's {0} shards; Wal::new refuses it")]
    BeyondShardCount(u32),
}

/// Reads the manifest and lists shards and segment files, without reading segments.
///
/// Fails when `dir` is not a directory, cannot be listed, or is not a WAL (no
/// manifest and no shard directory), or when its manifest has a format version this
/// build cannot read. Damage it can describe (a damaged manifest, foreign files) is
/// listed in [`WalLayout::damage`] and [`ShardLayout::damage`] instead.
pub fn layout(dir: &Path) -> Result<WalLayout> {
    let meta = std::fs::metadata(dir).map_err(|e| WalError::io("inspecting", dir, e))?;
    if !meta.is_dir() {
        return Err(WalError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let mut damage = Vec::new();
    let mut shard_dirs: Vec<(u32, PathBuf)> = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| WalError::io("listing", dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("listing", dir, e))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        names.push((entry.file_name(), entry.path(), is_dir));
    }
    names.sort();
    for (name, path, is_dir) in names {
        let name = name.to_str().unwrap_or("");
        if !is_dir && (name == LOCK_FILE || name == MANIFEST_FILE || name == MANIFEST_TMP_FILE) {
            continue;
        }
        match parse_shard_dir_name(name) {
            Some(shard) if is_dir => shard_dirs.push((shard, path)),
            _ => damage.push(Damage {
                len: entry_len(&path),
                path,
                offset: 0,
                kind: DamageKind::ForeignFile,
                reason: Reason::ForeignInWal.to_string(),
            }),
        }
    }

    let (shard_count, manifest_ok, salt) = match crate::open::read_manifest_in(dir) {
        Ok(m) => (m.shards, true, m.salt),
        Err(e @ WalError::UnsupportedVersion { .. }) => return Err(e),
        Err(WalError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound && shard_dirs.is_empty() =>
        {
            // No manifest and no shard: not a WAL (Wal::new would create one here).
            return Err(WalError::ManifestMismatch {
                path: dir.join(MANIFEST_FILE),
                reason: "no MANIFEST and no shard directory: this is not a WAL directory".into(),
            });
        }
        Err(e @ WalError::Io { .. }) if !is_not_found(&e) => return Err(e),
        Err(e) => {
            let inferred = shard_dirs.iter().map(|(s, _)| s + 1).max().unwrap_or(0);
            damage.push(Damage {
                path: dir.join(MANIFEST_FILE),
                offset: damage_offset(&e),
                len: entry_len(&dir.join(MANIFEST_FILE)),
                kind: DamageKind::BadManifest,
                reason: Reason::BadManifest {
                    error: ErrorReason(&e),
                    inferred,
                }
                .to_string(),
            });
            (inferred, false, None)
        }
    };

    let mut shards = Vec::with_capacity(shard_count as usize);
    for shard in 0..shard_count {
        let sdir = dir.join(shard_dir_name(shard));
        let exists = shard_dirs.iter().any(|(s, _)| *s == shard);
        let (files, shard_damage) = if exists {
            list_shard(&sdir)?
        } else {
            (Vec::new(), Vec::new())
        };
        let count = files.len();
        let shard_files = std::sync::Arc::new(files.iter().map(|(_, p)| p.clone()).collect());
        let segments = files
            .into_iter()
            .enumerate()
            .map(|(i, (sequence, path))| SegmentFile {
                shard,
                sequence,
                path,
                newest: i + 1 == count,
                shard_files: std::sync::Arc::clone(&shard_files),
                position: i,
                salt,
            })
            .collect();
        shards.push(ShardLayout {
            shard,
            dir: sdir,
            exists,
            segments,
            damage: shard_damage,
        });
    }
    for (shard, path) in shard_dirs {
        if shard >= shard_count {
            damage.push(Damage {
                path,
                offset: 0,
                len: 0,
                kind: DamageKind::Mismatch,
                reason: Reason::BeyondShardCount(shard_count).to_string(),
            });
        }
    }
    Ok(WalLayout {
        dir: dir.to_path_buf(),
        shard_count,
        manifest_ok,
        shards,
        damage,
    })
}

/// `shard-NNN` (exactly as the WAL names it) to NNN.
fn parse_shard_dir_name(name: &str) -> Option<u32> {
    let shard: u32 = name.strip_prefix("shard-")?.parse().ok()?;
    (name == shard_dir_name(shard) && (shard as usize) < crate::options::MAX_SHARDS)
        .then_some(shard)
}

fn is_not_found(e: &WalError) -> bool {
    matches!(e, WalError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

fn damage_offset(e: &WalError) -> u64 {
    match e {
        WalError::Corruption { offset, .. } => *offset,
        _ => 0,
    }
}

/// The reason a [`WalError`] gives, for a damage report: a corruption's or a
/// mismatch's own words, "the manifest is missing", or the whole error.
#[derive(Debug)]
pub(super) struct ErrorReason<'e>(pub(super) &'e WalError);

impl fmt::Display for ErrorReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            WalError::Corruption { reason, .. } | WalError::ManifestMismatch { reason, .. } => {
                f.write_str(reason)
            }
            WalError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                f.write_str("the manifest is missing")
            }
            other => write!(f, "{other}"),
        }
    }
}

/// Length of a file (0 for a directory or when unknown): for damage reports only.
fn entry_len(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map_or(0, |m| m.len())
}

/// Segment files of a shard directory (sequence, path), oldest first, and the damage
/// of its foreign entries.
type ShardListing = (Vec<(u64, PathBuf)>, Vec<Damage>);

/// The segment files of a shard directory, oldest first, and its foreign entries.
///
/// The engine's own reading of the directory (`recovery::read_shard_dir`): every
/// foreign entry is reported, and the segments are still checked.
fn list_shard(dir: &Path) -> Result<ShardListing> {
    let (files, foreign) = read_shard_dir(dir)?;
    let damage = foreign
        .into_iter()
        .map(|path| Damage {
            len: entry_len(&path),
            path,
            offset: 0,
            kind: DamageKind::ForeignFile,
            reason: Reason::ForeignInShard.to_string(),
        })
        .collect();
    Ok((files, damage))
}
