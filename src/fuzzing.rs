//! Entry points for fuzzing the decoders of the on-disk format (`fuzz/`). Not part of
//! the API: hidden from the documentation, and it may change at any time.
//!
//! [`check_decoders`] runs the record decoder, the resynchronising scanner recovery
//! uses (`find_next_valid`) and the segment header decoder over arbitrary bytes and
//! panics if one of their invariants breaks:
//!
//! - nothing panics, whatever the bytes;
//! - a decoded record (or sync marker) lies within the input, its parts add up to
//!   its length, and it re-encodes to exactly the bytes it was decoded from;
//! - each decode error is the documented one for the bytes (too short, impossible
//!   lengths, checksum);
//! - the scanner returns only offsets past its start where a record decodes, and no
//!   earlier offset in the range it skipped decodes;
//! - a decoded segment header re-encodes to the same 36 checked bytes;
//! - walking the bytes as a segment (header, then records with the scanner over
//!   damage, as recovery does) always moves forward and ends inside the input.

use crate::record::{
    decode, encode_into, encode_marker, encode_seal_note, encoded_len, find_next_valid, DecodeError,
};
use crate::record::{
    MARKER_KEY_LEN, MARKER_LEN, RECORD_HEADER_LEN, SEAL_NOTE_KEY_LEN, SEAL_NOTE_LEN,
};
use crate::segment::{HeaderError, SegmentHeader, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Checks the record decoder on the record at the start of `buf`; returns its length
/// when it decodes.
fn check_record(buf: &[u8]) -> Option<usize> {
    match decode(buf) {
        Ok(r) => {
            assert!(
                r.len >= RECORD_HEADER_LEN && r.len <= buf.len(),
                "length in bounds"
            );
            assert_eq!(RECORD_HEADER_LEN + r.key.len() + r.value.len(), r.len);
            assert_eq!(r.len, u32_at(buf, 4) as usize);
            let mut again = Vec::new();
            if let Some(synced) = r.synced_through {
                assert_eq!(u32_at(buf, 16), MARKER_KEY_LEN);
                assert_eq!((r.len, r.key.len()), (MARKER_LEN, 0));
                encode_marker(&mut again, r.timestamp_us, synced);
                assert_eq!(
                    &again[..],
                    &buf[..r.len],
                    "a marker re-encodes to its bytes"
                );
                return Some(r.len);
            }
            if let Some(note) = r.seal_note {
                assert_eq!(u32_at(buf, 16), SEAL_NOTE_KEY_LEN);
                assert_eq!((r.len, r.key.len()), (SEAL_NOTE_LEN, 0));
                encode_seal_note(&mut again, r.timestamp_us, note);
                assert_eq!(&again[..], &buf[..r.len], "a note re-encodes to its bytes");
                return Some(r.len);
            }
            assert_eq!(r.key.len(), u32_at(buf, 16) as usize);
            encode_into(&mut again, r.timestamp_us, r.key, r.value);
            assert_eq!(again.len(), encoded_len(r.key.len(), r.value.len()));
            assert_eq!(
                &again[..],
                &buf[..r.len],
                "a decoded record re-encodes to its bytes"
            );
            Some(r.len)
        }
        Err(DecodeError::Incomplete) => {
            assert!(buf.len() < RECORD_HEADER_LEN || u32_at(buf, 4) as usize > buf.len());
            None
        }
        Err(DecodeError::BadLength) => {
            let len = u32_at(buf, 4) as usize;
            let key_len = u32_at(buf, 16);
            assert!(
                len < RECORD_HEADER_LEN
                    || (len <= buf.len()
                        && if key_len == MARKER_KEY_LEN {
                            len != MARKER_LEN
                        } else if key_len == SEAL_NOTE_KEY_LEN {
                            len != SEAL_NOTE_LEN
                        } else {
                            key_len as usize > len - RECORD_HEADER_LEN
                        })
            );
            None
        }
        Err(DecodeError::BadChecksum) => {
            let len = u32_at(buf, 4) as usize;
            assert!((RECORD_HEADER_LEN..=buf.len()).contains(&len));
            assert_ne!(crc32c::crc32c(&buf[4..len]), u32_at(buf, 0));
            None
        }
    }
}

/// Checks the scanner from `from`; returns what it found.
fn check_scan(buf: &[u8], from: usize) -> Option<usize> {
    let found = find_next_valid(buf, from);
    let end = found.unwrap_or(buf.len());
    if let Some(at) = found {
        assert!(at >= from && at < buf.len(), "scan result in bounds");
        assert!(decode(&buf[at..]).is_ok(), "scan result decodes");
    }
    // Nothing it skipped decodes (bounded, to keep each input fast).
    for at in from..end.min(from.saturating_add(512)) {
        assert!(decode(&buf[at..]).is_err(), "scan skipped a record at {at}");
    }
    found
}

/// Checks the segment header decoder; returns whether the header decoded.
fn check_header(buf: &[u8]) -> bool {
    match SegmentHeader::decode(buf) {
        Ok(h) => {
            assert!(buf.len() >= SEGMENT_HEADER_LEN);
            assert_eq!(
                &h.encode()[..36],
                &buf[..36],
                "a header re-encodes to its bytes"
            );
            true
        }
        Err(HeaderError::Short) => {
            assert!(buf.len() < SEGMENT_HEADER_LEN);
            false
        }
        Err(HeaderError::BadMagic) => {
            assert!(buf.len() >= SEGMENT_HEADER_LEN && &buf[0..8] != SEGMENT_MAGIC);
            false
        }
        Err(HeaderError::BadChecksum) => {
            assert!(buf.len() >= SEGMENT_HEADER_LEN && &buf[0..8] == SEGMENT_MAGIC);
            assert_ne!(crc32c::crc32c(&buf[0..32]), u32_at(buf, 32));
            false
        }
    }
}

/// Walks `buf` as records from `start`, resynchronising over damage like recovery
/// does; returns the number of records that decoded.
fn walk(buf: &[u8], start: usize) -> usize {
    let mut pos = start;
    let mut records = 0;
    while pos < buf.len() {
        match check_record(&buf[pos..]) {
            Some(len) => {
                records += 1;
                pos += len;
            }
            None => match check_scan(buf, pos + 1) {
                Some(next) => {
                    assert!(next > pos, "the walk moves forward");
                    pos = next;
                }
                None => break,
            },
        }
        assert!(pos <= buf.len(), "the walk stays inside the input");
    }
    records
}

/// Runs the decoders over `data` and checks their invariants; panics if one breaks.
///
/// `data` is used three ways: as a stream of records, as a segment file (header,
/// then records), and (first byte = split point) as the key and value of a record
/// that must round-trip through the encoder and decoder.
pub fn check_decoders(data: &[u8]) {
    walk(data, 0);
    if check_header(data) {
        walk(data, SEGMENT_HEADER_LEN);
    }
    // The scanner from arbitrary starts, including past the end.
    let from = data.first().map_or(0, |&b| b as usize);
    check_scan(data, from);
    check_scan(data, data.len() + 1);

    // Round trip of the encoder through the decoder.
    if let Some((&split, rest)) = data.split_first() {
        let split = (split as usize).min(rest.len());
        let (key, value) = rest.split_at(split);
        let mut buf = Vec::new();
        encode_into(&mut buf, 0x0102_0304_0506_0708, key, value);
        let r = decode(&buf).expect("an encoded record decodes");
        assert_eq!((r.len, r.key, r.value), (buf.len(), key, value));
        assert_eq!(r.timestamp_us, 0x0102_0304_0506_0708);
        // Every cut of it is refused, and the scanner finds it behind the input.
        for cut in [0, buf.len() / 2, buf.len() - 1] {
            assert!(decode(&buf[..cut]).is_err());
        }
        let mut behind = data.to_vec();
        let at = behind.len();
        behind.extend_from_slice(&buf);
        let found = find_next_valid(&behind, 0).expect("the appended record is found");
        assert!(found <= at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_on_simple_inputs() {
        check_decoders(&[]);
        check_decoders(&[0; 100]);
        check_decoders(&[0xff; 100]);
        let mut seg = SegmentHeader {
            version: 1,
            shard: 0,
            sequence: 1,
            created_us: 5,
        }
        .encode()
        .to_vec();
        encode_into(&mut seg, 1, b"k", b"v");
        seg.extend_from_slice(&[0xAA; 7]);
        encode_into(&mut seg, 2, b"", b"");
        check_decoders(&seg);
        assert_eq!(walk(&seg, SEGMENT_HEADER_LEN), 2);
    }
}
