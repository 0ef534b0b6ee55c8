//! The index checkpoint: a shard's key index as a clean close left it, so that the
//! next open can load it instead of reading every record again
//! (`WalOptions::index_checkpoint`).
//!
//! A checkpoint is a cache, never the only copy of anything: every location in it
//! points at a record that is in a segment file, and recovery can always rebuild it
//! by scanning. An open that succeeds removes it, and one whose front (header,
//! segments, key directory) fails any check is ignored (the shard is scanned). An
//! open reads only the front; each key's locations are read, and checked against
//! their own checksum, when the key is read (`index::Run`). The byte layout is in
//! `docs/FORMAT.md` ("Index checkpoint"):
//!
//! ```text
//! header     56 B   magic b"NANOWALI", version, shard, synced_through, segment
//!                   count, key count, location count, directory length
//! segments   80 B each, oldest first: sequence, created, newest, records, and the
//!                   file's length, inode, mtime and ctime when the checkpoint was written
//! directory  per key: key length u32, location count u32, group count u32, CRC32C
//!                   of its locations u32, the key
//! crc        4 B    CRC32C of everything before it
//! locations  per key, in directory order: per segment it has records in (a group),
//!                   segment slot u32 (index into the segment table), count u32, and
//!                   per location offset u32, length u32
//! ```
//!
//! This module only encodes and decodes, from and into plain data: the writer's
//! glue (`writer/checkpoint_io.rs`) summarises the segments and the index and asks
//! the storage to write the bytes atomically; the index's (`index/checkpoint_data.rs`)
//! reads them through the storage and keeps the file open for the keys' locations.

use crate::format::codec::{Reader, Writer};
use crate::format::segment_header::SEGMENT_HEADER_LEN;
use std::path::{Path, PathBuf};

// The names moved to `names.rs`, the stamp to `stamp.rs`; recovery and inspect
// still name them here.
pub(crate) use crate::format::names::{is_checkpoint_name, CHECKPOINT_FILE};
pub(crate) use crate::format::stamp::FileStamp;

const MAGIC: &[u8; 8] = b"NANOWALI";
const VERSION: u32 = 2;
/// Bytes of the header, which says how long the front is ([`front_len`]).
pub(crate) const HEADER_LEN: usize = 64;
/// Bytes of each segment's entry.
pub(crate) const SEGMENT_ENTRY_LEN: usize = 80;
const KEY_ENTRY_LEN: usize = 16;
/// Bytes of one location (offset u32, length u32) and of a group's head (segment
/// slot u32, location count u32).
pub(crate) const LOCATION_LEN: usize = 8;
pub(crate) const GROUP_LEN: usize = 8;
/// Bytes of the front's checksum.
pub(crate) const CRC_LEN: usize = 4;

/// What recovery would learn about one segment by scanning it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    pub(crate) sequence: u64,
    pub(crate) created_us: u64,
    pub(crate) newest_us: u64,
    pub(crate) records: u64,
    pub(crate) stamp: FileStamp,
}

/// One key of the directory: where its locations are in the checkpoint's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyEntry {
    /// Offset of its locations in the file.
    pub(crate) at: u64,
    pub(crate) groups: u32,
    pub(crate) count: u32,
    /// CRC32C of its locations.
    pub(crate) crc: u32,
}

/// A decoded checkpoint: its front, and each key with `K`, what says where its
/// locations are ([`KeyEntry`] as decoded; the index's `Run` once the file is open
/// for the reads of the keys).
pub(crate) struct Checkpoint<K = KeyEntry> {
    /// What the shard's sync markers vouched for at close.
    pub(crate) synced_through: u64,
    /// The sequence number the shard's next record gets.
    pub(crate) next_seq: u64,
    pub(crate) segments: Vec<SegmentSummary>,
    pub(crate) keys: Vec<(Box<[u8]>, K)>,
}

impl<K> std::fmt::Debug for Checkpoint<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("synced_through", &self.synced_through)
            .field("next_seq", &self.next_seq)
            .field("segments", &self.segments)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl<K> Checkpoint<K> {
    /// The same checkpoint with each key's `K` made a `L` by `f`.
    pub(crate) fn map_keys<L>(self, mut f: impl FnMut(K) -> L) -> Checkpoint<L> {
        Checkpoint {
            synced_through: self.synced_through,
            next_seq: self.next_seq,
            segments: self.segments,
            keys: self.keys.into_iter().map(|(k, v)| (k, f(v))).collect(),
        }
    }
}

/// Bytes a key's locations take: `groups` group heads and `count` locations.
pub(crate) fn run_len(groups: u32, count: u32) -> u64 {
    (u64::from(groups) * GROUP_LEN as u64) + u64::from(count) * LOCATION_LEN as u64
}

/// Encodes a checkpoint of a shard's cleanly closed `segments` (oldest first), key
/// by key ([`key`](Self::key)), into its front and its locations
/// ([`finish`](Self::finish)).
pub(crate) struct Encoder<'a> {
    segments: &'a [SegmentSummary],
    directory: Writer,
    locations: Writer,
    keys: u64,
    total: u64,
}

impl<'a> Encoder<'a> {
    pub(crate) fn new(segments: &'a [SegmentSummary]) -> Encoder<'a> {
        Encoder {
            segments,
            directory: Writer::default(),
            locations: Writer::default(),
            keys: 0,
            total: 0,
        }
    }

    /// Adds `key` and its locations (segment, offset, length), in append order,
    /// hence grouped by segment.
    pub(crate) fn key(&mut self, key: &[u8], locations: impl IntoIterator<Item = (u64, u32, u32)>) {
        let start = self.locations.len();
        let (mut groups, mut count) = (0u32, 0u32);
        // The current group: its segment and where its head's count is.
        let mut group: Option<(u64, usize, u32)> = None;
        for (segment, offset, len) in locations {
            match &mut group {
                Some((s, _, n)) if *s == segment => *n += 1,
                _ => {
                    if let Some((_, at, n)) = group {
                        self.locations.set_u32(at, n);
                    }
                    // Every location names a live segment: the index and the segment
                    // list change together, on the actor's thread, which is the
                    // caller. Were one missing, its slot would make reads of the key
                    // fail, not lie.
                    let slot = self
                        .segments
                        .binary_search_by_key(&segment, |s| s.sequence)
                        .map_or(u32::MAX, |i| i as u32);
                    self.locations.u32(slot);
                    group = Some((segment, self.locations.len(), 1));
                    self.locations.u32(0);
                    groups += 1;
                }
            }
            self.locations.u32(offset).u32(len);
            count += 1;
        }
        if let Some((_, at, n)) = group {
            self.locations.set_u32(at, n);
        }
        let crc = crc32c::crc32c(self.locations.since(start));
        self.directory
            .u32(key.len() as u32)
            .u32(count)
            .u32(groups)
            .u32(crc)
            .bytes(key);
        self.keys += 1;
        self.total += u64::from(count);
    }

    /// The checkpoint of shard `shard`, whose sync markers vouch for segments up to
    /// `synced_through` and whose next record gets sequence number `next_seq`: its
    /// front (through the front's checksum) and its locations.
    pub(crate) fn finish(
        self,
        shard: u32,
        synced_through: u64,
        next_seq: u64,
    ) -> (Vec<u8>, Vec<u8>) {
        let directory = self.directory.into_vec();
        let mut front = Writer::with_capacity(
            HEADER_LEN + self.segments.len() * SEGMENT_ENTRY_LEN + directory.len() + CRC_LEN,
        );
        front
            .bytes(MAGIC)
            .u32(VERSION)
            .u32(shard)
            .u64(synced_through)
            .u64(self.segments.len() as u64)
            .u64(self.keys)
            .u64(self.total)
            .u64(directory.len() as u64)
            .u64(next_seq);
        for s in self.segments {
            front
                .u64(s.sequence)
                .u64(s.created_us)
                .u64(s.newest_us)
                .u64(s.records)
                .u64(s.stamp.len)
                .u64(s.stamp.inode)
                .i64(s.stamp.mtime.0)
                .i64(s.stamp.mtime.1)
                .i64(s.stamp.ctime.0)
                .i64(s.stamp.ctime.1);
        }
        front.bytes(&directory);
        let crc = crc32c::crc32c(front.since(0));
        front.u32(crc);
        (front.into_vec(), self.locations.into_vec())
    }
}

/// Why a file of `file_len` bytes cannot be a checkpoint, if it is too short to hold
/// a header.
pub(crate) fn too_short(file_len: u64) -> Option<String> {
    (file_len < (HEADER_LEN + CRC_LEN) as u64)
        .then(|| format!("it is {file_len} bytes long, shorter than a header"))
}

/// The length of the front (without its checksum) that `header` announces, if it
/// fits in a file of `file_len` bytes.
pub(crate) fn front_len(
    header: &[u8; HEADER_LEN],
    file_len: u64,
) -> std::result::Result<usize, String> {
    // The segment count at byte 24, the directory's length at byte 48.
    let mut r = Reader::new(header);
    r.take(24)?;
    let segments = r.u64()?;
    r.take(16)?;
    let directory = r.u64()?;
    segments
        .checked_mul(SEGMENT_ENTRY_LEN as u64)
        .and_then(|n| n.checked_add(HEADER_LEN as u64))
        .and_then(|n| n.checked_add(directory))
        .filter(|&n| n.checked_add(CRC_LEN as u64).is_some_and(|e| e <= file_len))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| "its counts exceed its length".into())
}

/// Checks and decodes the front of shard `shard`'s checkpoint of `file_len` bytes:
/// `front` is the front and its checksum.
pub(crate) fn decode(
    front: &[u8],
    file_len: u64,
    shard: u32,
) -> std::result::Result<Checkpoint, String> {
    let (body, crc) = front.split_at(front.len() - CRC_LEN);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    let mut c = Reader::new(body);
    if c.take(8)? != MAGIC {
        return Err("magic is not NANOWALI".into());
    }
    let version = c.u32()?;
    if version != VERSION {
        return Err(format!("version {version}, this build reads {VERSION}"));
    }
    let owner = c.u32()?;
    if owner != shard {
        return Err(format!("it belongs to shard {owner}"));
    }
    let synced_through = c.u64()?;
    let segment_count = c.u64()?;
    let key_count = c.u64()?;
    let location_count = c.u64()?;
    let directory_len = c.u64()?;
    let next_seq = c.u64()?;
    // Counts are checked against the bytes before anything is allocated for them.
    let fits = |count: u64, each: usize| {
        count
            .checked_mul(each as u64)
            .is_some_and(|n| n <= file_len)
    };
    if !fits(segment_count, SEGMENT_ENTRY_LEN)
        || key_count > directory_len / KEY_ENTRY_LEN as u64
        || !fits(location_count, LOCATION_LEN)
    {
        return Err("its counts exceed its length".into());
    }
    let mut segments: Vec<SegmentSummary> = Vec::new();
    if segments.try_reserve_exact(segment_count as usize).is_err() {
        return Err(format!("its {segment_count} segments do not fit in memory"));
    }
    for _ in 0..segment_count {
        let (sequence, created_us, newest_us, records) = (c.u64()?, c.u64()?, c.u64()?, c.u64()?);
        let (len, inode) = (c.u64()?, c.u64()?);
        let mtime = (c.i64()?, c.i64()?);
        let ctime = (c.i64()?, c.i64()?);
        if segments.last().is_some_and(|s| s.sequence >= sequence) {
            return Err("its segments are not in order".into());
        }
        // What the writer and a scan both keep: a segment's newest record is never
        // older than the segment.
        if newest_us < created_us {
            return Err(format!(
                "segment {sequence} is newer than its newest record"
            ));
        }
        // Every record takes at least its header.
        if records > len / crate::format::record::RECORD_HEADER_LEN as u64 {
            return Err(format!("segment {sequence} cannot hold {records} records"));
        }
        segments.push(SegmentSummary {
            sequence,
            created_us,
            newest_us,
            records,
            stamp: FileStamp {
                len,
                inode,
                mtime,
                ctime,
            },
        });
    }
    // At most one key per 16 bytes of the front, which fit in memory; these take a
    // few times more, so they too are allocated without aborting. The set of keys
    // seen hashes with foldhash, as the index's maps do (`index::KeyHasher`).
    let mut keys = Vec::new();
    let mut distinct =
        std::collections::HashSet::with_hasher(foldhash::fast::RandomState::default());
    if keys.try_reserve_exact(key_count as usize).is_err()
        || distinct.try_reserve(key_count as usize).is_err()
    {
        return Err(format!("its {key_count} keys do not fit in memory"));
    }
    // The locations follow the front, key after key.
    let mut at = front.len() as u64;
    let mut seen = 0u64;
    for _ in 0..key_count {
        let (key_len, count, groups, crc) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?);
        let key = c.take(key_len as usize)?;
        if count == 0 || groups == 0 || groups > count {
            return Err(format!("a key has {count} locations in {groups} groups"));
        }
        if !distinct.insert(key) {
            return Err("a key is listed twice".into());
        }
        let entry = KeyEntry {
            at,
            groups,
            count,
            crc,
        };
        keys.push((Box::<[u8]>::from(key), entry));
        at += run_len(groups, count);
        seen += u64::from(count);
        if at > file_len {
            return Err("its keys' locations run past its end".into());
        }
    }
    if c.position() != body.len() {
        return Err(format!(
            "{} bytes follow the last key",
            body.len() - c.position()
        ));
    }
    if at != file_len {
        return Err(format!(
            "{} bytes follow the last key's locations",
            file_len - at
        ));
    }
    let records = segments
        .iter()
        .try_fold(0u64, |sum, s| sum.checked_add(s.records));
    if seen != location_count || records != Some(location_count) {
        return Err("its record counts do not add up".into());
    }
    // A sync marker only vouches for segments older than its own (`record.rs`,
    // `marker_synced_through`), so nothing vouches for the newest segment.
    if segments
        .last()
        .map_or(synced_through != 0, |s| synced_through >= s.sequence)
    {
        return Err(format!(
            "its sync figure {synced_through} vouches for the newest segment"
        ));
    }
    Ok(Checkpoint {
        synced_through,
        next_seq,
        segments,
        keys,
    })
}

/// Whether `files` (the shard's segment files, oldest first) are exactly the
/// checkpoint's segments, unchanged. `stamp_of` gives a file's stamp and header.
pub(crate) fn describes<K>(
    checkpoint: &Checkpoint<K>,
    files: &[(u64, PathBuf)],
    mut stamp_of: impl FnMut(&Path) -> Option<(FileStamp, [u8; SEGMENT_HEADER_LEN])>,
    shard: u32,
) -> std::result::Result<(), String> {
    if files.len() != checkpoint.segments.len() {
        return Err(format!(
            "it lists {} segments, the directory holds {}",
            checkpoint.segments.len(),
            files.len()
        ));
    }
    for ((sequence, path), s) in files.iter().zip(&checkpoint.segments) {
        if *sequence != s.sequence {
            return Err(format!(
                "it lists segment {}, the directory holds {sequence}",
                s.sequence
            ));
        }
        let Some((stamp, head)) = stamp_of(path) else {
            return Err(format!("{} cannot be read", path.display()));
        };
        if stamp != s.stamp {
            return Err(format!("{} changed since it was written", path.display()));
        }
        let header = crate::format::segment_header::SegmentHeader::decode(&head)
            .map_err(|e| format!("{}: {}", path.display(), e.reason()))?;
        let readable = crate::format::segment_header::OLDEST_READABLE_VERSION
            ..=crate::format::segment_header::FORMAT_VERSION;
        if !readable.contains(&header.version) {
            return Err(format!(
                "{} has segment format version {}",
                path.display(),
                header.version
            ));
        }
        if (header.shard, header.sequence, header.created_us) != (shard, s.sequence, s.created_us) {
            return Err(format!("{} has another segment header", path.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::checkpoint_data::Loaded;
    use crate::index::Location;
    use crate::io::Storage;
    use crate::testing::mem_storage::MemStorage;

    fn stamp(len: u64) -> FileStamp {
        FileStamp {
            len,
            inode: 7,
            mtime: (1, 2),
            ctime: (3, 4),
        }
    }

    /// Each key and its locations (segment, offset, length), in append order.
    type Keys = Vec<(&'static [u8], Vec<(u64, u32, u32)>)>;

    fn sample() -> (Vec<SegmentSummary>, Keys) {
        let segments = vec![
            SegmentSummary {
                sequence: 3,
                created_us: 10,
                newest_us: 20,
                records: 3,
                stamp: stamp(1000),
            },
            SegmentSummary {
                sequence: 5,
                created_us: 30,
                newest_us: 40,
                records: 1,
                stamp: stamp(500),
            },
        ];
        let keys: Keys = vec![
            (b"a", vec![(3, 40, 100), (5, 40, 70)]),
            (b"b", vec![(3, 140, 60), (3, 300, 10)]),
        ];
        (segments, keys)
    }

    /// The checkpoint's bytes: front, then locations.
    fn encoded(segments: &[SegmentSummary], keys: &Keys) -> (Vec<u8>, Vec<u8>) {
        let mut encoder = Encoder::new(segments);
        for (key, locations) in keys {
            encoder.key(key, locations.iter().copied());
        }
        encoder.finish(1, 4, 77)
    }

    /// Writes `all` as shard 1's checkpoint in a store and reads it as shard
    /// `shard`'s. The store must outlive the checkpoint's use.
    fn load_as(all: &[u8], shard: u32) -> (MemStorage, (Option<Loaded>, Option<String>)) {
        let storage = MemStorage::default();
        let (path, tmp) = crate::format::names::checkpoint_paths(1);
        let steps = crate::io::WriteSteps {
            create: "creating",
            write: "writing",
            sync: "syncing",
            rename: "renaming",
        };
        storage
            .write_file_atomically(&path, &tmp, &[all], crate::io::DirSync::Skip, steps)
            .expect("written");
        let read =
            crate::index::checkpoint_data::read(&storage, &path, shard).expect("no I/O error");
        (storage, read)
    }

    /// Writes `front` and `locations` as a shard directory's checkpoint and reads it
    /// as shard 1's.
    fn load(bytes: &(Vec<u8>, Vec<u8>)) -> (MemStorage, std::result::Result<Loaded, String>) {
        let (storage, (cp, reason)) = load_as(&[&bytes.0[..], &bytes.1].concat(), 1);
        (storage, cp.ok_or_else(|| reason.expect("a reason")))
    }

    fn locations(cp: &Loaded, key: &[u8]) -> std::result::Result<Vec<Location>, String> {
        let mut out = Vec::new();
        let (_, run) = cp
            .keys
            .iter()
            .find(|(k, _)| &k[..] == key)
            .expect("the key");
        run.decode_into(&mut out)?;
        Ok(out)
    }

    /// Recomputes every key's locations checksum and the front's checksum, so that
    /// only the field a test changed is wrong.
    fn reseal(front: &mut [u8], locations: &[u8]) {
        let u32_at =
            |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let segments = u32_at(front, 24) as usize;
        let keys = u32_at(front, 32) as usize;
        let mut at = HEADER_LEN + segments * SEGMENT_ENTRY_LEN;
        let mut loc_at = 0;
        for _ in 0..keys {
            let (key_len, count, groups) = (
                u32_at(front, at),
                u32_at(front, at + 4),
                u32_at(front, at + 8),
            );
            let len = (groups as usize) * GROUP_LEN + count as usize * LOCATION_LEN;
            let end = (loc_at + len).min(locations.len());
            let crc = crc32c::crc32c(&locations[loc_at.min(end)..end]);
            front[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
            at += KEY_ENTRY_LEN + key_len as usize;
            loc_at += len;
        }
        let body = front.len() - CRC_LEN;
        let crc = crc32c::crc32c(&front[..body]);
        front[body..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn a_checkpoint_loads_what_was_encoded() {
        let (segments, index) = sample();
        let (_dir, cp) = load(&encoded(&segments, &index));
        let cp = cp.expect("loads");
        assert_eq!(cp.synced_through, 4);
        assert_eq!(cp.segments, segments);
        assert_eq!(cp.keys.len(), 2);
        let at = |v: Vec<Location>| {
            v.iter()
                .map(|l| (l.segment, l.offset, l.len))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            at(locations(&cp, b"a").unwrap()),
            vec![(3, 40, 100), (5, 40, 70)]
        );
        assert_eq!(
            at(locations(&cp, b"b").unwrap()),
            vec![(3, 140, 60), (3, 300, 10)]
        );
    }

    /// Any flipped byte of the front, and any cut, is refused at open; a flipped
    /// byte among the locations fails that key's checksum when it is read.
    #[test]
    fn every_flipped_byte_or_cut_is_caught() {
        let (segments, index) = sample();
        let bytes = encoded(&segments, &index);
        for i in 0..bytes.0.len() {
            let mut bad = bytes.clone();
            bad.0[i] ^= 0x20;
            assert!(load(&bad).1.is_err(), "flipped front byte {i} was accepted");
        }
        for i in 0..bytes.1.len() {
            let mut bad = bytes.clone();
            bad.1[i] ^= 0x20;
            let (_dir, cp) = load(&bad);
            let cp = cp.expect("the front is intact");
            let failed = [&b"a"[..], b"b"]
                .iter()
                .filter(|k| locations(&cp, k).is_err())
                .count();
            assert_eq!(failed, 1, "flipped location byte {i}");
        }
        let all = [bytes.0.clone(), bytes.1.clone()].concat();
        for len in 0..all.len() {
            let cut = (all[..len].to_vec(), Vec::new());
            assert!(load(&cut).1.is_err(), "a cut at {len} was accepted");
        }
        let (_storage, other) = load_as(&all, 2);
        assert!(other.1.expect("refused").contains("shard 1"));
    }

    /// Header counts chosen to overflow the length arithmetic: refused, no panic.
    #[test]
    fn a_header_whose_lengths_overflow_is_refused() {
        let mut header = vec![0u8; HEADER_LEN + CRC_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        for (segments, directory) in [
            (0, u64::MAX - HEADER_LEN as u64 - 1),
            (0, u64::MAX),
            (u64::MAX / SEGMENT_ENTRY_LEN as u64, 0),
            (u64::MAX, u64::MAX),
        ] {
            let mut bad = header.clone();
            bad[24..32].copy_from_slice(&u64::to_le_bytes(segments));
            bad[48..56].copy_from_slice(&u64::to_le_bytes(directory));
            let reason = load(&(bad, Vec::new())).1.expect_err("refused");
            assert!(reason.contains("exceed"), "{reason}");
        }
    }

    /// A checkpoint whose checksums are right but whose content is not: each check
    /// must refuse it on its own, at open for the front, at the read of the key for
    /// its locations.
    #[test]
    fn inconsistent_content_under_valid_checksums_is_refused() {
        let (segments, index) = sample();
        let bytes = encoded(&segments, &index);
        let front_err = |change: &dyn Fn(&mut Vec<u8>)| {
            let mut bad = bytes.clone();
            change(&mut bad.0);
            reseal(&mut bad.0, &bad.1);
            load(&bad).1.expect_err("refused")
        };
        // A segment's record count one too high.
        assert!(front_err(&|f| f[HEADER_LEN + 24] += 1).contains("add up"));
        // Record counts whose sum wraps around to the true total (3 + 1).
        let wraps = |f: &mut Vec<u8>| {
            let second = HEADER_LEN + SEGMENT_ENTRY_LEN;
            f[HEADER_LEN + 24..HEADER_LEN + 32].copy_from_slice(&(1u64 << 63).to_le_bytes());
            f[second + 24..second + 32].copy_from_slice(&((1u64 << 63) + 4).to_le_bytes());
        };
        let reason = front_err(&wraps);
        assert!(reason.contains("cannot hold"), "{reason}");
        // A segment claiming more records than its length holds.
        let reason = front_err(&|f| {
            f[HEADER_LEN + 24..HEADER_LEN + 32].copy_from_slice(&51u64.to_le_bytes())
        });
        assert!(reason.contains("cannot hold"), "{reason}");
        // Segments out of order.
        assert!(front_err(&|f| f[HEADER_LEN + SEGMENT_ENTRY_LEN] = 2).contains("order"));
        // A sync figure that vouches for the newest segment (5).
        assert!(front_err(&|f| f[16..24].copy_from_slice(&5u64.to_le_bytes())).contains("vouches"));
        // A segment whose newest record is older than the segment.
        assert!(front_err(
            &|f| f[HEADER_LEN + 16..HEADER_LEN + 24].copy_from_slice(&9u64.to_le_bytes())
        )
        .contains("newer"));
        // A count far beyond the file's length.
        assert!(
            front_err(&|f| f[40..48].copy_from_slice(&u64::MAX.to_le_bytes())).contains("exceed")
        );
        // Directory entries come in map order: find them by their bytes (key length,
        // location count, group count).
        let dir_at = HEADER_LEN + 2 * SEGMENT_ENTRY_LEN;
        let find = |entry: [u8; 12], key: u8| {
            (dir_at..bytes.0.len() - 17)
                .find(|&i| bytes.0[i..i + 12] == entry && bytes.0[i + 16] == key)
                .expect("the key's entry")
        };
        let a_at = find([1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0], b'a');
        let b_at = find([1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0], b'b');
        // A key listed twice: "b" renamed "a".
        assert!(front_err(&|f| f[b_at + 16] = b'a').contains("twice"));
        // More groups than locations.
        assert!(front_err(&|f| f[a_at + 8] = 3).contains("groups"));
        // A location count that moves the next key's locations past the end.
        assert!(
            front_err(&|f| f[a_at + 4] = 3).contains("past its end")
                || front_err(&|f| f[a_at + 4] = 3).contains("follow")
        );
        // Now the locations of "a" (first or second in the file, by map order).
        let a_first = a_at < b_at;
        let a_loc = if a_first {
            0
        } else {
            GROUP_LEN + 2 * LOCATION_LEN
        };
        let loc_err = |change: &dyn Fn(&mut Vec<u8>)| {
            let mut bad = bytes.clone();
            change(&mut bad.1);
            reseal(&mut bad.0, &bad.1);
            let (_dir, cp) = load(&bad);
            locations(&cp.expect("the front is intact"), b"a").expect_err("refused")
        };
        // Its first group's slot out of range.
        assert!(loc_err(&|l| l[a_loc] = 9).contains("slot 9"));
        // Its first location's offset inside the segment header.
        let first = a_loc + GROUP_LEN;
        assert!(
            loc_err(&|l| l[first..first + 4].copy_from_slice(&8u32.to_le_bytes()))
                .contains("outside")
        );
        // Its length past the segment's end.
        assert!(
            loc_err(&|l| l[first + 4..first + 8].copy_from_slice(&5000u32.to_le_bytes()))
                .contains("outside")
        );
        // Both groups in segment 3 (slot 0).
        let second = first + LOCATION_LEN;
        assert!(
            loc_err(&|l| l[second..second + 4].copy_from_slice(&0u32.to_le_bytes()))
                .contains("append order")
        );
        // A group count of 2 for the first group: its second location would be the
        // next group's head.
        loc_err(&|l| l[a_loc + 4] = 2);
    }

    /// `describes` compares the listing, each file's stamp, and its header.
    #[test]
    fn files_that_differ_from_the_checkpoint_are_named() {
        let (segments, index) = sample();
        let (_dir, cp) = load(&encoded(&segments, &index));
        let cp = cp.expect("loads");
        let files: Vec<(u64, PathBuf)> = [3, 5]
            .iter()
            .map(|&n| (n, PathBuf::from(format!("seg-{n}"))))
            .collect();
        let header = |version: u32, sequence: u64, created_us: u64| {
            let h = crate::format::segment_header::SegmentHeader {
                version,
                shard: 1,
                sequence,
                created_us,
                salt: 0,
            };
            h.encode()
        };
        let segs = &segments;
        let by_name = |version: u32, created_shift: u64| {
            move |path: &Path| {
                let n: u64 = path.to_str()?.strip_prefix("seg-")?.parse().ok()?;
                let s = segs.iter().find(|s| s.sequence == n)?;
                Some((s.stamp, header(version, n, s.created_us + created_shift)))
            }
        };
        assert_eq!(describes(&cp, &files, by_name(2, 0), 1), Ok(()));
        assert!(describes(&cp, &files[..1], by_name(2, 0), 1)
            .unwrap_err()
            .contains("lists 2 segments"));
        assert!(describes(&cp, &files, by_name(2, 1), 1)
            .unwrap_err()
            .contains("another segment header"));
        let unreadable = crate::format::segment_header::FORMAT_VERSION + 1;
        assert!(describes(&cp, &files, by_name(unreadable, 0), 1)
            .unwrap_err()
            .contains(&format!("format version {unreadable}")));
        let moved = |path: &Path| {
            let (mut stamp, head) = by_name(2, 0)(path)?;
            stamp.ctime.1 += 1;
            Some((stamp, head))
        };
        assert!(describes(&cp, &files, moved, 1)
            .unwrap_err()
            .contains("changed"));
    }

    /// Over three close/open rounds, with size rotation, durable and non-durable
    /// appends: what the checkpoint gives recovery equals what a scan of the same
    /// files gives, field by field and location by location.
    #[test]
    fn a_loaded_shard_equals_a_scanned_one() {
        use crate::options::RecoveryMode::Strict;
        use crate::recovery::{list_segments, recover_shard, scan_shard, RecoveredShard};
        let dir = tempfile::tempdir().expect("temp dir");
        let options = crate::WalOptions::default()
            .with_shards(1)
            .with_max_key_size(64)
            .with_max_record_size(1024)
            .with_max_segment_size(64 * 1024)
            .with_index_checkpoint(true);
        let sdir = dir.path().join(crate::io::shard_dir_name(0));
        type Summary = Vec<(u64, u64, u64, u64, u64, u64, bool)>;
        let summary = |r: &RecoveredShard| -> (Summary, u64, u64) {
            let segments = r
                .segments
                .iter()
                .map(|s| {
                    let fields = (s.sequence, s.created_us, s.newest_us, s.len, s.allocated);
                    (
                        fields.0, fields.1, fields.2, fields.3, fields.4, s.records, s.sealed,
                    )
                })
                .collect();
            (segments, r.next_sequence, r.synced_through)
        };
        for round in 0..3 {
            let wal = crate::Wal::new(dir.path(), options.clone()).expect("open");
            let salt = crate::open::read_manifest_in(dir.path())
                .expect("manifest")
                .salt;
            for i in 0..3000 {
                let value = bytes::Bytes::from(vec![i as u8; i % 300]);
                wal.append_entry(format!("k{}", i % 7), value, i % 40 == 0)
                    .expect("append");
            }
            wal.close().expect("close");
            let loaded = recover_shard(&sdir, 0, Strict, true, salt).expect("load");
            assert_eq!(loaded.report.checkpoints_loaded, 1, "round {round}");
            let files = list_segments(&sdir).expect("list");
            let scanned = scan_shard(&files, 0, Strict, salt).expect("scan");
            assert!(files.len() >= 3, "round {round}: {} segments", files.len());
            assert_eq!(summary(&loaded), summary(&scanned), "round {round}");
            let mut keys = loaded.index.keys();
            keys.sort();
            let mut scanned_keys = scanned.index.keys();
            scanned_keys.sort();
            assert_eq!(keys, scanned_keys);
            for key in keys {
                let locations = |r: &RecoveredShard| {
                    r.index
                        .snapshot(&key)
                        .expect("readable")
                        .map(|s| s.locations)
                };
                assert_eq!(locations(&loaded), locations(&scanned), "round {round}");
            }
        }
    }
}
