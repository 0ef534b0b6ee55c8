//! The original nano-wal README's quick start, on this crate: append, log durably,
//! read a key back, list the keys, compact, and shut down (which deletes the files).
//!
//! Run: `cargo run --example quick_start`.

use bytes::Bytes;
use nano_wal::{Wal, WalOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let wal = Wal::new(dir.path().join("my_wal"), WalOptions::default())?;

    // Append an entry (visible at once, durable at the next sync).
    wal.append_entry(b"my_key", Bytes::from("Hello, World!"), false)?;
    // Log an entry durably: it survives a crash once this returns.
    wal.log_entry(b"important_key", Bytes::from("Important data"))?;

    let records: Vec<Bytes> = wal.enumerate_records(b"my_key")?.collect();
    println!("records of my_key: {records:?}");
    let mut keys: Vec<Vec<u8>> = wal.enumerate_keys()?.collect();
    keys.sort();
    println!(
        "keys: {:?}",
        keys.iter()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>()
    );

    // Drop segments past the retention (none here: nothing is a week old).
    wal.compact()?;
    // As in the original README, `shutdown` closes *and deletes* the WAL's files;
    // `close` would keep them.
    wal.shutdown()?;
    Ok(())
}
