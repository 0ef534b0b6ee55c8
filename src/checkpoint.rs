//! The index checkpoint: a shard's key index as a clean close left it, so that the
//! next open can load it instead of reading every record again
//! (`WalOptions::index_checkpoint`).
//!
//! A checkpoint is a cache, never the only copy of anything: every location in it
//! points at a record that is in a segment file, and recovery can always rebuild it
//! by scanning. So it is written without an fsync, an open that succeeds removes it, and a
//! checkpoint that fails any check is ignored (the shard is scanned). The byte
//! layout is in `docs/FORMAT.md` ("Index checkpoint"):
//!
//! ```text
//! header     48 B   magic b"NANOWALI", version, shard, synced_through,
//!                   segment count, key count, location count
//! segments   80 B each, oldest first: sequence, created, newest, records, and the
//!                   file's length, inode, mtime and ctime when the checkpoint was written
//! keys       per key: key length u32, location count u32, group count u32, the key,
//!                   then per segment it has records in (a group): segment slot u32
//!                   (index into the segment table), count u32, and per location
//!                   offset u32, length u32
//! trailer    4 B    CRC32C of everything before it
//! ```

use crate::error::{Result, WalError};
use crate::index::KeyHasher;
use crate::index::{Frozen, Run, ShardIndex, FROZEN_LOCATION_LEN};
use crate::segment::{Segment, SEGMENT_HEADER_LEN};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The checkpoint's name in its shard directory.
pub(crate) const CHECKPOINT_FILE: &str = "INDEX";
/// Where a checkpoint is written before it is renamed into place.
pub(crate) const CHECKPOINT_TMP_FILE: &str = "INDEX.tmp";

const MAGIC: &[u8; 8] = b"NANOWALI";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 48;
const SEGMENT_ENTRY_LEN: usize = 80;
const KEY_ENTRY_LEN: usize = 12;
const GROUP_LEN: usize = 8;
const LOCATION_LEN: usize = FROZEN_LOCATION_LEN;
const CRC_LEN: usize = 4;

/// How a segment file looked when the checkpoint was written. Any write to the file
/// afterwards changes its ctime (and its mtime or length); a file put back from
/// elsewhere has another inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    pub(crate) len: u64,
    inode: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            len: meta.len(),
            inode: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// What recovery would learn about one segment by scanning it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    pub(crate) sequence: u64,
    pub(crate) created_us: u64,
    pub(crate) newest_us: u64,
    pub(crate) records: u64,
    pub(crate) stamp: FileStamp,
}

/// A decoded checkpoint. Its locations stay in its bytes (`index::Frozen`).
pub(crate) struct Checkpoint {
    /// What the shard's sync markers vouched for at close.
    pub(crate) synced_through: u64,
    pub(crate) segments: Vec<SegmentSummary>,
    /// Each key and where its locations are in the checkpoint's bytes.
    pub(crate) keys: Vec<(Box<[u8]>, Run)>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("synced_through", &self.synced_through)
            .field("segments", &self.segments)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Writes shard `shard`'s checkpoint into `dir`, its directory: the segments (which
/// the caller has closed cleanly, so nothing in them changes any more) and every
/// location of `index`.
pub(crate) fn write(
    dir: &Path,
    shard: u32,
    synced_through: u64,
    segments: &[Segment],
    index: &ShardIndex,
) -> Result<()> {
    let mut summaries = Vec::with_capacity(segments.len());
    for s in segments {
        let path = s.io.path();
        let meta = std::fs::metadata(path).map_err(|e| WalError::io("inspecting", path, e))?;
        summaries.push(SegmentSummary {
            sequence: s.sequence,
            created_us: s.created_us,
            newest_us: s.newest_us,
            records: s.records,
            stamp: FileStamp::of(&meta),
        });
    }
    let bytes = encode(shard, synced_through, &summaries, index);
    let tmp = dir.join(CHECKPOINT_TMP_FILE);
    std::fs::write(&tmp, &bytes).map_err(|e| WalError::io("writing index checkpoint", &tmp, e))?;
    // No fsync of the file or the directory: a checkpoint that a power cut loses or
    // tears fails its length or checksum check and the shard is scanned instead.
    let path = dir.join(CHECKPOINT_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| WalError::io("renaming index checkpoint", &path, e))
}

/// Reads shard `shard`'s checkpoint from `dir`, if there is one. `None` if there
/// is none, or if it failed a check (then the reason is in the second element).
/// The caller has listed the directory, so an `INDEX` that is not a regular file
/// was refused as foreign already; it is opened without following a symlink or
/// waiting on a FIFO all the same, and read no further than its length.
pub(crate) fn read(dir: &Path, shard: u32) -> Result<(Option<Checkpoint>, Option<String>)> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(CHECKPOINT_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, None)),
        Err(e) => return Err(WalError::io("reading index checkpoint", &path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| WalError::io("reading index checkpoint", &path, e))?;
    if !meta.is_file() {
        return Err(WalError::ForeignFile { path });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(meta.len())
        .read_to_end(&mut bytes)
        .map_err(|e| WalError::io("reading index checkpoint", &path, e))?;
    Ok(match decode(bytes, shard) {
        Ok(checkpoint) => (Some(checkpoint), None),
        Err(reason) => (None, Some(reason)),
    })
}

/// Removes shard directory `dir`'s checkpoint, used or not, once the open has
/// succeeded: from here on the writer changes the segments, so the checkpoint would
/// describe them as they were. (A refused open leaves it: nothing changed.)
pub(crate) fn remove(dir: &Path) -> Result<()> {
    for stale in [dir.join(CHECKPOINT_FILE), dir.join(CHECKPOINT_TMP_FILE)] {
        // No directory fsync: should a power cut bring the file back, its segment
        // stamps no longer match once the writer has changed a segment (a new
        // segment's name is fsynced into the directory, and appends change the
        // length), and if nothing changed, the checkpoint still describes the files.
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(WalError::io("removing index checkpoint", &stale, e)),
        }
    }
    Ok(())
}

/// Whether `files` (the shard's segment files, oldest first) are exactly the
/// checkpoint's segments, unchanged. `stamp_of` gives a file's stamp and header.
pub(crate) fn describes(
    checkpoint: &Checkpoint,
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
        let header = crate::segment::SegmentHeader::decode(&head)
            .map_err(|e| format!("{}: {}", path.display(), e.reason()))?;
        let readable = crate::segment::OLDEST_READABLE_VERSION..=crate::segment::FORMAT_VERSION;
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

fn encode(
    shard: u32,
    synced_through: u64,
    segments: &[SegmentSummary],
    index: &ShardIndex,
) -> Vec<u8> {
    let sequences: Vec<u64> = segments.iter().map(|s| s.sequence).collect();
    let mut out = Vec::with_capacity(HEADER_LEN + segments.len() * SEGMENT_ENTRY_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&shard.to_le_bytes());
    out.extend_from_slice(&synced_through.to_le_bytes());
    out.extend_from_slice(&(segments.len() as u64).to_le_bytes());
    // The key and location counts, filled in once the keys are written.
    out.resize(HEADER_LEN, 0);
    for s in segments {
        for v in [
            s.sequence,
            s.created_us,
            s.newest_us,
            s.records,
            s.stamp.len,
            s.stamp.inode,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            s.stamp.mtime.0,
            s.stamp.mtime.1,
            s.stamp.ctime.0,
            s.stamp.ctime.1,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let (mut count, mut locations) = (0u64, 0u64);
    index.for_each_key(|key, locs| {
        count += 1;
        locations += locs.len() as u64;
        out.reserve(KEY_ENTRY_LEN + key.len() + locs.len() * (GROUP_LEN + LOCATION_LEN) + CRC_LEN);
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(locs.len() as u32).to_le_bytes());
        let groups_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(key);
        // A key's locations are in append order, hence grouped by segment.
        let mut groups = 0u32;
        for group in locs.chunk_by(|a, b| a.segment == b.segment) {
            // Every location names a live segment: the index and the segment list
            // change together, on the actor's thread, which is the caller. Were
            // one missing, its slot would make the next open scan instead.
            let slot = sequences
                .binary_search(&group[0].segment)
                .map_or(u32::MAX, |i| i as u32);
            out.extend_from_slice(&slot.to_le_bytes());
            out.extend_from_slice(&(group.len() as u32).to_le_bytes());
            for loc in group {
                let mut entry = [0u8; LOCATION_LEN];
                entry[0..4].copy_from_slice(&loc.offset.to_le_bytes());
                entry[4..8].copy_from_slice(&loc.len.to_le_bytes());
                out.extend_from_slice(&entry);
            }
            groups += 1;
        }
        out[groups_at..groups_at + 4].copy_from_slice(&groups.to_le_bytes());
    });
    out[32..40].copy_from_slice(&count.to_le_bytes());
    out[40..48].copy_from_slice(&locations.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads fixed-width little-endian fields from a byte slice, failing past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!("it ends inside a field at byte {}", self.at));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(self.u64()? as i64)
    }
}

fn decode(bytes: Vec<u8>, shard: u32) -> std::result::Result<Checkpoint, String> {
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(format!(
            "it is {} bytes long, shorter than a header",
            bytes.len()
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    let mut c = Cursor { bytes: body, at: 0 };
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
    // Counts are checked against the bytes before anything is allocated for them.
    let fits = |count: u64, each: usize| {
        count
            .checked_mul(each as u64)
            .is_some_and(|n| n <= body.len() as u64)
    };
    if !fits(segment_count, SEGMENT_ENTRY_LEN)
        || !fits(key_count, KEY_ENTRY_LEN)
        || !fits(location_count, LOCATION_LEN)
    {
        return Err("its counts exceed its length".into());
    }
    let mut segments = Vec::with_capacity(segment_count as usize);
    for _ in 0..segment_count {
        let (sequence, created_us, newest_us, records) = (c.u64()?, c.u64()?, c.u64()?, c.u64()?);
        let (len, inode) = (c.u64()?, c.u64()?);
        let mtime = (c.i64()?, c.i64()?);
        let ctime = (c.i64()?, c.i64()?);
        if segments
            .last()
            .is_some_and(|s: &SegmentSummary| s.sequence >= sequence)
        {
            return Err("its segments are not in order".into());
        }
        // What the writer and a scan both keep: a segment's newest record is never
        // older than the segment.
        if newest_us < created_us {
            return Err(format!(
                "segment {sequence} is newer than its newest record"
            ));
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
    // (key, byte offset of its first location, location count)
    let mut keys = Vec::with_capacity(key_count as usize);
    let mut distinct = std::collections::HashSet::with_capacity_and_hasher(
        key_count as usize,
        KeyHasher::default(),
    );
    let mut per_segment = vec![0u64; segments.len()];
    let seg_lens: Vec<u64> = segments.iter().map(|s| s.stamp.len).collect();
    let mut seen = 0u64;
    for _ in 0..key_count {
        let key_len = c.u32()? as usize;
        let count = c.u32()? as usize;
        let groups = c.u32()? as usize;
        let key = c.take(key_len)?;
        let at = c.at;
        let mut found = 0usize;
        let mut prev_slot = None;
        for _ in 0..groups {
            let slot = c.u32()? as usize;
            let n = c.u32()? as usize;
            let raw = c.take(
                n.checked_mul(LOCATION_LEN)
                    .ok_or("a location count overflows")?,
            )?;
            let Some(&seg_len) = seg_lens.get(slot) else {
                return Err(format!(
                    "a location names segment slot {slot} of {}",
                    segments.len()
                ));
            };
            if n == 0 || prev_slot.is_some_and(|p| p >= slot) {
                return Err("a key's locations are not in append order".into());
            }
            prev_slot = Some(slot);
            // One pass without early exits, so that it compiles to a tight loop:
            // the checks are folded into `bad` and judged once per group.
            let mut bad = false;
            let mut prev = 0u32;
            for loc in raw.chunks_exact(LOCATION_LEN) {
                let offset = u32::from_le_bytes([loc[0], loc[1], loc[2], loc[3]]);
                let len = u32::from_le_bytes([loc[4], loc[5], loc[6], loc[7]]);
                bad |= ((offset as usize) < SEGMENT_HEADER_LEN)
                    | (u64::from(offset) + u64::from(len) > seg_len)
                    | (offset <= prev);
                prev = offset;
            }
            if bad {
                return Err(first_bad(raw, &segments[slot]));
            }
            per_segment[slot] += n as u64;
            found += n;
        }
        if found != count {
            return Err(format!(
                "a key's groups hold {found} locations, its entry says {count}"
            ));
        }
        seen += count as u64;
        if !distinct.insert(key) {
            return Err("a key is listed twice".into());
        }
        keys.push((Box::<[u8]>::from(key), at, groups, count));
    }
    if c.at != body.len() {
        return Err(format!("{} bytes follow the last key", body.len() - c.at));
    }
    if seen != location_count
        || segments
            .iter()
            .zip(&per_segment)
            .any(|(s, &n)| s.records != n)
    {
        return Err("its record counts do not add up".into());
    }
    // A sync marker only vouches for segments older than its own (`record.rs`,
    // `marker_vouches`), so nothing vouches for the newest segment.
    if segments
        .last()
        .map_or(synced_through != 0, |s| synced_through >= s.sequence)
    {
        return Err(format!(
            "its sync figure {synced_through} vouches for the newest segment"
        ));
    }
    drop(distinct);
    let frozen = Arc::new(Frozen {
        sequences: segments.iter().map(|s| s.sequence).collect(),
        bytes: bytes.into_boxed_slice(),
    });
    let keys = keys
        .into_iter()
        .map(|(key, at, groups, count)| {
            let frozen = frozen.clone();
            (
                key,
                Run {
                    frozen,
                    at,
                    groups,
                    count,
                },
            )
        })
        .collect();
    Ok(Checkpoint {
        synced_through,
        segments,
        keys,
    })
}

/// Why the locations `raw` of one group, in `segment`, were refused (the slow path
/// of `decode`).
fn first_bad(raw: &[u8], segment: &SegmentSummary) -> String {
    let mut prev = 0;
    for loc in raw.chunks_exact(LOCATION_LEN) {
        let offset = u32::from_le_bytes([loc[0], loc[1], loc[2], loc[3]]);
        let len = u32::from_le_bytes([loc[4], loc[5], loc[6], loc[7]]);
        if (offset as usize) < SEGMENT_HEADER_LEN
            || u64::from(offset) + u64::from(len) > segment.stamp.len
        {
            return format!(
                "a location ({offset}, {len}) lies outside segment {}",
                segment.sequence
            );
        }
        if offset <= prev {
            return "a key's locations are not in append order".into();
        }
        prev = offset;
    }
    "a key's locations were refused".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Location;

    fn locations(cp: &Checkpoint, key: &[u8]) -> Vec<Location> {
        let mut out = Vec::new();
        if let Some((_, run)) = cp.keys.iter().find(|(k, _)| &k[..] == key) {
            run.decode_into(&mut out);
        }
        out
    }

    fn stamp(len: u64) -> FileStamp {
        FileStamp {
            len,
            inode: 7,
            mtime: (1, 2),
            ctime: (3, 4),
        }
    }

    fn sample() -> (Vec<SegmentSummary>, ShardIndex) {
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
        let index = ShardIndex::default();
        let loc = |segment, offset, len| Location {
            segment,
            offset,
            len,
        };
        index.push(b"a", loc(3, 40, 100));
        index.push(b"b", loc(3, 140, 60));
        index.push(b"a", loc(5, 40, 70));
        index.push(b"b", loc(3, 300, 10));
        (segments, index)
    }

    #[test]
    fn a_checkpoint_decodes_to_what_was_encoded() {
        let (segments, index) = sample();
        let bytes = encode(1, 4, &segments, &index);
        let cp = decode(bytes.clone(), 1).expect("decodes");
        assert_eq!(cp.synced_through, 4);
        assert_eq!(cp.segments, segments);
        assert_eq!(cp.keys.len(), 2);
        let a: Vec<(u64, u32)> = locations(&cp, b"a")
            .iter()
            .map(|l| (l.segment, l.offset))
            .collect();
        assert_eq!(a, vec![(3, 40), (5, 40)]);
        assert_eq!(locations(&cp, b"b")[0].len, 60);
    }

    /// `describes` compares the listing, each file's stamp, and its header.
    #[test]
    fn files_that_differ_from_the_checkpoint_are_named() {
        let (segments, index) = sample();
        let cp = decode(encode(1, 4, &segments, &index), 1).expect("decodes");
        let files: Vec<(u64, PathBuf)> = [3, 5]
            .iter()
            .map(|&n| (n, PathBuf::from(format!("seg-{n}"))))
            .collect();
        let header = |version: u32, sequence: u64, created_us: u64| {
            let h = crate::segment::SegmentHeader {
                version,
                shard: 1,
                sequence,
                created_us,
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
        assert!(describes(&cp, &files, by_name(3, 0), 1)
            .unwrap_err()
            .contains("format version 3"));
        let moved = |path: &Path| {
            let (mut stamp, head) = by_name(2, 0)(path)?;
            stamp.ctime.1 += 1;
            Some((stamp, head))
        };
        assert!(describes(&cp, &files, moved, 1)
            .unwrap_err()
            .contains("changed"));
    }

    #[test]
    fn every_flipped_byte_or_cut_is_refused() {
        let (segments, index) = sample();
        let bytes = encode(1, 4, &segments, &index);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert!(decode(bad, 1).is_err(), "flipped byte {i} was accepted");
        }
        for len in 0..bytes.len() {
            assert!(
                decode(bytes[..len].to_vec(), 1).is_err(),
                "a cut at {len} was accepted"
            );
        }
        assert!(decode(bytes.clone(), 2).unwrap_err().contains("shard 1"));
    }

    /// A checkpoint whose checksum is right but whose content is not: each field
    /// check must refuse it on its own.
    #[test]
    fn inconsistent_content_under_a_valid_checksum_is_refused() {
        let (segments, index) = sample();
        let reseal = |mut body: Vec<u8>| {
            body.truncate(body.len() - CRC_LEN);
            let crc = crc32c::crc32c(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        let bytes = encode(1, 4, &segments, &index);
        let keys_at = HEADER_LEN + 2 * SEGMENT_ENTRY_LEN;
        // A segment's record count one too high.
        let mut bad = bytes.clone();
        bad[HEADER_LEN + 24] += 1;
        assert!(decode(reseal(bad), 1).unwrap_err().contains("add up"));
        // Segments out of order.
        let mut bad = bytes.clone();
        bad[HEADER_LEN + SEGMENT_ENTRY_LEN] = 2;
        assert!(decode(reseal(bad), 1).unwrap_err().contains("order"));
        // Key entries come in map order: find them by their bytes (key length,
        // location count, group count, key).
        let find = |entry: [u8; 13]| {
            (keys_at..bytes.len() - 13)
                .find(|&i| bytes[i..i + 13] == entry)
                .expect("the key's entry")
        };
        let a_at = find([1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, b'a']);
        let b_at = find([1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, b'b']);
        // Key "a"'s first group: slot, count, then its location.
        let group = a_at + KEY_ENTRY_LEN + 1;
        let loc = group + GROUP_LEN;
        // The slot out of range.
        let mut bad = bytes.clone();
        bad[group] = 9;
        assert!(decode(reseal(bad), 1).unwrap_err().contains("slot 9"));
        // The location's offset inside the segment header.
        let mut bad = bytes.clone();
        bad[loc..loc + 4].copy_from_slice(&8u32.to_le_bytes());
        assert!(decode(reseal(bad), 1).unwrap_err().contains("outside"));
        // Its length past the segment's end.
        let mut bad = bytes.clone();
        bad[loc + 4..loc + 8].copy_from_slice(&5000u32.to_le_bytes());
        assert!(decode(reseal(bad), 1).unwrap_err().contains("outside"));
        // Both groups of "a" in segment 3 (slot 0).
        let mut bad = bytes.clone();
        let second = loc + LOCATION_LEN;
        bad[second..second + 4].copy_from_slice(&0u32.to_le_bytes());
        assert!(decode(reseal(bad), 1).unwrap_err().contains("append order"));
        // The two locations of "b" swapped within their group.
        let mut bad = bytes.clone();
        let b_locs = b_at + KEY_ENTRY_LEN + 1 + GROUP_LEN;
        bad[b_locs..b_locs + 2 * LOCATION_LEN].rotate_left(LOCATION_LEN);
        assert!(decode(reseal(bad), 1).unwrap_err().contains("append order"));
        // A location count that its groups do not hold.
        let mut bad = bytes.clone();
        bad[a_at + 4] = 3;
        assert!(decode(reseal(bad), 1).unwrap_err().contains("hold 2"));
        // A key listed twice: key "b" renamed "a" (and given "a"'s group count).
        let mut bad = bytes.clone();
        bad[b_at + 12] = b'a';
        assert!(decode(reseal(bad), 1).unwrap_err().contains("twice"));
        // Bytes after the last key.
        let mut bad = bytes.clone();
        bad.insert(bytes.len() - CRC_LEN, 0);
        assert!(decode(reseal(bad), 1).unwrap_err().contains("follow"));
        // A sync figure that vouches for the newest segment (5).
        let mut bad = bytes.clone();
        bad[16..24].copy_from_slice(&5u64.to_le_bytes());
        assert!(decode(reseal(bad), 1).unwrap_err().contains("vouches"));
        // A segment whose newest record is older than the segment.
        let mut bad = bytes.clone();
        bad[HEADER_LEN + 16..HEADER_LEN + 24].copy_from_slice(&9u64.to_le_bytes());
        assert!(decode(reseal(bad), 1).unwrap_err().contains("newer"));
        // A count far beyond the file's length.
        let mut bad = bytes.clone();
        bad[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(reseal(bad), 1).unwrap_err().contains("exceed"));
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
        let sdir = dir.path().join(crate::storage::shard_dir_name(0));
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
            for i in 0..3000 {
                let value = bytes::Bytes::from(vec![i as u8; i % 300]);
                wal.append_entry(format!("k{}", i % 7), value, i % 40 == 0)
                    .expect("append");
            }
            wal.close().expect("close");
            let loaded = recover_shard(&sdir, 0, Strict, true).expect("load");
            assert_eq!(loaded.report.checkpoints_loaded, 1, "round {round}");
            let files = list_segments(&sdir).expect("list");
            let scanned = scan_shard(&files, 0, Strict).expect("scan");
            assert!(files.len() >= 3, "round {round}: {} segments", files.len());
            assert_eq!(summary(&loaded), summary(&scanned), "round {round}");
            let mut keys = loaded.index.keys();
            keys.sort();
            let mut scanned_keys = scanned.index.keys();
            scanned_keys.sort();
            assert_eq!(keys, scanned_keys);
            for key in keys {
                let locations = |r: &RecoveredShard| r.index.snapshot(&key).map(|s| s.locations);
                assert_eq!(locations(&loaded), locations(&scanned), "round {round}");
            }
        }
    }
}
