//! Tests of `walk.rs`: the walk finds the same facts whether it streams a file (as
//! recovery does) or reads it whole (as `inspect` does).

use super::*;
use crate::format::segment_header::segment_file_name;

const SALT: u32 = 0x5EED_0004;

/// A version-4 segment 1 of shard 0: `records` records, then `tail`.
fn segment(records: usize, tail: &[u8]) -> Vec<u8> {
    let mut bytes = SegmentHeader {
        version: FORMAT_VERSION,
        shard: 0,
        sequence: 1,
        created_us: 7,
        salt: SALT,
    }
    .encode()
    .to_vec();
    let codec = Codec::bound(SALT, 0, 1);
    for i in 0..records {
        let at = bytes.len() as u64;
        let value = vec![i as u8; i * 13 % 90];
        codec.encode_into(&mut bytes, at, i as u64 + 1, i as u64, b"key", &value);
    }
    bytes.extend_from_slice(tail);
    bytes
}

/// Walks `bytes` as the newest segment of a shard, streamed from a file and read
/// whole: both walks and the offsets of the records each handed out.
type Walks = ((SegmentWalk, Vec<u64>), (SegmentWalk, Vec<u64>));

fn walk_both(bytes: &[u8]) -> std::result::Result<Walks, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(segment_file_name(1));
    std::fs::write(&path, bytes)?;
    let place = Place::new(0, 1, Some(SALT), &[]);
    let file = std::fs::File::open(&path)?;
    let mut buf = Vec::new();
    let mut streamed = Vec::new();
    let source = Source::File {
        file: &file,
        path: &path,
        buf: &mut buf,
    };
    let from_file = walk_segment(source, &place, |at, _| streamed.push(at))?;
    let mut whole = Vec::new();
    let from_bytes = walk_segment(Source::Bytes(bytes), &place, |at, _| whole.push(at))?;
    Ok(((from_file, streamed), (from_bytes, whole)))
}

#[test]
fn streaming_and_reading_whole_find_the_same_facts(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let clean = segment(40, &[]);
    let mut damaged = segment(40, &[]);
    damaged[400] ^= 0x10;
    let mut bad_header = segment(5, &[]);
    bad_header[2] ^= 0x01;
    let cases = [
        ("clean", clean.clone()),
        ("free space", segment(40, &[0; 300])),
        ("torn tail", clean[..clean.len() - 5].to_vec()),
        (
            "torn tail, then zeros",
            segment(3, &[[0xAB; 9].as_slice(), &[0; 50]].concat()),
        ),
        ("damage before records", damaged),
        ("damaged header", bad_header),
        ("header only", clean[..SEGMENT_HEADER_LEN].to_vec()),
        ("short header", clean[..10].to_vec()),
    ];
    for (name, bytes) in cases {
        let (from_file, from_bytes) = walk_both(&bytes)?;
        assert_eq!(from_file, from_bytes, "{name}");
    }
    let ((clean_walk, offsets), _) = walk_both(&clean)?;
    assert_eq!((clean_walk.records, offsets.len()), (40, 40));
    assert_eq!(clean_walk.end, End::Reached);
    assert_eq!(clean_walk.data_len, clean.len() as u64);
    Ok(())
}
