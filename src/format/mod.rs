//! The on-disk format: the names a WAL owns and the bytes of records, segment
//! headers, the manifest and the index checkpoint, all made of the little-endian
//! fields of `codec.rs`. Nothing here touches a file (that is `io/`), and nothing
//! here knows the index or the writer: the checkpoint is encoded from plain data.

pub(crate) mod checkpoint;
pub(crate) mod codec;
pub(crate) mod manifest;
pub(crate) mod names;
pub(crate) mod record;
pub(crate) mod segment_header;
pub(crate) mod stamp;
