//! Read-only inspection of a WAL directory: the library side of the operator tools
//! (`nano-wal inspect`, `verify` and `dump`).
//!
//! - [`layout`] reads the manifest and lists the shards and their segment files
//!   (no segment is read).
//! - [`scan`] also reads every segment and checks every checksum: per shard and per
//!   segment it counts records, distinct keys and bytes, finds the time range, and
//!   lists every [`Damage`]. It checks each shard's index checkpoint too
//!   ([`CheckpointCheck`]): whether the next open would load it, and then every
//!   key's locations, which that open reads only when the key is read.
//! - [`SegmentFile::read_records`] returns the valid records of one segment, in file
//!   order, for dumping.
//!
//! **Read-only.** Files are opened read-only, never through a symlink; nothing is ever
//! written, truncated, renamed or removed, and the directory's `LOCK` is **not**
//! taken. So the tools may run next to an open [`Wal`](crate::Wal), in this process
//! or another, but they see whatever is on disk at that moment: the writer may be in
//! the middle of a write, so the last record of a shard's newest segment may appear
//! torn, and retention may remove a segment between listing and reading it (an I/O
//! error). Close the WAL first for an exact picture. Each segment is read whole into
//! memory, one at a time per shard (about `max_segment_size` bytes each, more for a
//! segment holding one larger record).
//!
//! **Classification.** Damage is classified by recovery's own rules (the functions
//! `recovery::judge`, `judge_header`, `vouched_gaps` and `shortened_by`, which
//! `Wal::new` uses too), so a report says what the next [`Wal::new`](crate::Wal::new)
//! would do:
//! - In a shard's **newest** segment, a record that fails its checks with nothing
//!   valid after it is a [`DamageKind::TornTail`]: an interrupted write that recovery
//!   truncates. A newest segment whose header is damaged and in which no record
//!   verifies (a crash while it was created) is a torn tail too: recovery removes it.
//! - In the newest segment, zero bytes from some offset to the end of the file are
//!   **free space**: the writer preallocates ahead of its write position and a clean
//!   close truncates it. They are counted in [`SegmentScan::free_len`], not as damage.
//!   In an older (sealed) segment they are [`DamageKind::Corrupt`].
//! - A failing record with a valid record after it, anywhere, is
//!   [`DamageKind::Corrupt`]: `Wal::new` fails under
//!   [`RecoveryMode::Strict`](crate::RecoveryMode::Strict) and skips it under
//!   `SkipCorrupted`. So is [`DamageKind::BadHeader`], and a [`DamageKind::Hole`]
//!   (a durable segment missing or cut short).
//!
//! The records of a segment whose header is damaged (but whose version is readable)
//! are still checked, counted and returned by [`SegmentFile::read_records`], so they
//! can be salvaged; recovery refuses such a segment (`Strict`) or keeps its records
//! (`SkipCorrupted`).

use crate::error::{Result, WalError};
use crate::format::manifest::{MANIFEST_FILE, MANIFEST_TMP_FILE};
use crate::format::record::{marker_vouches, Codec, Decoded};
use crate::format::segment_header::{
    SegmentHeader, FORMAT_VERSION, OLDEST_READABLE_VERSION, SEGMENT_HEADER_LEN,
};
use crate::hash::shard_for;
use crate::io::shard_dir_name;
use crate::recovery::{judge, judge_header, read_shard_dir, HeaderJudgment, Judgment};
use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::checkpoint_check::{check_checkpoint, Seen, SeenRecord};

/// Name of the lock file an open `Wal` holds (never taken here).
const LOCK_FILE: &str = "LOCK";

/// What kind of damage a [`Damage`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DamageKind {
    /// The end of a shard's newest segment does not decode and nothing valid follows:
    /// an interrupted write.
    /// Recovery truncates the file at [`Damage::offset`]. Also a newest segment whose
    /// header is damaged and in which no record verifies, which recovery removes.
    /// Nothing in it was acknowledged as durable.
    TornTail,
    /// A record fails its checks (length fields, checksum) somewhere other than a
    /// torn tail, or a sealed segment ends in bytes that are not records.
    Corrupt,
    /// A segment header fails its checks (too short, magic, checksum).
    BadHeader,
    /// A segment header carries a format version this build cannot read; its records
    /// are not checked.
    UnsupportedVersion,
    /// A segment header names another shard or sequence than its file name and
    /// directory, or a shard directory lies beyond the manifest's shard count.
    Mismatch,
    /// An entry the WAL did not create: `Wal::new` refuses the directory.
    ForeignFile,
    /// The manifest is missing, or fails its checks; the shard count was then
    /// inferred from the shard directories.
    BadManifest,
    /// A shard's index checkpoint (`INDEX`) that the next open with
    /// `index_checkpoint` set would load (or fail on, if the file cannot be read),
    /// but that disagrees with the segments: a key's locations fail their checks or
    /// name records that are not that key's, or its record counts, newest record
    /// times or sync-marker figure differ from the scan's, or a segment ends in
    /// bytes after its last record. Reads of the keys concerned would then fail or
    /// miss records, and counts and retention would go by wrong figures. A clean
    /// close writes the checkpoint again from what was loaded (unless a key's
    /// locations fail their checks: then the close fails and the next open scans),
    /// so the damage stays until an open scans. Removing the file is the repair:
    /// every record is in the segments.
    BadCheckpoint,
    /// Records missing in the middle of a shard: a segment missing between two
    /// others, or a sealed segment shorter than its successor's seal note records,
    /// while a sync marker shows it was durable. `Strict` recovery refuses the WAL;
    /// `SkipCorrupted` opens it and lists the hole in `RecoveryReport::holes`.
    Hole,
}

impl DamageKind {
    /// True for [`DamageKind::TornTail`]: damage the next open repairs by itself
    /// (losing only records that were never acknowledged as durable).
    pub fn is_torn_tail(self) -> bool {
        self == DamageKind::TornTail
    }

    /// A short lowercase label, e.g. `"torn tail"`.
    pub fn label(self) -> &'static str {
        match self {
            DamageKind::TornTail => "torn tail",
            DamageKind::Corrupt => "corrupt",
            DamageKind::BadHeader => "bad header",
            DamageKind::UnsupportedVersion => "unsupported version",
            DamageKind::Mismatch => "mismatch",
            DamageKind::ForeignFile => "foreign file",
            DamageKind::BadManifest => "bad manifest",
            DamageKind::BadCheckpoint => "bad index checkpoint",
            DamageKind::Hole => "hole",
        }
    }
}

impl fmt::Display for DamageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One damaged range of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Damage {
    /// The damaged file (or directory entry).
    pub path: PathBuf,
    /// Byte offset of the damage within the file.
    pub offset: u64,
    /// Damaged bytes from `offset` (up to the next valid record, or the last non-zero
    /// byte of a torn tail).
    pub len: u64,
    /// What kind of damage.
    pub kind: DamageKind,
    /// What check failed, and what recovery would do.
    pub reason: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} at offset {} ({} bytes): {}",
            self.kind,
            self.path.display(),
            self.offset,
            self.len,
            self.reason
        )
    }
}

/// A segment file found in a shard directory (not yet read).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentFile {
    /// Shard the directory belongs to.
    pub shard: u32,
    /// Sequence number, from the file name.
    pub sequence: u64,
    /// The file.
    pub path: PathBuf,
    /// True for the shard's newest segment (largest sequence): the one that may end
    /// in a torn tail or in preallocated free space (besides a sealed segment whose
    /// seal's fsync may not have finished, which no sync marker vouches for).
    pub newest: bool,
    /// The shard's segment files, oldest first (this one at `position`).
    shard_files: std::sync::Arc<Vec<PathBuf>>,
    position: usize,
    /// The manifest's salt, if it has one and was read.
    salt: Option<u32>,
}

impl SegmentFile {
    /// Whether recovery may treat damage here as a crash's work (a torn tail, lost
    /// pages, a header that never reached the disk): the newest segment, or a sealed
    /// one whose seal's fsync may not have finished (`recovery::seal_may_be_unfinished`).
    /// Unreadable later files count as "no".
    fn damage_may_be_a_crash(&self, version: Option<u32>) -> bool {
        if self.newest {
            return true;
        }
        let later: Vec<&Path> = self.shard_files[self.position + 1..]
            .iter()
            .map(PathBuf::as_path)
            .collect();
        crate::recovery::seal_may_be_unfinished(self.sequence, version, &later, || {
            crate::recovery::later_proof(&later, self.salt, self.shard)
        })
        .unwrap_or(false)
    }

    /// How this segment's records read, given its bytes (see
    /// `recovery::file_codec`).
    fn codec(&self, data: &[u8]) -> Codec {
        crate::recovery::file_codec(data, self.salt, self.shard, self.sequence)
    }
}

/// One shard directory and its segment files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardLayout {
    /// Shard id.
    pub shard: u32,
    /// The shard directory (`DIR/shard-NNN`).
    pub dir: PathBuf,
    /// False when the directory is missing (`Wal::new` re-creates it; not damage).
    pub exists: bool,
    /// Segment files, oldest first.
    pub segments: Vec<SegmentFile>,
    /// Foreign entries in the shard directory.
    pub damage: Vec<Damage>,
}

/// What a WAL directory holds, without reading any segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalLayout {
    /// The WAL directory.
    pub dir: PathBuf,
    /// Shard count: from the manifest, or inferred from the shard directories when
    /// the manifest is damaged (`manifest_ok` false).
    pub shard_count: u32,
    /// True when the manifest was read and passed every check.
    pub manifest_ok: bool,
    /// Every shard, by id.
    pub shards: Vec<ShardLayout>,
    /// Damage at the directory level: manifest, foreign entries, extra shard
    /// directories.
    pub damage: Vec<Damage>,
}

impl WalLayout {
    /// The shard that owns `key` under the WAL's routing hash, or `None` when the
    /// manifest is damaged (the shard count, and so the routing, is then uncertain).
    pub fn shard_for_key(&self, key: &[u8]) -> Option<u32> {
        if !self.manifest_ok || self.shard_count == 0 {
            return None;
        }
        u32::try_from(shard_for(key, self.shard_count as usize)).ok()
    }
}

/// The decoded header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentHeaderInfo {
    /// Format version.
    pub version: u32,
    /// Shard id written in the header.
    pub shard: u32,
    /// Sequence number written in the header.
    pub sequence: u64,
    /// Creation time, microseconds since the Unix epoch.
    pub created_us: u64,
}

/// What one segment holds, after every record was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentScan {
    /// The file, as listed.
    pub file: SegmentFile,
    /// The header, when it passed its checks (its version may still be unsupported:
    /// see `damage`).
    pub header: Option<SegmentHeaderInfo>,
    /// File length on disk.
    pub file_len: u64,
    /// End of the last valid record (the header length when there is none; 0 when
    /// the header is unreadable and no record follows): where recovery would put the
    /// next record when no damage lies beyond.
    pub data_len: u64,
    /// Zero bytes at the end of the newest segment: preallocated free space.
    pub free_len: u64,
    /// Valid records (sync markers and seal notes not included).
    pub records: u64,
    /// Valid sync markers: bookkeeping records saying that the shard's segments up
    /// to some sequence number are durable (docs/FORMAT.md); never returned to readers.
    pub markers: u64,
    /// The highest segment sequence number those markers vouch for (0: none).
    pub vouches_through: u64,
    /// The seal note first in this segment, if any (docs/FORMAT.md): the segment
    /// sealed just before this one, as `(sequence, length)` when sealed.
    pub seal_note: Option<(u64, u64)>,
    /// Distinct keys among the valid records.
    pub keys: u64,
    /// Encoded bytes of the valid records (record headers included).
    pub record_bytes: u64,
    /// Key bytes of the valid records.
    pub key_bytes: u64,
    /// Value bytes of the valid records.
    pub value_bytes: u64,
    /// Oldest record timestamp, microseconds since the Unix epoch.
    pub oldest_us: Option<u64>,
    /// Newest record timestamp, microseconds since the Unix epoch.
    pub newest_us: Option<u64>,
    /// Everything wrong with the file, in file order.
    pub damage: Vec<Damage>,
}

/// What one shard holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardScan {
    /// Shard id.
    pub shard: u32,
    /// The shard directory.
    pub dir: PathBuf,
    /// False when the directory is missing.
    pub exists: bool,
    /// Segments, oldest first.
    pub segments: Vec<SegmentScan>,
    /// Distinct keys over all segments of the shard (counted by 128-bit XXH3 hash).
    pub keys: u64,
    /// The shard's index checkpoint, as the next open would find it.
    pub checkpoint: CheckpointCheck,
    /// Foreign entries in the shard directory, and a bad index checkpoint.
    pub damage: Vec<Damage>,
}

/// A shard's index checkpoint (`shard-NNN/INDEX`, written by a clean close with
/// `WalOptions::index_checkpoint` set), as the next open with that option would
/// find it. Only a scan checks it (not [`layout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointCheck {
    /// There is none: none was written, an open has removed it since, or the shard
    /// directory is missing. (An `INDEX` that is not a regular file is listed as a
    /// foreign file instead.)
    Absent,
    /// The next open with `index_checkpoint` set would load it instead of reading
    /// the segments: its front passes its checks, it describes the segment files
    /// exactly as the scan read them, every key's locations pass their checks and
    /// name records of that key and length, its record counts, newest record times
    /// and sync-marker figure are the scan's, and no segment has bytes after its
    /// last record.
    ///
    /// Segments with damage of their own are left out of that comparison (their
    /// damage is reported with them): locations into them are not checked, nor is
    /// the sync-marker figure when any segment is damaged. The open that loads the
    /// checkpoint does not read the segments either, so it does **not** see that
    /// damage: it opens, and reads of the damaged records fail. Removing `INDEX`
    /// makes the open scan, and then refuse, skip or truncate as the damage says.
    Usable {
        /// Keys it lists.
        keys: u64,
        /// Locations it holds (one per record).
        locations: u64,
    },
    /// The next open would ignore it and scan the shard (harmless), for this reason.
    Ignored {
        /// Why (a check of its front failed, or the files changed since it was
        /// written, or while the scan read them).
        reason: String,
    },
    /// The next open would load it, but it is damaged: see the shard's
    /// [`DamageKind::BadCheckpoint`] entries.
    Damaged,
}

impl ShardScan {
    /// Where the shard's index checkpoint is (or would be): `shard-NNN/INDEX`.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.join(crate::format::checkpoint::CHECKPOINT_FILE)
    }

    /// Valid records in all segments.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// Bytes of all segment files on disk.
    pub fn file_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.file_len).sum()
    }

    /// Encoded bytes of all valid records.
    pub fn record_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.record_bytes).sum()
    }

    /// Oldest record timestamp in the shard.
    pub fn oldest_us(&self) -> Option<u64> {
        self.segments.iter().filter_map(|s| s.oldest_us).min()
    }

    /// Newest record timestamp in the shard.
    pub fn newest_us(&self) -> Option<u64> {
        self.segments.iter().filter_map(|s| s.newest_us).max()
    }

    /// Every damage of the shard: its directory's, then each segment's.
    pub fn all_damage(&self) -> impl Iterator<Item = &Damage> + '_ {
        self.damage
            .iter()
            .chain(self.segments.iter().flat_map(|s| s.damage.iter()))
    }
}

/// What a whole WAL directory holds, after every record was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalScan {
    /// The WAL directory.
    pub dir: PathBuf,
    /// Shard count (see [`WalLayout::shard_count`]).
    pub shard_count: u32,
    /// True when the manifest was read and passed every check.
    pub manifest_ok: bool,
    /// Every shard, by id.
    pub shards: Vec<ShardScan>,
    /// Damage at the directory level (manifest, foreign entries).
    pub damage: Vec<Damage>,
}

impl WalScan {
    /// Segment files in all shards.
    pub fn segments(&self) -> u64 {
        self.shards.iter().map(|s| s.segments.len() as u64).sum()
    }

    /// Valid records in all shards.
    pub fn records(&self) -> u64 {
        self.shards.iter().map(ShardScan::records).sum()
    }

    /// Distinct keys: the sum over shards (a key lives in exactly one shard).
    pub fn keys(&self) -> u64 {
        self.shards.iter().map(|s| s.keys).sum()
    }

    /// Bytes of all segment files on disk.
    pub fn file_bytes(&self) -> u64 {
        self.shards.iter().map(ShardScan::file_bytes).sum()
    }

    /// Encoded bytes of all valid records.
    pub fn record_bytes(&self) -> u64 {
        self.shards.iter().map(ShardScan::record_bytes).sum()
    }

    /// Oldest record timestamp in the WAL.
    pub fn oldest_us(&self) -> Option<u64> {
        self.shards.iter().filter_map(ShardScan::oldest_us).min()
    }

    /// Newest record timestamp in the WAL.
    pub fn newest_us(&self) -> Option<u64> {
        self.shards.iter().filter_map(ShardScan::newest_us).max()
    }

    /// Every damage: the directory's, then each shard's.
    pub fn all_damage(&self) -> impl Iterator<Item = &Damage> + '_ {
        self.damage
            .iter()
            .chain(self.shards.iter().flat_map(ShardScan::all_damage))
    }

    /// The first damage for which `Wal::new` refuses the whole directory, whatever
    /// the options and before any shard is recovered or its index checkpoint loaded:
    /// anything at the directory level (a bad manifest, a foreign entry, a shard
    /// directory beyond the manifest's count) or a foreign entry in a shard
    /// directory.
    pub fn refusing_damage(&self) -> Option<&Damage> {
        self.damage.first().or_else(|| {
            self.shards
                .iter()
                .flat_map(|s| s.damage.iter())
                .find(|d| d.kind == DamageKind::ForeignFile)
        })
    }

    /// True when nothing at all is damaged (free space is not damage).
    pub fn is_clean(&self) -> bool {
        self.all_damage().next().is_none()
    }
}

/// One valid record, borrowed from a [`SegmentRecords`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordRef<'a> {
    /// Shard of the segment.
    pub shard: u32,
    /// Sequence number of the segment.
    pub sequence: u64,
    /// Byte offset of the record within the segment file.
    pub offset: u64,
    /// Timestamp, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
}

/// The valid records of one segment, read from disk by [`SegmentFile::read_records`].
#[derive(Clone)]
pub struct SegmentRecords {
    file: SegmentFile,
    codec: Codec,
    data: Vec<u8>,
    offsets: Vec<usize>,
    damage: Vec<Damage>,
}

impl fmt::Debug for SegmentRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentRecords")
            .field("file", &self.file)
            .field("records", &self.offsets.len())
            .field("damage", &self.damage)
            .finish()
    }
}

impl SegmentRecords {
    /// The segment they were read from.
    pub fn file(&self) -> &SegmentFile {
        &self.file
    }

    /// Number of valid records.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// True when the segment holds no valid record.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Damage found while reading (as [`SegmentScan::damage`]).
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// The valid records, in file order (which is append order).
    pub fn iter(&self) -> impl Iterator<Item = RecordRef<'_>> + '_ {
        self.offsets.iter().filter_map(move |&offset| {
            let record = self
                .codec
                .decode(self.data.get(offset..)?, offset as u64)
                .ok()?;
            Some(RecordRef {
                shard: self.file.shard,
                sequence: self.file.sequence,
                offset: offset as u64,
                timestamp_us: record.timestamp_us,
                key: record.key,
                value: record.value,
            })
        })
    }
}

impl SegmentFile {
    /// Reads the segment and checks every record.
    pub fn scan(&self) -> Result<SegmentScan> {
        self.scan_into(&mut HashSet::new(), None)
    }

    /// Reads the segment and returns its valid records (and its damage).
    pub fn read_records(&self) -> Result<SegmentRecords> {
        let data = read_file(&self.path)?;
        let mut offsets = Vec::new();
        let walked = walk(self, &data, |offset, _| offsets.push(offset));
        Ok(SegmentRecords {
            file: self.clone(),
            codec: walked.codec,
            data,
            offsets,
            damage: walked.damage,
        })
    }

    /// [`SegmentFile::scan`], also adding the hashes of its keys to `shard_keys`.
    /// `seen`: where to note the file's stamp, header and records, for the check of
    /// the shard's index checkpoint.
    fn scan_into(
        &self,
        shard_keys: &mut HashSet<u128>,
        seen: Option<&mut Vec<Seen>>,
    ) -> Result<SegmentScan> {
        let (data, stamp) = read_file_stamped(&self.path)?;
        let mut records = Vec::new();
        let collect = seen.is_some();
        let mut keys = HashSet::new();
        let mut out = SegmentScan {
            file: self.clone(),
            header: None,
            file_len: data.len() as u64,
            data_len: 0,
            free_len: 0,
            records: 0,
            markers: 0,
            vouches_through: 0,
            seal_note: None,
            keys: 0,
            record_bytes: 0,
            key_bytes: 0,
            value_bytes: 0,
            oldest_us: None,
            newest_us: None,
            damage: Vec::new(),
        };
        let walked = walk(self, &data, |offset, record| {
            // A record past 4 GiB is in no segment the writer made
            // (`max_segment_size` fits in 32 bits), so no location names it.
            if let (true, Ok(offset), Ok(len)) =
                (collect, u32::try_from(offset), u32::try_from(record.len))
            {
                records.push(SeenRecord {
                    offset,
                    len,
                    key: xxhash_rust::xxh3::xxh3_64(record.key),
                });
            }
            out.records += 1;
            out.record_bytes += record.len as u64;
            out.key_bytes += record.key.len() as u64;
            out.value_bytes += record.value.len() as u64;
            let ts = record.timestamp_us;
            out.oldest_us = Some(out.oldest_us.map_or(ts, |o| o.min(ts)));
            out.newest_us = Some(out.newest_us.map_or(ts, |n| n.max(ts)));
            keys.insert(xxhash_rust::xxh3::xxh3_128(record.key));
        });
        out.keys = keys.len() as u64;
        shard_keys.extend(keys);
        out.header = walked.header;
        out.markers = walked.markers;
        out.vouches_through = walked.vouches_through;
        out.seal_note = walked.seal_note;
        out.data_len = walked.data_len;
        out.free_len = walked.free_len;
        out.damage = walked.damage;
        if let Some(seen) = seen {
            records.shrink_to_fit();
            seen.push(Seen {
                stamp,
                head: data
                    .get(..SEGMENT_HEADER_LEN)
                    .and_then(|h| h.try_into().ok()),
                records,
            });
        }
        Ok(out)
    }
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
                reason: "not created by the WAL; Wal::new refuses a directory holding it".into(),
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
                reason: format!(
                    "{}; shard count inferred from the shard directories: {inferred}",
                    error_reason(&e)
                ),
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
                reason: format!(
                    "shard directory beyond the manifest's {shard_count} shards; Wal::new refuses it"
                ),
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

/// Reads every segment of every shard of the WAL at `dir` and checks every record.
///
/// Read-only, and the lock is not taken: see the module documentation. Fails as
/// [`layout`] does, or on an I/O error reading a segment; damage is reported in the
/// result, not as an error.
pub fn scan(dir: &Path) -> Result<WalScan> {
    let layout = layout(dir)?;
    let shards: Vec<Result<ShardScan>> = {
        use rayon::prelude::*;
        layout.shards.into_par_iter().map(scan_shard).collect()
    };
    Ok(WalScan {
        dir: layout.dir,
        shard_count: layout.shard_count,
        manifest_ok: layout.manifest_ok,
        shards: shards.into_iter().collect::<Result<_>>()?,
        damage: layout.damage,
    })
}

fn scan_shard(shard: ShardLayout) -> Result<ShardScan> {
    let index = shard.dir.join(crate::format::checkpoint::CHECKPOINT_FILE);
    // Only a regular file is a checkpoint (the listing reports anything else under
    // that name as foreign, and the open refuses it).
    let has_checkpoint =
        shard.exists && std::fs::symlink_metadata(&index).is_ok_and(|m| m.is_file());
    let mut keys = HashSet::new();
    let mut seen = Vec::new();
    let mut segments = Vec::with_capacity(shard.segments.len());
    for file in &shard.segments {
        segments.push(file.scan_into(&mut keys, has_checkpoint.then_some(&mut seen))?);
    }
    let mut damage = shard.damage;
    mark_holes(&mut segments, &shard.dir, &mut damage);
    mark_unvouched_seal(&mut segments);
    let checkpoint = if has_checkpoint {
        check_checkpoint(&shard.dir, shard.shard, &segments, &seen, &mut damage)
    } else {
        CheckpointCheck::Absent
    };
    Ok(ShardScan {
        shard: shard.shard,
        dir: shard.dir,
        exists: shard.exists,
        segments,
        keys: keys.len() as u64,
        checkpoint,
        damage,
    })
}

/// Recovery's rule for a sealed segment no sync marker vouches for and no seal note
/// shows whole, with records in later segments
/// (`recovery::drop_after_unvouched_seal`): a power cut may have cut it short without
/// a trace, so recovery removes the later segments. Reported at the
/// segment's end as a torn tail, unless the shard holds corruption (then `Strict`
/// refuses to open anyway). The same for a missing segment that a segment's seal
/// note names and no marker vouches for: reported at the start of the segment with
/// the note, which recovery removes with the later ones.
fn mark_unvouched_seal(segments: &mut [SegmentScan]) {
    let corrupt = segments
        .iter()
        .flat_map(|s| &s.damage)
        .any(|d| !d.kind.is_torn_tail());
    if corrupt {
        return;
    }
    let proven = segments
        .iter()
        .map(|s| s.vouches_through)
        .max()
        .unwrap_or(0);
    let sequences: Vec<u64> = segments.iter().map(|s| s.file.sequence).collect();
    let version = |i: usize| segments[i].header.as_ref().map(|h| h.version);
    let whole = |i: usize| {
        let (own, successor) = (&segments[i], &segments[i + 1]);
        let note = successor
            .seal_note
            .map(|(sequence, len)| crate::format::record::SealNote { sequence, len });
        own.damage.is_empty()
            && own.data_len == own.file_len
            && crate::recovery::seal_note_shows_whole(
                note.as_ref(),
                own.file.sequence,
                own.data_len,
            )
    };
    let note = |k: usize| segments[k].seal_note.map(|(sequence, _)| sequence);
    let records_from = |from: usize| segments[from..].iter().any(|s| s.records > 0);
    let Some(dropped) =
        crate::recovery::first_dropped(&sequences, proven, note, version, whole, records_from)
    else {
        return;
    };
    let from = dropped.from;
    if let Some(named) = dropped.missing {
        let first = &mut segments[from];
        first.damage.push(Damage {
            path: first.file.path.clone(),
            offset: 0,
            len: 0,
            kind: DamageKind::TornTail,
            reason: format!(
                "this segment's seal note names segment {named}, which is missing and which \
                 no sync marker vouches for: a power cut may have lost it while this one \
                 survived; recovery removes this segment and the later ones"
            ),
        });
        return;
    }
    let i = from - 1;
    // Damage found in it already says the later segments go (an unfinished seal).
    if !segments[i].damage.is_empty() {
        return;
    }
    let seal = &mut segments[i];
    seal.damage.push(Damage {
        path: seal.file.path.clone(),
        offset: seal.data_len,
        len: 0,
        kind: DamageKind::TornTail,
        reason: "no sync marker vouches for this sealed segment, no seal note shows it \
                 whole, and records follow in later segments: a power cut may have cut it \
                 short here without a trace; recovery removes the later segments of the shard"
            .into(),
    });
}

/// Recovery's rule for holes (`recovery::vouched_gaps`, `recovery::shortened_by`):
/// a segment missing between two others, or a sealed segment shorter than its
/// successor's seal note says, that a sync marker shows was durable. Reported as
/// [`DamageKind::Hole`]: in the shard's damage for a missing segment, in the
/// segment's for a shortened one.
fn mark_holes(segments: &mut [SegmentScan], dir: &Path, shard_damage: &mut Vec<Damage>) {
    let proof_from = |segments: &[SegmentScan], k: usize| {
        segments[k..]
            .iter()
            .map(|s| s.vouches_through)
            .max()
            .unwrap_or(0)
    };
    let sequences: Vec<u64> = segments.iter().map(|s| s.file.sequence).collect();
    let note = |k: usize| Ok(segments[k].seal_note.map(|(sequence, _)| sequence));
    let gaps = crate::recovery::vouched_gaps(&sequences, note, |k| Ok(proof_from(segments, k)))
        .unwrap_or_default();
    for (missing, k) in gaps {
        shard_damage.push(Damage {
            path: dir.join(crate::format::segment_header::segment_file_name(missing)),
            offset: 0,
            len: 0,
            kind: DamageKind::Hole,
            reason: format!(
                "segment {missing} is missing between segments {} and {}, and a sync \
                 marker shows it was durable; recovery refuses the WAL (Strict) or opens \
                 it and reports the hole (SkipCorrupted)",
                sequences[k - 1],
                sequences[k]
            ),
        });
    }
    for i in 1..segments.len() {
        let (own, next) = (&segments[i - 1], &segments[i]);
        if own.file.sequence + 1 != next.file.sequence || !own.damage.is_empty() {
            continue;
        }
        let note = next
            .seal_note
            .map(|(sequence, len)| crate::format::record::SealNote { sequence, len });
        let proof = proof_from(segments, i);
        let Ok(Some(missing)) =
            crate::recovery::shortened_by(note, own.file.sequence, own.data_len, || Ok(proof))
        else {
            continue;
        };
        let own = &mut segments[i - 1];
        own.damage.push(Damage {
            path: own.file.path.clone(),
            offset: own.data_len,
            len: missing,
            kind: DamageKind::Hole,
            reason: format!(
                "the segment ends here, but the seal note of the next segment says it was \
                 sealed {missing} bytes longer, and a sync marker shows it was durable; \
                 recovery refuses the WAL (Strict) or opens it and reports the hole \
                 (SkipCorrupted)"
            ),
        });
    }
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

pub(super) fn error_reason(e: &WalError) -> String {
    match e {
        WalError::Corruption { reason, .. } | WalError::ManifestMismatch { reason, .. } => {
            reason.clone()
        }
        WalError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            "the manifest is missing".into()
        }
        other => other.to_string(),
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
            reason: "not a segment file; Wal::new refuses a shard directory holding it".into(),
        })
        .collect();
    Ok((files, damage))
}

/// Reads a whole segment file, read-only, with its stamp if the file was the same
/// before and after the read.
fn read_file_stamped(
    path: &Path,
) -> Result<(Vec<u8>, Option<crate::format::checkpoint::FileStamp>)> {
    let file = crate::io::owned::open_file(path, crate::io::owned::How::Read, "opening segment")?;
    let stamp = || {
        file.metadata()
            .ok()
            .map(|m| crate::format::checkpoint::FileStamp::of(&m))
    };
    let before = stamp();
    let mut data = Vec::new();
    (&file)
        .read_to_end(&mut data)
        .map_err(|e| WalError::io("reading segment", path, e))?;
    #[cfg(test)]
    if CHANGED_WHILE_READ.armed(path) {
        // A writer appends while the file is being read.
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(&[0xAB; 16]))
            .map_err(|e| WalError::io("changing segment (test)", path, e))?;
    }
    let after = stamp();
    Ok((data, before.filter(|b| Some(*b) == after)))
}

/// Test hook: segments at its paths get 16 bytes appended between the two stamps of
/// [`read_file_stamped`], as by a writer at work during the scan.
#[cfg(test)]
static CHANGED_WHILE_READ: crate::testing::hooks::PathHook = crate::testing::hooks::PathHook::new();

/// Reads a whole file, read-only.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let mut file =
        crate::io::owned::open_file(path, crate::io::owned::How::Read, "opening segment")?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| WalError::io("reading segment", path, e))?;
    Ok(data)
}

/// What walking a segment's bytes found, besides the records.
struct Walked {
    header: Option<SegmentHeaderInfo>,
    codec: Codec,
    markers: u64,
    vouches_through: u64,
    seal_note: Option<(u64, u64)>,
    data_len: u64,
    free_len: u64,
    damage: Vec<Damage>,
}

/// Checks the header and every record of a segment's bytes, calling `on_record` with
/// the offset of each valid record (sync markers are counted, not passed on), and
/// classifies damage by recovery's own rules (`recovery::judge`,
/// `recovery::judge_header`).
fn walk(file: &SegmentFile, data: &[u8], mut on_record: impl FnMut(usize, &Decoded<'_>)) -> Walked {
    let path = &file.path;
    let mut out = Walked {
        header: None,
        codec: file.codec(data),
        markers: 0,
        vouches_through: 0,
        seal_note: None,
        data_len: 0,
        free_len: 0,
        damage: Vec::new(),
    };
    let damage = |offset: usize, len: usize, kind: DamageKind, reason: String| Damage {
        path: path.clone(),
        offset: offset as u64,
        len: len as u64,
        kind,
        reason,
    };
    match SegmentHeader::decode(data) {
        Err(e) => {
            let from = SEGMENT_HEADER_LEN.min(data.len());
            let judged = judge_header(data, file.salt, file.shard, file.sequence, || {
                Ok(file.damage_may_be_a_crash(None))
            });
            match judged {
                Ok(HeaderJudgment::Lost) => {
                    let what = if file.newest {
                        "the newest segment"
                    } else {
                        "a sealed segment no sync marker vouches for (its seal's fsync may \
                         not have finished; recovery also removes the later segments)"
                    };
                    out.damage.push(damage(
                        0,
                        data.len(),
                        DamageKind::TornTail,
                        format!(
                            "{}, in {what}, and no record in it verifies: it never fully \
                             reached the disk; recovery removes the file",
                            e.reason()
                        ),
                    ));
                    return out;
                }
                Ok(HeaderJudgment::Damaged { found }) => {
                    if let Some((codec, _)) = found {
                        out.codec = codec;
                    }
                    let then = if found.is_some() {
                        "valid records follow: recovery refuses the WAL (Strict) or keeps \
                         them (SkipCorrupted)"
                    } else {
                        "recovery refuses the WAL (Strict) or ignores this segment \
                         (SkipCorrupted)"
                    };
                    out.damage.push(damage(
                        0,
                        from,
                        DamageKind::BadHeader,
                        format!("{}; {then}", e.reason()),
                    ));
                }
                Err(_) => {}
            }
            if data.len() <= SEGMENT_HEADER_LEN {
                return out;
            }
        }
        Ok(h) => {
            out.header = Some(SegmentHeaderInfo {
                version: h.version,
                shard: h.shard,
                sequence: h.sequence,
                created_us: h.created_us,
            });
            if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&h.version) {
                out.damage.push(damage(
                    8,
                    4,
                    DamageKind::UnsupportedVersion,
                    format!(
                        "segment format version {}; this build reads versions \
                         {OLDEST_READABLE_VERSION} to {FORMAT_VERSION} \
                         (records not checked)",
                        h.version
                    ),
                ));
                return out;
            }
            if h.shard != file.shard || h.sequence != file.sequence {
                out.damage.push(damage(
                    12,
                    12,
                    DamageKind::Mismatch,
                    format!(
                        "header says shard {} segment {}, but the file is shard {} segment {}",
                        h.shard, h.sequence, file.shard, file.sequence
                    ),
                ));
            }
            if h.version >= crate::format::segment_header::BOUND_VERSION
                && file.salt.is_some_and(|salt| salt != h.salt)
            {
                out.damage.push(damage(
                    32,
                    4,
                    DamageKind::Mismatch,
                    "the header's salt is not the manifest's: the segment belongs to \
                     another WAL; Wal::new refuses it"
                        .into(),
                ));
            }
        }
    }

    let version = out.header.as_ref().map(|h| h.version);
    let codec = out.codec;
    // Asked at most once per segment: the answer reads every later segment.
    let mut crash_possible = None;
    let mut may_be_a_crash =
        || *crash_possible.get_or_insert_with(|| file.damage_may_be_a_crash(version));
    const UNFINISHED_SEAL: &str = "in a sealed segment no sync marker vouches for: its \
         seal's fsync may not have finished; recovery truncates the file here and removes \
         the later segments of the shard";
    let mut pos = SEGMENT_HEADER_LEN;
    out.data_len = pos as u64;
    while pos < data.len() {
        let error = match codec.decode(&data[pos..], pos as u64) {
            Ok(record) => {
                if let Some(synced) = record.synced_through() {
                    out.markers += 1;
                    out.vouches_through = out
                        .vouches_through
                        .max(marker_vouches(synced, file.sequence));
                } else if let Some(note) = record.seal_note() {
                    // Only where the writer puts one counts, as in recovery.
                    if pos == SEGMENT_HEADER_LEN {
                        out.seal_note = Some((note.sequence, note.len));
                    }
                } else {
                    on_record(pos, &record);
                }
                pos += record.len;
                out.data_len = pos as u64;
                continue;
            }
            Err(e) => e,
        };
        // End of the non-zero bytes from `pos`: the rest of the file is zeros.
        let nonzero_end = data[pos..]
            .iter()
            .rposition(|&b| b != 0)
            .map_or(pos, |i| pos + i + 1);
        let judged = judge(codec, data, 0, pos, file.newest, || Ok(may_be_a_crash()));
        match judged {
            Ok(Judgment::FreeSpace) => {
                // Preallocated space ahead of the write position: free, not damage.
                out.free_len = (data.len() - pos) as u64;
                break;
            }
            Ok(Judgment::TornTail) if nonzero_end == pos => {
                out.damage.push(damage(
                    pos,
                    data.len() - pos,
                    DamageKind::TornTail,
                    format!("zero bytes from here to the end {UNFINISHED_SEAL}"),
                ));
                break;
            }
            Ok(Judgment::TornTail) => {
                let reason = if file.newest {
                    format!(
                        "{}; nothing valid follows in the newest segment: an interrupted \
                         write, recovery truncates the file here",
                        error.reason()
                    )
                } else {
                    format!(
                        "{}; nothing valid follows {UNFINISHED_SEAL}",
                        error.reason()
                    )
                };
                out.damage
                    .push(damage(pos, nonzero_end - pos, DamageKind::TornTail, reason));
                out.free_len = (data.len() - nonzero_end) as u64;
                break;
            }
            Ok(Judgment::Damage { next }) => {
                let end = next.unwrap_or(data.len());
                let reason = match next {
                    Some(n) => format!(
                        "{}; a valid record follows at offset {n}, so this is not a torn \
                         tail: recovery refuses the WAL (Strict) or skips these bytes \
                         (SkipCorrupted)",
                        error.reason()
                    ),
                    None => format!(
                        "{} in a sealed segment a sync marker shows durable",
                        error.reason()
                    ),
                };
                out.damage
                    .push(damage(pos, end - pos, DamageKind::Corrupt, reason));
                pos = end;
            }
            Err(_) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// The salt of the WALs these tests write.
    const SALT: u32 = 0x7E57_5A17;

    fn header(shard: u32, sequence: u64) -> Vec<u8> {
        SegmentHeader {
            version: FORMAT_VERSION,
            shard,
            sequence,
            created_us: 1_000,
            salt: SALT,
        }
        .encode()
        .to_vec()
    }

    /// The codec of the segment whose header (possibly damaged since) starts `buf`.
    fn codec_of_buf(buf: &[u8]) -> Codec {
        let u32_at =
            |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&buf[16..24]);
        crate::format::segment_header::codec_of(
            u32_at(8),
            SALT,
            u32_at(12),
            u64::from_le_bytes(seq),
        )
    }

    fn record(buf: &mut Vec<u8>, ts: u64, key: &[u8], value: &[u8]) -> usize {
        let at = buf.len();
        codec_of_buf(buf).encode_into(buf, at as u64, ts, ts, key, value);
        at
    }

    /// Every file of the first `shards` shard directories of the WAL at `p`, with
    /// its bytes, sorted by path.
    fn shard_files(p: &Path, shards: u32) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
        let mut out = Vec::new();
        for shard in 0..shards {
            for e in std::fs::read_dir(p.join(shard_dir_name(shard)))? {
                let e = e?.path();
                out.push((e.clone(), std::fs::read(&e)?));
            }
        }
        out.sort();
        Ok(out)
    }

    /// A WAL directory with one shard whose segments hold `segments`' bytes.
    fn wal_with(segments: &[Vec<u8>]) -> std::io::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        let storage = crate::io::FsStorage::new(dir.path().to_path_buf(), 0o600);
        let m = crate::format::manifest::Manifest {
            shards: 1,
            salt: Some(SALT),
        };
        crate::open::write_manifest(&storage, &m).map_err(std::io::Error::other)?;
        let sdir = dir.path().join(shard_dir_name(0));
        std::fs::create_dir(&sdir)?;
        for (i, bytes) in segments.iter().enumerate() {
            let name = crate::format::segment_header::segment_file_name(i as u64 + 1);
            std::fs::write(sdir.join(name), bytes)?;
        }
        Ok(dir)
    }

    fn two_records(sequence: u64) -> (Vec<u8>, usize) {
        let mut seg = header(0, sequence);
        record(&mut seg, 10, b"a", b"one");
        let second = record(&mut seg, 20, b"b", b"two");
        (seg, second)
    }

    fn only_damage(scan: &WalScan) -> Vec<(DamageKind, u64, u64)> {
        scan.all_damage()
            .map(|d| (d.kind, d.offset, d.len))
            .collect()
    }

    /// A one-shard WAL of segment 1 (`first`), then segment 2 holding a sync marker
    /// claiming `claim` and a record.
    fn then_a_marker_claiming(first: &[u8], claim: u64) -> std::io::Result<tempfile::TempDir> {
        let mut second = vouching(header(0, 2), claim);
        record(&mut second, 30, b"c", b"three");
        wal_with(&[first.to_vec(), second])
    }

    /// Recovers shard 0 of the WAL at `dir` under `RecoveryMode::Strict`.
    fn recover_strict(dir: &tempfile::TempDir) -> Result<crate::recovery::RecoveredShard> {
        crate::recovery::recover_shard(
            &dir.path().join(shard_dir_name(0)),
            0,
            crate::options::RecoveryMode::Strict,
            false,
            Some(SALT),
        )
    }

    /// A writer marks only seals of older segments, so a valid marker claiming its
    /// own segment or a later one (crafted bytes) vouches for nothing: damage at the
    /// end of the sealed segment before it is then an unfinished seal's torn tail,
    /// as without the marker, where a true marker makes it corruption. (Before, any
    /// value vouched, and the writer, handed it, would stop marking seals.)
    #[test]
    fn a_marker_claiming_its_own_or_a_later_segment_vouches_for_nothing() -> TestResult {
        let (mut first, last) = two_records(1);
        first[last + 21] ^= 0x08;
        for (claim, vouched) in [(1, true), (2, false), (99, false)] {
            let dir = then_a_marker_claiming(&first, claim)?;
            let shard = scan(dir.path())?.shards.remove(0);
            assert_eq!(
                shard.segments[1].vouches_through,
                if vouched { 1 } else { 0 }
            );
            let kind = shard.segments[0].damage[0].kind;
            let expected = if vouched {
                DamageKind::Corrupt
            } else {
                DamageKind::TornTail
            };
            assert_eq!(kind, expected, "claim {claim}");
            match recover_strict(&dir) {
                Ok(r) => {
                    assert!(!vouched, "claim {claim}: a vouched seal's damage recovered");
                    assert_eq!((r.synced_through, r.report.records), (0, 1));
                }
                Err(e) => {
                    assert!(vouched, "claim {claim}: {e}");
                    assert!(matches!(e, WalError::Corruption { .. }), "{e}");
                }
            }
        }
        Ok(())
    }

    /// The same cap where recovery collects the markers of the segments it keeps: a
    /// clean sealed segment followed by one whose only marker claims its own number
    /// is an unvouched seal with records after it, so the later segment goes and the
    /// writer is handed no claim; a true marker keeps both.
    #[test]
    fn a_kept_segment_s_impossible_marker_vouches_for_nothing() -> TestResult {
        let (first, _) = two_records(1);
        for (claim, vouched) in [(1, true), (2, false)] {
            let r = recover_strict(&then_a_marker_claiming(&first, claim)?)?;
            let (synced, records, kept) = if vouched { (1, 3, 2) } else { (0, 2, 1) };
            assert_eq!(
                (r.synced_through, r.report.records, r.segments.len()),
                (synced, records, kept),
                "claim {claim}"
            );
        }
        Ok(())
    }

    #[test]
    fn clean_wal_counts_and_records_in_order() -> TestResult {
        let mut first = header(0, 1);
        record(&mut first, 5, b"k", b"v1");
        record(&mut first, 7, b"", b"");
        let mut second = vouching(header(0, 2), 1);
        record(&mut second, 9, b"k", b"v2");
        record(&mut second, 8, &[0xff, 0], b"x");
        let dir = wal_with(&[first.clone(), second.clone()])?;
        let scan = scan(dir.path())?;
        assert!(scan.is_clean(), "{:?}", only_damage(&scan));
        assert!(scan.manifest_ok);
        assert_eq!(scan.shard_count, 1);
        assert_eq!(
            (scan.segments(), scan.records(), scan.keys()),
            (2, 4, 3),
            "segments, records, keys"
        );
        assert_eq!((scan.oldest_us(), scan.newest_us()), (Some(5), Some(9)));
        let seg = &scan.shards[0].segments[0];
        assert_eq!((seg.records, seg.keys), (2, 2));
        assert_eq!(
            (seg.file_len, seg.data_len),
            (first.len() as u64, first.len() as u64)
        );
        assert!(!seg.file.newest && scan.shards[0].segments[1].file.newest);
        let records = seg.file.read_records()?;
        let got: Vec<_> = records.iter().map(|r| (r.offset, r.key, r.value)).collect();
        assert_eq!(
            got,
            vec![
                (40, &b"k"[..], &b"v1"[..]),
                (
                    40 + crate::format::record::encoded_len(1, 2) as u64,
                    &b""[..],
                    &b""[..]
                )
            ]
        );
        assert_eq!(scan.shards[0].segments[1].vouches_through, 1);
        Ok(())
    }

    #[test]
    fn an_unvouched_seal_followed_by_records_is_reported_as_recovery_drops_them() -> TestResult {
        let (first, _) = two_records(1);
        let (second, _) = two_records(2);
        let dir = wal_with(&[first.clone(), second])?;
        assert_eq!(
            only_damage(&scan(dir.path())?),
            vec![(DamageKind::TornTail, first.len() as u64, 0)]
        );
        // The engine agrees: the later segment goes, the first one stays whole.
        let wal = crate::Wal::new(dir.path(), crate::WalOptions::default().with_shards(1))?;
        let report = wal.recovery_report();
        assert_eq!(report.truncated.len(), 1, "{report:?}");
        assert_eq!(report.truncated[0].1, 0, "{report:?}");
        assert_eq!(wal.enumerate_records(b"a")?.count(), 1);
        assert_eq!(wal.enumerate_records(b"b")?.count(), 1);
        wal.close()?;
        // With no record after it, nothing is reported.
        let dir = wal_with(&[first, header(0, 2)])?;
        assert!(scan(dir.path())?.is_clean());
        Ok(())
    }

    #[test]
    fn preallocated_zeros_at_the_end_of_the_newest_segment_are_free_space() -> TestResult {
        let (mut seg, _) = two_records(1);
        let data_len = seg.len() as u64;
        seg.extend(std::iter::repeat_n(0u8, 4096));
        let dir = wal_with(&[seg])?;
        let scan = scan(dir.path())?;
        assert!(scan.is_clean(), "{:?}", only_damage(&scan));
        let s = &scan.shards[0].segments[0];
        assert_eq!((s.records, s.data_len, s.free_len), (2, data_len, 4096));
        Ok(())
    }

    #[test]
    fn zeros_at_the_end_of_a_sealed_segment_are_corruption_once_vouched_for() -> TestResult {
        let (mut sealed, _) = two_records(1);
        let at = sealed.len() as u64;
        sealed.extend([0u8; 100]);
        let (newest, _) = two_records(2);
        let dir = wal_with(&[sealed.clone(), vouching(newest.clone(), 1)])?;
        assert_eq!(
            only_damage(&scan(dir.path())?),
            vec![(DamageKind::Corrupt, at, 100)]
        );
        // Without the marker the seal's fsync may not have finished.
        let dir = wal_with(&[sealed, newest])?;
        assert_eq!(
            only_damage(&scan(dir.path())?),
            vec![(DamageKind::TornTail, at, 100)]
        );
        Ok(())
    }

    /// `segment` with a sync marker for segments up to `synced` appended.
    fn vouching(mut segment: Vec<u8>, synced: u64) -> Vec<u8> {
        let at = segment.len() as u64;
        codec_of_buf(&segment).encode_marker(&mut segment, at, 50, synced);
        segment
    }

    #[test]
    fn torn_tail_of_newest_then_zeros() -> TestResult {
        let (mut seg, second) = two_records(1);
        seg.truncate(seg.len() - 2);
        let torn_len = (seg.len() - second) as u64;
        seg.extend([0u8; 64]);
        let dir = wal_with(&[seg])?;
        let scan = scan(dir.path())?;
        assert_eq!(
            only_damage(&scan),
            vec![(DamageKind::TornTail, second as u64, torn_len)]
        );
        let s = &scan.shards[0].segments[0];
        assert_eq!((s.records, s.data_len, s.free_len), (1, second as u64, 64));
        Ok(())
    }

    #[test]
    fn torn_tail_of_a_vouched_sealed_segment_is_corruption() -> TestResult {
        let (mut sealed, second) = two_records(1);
        sealed.truncate(sealed.len() - 1);
        let len = (sealed.len() - second) as u64;
        let dir = wal_with(&[sealed.clone(), vouching(two_records(2).0, 1)])?;
        assert_eq!(
            only_damage(&scan(dir.path())?),
            vec![(DamageKind::Corrupt, second as u64, len)]
        );
        let dir = wal_with(&[sealed, two_records(2).0])?;
        assert_eq!(
            only_damage(&scan(dir.path())?),
            vec![(DamageKind::TornTail, second as u64, len)]
        );
        Ok(())
    }

    #[test]
    fn damage_in_the_middle_of_the_newest_segment_is_corruption() -> TestResult {
        let (mut seg, second) = two_records(1);
        let third = record(&mut seg, 30, b"c", b"three");
        seg[second + 22] ^= 0x01;
        let dir = wal_with(&[seg])?;
        let scan = scan(dir.path())?;
        assert_eq!(
            only_damage(&scan),
            vec![(DamageKind::Corrupt, second as u64, (third - second) as u64)]
        );
        let records = scan.shards[0].segments[0].file.read_records()?;
        let keys: Vec<_> = records.iter().map(|r| r.key).collect();
        assert_eq!(keys, vec![&b"a"[..], &b"c"[..]]);
        Ok(())
    }

    #[test]
    fn header_damage_by_position() -> TestResult {
        // Sealed segment: bad header, records still checked and counted.
        let (mut sealed, _) = two_records(1);
        sealed[20] ^= 0x40;
        // Newest segment with a bad header and no record: a torn creation.
        let mut newest = header(0, 2);
        newest[3] = b'X';
        let dir = wal_with(&[sealed, newest])?;
        let scan = scan(dir.path())?;
        assert_eq!(
            only_damage(&scan),
            vec![
                (DamageKind::BadHeader, 0, 40),
                (DamageKind::TornTail, 0, 40)
            ]
        );
        assert_eq!(scan.records(), 2);
        Ok(())
    }

    #[test]
    fn header_version_and_identity() -> TestResult {
        let mut future = SegmentHeader {
            version: FORMAT_VERSION + 1,
            shard: 0,
            sequence: 1,
            created_us: 0,
            salt: SALT,
        }
        .encode()
        .to_vec();
        record(&mut future, 1, b"k", b"v");
        let mut wrong = header(0, 7);
        // Bound to the file it is in (segment 2), as a writer would have.
        let at = wrong.len() as u64;
        Codec::bound(SALT, 0, 2).encode_into(&mut wrong, at, 1, 1, b"k", b"v");
        let dir = wal_with(&[future, wrong])?;
        let scan = scan(dir.path())?;
        assert_eq!(
            only_damage(&scan),
            vec![
                (DamageKind::UnsupportedVersion, 8, 4),
                (DamageKind::Mismatch, 12, 12)
            ]
        );
        assert_eq!(scan.records(), 1);
        Ok(())
    }

    #[test]
    fn foreign_entries_and_bad_manifest_are_reported_not_fatal() -> TestResult {
        let dir = wal_with(&[two_records(1).0])?;
        std::fs::write(dir.path().join("notes.txt"), b"hi")?;
        std::fs::write(dir.path().join(shard_dir_name(0)).join("x.tmp"), b"")?;
        let scan1 = scan(dir.path())?;
        let kinds: Vec<_> = scan1.all_damage().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            vec![DamageKind::ForeignFile, DamageKind::ForeignFile]
        );
        assert_eq!(scan1.records(), 2);

        let manifest = dir.path().join(MANIFEST_FILE);
        let mut m = std::fs::read(&manifest)?;
        m[13] ^= 1;
        std::fs::write(&manifest, &m)?;
        let scan2 = scan(dir.path())?;
        assert!(!scan2.manifest_ok);
        assert_eq!(scan2.shard_count, 1);
        assert_eq!(scan2.damage[0].kind, DamageKind::ForeignFile);
        assert_eq!(scan2.damage[1].kind, DamageKind::BadManifest);
        assert_eq!(scan2.records(), 2);
        Ok(())
    }

    #[test]
    fn not_a_wal_is_an_error() -> TestResult {
        let dir = tempfile::tempdir()?;
        assert!(matches!(
            scan(dir.path()),
            Err(WalError::ManifestMismatch { .. })
        ));
        let file = dir.path().join("f");
        std::fs::write(&file, b"")?;
        assert!(matches!(scan(&file), Err(WalError::NotADirectory { .. })));
        assert!(matches!(
            scan(&dir.path().join("missing")),
            Err(WalError::Io { .. })
        ));
        Ok(())
    }

    #[test]
    fn a_real_wal_scans_clean_and_is_not_modified() -> TestResult {
        use bytes::Bytes;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("wal");
        let options = crate::WalOptions::default()
            .with_shards(2)
            .with_max_key_size(64)
            .with_max_record_size(256)
            .with_max_segment_size(1024);
        let wal = crate::Wal::new(&path, options)?;
        for i in 0..200u32 {
            let key = format!("key-{}", i % 7);
            wal.append_entry(key.as_bytes(), Bytes::from(vec![b'x'; 40]), false)?;
        }
        wal.close()?;
        let before = crate::format::segment_header::segment_file_name(1);
        let files = shard_files(&path, 2)?;
        let scan = scan(&path)?;
        assert!(scan.is_clean(), "{:?}", only_damage(&scan));
        assert_eq!(scan.records(), 200);
        assert_eq!(scan.keys(), 7);
        assert!(scan.segments() > 2, "rotation expected");
        assert!(scan.shards[0].segments[0].file.path.ends_with(before));
        let layout = layout(&path)?;
        for key in 0..7 {
            let key = format!("key-{key}");
            let shard = layout.shard_for_key(key.as_bytes()).ok_or("routing")? as usize;
            let found: usize = layout.shards[shard]
                .segments
                .iter()
                .map(|s| {
                    s.read_records()
                        .map(|r| r.iter().filter(|r| r.key == key.as_bytes()).count())
                })
                .sum::<Result<usize>>()?;
            assert!(found >= 28, "{key}: {found}");
        }
        assert_eq!(shard_files(&path, 2)?, files);
        assert!(!path.join(MANIFEST_TMP_FILE).exists());
        Ok(())
    }

    /// A fresh WAL of two shards, 50 records of 30 bytes over 5 keys, closed with
    /// `index_checkpoint` set: each shard has its `INDEX`. Returns its temp dir, its
    /// path, and how to reopen it.
    fn checkpointed_wal() -> std::result::Result<
        (tempfile::TempDir, PathBuf, impl Fn() -> crate::WalOptions),
        Box<dyn std::error::Error>,
    > {
        let options = || {
            crate::WalOptions::default()
                .with_shards(2)
                .with_index_checkpoint(true)
        };
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("wal");
        let wal = crate::Wal::new(&path, options())?;
        for i in 0..50u32 {
            let key = format!("key-{}", i % 5);
            wal.append_entry(key.as_bytes(), bytes::Bytes::from(vec![b'v'; 30]), false)?;
        }
        wal.close()?;
        Ok((dir, path, options))
    }

    /// A segment that a writer changes while the scan reads it: the scan cannot
    /// tell whether the shard's checkpoint describes it, so it says the checkpoint
    /// is ignored and why, and checks nothing against it; the other shard's is
    /// checked as usual. Once the writer is done, the next scan compares the
    /// changed file with the checkpoint, and the open scans that shard.
    #[test]
    fn a_segment_changed_while_scanned_makes_the_check_give_up_and_say_so() -> TestResult {
        let (_dir, path, options) = checkpointed_wal()?;
        let segment = path
            .join(shard_dir_name(0))
            .join(crate::format::segment_header::segment_file_name(1));
        assert!(segment.is_file(), "{} expected", segment.display());

        let writer = CHANGED_WHILE_READ.arm(segment.clone());
        let first = scan(&path)?;
        drop(writer);
        assert_eq!(
            first.shards[0].checkpoint,
            CheckpointCheck::Ignored {
                reason: format!("{} changed while it was scanned", segment.display())
            }
        );
        assert!(
            first.shards[0].damage.is_empty(),
            "the scan read the segment before the writer's bytes, and checked nothing \
             against the checkpoint: {:?}",
            first.shards[0].damage
        );
        assert!(
            matches!(first.shards[1].checkpoint, CheckpointCheck::Usable { .. }),
            "{:?}",
            first.shards[1].checkpoint
        );

        let rescan = scan(&path)?;
        assert!(
            matches!(&rescan.shards[0].checkpoint, CheckpointCheck::Ignored { reason }
                if reason.contains(&crate::format::segment_header::segment_file_name(1))),
            "the changed file no longer matches the checkpoint: {:?}",
            rescan.shards[0].checkpoint
        );
        let wal = crate::Wal::new(&path, options())?;
        let report = wal.recovery_report();
        assert_eq!(
            report.checkpoints_loaded, 1,
            "shard 1's checkpoint still loads"
        );
        let ignored = &report.checkpoints_ignored;
        assert_eq!(ignored.len(), 1, "{ignored:?}");
        assert_eq!(
            ignored[0].0,
            path.join(shard_dir_name(0))
                .join(crate::format::checkpoint::CHECKPOINT_FILE)
        );
        wal.close()?;
        Ok(())
    }

    /// An `INDEX` whose read fails with an I/O error: the scan reports the
    /// checkpoint as damaged with the error, the open with `index_checkpoint` set
    /// fails with that error and changes nothing, and once reads work again the
    /// same open loads the checkpoint and every record is there.
    #[test]
    fn a_checkpoint_that_cannot_be_read_is_damaged_and_the_open_fails_as_reported() -> TestResult {
        let (_dir, path, options) = checkpointed_wal()?;
        let index = path
            .join(shard_dir_name(1))
            .join(crate::format::checkpoint::CHECKPOINT_FILE);
        let unreadable = crate::testing::hooks::FAILING_CHECKPOINT_READS.arm(index.clone());

        let scan = scan(&path)?;
        assert_eq!(scan.shards[1].checkpoint, CheckpointCheck::Damaged);
        assert!(
            matches!(scan.shards[0].checkpoint, CheckpointCheck::Usable { .. }),
            "the other shard's checkpoint is untouched: {:?}",
            scan.shards[0].checkpoint
        );
        let damage = &scan.shards[1].damage;
        assert_eq!(damage.len(), 1, "{damage:?}");
        assert_eq!(damage[0].kind, DamageKind::BadCheckpoint);
        assert_eq!(damage[0].path, index);
        assert!(
            damage[0].reason.contains("injected read error")
                && damage[0]
                    .reason
                    .contains("an open with index_checkpoint set fails the same way"),
            "{}",
            damage[0].reason
        );

        let before = shard_files(&path, 2)?;
        let refused = match crate::Wal::new(&path, options()) {
            Ok(_) => return Err("the open loaded an unreadable checkpoint".into()),
            Err(e) => e,
        };
        assert!(
            matches!(&refused, WalError::Io { path: p, .. } if *p == index),
            "{refused:?}"
        );
        assert!(
            damage[0].reason.contains(&refused.to_string()),
            "the scan reports the open's error: {} / {refused}",
            damage[0].reason
        );
        assert!(index.exists(), "a refused open leaves the checkpoint");
        assert_eq!(
            shard_files(&path, 2)?,
            before,
            "a refused open changes no file"
        );

        drop(unreadable);
        let wal = crate::Wal::new(&path, options())?;
        let report = wal.recovery_report();
        assert_eq!(
            report.checkpoints_loaded, 2,
            "{:?}",
            report.checkpoints_ignored
        );
        for k in 0..5u32 {
            let key = format!("key-{k}");
            assert_eq!(wal.enumerate_records(key.as_bytes())?.count(), 10, "{key}");
        }
        wal.close()?;
        Ok(())
    }
}
