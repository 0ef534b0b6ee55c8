//! Helpers shared by the integration tests: the result type, and a reader of the
//! documented on-disk format (`docs/FORMAT.md`, top of `src/format/record.rs` and
//! `src/format/segment_header.rs`) written independently of the library, so tests can find the
//! file and offset of any record and damage it on purpose.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Segment header length (magic, version, shard, sequence, created, salt, crc; in
/// versions 1 to 3: crc, reserved).
pub const SEGMENT_HEADER_LEN: usize = 40;
/// Record header length of format version 4 (crc, len, seq, timestamp, key_len).
pub const RECORD_HEADER_LEN: usize = 28;
/// Record header length of format versions 1 to 3 (crc, len, timestamp, key_len).
pub const LEGACY_RECORD_HEADER_LEN: usize = 20;

/// One record found by walking a segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPos {
    pub offset: u64,
    pub len: u64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// How the records of a segment are laid out, read from its header's version: the
/// header length, where the key length is, and for version 4 the checksum's seed
/// (CRC32C of salt, shard, segment), which each record's offset extends.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub header: usize,
    pub key_len_at: usize,
    pub seed: Option<u32>,
}

impl Layout {
    /// The layout of the segment whose bytes (header first) are `data`.
    pub fn of(data: &[u8]) -> Layout {
        if u32_at(data, 8) >= 4 {
            let mut binding = Vec::with_capacity(16);
            binding.extend_from_slice(&data[32..36]);
            binding.extend_from_slice(&data[12..16]);
            binding.extend_from_slice(&data[16..24]);
            Layout {
                header: RECORD_HEADER_LEN,
                key_len_at: 24,
                seed: Some(crc32c::crc32c(&binding)),
            }
        } else {
            Layout {
                header: LEGACY_RECORD_HEADER_LEN,
                key_len_at: 16,
                seed: None,
            }
        }
    }

    /// The checksum a record at file offset `offset` with bytes 4.. `body` must have.
    pub fn crc(&self, offset: u64, body: &[u8]) -> u32 {
        match self.seed {
            None => crc32c::crc32c(body),
            Some(seed) => {
                crc32c::crc32c_append(crc32c::crc32c_append(seed, &offset.to_le_bytes()), body)
            }
        }
    }
}

/// Recomputes the checksum of the record at `offset` of a segment's bytes `data`
/// after a test edited it (so that only the edit it means remains).
pub fn reseal_record(data: &mut [u8], offset: usize) {
    let layout = Layout::of(data);
    let len = u32_at(data, offset + 4) as usize;
    let crc = layout.crc(offset as u64, &data[offset + 4..offset + len]);
    data[offset..offset + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Directory of shard `shard` inside the WAL directory `wal`.
pub fn shard_dir(wal: &Path, shard: usize) -> PathBuf {
    wal.join(format!("shard-{shard:03}"))
}

/// Segment files of one shard, oldest first (names are zero-padded sequence numbers).
pub fn segment_files(wal: &Path, shard: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shard_dir(wal, shard))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    files.sort();
    Ok(files)
}

/// Every segment file of every shard directory.
pub fn all_segment_files(wal: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(wal)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() && entry.file_name().to_string_lossy().starts_with("shard-")
        {
            for seg in std::fs::read_dir(entry.path())? {
                let seg = seg?.path();
                if seg.extension().is_some_and(|e| e == "seg") {
                    out.push(seg);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `key_len` of a sync marker (format version 2): a 28-byte record whose payload is a
/// u64 segment sequence number; not a data record.
pub const MARKER_KEY_LEN: u32 = u32::MAX;

/// `key_len` of a seal note (format version 3): a 36-byte record whose payload is the
/// sequence number and sealed length of the segment before; not a data record.
pub const SEAL_NOTE_KEY_LEN: u32 = u32::MAX - 1;

/// A sync marker found by walking a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerPos {
    pub offset: u64,
    pub synced_through: u64,
}

/// Walks the records of a segment's bytes by the documented format, checking each
/// record's CRC32C (over bytes 4..len). Stops at the first record that is incomplete
/// or fails its checks. Sync markers are checked and passed over.
pub fn walk_records(data: &[u8]) -> Vec<RecordPos> {
    walk_segment(data).0
}

/// The sync markers of a segment's bytes, up to where [`walk_records`] stops.
pub fn walk_markers(data: &[u8]) -> Vec<MarkerPos> {
    walk_segment(data).1
}

/// Where the records, sync markers and seal notes of a segment's bytes end, as far
/// as [`walk_records`] gets (the header length when there is none).
pub fn walked_end(data: &[u8]) -> u64 {
    walk_segment(data).2 as u64
}

/// The records, the sync markers, and where the walk stopped (seal notes are
/// checked and passed over).
fn walk_segment(data: &[u8]) -> (Vec<RecordPos>, Vec<MarkerPos>, usize) {
    assert!(
        data.len() >= SEGMENT_HEADER_LEN,
        "segment shorter than its header"
    );
    assert_eq!(&data[0..8], b"NANOWALS", "segment magic");
    let layout = Layout::of(data);
    let header = layout.header;
    let mut out = Vec::new();
    let mut markers = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while pos + header <= data.len() {
        let len = u32_at(data, pos + 4) as usize;
        if len < header || pos + len > data.len() {
            break;
        }
        let key_len_field = u32_at(data, pos + layout.key_len_at);
        let marker = key_len_field == MARKER_KEY_LEN;
        let note = key_len_field == SEAL_NOTE_KEY_LEN;
        let key_len = if marker || note {
            0
        } else {
            key_len_field as usize
        };
        if (marker && len != header + 8) || (note && len != header + 16) || key_len > len - header {
            break;
        }
        if layout.crc(pos as u64, &data[pos + 4..pos + len]) != u32_at(data, pos) {
            break;
        }
        if note {
            pos += len;
            continue;
        }
        if marker {
            markers.push(MarkerPos {
                offset: pos as u64,
                synced_through: u64_at(data, pos + header),
            });
            pos += len;
            continue;
        }
        let key_end = pos + header + key_len;
        out.push(RecordPos {
            offset: pos as u64,
            len: len as u64,
            key: data[pos + header..key_end].to_vec(),
            value: data[key_end..pos + len].to_vec(),
        });
        pos += len;
    }
    (out, markers, pos)
}

/// Reads a segment file and walks its records.
pub fn records_of_file(path: &Path) -> std::io::Result<Vec<RecordPos>> {
    Ok(walk_records(&std::fs::read(path)?))
}

/// The seal note that is the first record of a segment's bytes, if any, as
/// `(sequence, length)` of the segment sealed before it (docs/FORMAT.md).
pub fn seal_note_of(data: &[u8]) -> Option<(u64, u64)> {
    let pos = SEGMENT_HEADER_LEN;
    let layout = Layout::of(data.get(..SEGMENT_HEADER_LEN)?);
    let header = layout.header;
    let len = header + 16;
    let note = data.get(pos..pos + len)?;
    let ok = u32_at(note, 4) as usize == len
        && u32_at(note, layout.key_len_at) == SEAL_NOTE_KEY_LEN
        && layout.crc(pos as u64, &note[4..]) == u32_at(note, 0);
    ok.then(|| (u64_at(note, header), u64_at(note, header + 8)))
}

/// Recovery's rule for a sealed segment that no sync marker vouches for (a power cut
/// may have cut it short without a trace, docs/FORMAT.md): the segments after the
/// oldest such one go, if they hold a record, unless the seal note first in its
/// successor names it with its length and every byte of it is a valid record; and
/// a segment whose seal note names a missing segment that no marker vouches for goes
/// with every later one. `segments` are a shard's version-2
/// segments as recovery will read them, oldest first, each its file name (which
/// gives its sequence number) and bytes (the version-1 exception is not modelled).
/// Returns the names of the segments recovery removes.
pub fn dropped_after_unvouched_seal(segments: &[(PathBuf, Vec<u8>)]) -> Vec<PathBuf> {
    let sequence = |f: &PathBuf| -> u64 {
        f.file_stem()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .expect("a segment file name")
    };
    // A marker vouches only for segments older than its own (a larger value is not
    // a writer's and vouches for nothing, as in recovery).
    let vouched = segments
        .iter()
        .flat_map(|(f, data)| {
            let own = sequence(f);
            walk_markers(data)
                .into_iter()
                .map(|m| m.synced_through)
                .filter(move |&s| s < own)
        })
        .max()
        .unwrap_or(0);
    let whole = |i: usize| {
        let (f, data) = &segments[i];
        walked_end(data) == data.len() as u64
            && seal_note_of(&segments[i + 1].1) == Some((sequence(f), data.len() as u64))
    };
    // A segment whose seal note names a missing segment (between its predecessor and
    // itself) that no marker vouches for goes, with every later one, records or not.
    let missing = (0..segments.len()).find(|&k| {
        let after = k.checked_sub(1).map_or(0, |p| sequence(&segments[p].0));
        seal_note_of(&segments[k].1).is_some_and(|(named, _)| {
            named > after && named < sequence(&segments[k].0) && named > vouched
        })
    });
    // The segments after the oldest unvouched seal go, if any of them holds a record.
    let unvouched = (0..segments.len().saturating_sub(1))
        .find(|&i| sequence(&segments[i].0) > vouched && !whole(i))
        .map(|i| i + 1)
        .filter(|&from| {
            segments[from..]
                .iter()
                .any(|(_, data)| !walk_records(data).is_empty())
        });
    let Some(from) = missing.into_iter().chain(unvouched).min() else {
        return Vec::new();
    };
    segments[from..].iter().map(|(f, _)| f.clone()).collect()
}

/// Deterministic pseudo-random bytes (xorshift), never all zero.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8 | 0x01
        })
        .collect()
}

/// Relative path -> contents, of every file under a WAL directory.
pub type Snapshot = std::collections::BTreeMap<PathBuf, Vec<u8>>;

/// Every file under `dir`, by path relative to it.
pub fn snapshot(dir: &Path) -> Result<Snapshot, Box<dyn std::error::Error>> {
    let mut out = Snapshot::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir)?.to_path_buf(), std::fs::read(&p)?);
            }
        }
    }
    Ok(out)
}

/// Makes `dir` hold exactly the files of `snap`, rewriting only what differs. Tests
/// that try hundreds of damaged copies reuse one directory this way: creating and
/// deleting thousands of files makes ext4's inode allocator crawl.
pub fn restore(snap: &Snapshot, dir: &Path) -> TestResult {
    std::fs::create_dir_all(dir)?;
    let current = snapshot(dir)?;
    for rel in current.keys() {
        if !snap.contains_key(rel) {
            std::fs::remove_file(dir.join(rel))?;
        }
    }
    for (rel, data) in snap {
        if current.get(rel) != Some(data) {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, data)?;
        }
    }
    Ok(())
}

/// Seeded pseudo-random numbers (xorshift64*) for seeded damage cases: any bytes,
/// zeros included (unlike [`noise`]).
pub struct Rng(u64);

impl Rng {
    /// A generator for case `seed` (any value, 0 included).
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 32) as u8).collect()
    }
}

/// The record numbers under `key`, for tests whose values start with the record's
/// number in 5 digits (`format!("{i:05}|...")`).
pub fn numbers(wal: &nano_wal::Wal, key: &str) -> Result<Vec<usize>, Box<dyn std::error::Error>> {
    wal.enumerate_records(key)?
        .map(|v| Ok(std::str::from_utf8(&v[..5])?.parse::<usize>()?))
        .collect()
}

/// The checksum seed of version-4 records in segment `segment` of shard `shard` of a
/// WAL whose salt is `salt`: CRC32C of the three, little-endian.
pub fn seed_of(salt: u32, shard: u32, segment: u64) -> u32 {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&salt.to_le_bytes());
    b.extend_from_slice(&shard.to_le_bytes());
    b.extend_from_slice(&segment.to_le_bytes());
    crc32c::crc32c(&b)
}

/// A data record encoded by the documented format: version 4 with checksum seed
/// `seed` for file offset `offset` (`Some`), or the 20-byte layout of versions 1 to
/// 3 (`None`).
pub fn encode_record(
    seed: Option<u32>,
    offset: u64,
    seq: u64,
    key: &[u8],
    value: &[u8],
) -> Vec<u8> {
    let layout = Layout {
        header: if seed.is_some() {
            RECORD_HEADER_LEN
        } else {
            LEGACY_RECORD_HEADER_LEN
        },
        key_len_at: if seed.is_some() { 24 } else { 16 },
        seed,
    };
    let len = layout.header + key.len() + value.len();
    let mut b = vec![0u8; 4];
    b.extend_from_slice(&(len as u32).to_le_bytes());
    if seed.is_some() {
        b.extend_from_slice(&seq.to_le_bytes());
    }
    b.extend_from_slice(&7u64.to_le_bytes());
    b.extend_from_slice(&(key.len() as u32).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(value);
    let crc = layout.crc(offset, &b[4..]);
    b[0..4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The salt in the manifest of the WAL at `wal` (version 2).
pub fn salt_of(wal: &Path) -> std::io::Result<u32> {
    let m = std::fs::read(wal.join("MANIFEST"))?;
    Ok(u32_at(&m, 20))
}
