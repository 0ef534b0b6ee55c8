//! The public report types of `inspect`: what a WAL directory holds, by shard and
//! by segment, and every damage found, with its kind.

use crate::format::record::Codec;
use crate::hash::shard_for;
use std::fmt;
use std::path::PathBuf;

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
    pub(super) shard_files: std::sync::Arc<Vec<PathBuf>>,
    pub(super) position: usize,
    /// The manifest's salt, if it has one and was read.
    pub(super) salt: Option<u32>,
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
    /// The highest segment sequence number those markers vouch for (0: none): the
    /// durable watermark they give, which recovery calls `synced_through`.
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
    pub(super) file: SegmentFile,
    pub(super) codec: Codec,
    pub(super) data: Vec<u8>,
    pub(super) offsets: Vec<usize>,
    pub(super) damage: Vec<Damage>,
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
