//! [`WalStats`]: what `Wal::stats` reports.

/// Figures of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardStats {
    /// Shard id.
    pub shard: usize,
    /// Live records (in segments not yet removed by compaction).
    pub records: u64,
    /// Distinct live keys.
    pub keys: u64,
    /// Bytes in live segment files, headers included.
    pub bytes: u64,
    /// Live segment files.
    pub segments: u64,
    /// Requests waiting in the shard's queue right now.
    pub queue_depth: u64,
    /// Batches the actor has processed since open.
    pub batches: u64,
    /// `fdatasync` calls since open.
    pub fsyncs: u64,
    /// Approximate heap bytes of the shard's index (keys and locations).
    pub index_bytes: u64,
    /// Bytes of segment blocks held by the shard's read cache.
    pub read_cache_bytes: u64,
}

/// Figures of the whole WAL, per shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalStats {
    /// One entry per shard, by shard id.
    pub shards: Vec<ShardStats>,
}

/// The `WalStats` methods that sum one `ShardStats` field over the shards.
macro_rules! totals {
    ($($(#[$doc:meta])* $field:ident),* $(,)?) => {
        impl WalStats {
            $(
                $(#[$doc])*
                pub fn $field(&self) -> u64 {
                    self.shards.iter().map(|s| s.$field).sum()
                }
            )*
        }
    };
}

totals! {
    /// Live records in all shards.
    records,
    /// Bytes in all live segment files.
    bytes,
    /// Live segment files in all shards.
    segments,
    /// Batches written by all shards.
    batches,
    /// `fdatasync` calls of all shards.
    fsyncs,
    /// Approximate heap bytes of all indexes.
    index_bytes,
    /// Bytes held by all read caches.
    read_cache_bytes,
}
