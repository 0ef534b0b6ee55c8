//! Every name a WAL owns in its directory, and the parsers that tell them apart:
//!
//! ```text
//! LOCK                          advisory lock (flock), held while open
//! MANIFEST, MANIFEST.tmp        the manifest, and where it is written first
//! shard-NNN/                    one directory per shard, three digits or more
//! shard-NNN/SSSS…SSSS.seg       segments, 20-digit sequence numbers
//! shard-NNN/INDEX, INDEX.tmp    the index checkpoint, and where it is written first
//! ```
//!
//! Paths here are relative to the WAL directory: the storage (`io`) resolves them.

use std::path::PathBuf;

/// The lock file.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// The manifest.
pub(crate) const MANIFEST_FILE: &str = "MANIFEST";
/// Where a manifest is written before it is renamed into place.
pub(crate) const MANIFEST_TMP_FILE: &str = "MANIFEST.tmp";
/// The index checkpoint's name in its shard directory.
pub(crate) const CHECKPOINT_FILE: &str = "INDEX";
/// Where a checkpoint is written before it is renamed into place.
pub(crate) const CHECKPOINT_TMP_FILE: &str = "INDEX.tmp";
/// Suffix of segment file names.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";
/// Largest shard count, which the manifest checks (`WalOptions::shards` too): shard
/// directories are named `shard-NNN`.
pub(crate) const MAX_SHARDS: usize = 1000;

const SHARD_PREFIX: &str = "shard-";

/// Name of shard `shard`'s directory.
pub(crate) fn shard_dir_name(shard: u32) -> String {
    format!("{SHARD_PREFIX}{shard:03}")
}

/// Parses a shard directory's name back to its shard: only the name
/// [`shard_dir_name`] gives (no sign, no extra zeros).
pub(crate) fn parse_shard_dir_name(name: &str) -> Option<u32> {
    let shard: u32 = name.strip_prefix(SHARD_PREFIX)?.parse().ok()?;
    (name == shard_dir_name(shard)).then_some(shard)
}

/// Whether `name` looks like a shard directory's, canonical or not (`shard-…`).
pub(crate) fn is_shard_like(name: &str) -> bool {
    name.starts_with(SHARD_PREFIX)
}

/// File name of segment `sequence`: 20 zero-padded digits, so names sort as numbers.
pub(crate) fn segment_file_name(sequence: u64) -> String {
    format!("{sequence:020}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name back to its sequence number.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether a shard directory's entry named `name` is a checkpoint or its temporary
/// file (the only names there besides segments).
pub(crate) fn is_checkpoint_name(name: &std::ffi::OsStr) -> bool {
    name == CHECKPOINT_FILE || name == CHECKPOINT_TMP_FILE
}

/// Shard `shard`'s directory.
pub(crate) fn shard_dir(shard: u32) -> PathBuf {
    PathBuf::from(shard_dir_name(shard))
}

/// Segment `sequence` of shard `shard`.
pub(crate) fn segment_path(shard: u32, sequence: u64) -> PathBuf {
    shard_dir(shard).join(segment_file_name(sequence))
}

/// Shard `shard`'s index checkpoint, and where it is written first.
pub(crate) fn checkpoint_paths(shard: u32) -> (PathBuf, PathBuf) {
    let dir = shard_dir(shard);
    (dir.join(CHECKPOINT_FILE), dir.join(CHECKPOINT_TMP_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_numerically_and_parse_back() {
        assert_eq!(segment_file_name(7), "00000000000000000007.seg");
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert!(segment_file_name(9) < segment_file_name(10));
        for bad in [
            "7.seg",
            "0000000000000000000x.seg",
            "00000000000000000007.log",
            "LOCK",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn shard_directories_parse_back_only_as_named() {
        assert_eq!(shard_dir_name(7), "shard-007");
        assert_eq!(shard_dir_name(1234), "shard-1234");
        assert_eq!(parse_shard_dir_name("shard-007"), Some(7));
        assert_eq!(parse_shard_dir_name("shard-1234"), Some(1234));
        for bad in [
            "shard-7",
            "shard-0007",
            "shard-+07",
            "shard-",
            "shard-abc",
            "x",
        ] {
            assert_eq!(parse_shard_dir_name(bad), None, "{bad}");
        }
        assert!(is_shard_like("shard-7") && !is_shard_like("LOCK"));
        assert_eq!(
            segment_path(2, 9),
            PathBuf::from("shard-002/00000000000000000009.seg")
        );
        assert_eq!(
            checkpoint_paths(1),
            (
                PathBuf::from("shard-001/INDEX"),
                PathBuf::from("shard-001/INDEX.tmp")
            )
        );
    }
}
