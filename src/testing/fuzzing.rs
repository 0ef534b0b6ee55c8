//! Entry points for fuzzing the decoders of the on-disk format (`fuzz/`). Not part of
//! the API: hidden from the documentation, and it may change at any time.
//!
//! [`check_decoders`] runs the record decoder of both layouts (version 4's, bound to
//! its place, and versions 1 to 3's), the resynchronising scanner recovery uses
//! (`Codec::find_next_valid`) and the segment header decoder over arbitrary bytes,
//! and panics if one of their invariants breaks:
//!
//! - nothing panics, whatever the bytes;
//! - a decoded record (or sync marker, or seal note) lies within the input, its
//!   parts add up to its length, and it re-encodes to exactly the bytes it was
//!   decoded from, at the offset it was decoded at;
//! - each decode error is the documented one for the bytes (too short, impossible
//!   lengths, checksum);
//! - the scanner returns only offsets past its start where a record decodes, and no
//!   earlier offset in the range it skipped decodes;
//! - a record encoded into a value of another record, at any offset, is never found
//!   by the version-4 scanner;
//! - a decoded segment header re-encodes to the same checked bytes;
//! - walking the bytes as a segment (header, then records with the scanner over
//!   damage, as recovery does) always moves forward and ends inside the input.

// Built for unit tests too, where nothing outside the crate reaches it.
#![cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
// A fuzz entry point: it panics, by design, when an invariant breaks.
#![allow(clippy::expect_used)]

use crate::format::record::{
    record_len, Codec, DecodeError, Kind, LEGACY_HEADER_LEN, MARKER_KEY_LEN, SEAL_NOTE_KEY_LEN,
};
use crate::format::segment_header::{
    HeaderError, SegmentHeader, BOUND_VERSION, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};

/// The version-4 codec the fuzzer binds records with.
const BOUND: Codec = Codec::Bound { seed: 0x0F0F_1234 };

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Checks `codec`'s decoder on the record at the start of `buf`, found at file
/// offset `at`; returns its length when it decodes.
fn check_record(codec: Codec, buf: &[u8], at: u64) -> Option<usize> {
    let header = codec.header_len();
    let key_len_at = header - 4;
    match codec.decode(buf, at) {
        Ok(r) => {
            assert!(r.len >= header && r.len <= buf.len(), "length in bounds");
            assert_eq!(header + r.key.len() + r.value.len(), r.len);
            assert_eq!(r.len, record_len(buf));
            let mut again = Vec::new();
            match r.kind {
                Kind::Marker { synced_through } => {
                    assert_eq!(u32_at(buf, key_len_at), MARKER_KEY_LEN);
                    assert_eq!((r.len, r.key.len(), r.seq), (codec.marker_len(), 0, 0));
                    codec.encode_marker(&mut again, at, r.timestamp_us, synced_through);
                }
                Kind::SealNote(note) => {
                    assert_eq!(u32_at(buf, key_len_at), SEAL_NOTE_KEY_LEN);
                    assert_eq!((r.len, r.key.len(), r.seq), (codec.seal_note_len(), 0, 0));
                    codec.encode_seal_note(&mut again, at, r.timestamp_us, note);
                }
                Kind::Data => {
                    assert_eq!(r.key.len(), u32_at(buf, key_len_at) as usize);
                    codec.encode_into(&mut again, at, r.seq, r.timestamp_us, r.key, r.value);
                    assert_eq!(again.len(), codec.encoded_len(r.key.len(), r.value.len()));
                }
            }
            assert_eq!(
                &again[..],
                &buf[..r.len],
                "a record re-encodes to its bytes"
            );
            Some(r.len)
        }
        Err(DecodeError::Incomplete) => {
            assert!(buf.len() < header || record_len(buf) > buf.len());
            None
        }
        Err(DecodeError::BadLength) => {
            // Too short for a header, or a key longer than the record (bookkeeping
            // key lengths are: their records have fixed sizes and no sequence number).
            let len = record_len(buf);
            let key_len = u32_at(buf, key_len_at) as usize;
            assert!(len < header || (len <= buf.len() && key_len > len - header));
            if len >= header && key_len == MARKER_KEY_LEN as usize {
                let seq_zero = header == LEGACY_HEADER_LEN || buf[8..16] == [0; 8];
                assert!(len != codec.marker_len() || !seq_zero);
            }
            None
        }
        Err(DecodeError::BadChecksum) => {
            let len = record_len(buf);
            assert!((header..=buf.len()).contains(&len));
            None
        }
    }
}

/// Checks `codec`'s scanner from `from` over `buf` (file offset 0); returns what it
/// found.
fn check_scan(codec: Codec, buf: &[u8], from: usize) -> Option<usize> {
    let found = codec.find_next_valid(buf, 0, from);
    let end = found.unwrap_or(buf.len());
    if let Some(at) = found {
        assert!(at >= from && at < buf.len(), "scan result in bounds");
        assert!(
            codec.decode(&buf[at..], at as u64).is_ok(),
            "scan result decodes"
        );
    }
    // Nothing it skipped decodes (bounded, to keep each input fast).
    for at in from..end.min(from.saturating_add(512)).min(buf.len()) {
        assert!(
            codec.decode(&buf[at..], at as u64).is_err(),
            "scan skipped a record at {at}"
        );
    }
    found
}

/// Checks the segment header decoder; returns the header when it decoded.
fn check_header(buf: &[u8]) -> Option<SegmentHeader> {
    match SegmentHeader::decode(buf) {
        Ok(h) => {
            assert!(buf.len() >= SEGMENT_HEADER_LEN);
            let checked = if h.version >= BOUND_VERSION { 40 } else { 36 };
            assert_eq!(
                &h.encode()[..checked],
                &buf[..checked],
                "a header re-encodes to its bytes"
            );
            Some(h)
        }
        Err(HeaderError::Short) => {
            assert!(buf.len() < SEGMENT_HEADER_LEN);
            None
        }
        Err(HeaderError::BadMagic) => {
            assert!(buf.len() >= SEGMENT_HEADER_LEN && &buf[0..8] != SEGMENT_MAGIC);
            None
        }
        Err(HeaderError::BadChecksum) => {
            assert!(buf.len() >= SEGMENT_HEADER_LEN && &buf[0..8] == SEGMENT_MAGIC);
            None
        }
    }
}

/// Walks `buf` as records from `start`, resynchronising over damage like recovery
/// does; returns the number of records that decoded.
fn walk(codec: Codec, buf: &[u8], start: usize) -> usize {
    let mut pos = start;
    let mut records = 0;
    while pos < buf.len() {
        match check_record(codec, &buf[pos..], pos as u64) {
            Some(len) => {
                records += 1;
                pos += len;
            }
            None => match check_scan(codec, buf, pos + 1) {
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
/// `data` is used four ways: as a stream of records of each layout, as a segment
/// file (header, then records), as the key and value of a record that must
/// round-trip through the encoder and decoder (first byte = split point), and as
/// the value of a record whose encoded copy is planted inside another value.
pub fn check_decoders(data: &[u8]) {
    for codec in [Codec::Legacy, BOUND] {
        walk(codec, data, 0);
    }
    if let Some(h) = check_header(data) {
        walk(h.codec(), data, SEGMENT_HEADER_LEN);
    }
    // The scanner from arbitrary starts, including past the end.
    let from = data.first().map_or(0, |&b| b as usize);
    for codec in [Codec::Legacy, BOUND] {
        check_scan(codec, data, from);
        check_scan(codec, data, data.len() + 1);
    }

    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = (split as usize).min(rest.len());
    let (key, value) = rest.split_at(split);
    for codec in [Codec::Legacy, BOUND] {
        // Round trip of the encoder through the decoder, at an offset of its own.
        let at = data.len() as u64;
        let mut buf = Vec::new();
        codec.encode_into(&mut buf, at, 7, 0x0102_0304_0506_0708, key, value);
        let r = codec.decode(&buf, at).expect("an encoded record decodes");
        assert_eq!((r.len, r.key, r.value), (buf.len(), key, value));
        assert_eq!(r.timestamp_us, 0x0102_0304_0506_0708);
        // Every cut of it is refused, and the scanner finds it behind the input.
        for cut in [0, buf.len() / 2, buf.len() - 1] {
            assert!(codec.decode(&buf[..cut], at).is_err());
        }
        let mut behind = data.to_vec();
        behind.extend_from_slice(&buf);
        let found = codec
            .find_next_valid(&behind, 0, 0)
            .expect("the appended record is found");
        assert!(found as u64 <= at);
    }
    // A version-4 record whose value embeds encoded records (copies made for every
    // offset inside the value they could land at): the scanner finds only the outer
    // record, wherever it starts looking.
    let mut planted = data.to_vec();
    let outer_at = 40u64;
    let inner_at = outer_at + BOUND.header_len() as u64 + 1 + planted.len() as u64;
    // Encoded for its very place, but with another salt (the writer's is secret).
    let guess = Codec::Bound { seed: 0x0F0F_1235 };
    guess.encode_into(&mut planted, inner_at, 9, 9, b"p", key);
    Codec::Legacy.encode_into(&mut planted, inner_at, 9, 9, b"p", key);
    let mut seg = Vec::new();
    BOUND.encode_into(&mut seg, outer_at, 1, 1, b"o", &planted);
    assert_eq!(BOUND.find_next_valid(&seg, outer_at, 0), Some(0));
    // Nor does it find either planted copy. The input may carry a record of its own
    // bound to its place here (the fuzzer learns this fixed seed from its comparison
    // tracing, as a writer of values cannot learn a WAL's salt): skip past those.
    let first = (inner_at - outer_at) as usize;
    let copies = [first, first + BOUND.encoded_len(1, key.len())];
    let mut from = 1;
    while let Some(at) = BOUND.find_next_valid(&seg, outer_at, from) {
        assert!(!copies.contains(&at), "a record inside a value was found");
        from = at + 1;
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
        for version in [1, BOUND_VERSION] {
            let header = SegmentHeader {
                version,
                shard: 0,
                sequence: 1,
                created_us: 5,
                salt: if version >= BOUND_VERSION { 3 } else { 0 },
            };
            let codec = header.codec();
            let mut seg = header.encode().to_vec();
            let at = seg.len() as u64;
            codec.encode_into(&mut seg, at, 1, 1, b"k", b"v");
            seg.extend_from_slice(&[0xAA; 7]);
            let at = seg.len() as u64;
            codec.encode_into(&mut seg, at, 2, 2, b"", b"");
            check_decoders(&seg);
            assert_eq!(walk(codec, &seg, SEGMENT_HEADER_LEN), 2);
        }
    }
}
