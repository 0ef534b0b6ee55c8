//! The frozen form of a key's locations: a run of them still in the index
//! checkpoint an open loaded, read and checked when the key is read.

use crate::error::WalError;
use crate::index::Location;
use std::sync::Arc;

/// The index checkpoint an open loaded, kept open: its key directory was read at
/// open, and each key's locations are read from it when the key is read (so a
/// reopen reads bytes in proportion to the keys, not to the records). The file is
/// unlinked once the open succeeds; this handle keeps it readable.
pub(crate) struct Frozen {
    pub(crate) file: Arc<dyn crate::io::ReadIo>,
    pub(crate) path: std::path::PathBuf,
    /// Segment sequence of each slot.
    pub(crate) sequences: Box<[u64]>,
    /// Length of each slot's segment when the checkpoint was written.
    pub(crate) lens: Box<[u64]>,
}

/// Bytes of one frozen location (offset, length) and of a group's head (segment
/// slot, location count).
pub(crate) const FROZEN_LOCATION_LEN: usize = crate::format::checkpoint::LOCATION_LEN;
pub(crate) const FROZEN_GROUP_LEN: usize = crate::format::checkpoint::GROUP_LEN;

/// One key's frozen locations: `groups` groups (segment slot u32, location count
/// u32, then offset u32 and length u32 per location) at byte `at` of the
/// checkpoint, `count` locations in all, their bytes covered by `crc` (CRC32C).
#[derive(Clone)]
pub(crate) struct Run {
    pub(crate) frozen: Arc<Frozen>,
    pub(crate) at: u64,
    pub(crate) groups: u32,
    pub(crate) count: u32,
    pub(crate) crc: u32,
}

/// Why a frozen run failed its checks (the reason part of the error that names the
/// checkpoint, [`Run::error`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error("a key's {0} bytes of locations do not fit in memory")]
    NoMemory(usize),
    #[error("reading a key's locations: {0}")]
    Read(std::io::Error),
    #[error("a key's locations fail their checksum")]
    Checksum,
    #[error("a key's groups overrun its locations")]
    Overrun,
    #[error("a location names segment slot {slot} of {slots}")]
    NoSuchSlot { slot: usize, slots: usize },
    #[error("a key's locations are not in append order")]
    OutOfOrder,
    #[error("a location ({offset}, {len}) lies outside segment {segment}")]
    OutsideSegment { offset: u32, len: u32, segment: u64 },
    #[error("a key's groups do not hold its locations")]
    Incomplete,
}

/// The reason as text, for tests that compare reasons.
#[cfg(test)]
impl From<RunError> for String {
    fn from(e: RunError) -> String {
        e.to_string()
    }
}

impl Run {
    /// Bytes the run takes in the checkpoint.
    pub(crate) fn byte_len(groups: u32, count: u32) -> u64 {
        crate::format::checkpoint::run_len(groups, count)
    }

    /// The error for a run that failed its checks: the checkpoint and the offset of
    /// the run in it.
    pub(crate) fn error(&self, reason: RunError) -> WalError {
        WalError::corruption(
            self.frozen.path.clone(),
            self.at,
            format!("index checkpoint loaded at open: {reason}"),
        )
    }

    /// Reads the run and appends its locations to `out`, checking its checksum and
    /// what a scan would guarantee: every slot exists, groups in increasing slot
    /// order, offsets increasing within a group, every record inside its segment.
    pub(crate) fn decode_into(&self, out: &mut Vec<Location>) -> Result<(), RunError> {
        let len = Run::byte_len(self.groups, self.count) as usize;
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(len)
            .map_err(|_| RunError::NoMemory(len))?;
        bytes.resize(len, 0);
        self.frozen
            .file
            .read_at(&mut bytes, self.at)
            .map_err(RunError::Read)?;
        if crc32c::crc32c(&bytes) != self.crc {
            return Err(RunError::Checksum);
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let start = out.len();
        let mut at = 0;
        let mut prev_slot = None;
        for _ in 0..self.groups {
            if at + FROZEN_GROUP_LEN > bytes.len() {
                return Err(RunError::Overrun);
            }
            let slot = u32_at(at) as usize;
            let n = u32_at(at + 4) as usize;
            at += FROZEN_GROUP_LEN;
            let (Some(&segment), Some(&seg_len)) =
                (self.frozen.sequences.get(slot), self.frozen.lens.get(slot))
            else {
                return Err(RunError::NoSuchSlot {
                    slot,
                    slots: self.frozen.sequences.len(),
                });
            };
            if n == 0 || prev_slot.is_some_and(|p| p >= slot) {
                return Err(RunError::OutOfOrder);
            }
            prev_slot = Some(slot);
            let end = n
                .checked_mul(FROZEN_LOCATION_LEN)
                .and_then(|b| b.checked_add(at))
                .filter(|&e| e <= bytes.len())
                .ok_or(RunError::Overrun)?;
            let mut prev = 0;
            for b in bytes[at..end].chunks_exact(FROZEN_LOCATION_LEN) {
                let offset = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                if (offset as usize) < crate::format::segment_header::SEGMENT_HEADER_LEN
                    || u64::from(offset) + u64::from(len) > seg_len
                {
                    return Err(RunError::OutsideSegment {
                        offset,
                        len,
                        segment,
                    });
                }
                if offset <= prev {
                    return Err(RunError::OutOfOrder);
                }
                prev = offset;
                out.push(Location {
                    segment,
                    offset,
                    len,
                });
            }
            at = end;
        }
        if at != bytes.len() || out.len() - start != self.count as usize {
            return Err(RunError::Incomplete);
        }
        Ok(())
    }
}
