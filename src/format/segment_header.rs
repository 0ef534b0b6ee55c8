//! The header every segment file starts with (names: `names.rs`).
//!
//! ```text
//! offset  size  field
//!      0     8  magic       b"NANOWALS"
//!      8     4  version     format version (4; 1 to 3 are still read)
//!     12     4  shard       shard id that owns the file
//!     16     8  sequence    segment sequence number (also the file name)
//!     24     8  created     creation time, microseconds since the Unix epoch
//!     32     4  salt        the WAL's salt, as in its manifest (version 4)
//!     36     4  crc32c      CRC32C of bytes 0..36
//! ```
//! Versions 1 to 3 hold the CRC32C of bytes 0..32 at offset 32 and zero at 36.
//! Records follow from offset 40 to the end of the file.

use crate::format::codec::{Reader, Writer};
use crate::format::record::Codec;
// Segment names moved to `names.rs`; recovery and inspect still name them here.
pub(crate) use crate::format::names::{parse_segment_file_name, segment_file_name};

/// Magic bytes at the start of every segment.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"NANOWALS";
/// The on-disk format version this build writes: 4 (records bound to their place,
/// with sequence numbers). Version 3 segments (seal notes), version 2 segments (sync
/// markers, deferred seal syncs, no seal notes) and version 1 segments, which never
/// hold a marker and whose seals were synced before their successors existed, are
/// read as well.
pub(crate) const FORMAT_VERSION: u32 = 4;
/// The first version whose records are bound to their place ([`Codec::Bound`]).
pub(crate) const BOUND_VERSION: u32 = 4;
/// The oldest segment format version this build reads.
pub(crate) const OLDEST_READABLE_VERSION: u32 = 1;
/// Length of the segment header.
pub(crate) const SEGMENT_HEADER_LEN: usize = 40;

/// The decoded header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) version: u32,
    pub(crate) shard: u32,
    pub(crate) sequence: u64,
    pub(crate) created_us: u64,
    /// The WAL's salt (version 4; 0 in older headers).
    pub(crate) salt: u32,
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    Short,
    BadMagic,
    BadChecksum,
}

impl HeaderError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            HeaderError::Short => "segment header is incomplete",
            HeaderError::BadMagic => "segment header magic is not NANOWALS",
            HeaderError::BadChecksum => "segment header checksum mismatch",
        }
    }
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut w = Writer::with_capacity(SEGMENT_HEADER_LEN);
        w.bytes(SEGMENT_MAGIC)
            .u32(self.version)
            .u32(self.shard)
            .u64(self.sequence)
            .u64(self.created_us);
        if self.version >= BOUND_VERSION {
            w.u32(self.salt);
        }
        // Of bytes 0..36 (0..32 before version 4, then zeros at 36).
        let crc = crc32c::crc32c(w.since(0));
        w.u32(crc);
        w.into_array()
    }

    /// How the records after this header are laid out and checked.
    pub(crate) fn codec(&self) -> Codec {
        codec_of(self.version, self.salt, self.shard, self.sequence)
    }

    /// Decodes a header. The version is returned as found; the caller decides
    /// whether it is supported (so the error can name it).
    pub(crate) fn decode(buf: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let short = |_| HeaderError::Short;
        let mut r = Reader::new(buf.get(..SEGMENT_HEADER_LEN).ok_or(HeaderError::Short)?);
        if r.take(8).map_err(short)? != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = r.u32().map_err(short)?;
        let shard = r.u32().map_err(short)?;
        let sequence = r.u64().map_err(short)?;
        let created_us = r.u64().map_err(short)?;
        let (at_32, at_36) = (r.u32().map_err(short)?, r.u32().map_err(short)?);
        // The version decides where the checksum is; a damaged version moves it and
        // fails the check.
        let (covered, crc, salt) = if version >= BOUND_VERSION {
            (36, at_36, at_32)
        } else {
            (32, at_32, 0)
        };
        if crc32c::crc32c(&buf[0..covered]) != crc {
            return Err(HeaderError::BadChecksum);
        }
        Ok(SegmentHeader {
            version,
            shard,
            sequence,
            created_us,
            salt,
        })
    }
}

/// The codec of records in segment `sequence` of shard `shard`, written with header
/// version `version` in a WAL whose salt is `salt`.
pub(crate) fn codec_of(version: u32, salt: u32, shard: u32, sequence: u64) -> Codec {
    if version >= BOUND_VERSION {
        Codec::bound(salt, shard, sequence)
    } else {
        Codec::Legacy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_damage() {
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            shard: 3,
            sequence: 17,
            created_us: 123_456,
            salt: 0xA1B2_C3D4,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        assert_eq!(&b[32..36], &0xA1B2_C3D4u32.to_le_bytes());
        assert_eq!(&b[36..40], &crc32c::crc32c(&b[..36]).to_le_bytes());
        assert_eq!(h.codec(), Codec::bound(0xA1B2_C3D4, 3, 17));
        let old = SegmentHeader {
            version: 3,
            salt: 0,
            ..h
        };
        let ob = old.encode();
        assert_eq!(SegmentHeader::decode(&ob), Ok(old));
        assert_eq!(&ob[32..36], &crc32c::crc32c(&ob[..32]).to_le_bytes());
        assert_eq!(old.codec(), Codec::Legacy);
        assert_eq!(SegmentHeader::decode(&b[..39]), Err(HeaderError::Short));
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::BadMagic));
        for at in 8..40 {
            let mut bad = b;
            bad[at] ^= 0x10;
            assert_eq!(
                SegmentHeader::decode(&bad),
                Err(HeaderError::BadChecksum),
                "byte {at}"
            );
        }
    }
}
