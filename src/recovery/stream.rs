//! Reading a segment's records in large pieces for as long as every record checks
//! out: the fast path of a segment's walk (`walk.rs`), which is the whole file
//! after a clean close. A reopen reuses one buffer across a shard's segments, so it
//! does not fault in a fresh segment-sized buffer per file.

use crate::format::record::{record_len, Codec, DecodeError, Decoded};
use std::os::unix::fs::FileExt;

/// Bytes read at a time while every record checks out.
pub(crate) const STREAM_CHUNK: usize = 4 * 1024 * 1024;

/// Reads whole records from `file` (of `len` bytes) from offset `pos` on, through
/// `buf` in reads of `chunk` bytes (more for a record larger than that), handing each
/// valid one to `each` with its offset. Returns the offset of the first byte that
/// does not start a whole valid record: `len` if every byte did.
pub(crate) fn stream_records(
    file: &std::fs::File,
    len: u64,
    mut pos: u64,
    buf: &mut Vec<u8>,
    chunk: usize,
    codec: Codec,
    mut each: impl FnMut(u64, &Decoded<'_>),
) -> std::io::Result<u64> {
    if buf.len() < chunk {
        buf.resize(chunk, 0);
    }
    // `buf[start..filled]` holds the file's bytes from `pos` on.
    let (mut start, mut filled) = (0, 0);
    loop {
        while start < filled {
            match codec.decode(&buf[start..filled], pos) {
                Ok(record) => {
                    each(pos, &record);
                    pos += record.len as u64;
                    start += record.len;
                }
                Err(DecodeError::Incomplete) => break,
                Err(_) => return Ok(pos),
            }
        }
        if pos >= len {
            return Ok(pos);
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        start = 0;
        if filled >= codec.header_len() {
            // A record longer than the buffer: make room for all of it, unless it
            // claims to run past the end of the file (then it is judged as damage).
            let need = record_len(&buf[..filled]);
            if need as u64 > len - pos {
                return Ok(pos);
            }
            if need > buf.len() {
                buf.resize(need, 0);
            }
        }
        let want = (buf.len() - filled).min((len - pos) as usize - filled);
        if want == 0 {
            return Ok(pos);
        }
        file.read_exact_at(&mut buf[filled..filled + want], pos + filled as u64)?;
        filled += want;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    use std::io::Write;

    const CODEC: Codec = Codec::Bound { seed: 0xABCD_0123 };

    /// Records of 1 to 700 value bytes: with a 64-byte chunk, most straddle a read and
    /// many are larger than the buffer.
    fn records() -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for i in 0..200usize {
            offsets.push(bytes.len() as u64);
            let value = vec![i as u8; (i * 37) % 700 + 1];
            let at = bytes.len() as u64;
            CODEC.encode_into(
                &mut bytes,
                at,
                i as u64 + 1,
                i as u64,
                format!("k{i}").as_bytes(),
                &value,
            );
        }
        (bytes, offsets)
    }

    /// Streams `bytes` through chunks of `chunk` bytes; returns the offsets handed
    /// out and where streaming stopped.
    fn stream(bytes: &[u8], chunk: usize) -> (Vec<u64>, u64) {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(bytes).expect("write");
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        let stop = stream_records(
            &file,
            bytes.len() as u64,
            0,
            &mut buf,
            chunk,
            CODEC,
            |pos, r| {
                assert_eq!(r.key, format!("k{}", r.timestamp_us).as_bytes());
                assert_eq!(r.seq, r.timestamp_us + 1);
                seen.push(pos);
            },
        )
        .expect("stream");
        (seen, stop)
    }

    #[test]
    fn streaming_in_small_chunks_finds_every_record() {
        let (bytes, offsets) = records();
        for chunk in [64, 1000, STREAM_CHUNK] {
            let (seen, stop) = stream(&bytes, chunk);
            assert_eq!(seen, offsets, "chunk {chunk}");
            assert_eq!(stop, bytes.len() as u64, "chunk {chunk}");
        }
    }

    #[test]
    fn streaming_stops_at_the_first_damaged_record() {
        let (mut bytes, offsets) = records();
        bytes[offsets[120] as usize + 33] ^= 0x40;
        let (seen, stop) = stream(&bytes, 64);
        assert_eq!(seen, offsets[..120]);
        assert_eq!(stop, offsets[120]);
    }

    #[test]
    fn streaming_stops_at_free_space_and_at_a_torn_record() {
        let (mut bytes, offsets) = records();
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 5000]);
        let (seen, stop) = stream(&bytes, 64);
        assert_eq!((seen.len(), stop), (offsets.len(), end));

        let (bytes, offsets) = records();
        let torn = &bytes[..bytes.len() - 3];
        let (seen, stop) = stream(torn, 64);
        assert_eq!(seen, offsets[..offsets.len() - 1]);
        assert_eq!(stop, offsets[offsets.len() - 1]);
    }
}
