//! The original README's configuration: one day of retention in 24 segments (each
//! shard's active segment is sealed after an hour), set with struct-update syntax or
//! with the builder methods.
//!
//! Run: `cargo run --example configuration`.

use bytes::Bytes;
use nano_wal::{Wal, WalOptions};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let options = WalOptions {
        entry_retention: Duration::from_secs(60 * 60 * 24), // 1 day
        segments: 24,                                       // 1 hour per segment
        ..WalOptions::default()
    };
    assert_eq!(
        options,
        WalOptions::default()
            .with_retention(Duration::from_secs(86_400))
            .with_segments(24)
    );
    println!("segment duration: {:?}", options.segment_duration());

    let wal = Wal::new(dir.path().join("custom_wal"), options)?;
    wal.log_entry("configured", Bytes::from("yes"))?;
    println!("stats: {:?}", wal.stats()?);
    wal.close()?; // keeps the files
    Ok(())
}
