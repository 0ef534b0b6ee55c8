//! The record: the unit a segment is made of.
//!
//! Format version 4 (written):
//!
//! ```text
//! offset  size  field
//!      0     4  crc32c    CRC32C of the record's binding, then bytes 4..len
//!      4     4  len       total record length in bytes, header included
//!      8     8  seq       the record's sequence number in its shard (0: bookkeeping)
//!     16     8  timestamp microseconds since the Unix epoch
//!     24     4  key_len   key length in bytes
//!     28     k  key
//!   28+k     v  value     v = len - 28 - k
//! ```
//!
//! The **binding** is 24 bytes that are not stored with the record: the WAL's salt
//! (u32, from the manifest), the shard (u32), the segment's sequence number (u64)
//! and the record's file offset (u64). A record therefore verifies only at the place
//! it was written: a copy of an encoded record inside a value, or anywhere else,
//! fails its checksum, and one crafted for its place needs the salt, which never
//! leaves the WAL's files. That is what lets recovery scan past damage for the next
//! record without ever taking user bytes for one.
//!
//! Versions 1 to 3 (read only) have a 20-byte header without `seq` (crc, len,
//! timestamp, key_len) and a checksum of bytes 4..len alone: [`Codec::Legacy`].
//!
//! All integers little-endian. The checksum covers everything after itself, so a
//! flipped bit in a length, the sequence number, the timestamp, the key or the value
//! is caught.
//!
//! A *sync marker* is a record whose `key_len` is `0xFFFF_FFFF`, which no data
//! record can have, followed by one u64: every segment of the shard up to that
//! sequence number was made durable before the marker was written (see `syncer.rs`).
//! It is never indexed or returned to readers.
//!
//! A *seal note* is a record whose `key_len` is `0xFFFF_FFFE`, followed by two u64s:
//! the sequence number and the final length of the segment sealed just before this
//! one. The writer puts it first in every segment it starts after sealing another, so
//! recovery can tell a sealed segment that is whole from one a power cut shortened
//! (`recovery::drop_after_unvouched_seal`). Like a marker, never indexed or returned.

/// Bytes before the key (format version 4).
pub(crate) const RECORD_HEADER_LEN: usize = 28;
/// Bytes before the key in format versions 1 to 3.
pub(crate) const LEGACY_HEADER_LEN: usize = 20;
/// The `key_len` of a sync marker.
pub(crate) const MARKER_KEY_LEN: u32 = u32::MAX;
/// Length of a sync marker (version 4): the header and one u64.
pub(crate) const MARKER_LEN: usize = RECORD_HEADER_LEN + 8;
/// The `key_len` of a seal note.
pub(crate) const SEAL_NOTE_KEY_LEN: u32 = u32::MAX - 1;
/// Length of a seal note (version 4): the header and two u64s.
pub(crate) const SEAL_NOTE_LEN: usize = RECORD_HEADER_LEN + 16;

/// What a seal note says: segment `sequence` was sealed at `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealNote {
    pub(crate) sequence: u64,
    pub(crate) len: u64,
}

/// What a valid record is, beyond its key and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A user's record.
    Data,
    /// A sync marker: every segment up to this sequence number is durable.
    Marker { synced_through: u64 },
    /// A seal note.
    SealNote(SealNote),
}

/// A record whose checksum and lengths hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded<'a> {
    pub(crate) len: usize,
    /// The record's sequence number in its shard (0 for bookkeeping records and for
    /// records of format versions 1 to 3, which carry none).
    pub(crate) seq: u64,
    pub(crate) timestamp_us: u64,
    pub(crate) key: &'a [u8],
    /// For bookkeeping records, the encoded payload.
    pub(crate) value: &'a [u8],
    pub(crate) kind: Kind,
}

impl Decoded<'_> {
    /// Whether this is a data record (not a sync marker or a seal note).
    pub(crate) fn is_data(&self) -> bool {
        self.kind == Kind::Data
    }

    /// For a sync marker, the sequence number it vouches for.
    pub(crate) fn synced_through(&self) -> Option<u64> {
        match self.kind {
            Kind::Marker { synced_through } => Some(synced_through),
            _ => None,
        }
    }

    /// For a seal note, what it says.
    pub(crate) fn seal_note(&self) -> Option<SealNote> {
        match self.kind {
            Kind::SealNote(note) => Some(note),
            _ => None,
        }
    }
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Fewer bytes than the header or than `len` says.
    Incomplete,
    /// `len` or `key_len` is impossible (or a bookkeeping record has a sequence
    /// number).
    BadLength,
    /// The checksum does not match.
    BadChecksum,
}

impl DecodeError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            DecodeError::Incomplete => "record extends past the end of the file",
            DecodeError::BadLength => "record length fields are impossible",
            DecodeError::BadChecksum => "record checksum mismatch",
        }
    }
}

/// How the records of one segment are laid out and checked: by its header's format
/// version and, for version 4, the record's binding to its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Versions 1 to 3: 20-byte headers, checksum of the record alone.
    Legacy,
    /// Version 4: 28-byte headers; `seed` is the CRC32C of the binding's first 16
    /// bytes (salt, shard, segment), which each record's offset then extends.
    Bound { seed: u32 },
}

/// Field offsets of one layout.
struct Layout {
    header: usize,
    seq: Option<usize>,
    timestamp: usize,
    key_len: usize,
}

impl Codec {
    /// The codec of segment `segment` of shard `shard` in a WAL whose manifest
    /// salt is `salt`, written with header version 4.
    pub(crate) fn bound(salt: u32, shard: u32, segment: u64) -> Codec {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&salt.to_le_bytes());
        b[4..8].copy_from_slice(&shard.to_le_bytes());
        b[8..16].copy_from_slice(&segment.to_le_bytes());
        Codec::Bound {
            seed: crc32c::crc32c(&b),
        }
    }

    fn layout(self) -> Layout {
        match self {
            Codec::Legacy => Layout {
                header: LEGACY_HEADER_LEN,
                seq: None,
                timestamp: 8,
                key_len: 16,
            },
            Codec::Bound { .. } => Layout {
                header: RECORD_HEADER_LEN,
                seq: Some(8),
                timestamp: 16,
                key_len: 24,
            },
        }
    }

    /// Bytes before the key.
    pub(crate) fn header_len(self) -> usize {
        self.layout().header
    }

    /// Encoded length of a record with this key and value.
    pub(crate) fn encoded_len(self, key_len: usize, value_len: usize) -> usize {
        self.header_len() + key_len + value_len
    }

    /// Length of a sync marker.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn marker_len(self) -> usize {
        self.header_len() + 8
    }

    /// Length of a seal note.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn seal_note_len(self) -> usize {
        self.header_len() + 16
    }

    /// The checksum of a record at file offset `at` whose bytes 4.. are `body`.
    fn checksum(self, at: u64, body: &[u8]) -> u32 {
        match self {
            Codec::Legacy => crc32c::crc32c(body),
            Codec::Bound { seed } => {
                crc32c::crc32c_append(crc32c::crc32c_append(seed, &at.to_le_bytes()), body)
            }
        }
    }

    /// Appends one encoded data record to `buf`, to be written at file offset `at`.
    /// The caller has checked that the total fits in a `u32` (options validation
    /// bounds keys, values and segments).
    pub(crate) fn encode_into(
        self,
        buf: &mut Vec<u8>,
        at: u64,
        seq: u64,
        timestamp_us: u64,
        key: &[u8],
        value: &[u8],
    ) {
        let len = self.encoded_len(key.len(), value.len());
        buf.reserve(len);
        let start = self.put_header(buf, len, seq, timestamp_us, key.len() as u32);
        buf.extend_from_slice(key);
        buf.extend_from_slice(value);
        self.seal(buf, start, at);
    }

    /// Appends a sync marker saying that every segment up to `synced_through` is
    /// durable, to be written at file offset `at`.
    pub(crate) fn encode_marker(self, buf: &mut Vec<u8>, at: u64, timestamp_us: u64, synced: u64) {
        self.encode_bookkeeping(buf, at, timestamp_us, MARKER_KEY_LEN, &[synced]);
    }

    /// Appends a seal note saying that segment `note.sequence` was sealed at
    /// `note.len` bytes, to be written at file offset `at`.
    pub(crate) fn encode_seal_note(
        self,
        buf: &mut Vec<u8>,
        at: u64,
        timestamp_us: u64,
        note: SealNote,
    ) {
        let payload = [note.sequence, note.len];
        self.encode_bookkeeping(buf, at, timestamp_us, SEAL_NOTE_KEY_LEN, &payload);
    }

    /// Appends a record whose `key_len` no data record can have, then `payload`.
    fn encode_bookkeeping(
        self,
        buf: &mut Vec<u8>,
        at: u64,
        timestamp_us: u64,
        key_len: u32,
        payload: &[u64],
    ) {
        let len = self.header_len() + 8 * payload.len();
        let start = self.put_header(buf, len, 0, timestamp_us, key_len);
        for value in payload {
            buf.extend_from_slice(&value.to_le_bytes());
        }
        self.seal(buf, start, at);
    }

    /// Appends a header with a zero checksum; returns where it starts in `buf`.
    fn put_header(self, buf: &mut Vec<u8>, len: usize, seq: u64, ts: u64, key_len: u32) -> usize {
        let start = buf.len();
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&(len as u32).to_le_bytes());
        if self.layout().seq.is_some() {
            buf.extend_from_slice(&seq.to_le_bytes());
        }
        buf.extend_from_slice(&ts.to_le_bytes());
        buf.extend_from_slice(&key_len.to_le_bytes());
        start
    }

    /// Fills in the checksum of the record that starts at `buf[start]`.
    fn seal(self, buf: &mut [u8], start: usize, at: u64) {
        let crc = self.checksum(at, &buf[start + 4..]);
        buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes the record at the start of `buf` (which may hold more after it),
    /// found at file offset `at`.
    pub(crate) fn decode(self, buf: &[u8], at: u64) -> Result<Decoded<'_>, DecodeError> {
        let layout = self.layout();
        let header = layout.header;
        if buf.len() < header {
            return Err(DecodeError::Incomplete);
        }
        let len = record_len(buf);
        if len < header {
            return Err(DecodeError::BadLength);
        }
        if len > buf.len() {
            return Err(DecodeError::Incomplete);
        }
        let key_len = u32_at(buf, layout.key_len);
        let seq = layout.seq.map_or(0, |s| u64_at(buf, s));
        let kind = match (key_len, len - header) {
            // Bookkeeping records carry no sequence number.
            (MARKER_KEY_LEN | SEAL_NOTE_KEY_LEN, _) if seq != 0 => {
                return Err(DecodeError::BadLength)
            }
            (MARKER_KEY_LEN, 8) => Kind::Marker {
                synced_through: u64_at(buf, header),
            },
            (SEAL_NOTE_KEY_LEN, 16) => Kind::SealNote(SealNote {
                sequence: u64_at(buf, header),
                len: u64_at(buf, header + 8),
            }),
            (k, room) if k as usize <= room => Kind::Data,
            // No data record holds a key this long, and bookkeeping has fixed sizes.
            _ => return Err(DecodeError::BadLength),
        };
        if self.checksum(at, &buf[4..len]) != u32_at(buf, 0) {
            return Err(DecodeError::BadChecksum);
        }
        let key_end = match kind {
            Kind::Data => header + key_len as usize,
            _ => header,
        };
        Ok(Decoded {
            len,
            seq,
            timestamp_us: u64_at(buf, layout.timestamp),
            key: &buf[header..key_end],
            value: &buf[key_end..len],
            kind,
        })
    }

    /// First index at or after `from` where a whole, valid record starts in `buf`
    /// (whose first byte is at file offset `base`), if any. Under [`Codec::Bound`]
    /// only a record written at that very place verifies, so what this finds is a
    /// record boundary, never bytes inside a value.
    pub(crate) fn find_next_valid(self, buf: &[u8], base: u64, from: usize) -> Option<usize> {
        let last = buf.len().checked_sub(self.header_len())?;
        (from..=last).find(|&i| self.decode(&buf[i..], base + i as u64).is_ok())
    }
}

/// Encoded length of a version-4 record with this key and value.
pub(crate) fn encoded_len(key_len: usize, value_len: usize) -> usize {
    RECORD_HEADER_LEN + key_len + value_len
}

/// The durable watermark a valid sync marker read in segment `own` gives: the
/// segments up to its value `synced_through`. A writer only marks seals of segments
/// older than the one it writes the marker into, so a larger value is not a
/// writer's and vouches for nothing (0).
pub(crate) fn marker_synced_through(synced_through: u64, own: u64) -> u64 {
    if synced_through < own {
        synced_through
    } else {
        0
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The length a record header at the start of `buf` claims (unchecked); `buf` holds
/// at least 8 bytes. The same field in every layout.
pub(crate) fn record_len(buf: &[u8]) -> usize {
    u32_at(buf, 4) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Codec = Codec::Bound { seed: 0x1234_5678 };
    const AT: u64 = 40;

    fn one(codec: Codec, ts: u64, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        codec.encode_into(&mut buf, AT, 9, ts, key, value);
        buf
    }

    #[test]
    fn round_trip_including_empty_key_and_value() {
        for codec in [Codec::Legacy, BOUND] {
            for (key, value) in [
                (&b"k"[..], &b"value"[..]),
                (b"", b""),
                (&[0xff, 0, 0xfe][..], b"x"),
            ] {
                let buf = one(codec, 42, key, value);
                assert_eq!(buf.len(), codec.encoded_len(key.len(), value.len()));
                let d = codec.decode(&buf, AT).expect("valid record");
                assert_eq!(
                    (d.len, d.timestamp_us, d.key, d.value, d.kind),
                    (buf.len(), 42, key, value, Kind::Data)
                );
                assert_eq!(d.seq, if codec == BOUND { 9 } else { 0 });
            }
        }
    }

    #[test]
    fn layout_is_little_endian_as_documented() {
        let buf = one(BOUND, 0x0102_0304_0506_0708, b"ab", b"xyz");
        assert_eq!(&buf[4..8], &33u32.to_le_bytes());
        assert_eq!(&buf[8..16], &9u64.to_le_bytes());
        assert_eq!(&buf[16..24], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&buf[24..28], &2u32.to_le_bytes());
        assert_eq!(&buf[28..30], b"ab");
        assert_eq!(&buf[30..33], b"xyz");
        // The binding: salt, shard, segment, then the offset, then bytes 4..len.
        let codec = Codec::bound(7, 3, 11);
        let mut rec = Vec::new();
        codec.encode_into(&mut rec, 4096, 1, 5, b"k", b"v");
        let mut bound = Vec::new();
        bound.extend_from_slice(&7u32.to_le_bytes());
        bound.extend_from_slice(&3u32.to_le_bytes());
        bound.extend_from_slice(&11u64.to_le_bytes());
        bound.extend_from_slice(&4096u64.to_le_bytes());
        bound.extend_from_slice(&rec[4..]);
        assert_eq!(&rec[0..4], &crc32c::crc32c(&bound).to_le_bytes());
        // Versions 1 to 3: no sequence number, checksum of the record alone.
        let old = one(Codec::Legacy, 0x0102_0304_0506_0708, b"ab", b"xyz");
        assert_eq!(&old[4..8], &25u32.to_le_bytes());
        assert_eq!(&old[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&old[16..20], &2u32.to_le_bytes());
        assert_eq!(&old[0..4], &crc32c::crc32c(&old[4..]).to_le_bytes());
    }

    #[test]
    fn a_bound_record_verifies_only_at_its_own_place() {
        let codec = Codec::bound(7, 3, 11);
        let mut rec = Vec::new();
        codec.encode_into(&mut rec, 100, 1, 5, b"key", b"value");
        assert!(codec.decode(&rec, 100).is_ok());
        for other in [
            Codec::bound(8, 3, 11),
            Codec::bound(7, 4, 11),
            Codec::bound(7, 3, 12),
        ] {
            assert_eq!(other.decode(&rec, 100), Err(DecodeError::BadChecksum));
        }
        for at in [0, 40, 99, 101, 100 + rec.len() as u64] {
            assert_eq!(codec.decode(&rec, at), Err(DecodeError::BadChecksum));
        }
        assert!(Codec::Legacy.decode(&rec, 100).is_err());
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        for codec in [Codec::Legacy, BOUND] {
            let buf = one(codec, 7, b"key", b"some value");
            assert_every_bit_flip_is_caught(codec, &buf);
        }
    }

    fn assert_every_bit_flip_is_caught(codec: Codec, buf: &[u8]) {
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.to_vec();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                codec.decode(&bad, AT).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn every_truncation_is_incomplete_or_bad() {
        for codec in [Codec::Legacy, BOUND] {
            let buf = one(codec, 7, b"key", b"some value");
            for cut in 0..buf.len() {
                assert!(
                    codec.decode(&buf[..cut], AT).is_err(),
                    "cut at {cut} decoded"
                );
            }
        }
    }

    #[test]
    fn bookkeeping_records_decode_as_such_and_every_bit_flip_is_caught() {
        let note = SealNote {
            sequence: 0x0102_0304_0506_0708,
            len: 0x1112_1314_1516_1718,
        };
        for codec in [Codec::Legacy, BOUND] {
            let mut marker = Vec::new();
            codec.encode_marker(&mut marker, AT, 9, 0x0A0B_0C0D_0E0F_1011);
            assert_eq!(marker.len(), codec.marker_len());
            let d = codec.decode(&marker, AT).expect("valid marker");
            assert_eq!(d.synced_through(), Some(0x0A0B_0C0D_0E0F_1011));
            assert_eq!(
                (d.len, d.timestamp_us, d.key, d.seq),
                (marker.len(), 9, &b""[..], 0)
            );
            let mut sealed = Vec::new();
            codec.encode_seal_note(&mut sealed, AT, 5, note);
            assert_eq!(sealed.len(), codec.seal_note_len());
            let d = codec.decode(&sealed, AT).expect("valid note");
            assert_eq!((d.seal_note(), d.synced_through()), (Some(note), None));
            assert!(!d.is_data());
            let data = one(codec, 1, b"k", b"v");
            assert!(codec.decode(&data, AT).expect("record").is_data());
            for buf in [&marker, &sealed] {
                assert_every_bit_flip_is_caught(codec, buf);
            }
            // A bookkeeping key length with another record length is impossible,
            // whatever the checksum says.
            let mut long = marker.clone();
            long.push(0);
            long[4..8].copy_from_slice(&(marker.len() as u32 + 1).to_le_bytes());
            codec.seal(&mut long, 0, AT);
            assert_eq!(codec.decode(&long, AT), Err(DecodeError::BadLength));
            let mut short = sealed[..marker.len()].to_vec();
            short[4..8].copy_from_slice(&(marker.len() as u32).to_le_bytes());
            codec.seal(&mut short, 0, AT);
            assert_eq!(codec.decode(&short, AT), Err(DecodeError::BadLength));
        }
    }

    #[test]
    fn find_next_valid_skips_garbage_and_never_stops_inside_a_value() {
        for codec in [Codec::Legacy, BOUND] {
            let mut buf = vec![0xAA; 13];
            let at = buf.len();
            codec.encode_into(&mut buf, at as u64, 1, 1, b"k", b"v");
            assert_eq!(codec.find_next_valid(&buf, 0, 0), Some(at));
            assert_eq!(codec.find_next_valid(&buf, 0, at + 1), None);
            assert_eq!(codec.find_next_valid(&[0u8; 64], 0, 0), None);
        }
        // A value holding encoded records, one of them made for the very offset it
        // lands at but without the salt: none is found.
        let codec = Codec::bound(0xDEAD_BEEF, 0, 1);
        let mut inner = Vec::new();
        codec.encode_into(&mut inner, 0, 5, 5, b"planted", b"x");
        let guess = Codec::bound(0, 0, 1);
        let mut value = inner.clone();
        let planted_at = 40 + RECORD_HEADER_LEN as u64 + 3 + value.len() as u64;
        guess.encode_into(&mut value, planted_at, 6, 6, b"planted", b"y");
        let mut seg = Vec::new();
        codec.encode_into(&mut seg, 40, 1, 1, b"key", &value);
        assert_eq!(codec.find_next_valid(&seg, 40, 1), None);
        assert!(Codec::Legacy.find_next_valid(&seg, 40, 1).is_none());
    }
}
