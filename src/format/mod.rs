//! The on-disk format: the bytes of records, segment headers, the manifest and the
//! index checkpoint. Nothing here touches a file.

pub(crate) mod checkpoint;
pub(crate) mod manifest;
pub(crate) mod record;
pub(crate) mod segment_header;
