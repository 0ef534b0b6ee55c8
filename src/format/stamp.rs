//! How a file looked at some moment: what the index checkpoint stores of each
//! segment, and what the storage (`io`) reports of a file.

/// How a file looked: any write to it afterwards changes its ctime (and its mtime or
/// length); a file put back from elsewhere has another inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    pub(crate) len: u64,
    pub(crate) inode: u64,
    /// Seconds and nanoseconds.
    pub(crate) mtime: (i64, i64),
    pub(crate) ctime: (i64, i64),
}

impl FileStamp {
    /// The stamp of a file whose status is `meta` (what `stat` gives).
    pub(crate) fn of(meta: &impl std::os::unix::fs::MetadataExt) -> FileStamp {
        FileStamp {
            len: meta.size(),
            inode: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}
