//! The stable key -> shard routing hash.
//!
//! `shard = xxh3_64(key bytes, seed 0) % shards`. XXH3 is specified and frozen
//! (xxHash 0.8), so the same key lands on the same shard on every machine, Rust
//! version and build; the algorithm id is stored in the manifest so a future change
//! cannot silently split a key across shards.

/// Manifest id of the routing hash: 1 = XXH3-64, seed 0, modulo the shard count.
pub(crate) const HASH_ALGORITHM_ID: u32 = 1;

/// The shard that owns `key`.
pub(crate) fn shard_for(key: &[u8], shards: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64(key) % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_the_documented_xxh3() {
        // Reference values of XXH3-64 (seed 0) from the xxHash specification's test suite.
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2D06_8005_38D3_94C2);
        assert_eq!(shard_for(b"", 7), (0x2D06_8005_38D3_94C2u64 % 7) as usize);
    }

    #[test]
    fn routing_spreads_keys() {
        let mut counts = [0usize; 4];
        for i in 0..4000u32 {
            counts[shard_for(format!("key-{i}").as_bytes(), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
