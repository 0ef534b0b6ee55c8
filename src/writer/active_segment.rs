//! What a shard knows about one of its segments: the active one it appends to and
//! the sealed ones before it.

use crate::format::record::Codec;
use crate::io::SegmentIo;
use std::sync::Arc;

/// What a shard knows about one of its segments.
#[derive(Clone)]
pub(crate) struct Segment {
    pub(crate) sequence: u64,
    pub(crate) io: Arc<dyn SegmentIo>,
    pub(crate) created_us: u64,
    /// Newest record timestamp (the creation time while empty).
    pub(crate) newest_us: u64,
    /// Bytes written, header included; the next record goes here.
    pub(crate) len: u64,
    /// Length of the file: `len` plus preallocated zeros (only in the active segment).
    pub(crate) allocated: u64,
    /// `len` as far as readers may rely on it (see `index::PublishedLen`).
    pub(crate) published: crate::index::PublishedLen,
    pub(crate) records: u64,
    /// Fsynced and closed to appends.
    pub(crate) sealed: bool,
    /// How its records are encoded; the writer appends only to [`Codec::Bound`]
    /// segments.
    pub(crate) codec: Codec,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("sequence", &self.sequence)
            .field("path", &self.io.path())
            .field("len", &self.len)
            .field("records", &self.records)
            .field("sealed", &self.sealed)
            .finish()
    }
}
