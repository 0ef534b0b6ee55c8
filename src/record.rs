//! The record: the unit a segment is made of.
//!
//! ```text
//! offset  size  field
//!      0     4  crc32c    CRC32C (Castagnoli) of bytes 4..len
//!      4     4  len       total record length in bytes, header included
//!      8     8  timestamp microseconds since the Unix epoch
//!     16     4  key_len   key length in bytes
//!     20     k  key
//!   20+k     v  value     v = len - 20 - k
//! ```
//!
//! All integers little-endian. The checksum covers everything after itself, so a
//! flipped bit in a length, the timestamp, the key or the value is caught.
//!
//! A *sync marker* (format version 2) is a record whose `key_len` is `0xFFFF_FFFF`,
//! which no data record can have, followed by one u64: every segment of the shard up
//! to that sequence number was made durable before the marker was written (see
//! `syncer.rs`). It is 28 bytes long and never indexed or returned to readers.
//!
//! A *seal note* (format version 3) is a record whose `key_len` is `0xFFFF_FFFE`,
//! followed by two u64s: the sequence number and the final length of the segment
//! sealed just before this one. The writer puts it first in every segment it starts
//! after sealing another, so recovery can tell a sealed segment that is whole from
//! one a power cut shortened (`recovery::drop_after_unvouched_seal`). It is 36 bytes
//! long and, like a marker, never indexed or returned to readers.

/// Bytes before the key.
pub(crate) const RECORD_HEADER_LEN: usize = 20;
/// The `key_len` of a sync marker.
pub(crate) const MARKER_KEY_LEN: u32 = u32::MAX;
/// Length of a sync marker: the header and one u64.
pub(crate) const MARKER_LEN: usize = RECORD_HEADER_LEN + 8;
/// The `key_len` of a seal note.
pub(crate) const SEAL_NOTE_KEY_LEN: u32 = u32::MAX - 1;
/// Length of a seal note: the header and two u64s.
pub(crate) const SEAL_NOTE_LEN: usize = RECORD_HEADER_LEN + 16;

/// What a seal note says: segment `sequence` was sealed at `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealNote {
    pub(crate) sequence: u64,
    pub(crate) len: u64,
}

/// A record whose checksum and lengths hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded<'a> {
    pub(crate) len: usize,
    pub(crate) timestamp_us: u64,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
    /// For a sync marker, the sequence number it vouches for (`key` is then empty and
    /// `value` holds the 8 encoded bytes); `None` for a data record.
    pub(crate) synced_through: Option<u64>,
    /// For a seal note, what it says (`key` is then empty and `value` holds the 16
    /// encoded bytes); `None` otherwise.
    pub(crate) seal_note: Option<SealNote>,
}

impl Decoded<'_> {
    /// Whether this is a data record (not a sync marker or a seal note).
    pub(crate) fn is_data(&self) -> bool {
        self.synced_through.is_none() && self.seal_note.is_none()
    }
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Fewer bytes than the header or than `len` says.
    Incomplete,
    /// `len` or `key_len` is impossible.
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

/// Encoded length of a record with this key and value.
pub(crate) fn encoded_len(key_len: usize, value_len: usize) -> usize {
    RECORD_HEADER_LEN + key_len + value_len
}

/// Appends one encoded record to `buf`. The caller has checked that the total fits
/// in a `u32` (options validation bounds keys, values and segments).
pub(crate) fn encode_into(buf: &mut Vec<u8>, timestamp_us: u64, key: &[u8], value: &[u8]) {
    let start = buf.len();
    let len = encoded_len(key.len(), value.len());
    buf.reserve(len);
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&timestamp_us.to_le_bytes());
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    let crc = crc32c::crc32c(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a bookkeeping record: a record header whose `key_len` no data record can
/// have, then `payload` (u64s, little-endian).
fn encode_bookkeeping(buf: &mut Vec<u8>, timestamp_us: u64, key_len: u32, payload: &[u64]) {
    let start = buf.len();
    let len = RECORD_HEADER_LEN + 8 * payload.len();
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&timestamp_us.to_le_bytes());
    buf.extend_from_slice(&key_len.to_le_bytes());
    for value in payload {
        buf.extend_from_slice(&value.to_le_bytes());
    }
    let crc = crc32c::crc32c(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a sync marker saying that every segment up to `synced_through` is durable.
pub(crate) fn encode_marker(buf: &mut Vec<u8>, timestamp_us: u64, synced_through: u64) {
    encode_bookkeeping(buf, timestamp_us, MARKER_KEY_LEN, &[synced_through]);
}

/// Appends a seal note saying that segment `sequence` was sealed at `len` bytes.
pub(crate) fn encode_seal_note(buf: &mut Vec<u8>, timestamp_us: u64, note: SealNote) {
    encode_bookkeeping(
        buf,
        timestamp_us,
        SEAL_NOTE_KEY_LEN,
        &[note.sequence, note.len],
    );
}

/// What a valid sync marker read in segment `own` vouches for: the segments up to
/// its value. A writer only marks seals of segments older than the one it writes
/// the marker into, so a larger value is not a writer's (crafted bytes that a
/// resync after damage landed on, say) and vouches for nothing (0).
pub(crate) fn marker_vouches(synced_through: u64, own: u64) -> u64 {
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
/// at least [`RECORD_HEADER_LEN`] bytes.
pub(crate) fn record_len(buf: &[u8]) -> usize {
    u32_at(buf, 4) as usize
}

/// Decodes the record at the start of `buf` (which may hold more after it).
pub(crate) fn decode(buf: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(DecodeError::Incomplete);
    }
    let len = record_len(buf);
    if len < RECORD_HEADER_LEN {
        return Err(DecodeError::BadLength);
    }
    if len > buf.len() {
        return Err(DecodeError::Incomplete);
    }
    let key_len = u32_at(buf, 16) as usize;
    if key_len > len - RECORD_HEADER_LEN {
        // No data record holds a key this long; only a sync marker claims one.
        return decode_marker(buf, len);
    }
    if crc32c::crc32c(&buf[4..len]) != u32_at(buf, 0) {
        return Err(DecodeError::BadChecksum);
    }
    let key_end = RECORD_HEADER_LEN + key_len;
    Ok(Decoded {
        len,
        timestamp_us: u64_at(buf, 8),
        key: &buf[RECORD_HEADER_LEN..key_end],
        value: &buf[key_end..len],
        synced_through: None,
        seal_note: None,
    })
}

/// [`decode`] of bytes (at least `len` of them) whose key length no data record
/// can have: a sync marker, a seal note, or impossible lengths. Kept off the
/// data-record path.
fn decode_marker(buf: &[u8], len: usize) -> Result<Decoded<'_>, DecodeError> {
    let marker = match (u32_at(buf, 16), len) {
        (MARKER_KEY_LEN, MARKER_LEN) => true,
        (SEAL_NOTE_KEY_LEN, SEAL_NOTE_LEN) => false,
        _ => return Err(DecodeError::BadLength),
    };
    if crc32c::crc32c(&buf[4..len]) != u32_at(buf, 0) {
        return Err(DecodeError::BadChecksum);
    }
    let first = u64_at(buf, RECORD_HEADER_LEN);
    Ok(Decoded {
        len,
        timestamp_us: u64_at(buf, 8),
        key: &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN],
        value: &buf[RECORD_HEADER_LEN..len],
        synced_through: marker.then_some(first),
        seal_note: (!marker).then(|| SealNote {
            sequence: first,
            len: u64_at(buf, RECORD_HEADER_LEN + 8),
        }),
    })
}

/// First offset at or after `from` where a whole, valid record starts, if any.
///
/// Used by recovery to tell a torn tail (nothing valid follows the damage) from
/// damage in the middle of a segment (valid records follow it).
pub(crate) fn find_next_valid(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len().saturating_sub(RECORD_HEADER_LEN - 1)).find(|&at| decode(&buf[at..]).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(ts: u64, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_into(&mut buf, ts, key, value);
        buf
    }

    #[test]
    fn round_trip_including_empty_key_and_value() {
        for (key, value) in [
            (&b"k"[..], &b"value"[..]),
            (b"", b""),
            (&[0xff, 0, 0xfe][..], b"x"),
        ] {
            let buf = one(42, key, value);
            assert_eq!(buf.len(), encoded_len(key.len(), value.len()));
            let d = decode(&buf).expect("valid record");
            assert_eq!(
                (d.len, d.timestamp_us, d.key, d.value),
                (buf.len(), 42, key, value)
            );
        }
    }

    #[test]
    fn layout_is_little_endian_as_documented() {
        let buf = one(0x0102_0304_0506_0708, b"ab", b"xyz");
        assert_eq!(&buf[4..8], &25u32.to_le_bytes());
        assert_eq!(&buf[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&buf[16..20], &2u32.to_le_bytes());
        assert_eq!(&buf[20..22], b"ab");
        assert_eq!(&buf[22..25], b"xyz");
        assert_eq!(&buf[0..4], &crc32c::crc32c(&buf[4..]).to_le_bytes());
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let buf = one(7, b"key", b"some value");
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&bad).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn every_truncation_is_incomplete_or_bad() {
        let buf = one(7, b"key", b"some value");
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn a_sync_marker_decodes_as_a_marker_and_every_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode_marker(&mut buf, 9, 0x0A0B_0C0D_0E0F_1011);
        assert_eq!(buf.len(), MARKER_LEN);
        assert_eq!(&buf[16..20], &[0xFF; 4]);
        let d = decode(&buf).expect("valid marker");
        assert_eq!(d.synced_through, Some(0x0A0B_0C0D_0E0F_1011));
        assert_eq!((d.len, d.timestamp_us, d.key), (MARKER_LEN, 9, &b""[..]));
        assert_eq!(
            decode(&one(1, b"k", b"v")).expect("record").synced_through,
            None
        );
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&bad).is_err(), "flip of bit {bit} went unnoticed");
        }
        // A marker key length with any other record length is impossible.
        let mut long = buf.clone();
        long.push(0);
        long[4..8].copy_from_slice(&(MARKER_LEN as u32 + 1).to_le_bytes());
        let crc = crc32c::crc32c(&long[4..]);
        long[0..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&long), Err(DecodeError::BadLength));
    }

    #[test]
    fn a_seal_note_decodes_as_a_note_and_every_bit_flip_is_caught() {
        let note = SealNote {
            sequence: 0x0102_0304_0506_0708,
            len: 0x1112_1314_1516_1718,
        };
        let mut buf = Vec::new();
        encode_seal_note(&mut buf, 5, note);
        assert_eq!(buf.len(), SEAL_NOTE_LEN);
        assert_eq!(&buf[16..20], &[0xFE, 0xFF, 0xFF, 0xFF]);
        assert_eq!(&buf[20..28], &note.sequence.to_le_bytes());
        assert_eq!(&buf[28..36], &note.len.to_le_bytes());
        let d = decode(&buf).expect("valid note");
        assert_eq!((d.seal_note, d.synced_through), (Some(note), None));
        assert_eq!((d.len, d.timestamp_us, d.key), (SEAL_NOTE_LEN, 5, &b""[..]));
        assert!(!d.is_data());
        assert!(decode(&one(1, b"k", b"v")).expect("record").is_data());
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&bad).is_err(), "flip of bit {bit} went unnoticed");
        }
        // A note's key length with a marker's record length is impossible, whatever
        // the checksum says.
        let mut short = buf[..MARKER_LEN].to_vec();
        short[4..8].copy_from_slice(&(MARKER_LEN as u32).to_le_bytes());
        let crc = crc32c::crc32c(&short[4..]);
        short[0..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&short), Err(DecodeError::BadLength));
    }

    #[test]
    fn find_next_valid_skips_garbage() {
        let mut buf = vec![0xAA; 13];
        let at = buf.len();
        buf.extend(one(1, b"k", b"v"));
        assert_eq!(find_next_valid(&buf, 0), Some(at));
        assert_eq!(find_next_valid(&buf, at + 1), None);
        assert_eq!(find_next_valid(&[0u8; 64], 0), None);
    }
}
