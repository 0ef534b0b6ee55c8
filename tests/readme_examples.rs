//! Every example of the original nano-wal README, as tests. The code between the
//! `README` markers is the README's, changed only by `..WalOptions::default()` in
//! struct literals and by a temporary directory instead of "./my_wal" (and the other
//! example paths). Each test then checks what the example returned and left on disk.

mod common;

use bytes::Bytes;
use common::TestResult;
use nano_wal::{Wal, WalOptions};
use std::path::Path;
use std::time::Duration;

#[test]
#[allow(unused_mut)] // the README declares `let mut wal`; every method now takes `&self`
fn quick_start() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let my_wal = tmp.path().join("my_wal");

    // --- README: Quick Start ---
    // Create a new WAL with default options
    let mut wal = Wal::new(&my_wal, WalOptions::default())?;

    // Append an entry
    let content = Bytes::from("Hello, World!");
    wal.append_entry(b"my_key", content, false)?;

    // Log an entry with durability (forced sync to disk)
    let durable_content = Bytes::from("Important data");
    wal.log_entry(b"important_key", durable_content)?;

    // Retrieve records for a key
    let records: Vec<Bytes> = wal.enumerate_records(b"my_key")?.collect();

    // Enumerate all keys
    let keys: Vec<Vec<u8>> = wal.enumerate_keys()?.collect();
    // --- end of README (continued below) ---

    assert_eq!(records, vec![Bytes::from("Hello, World!")]);
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, vec![b"important_key".to_vec(), b"my_key".to_vec()]);
    assert!(
        my_wal.join("MANIFEST").is_file(),
        "the WAL lives in the given directory"
    );

    // --- README ---
    // Compact the WAL (remove expired segments)
    wal.compact()?;
    // --- end of README (continued below) ---

    // Nothing is a week old: compaction keeps everything.
    assert_eq!(
        wal.enumerate_records(b"my_key")?.collect::<Vec<_>>(),
        records
    );
    assert_eq!(
        wal.enumerate_records(b"important_key")?.collect::<Vec<_>>(),
        vec![Bytes::from("Important data")]
    );

    // --- README ---
    // Clean shutdown
    wal.shutdown()?;
    // --- end of README ---

    assert_removed(&my_wal);
    Ok(())
}

#[test]
#[allow(unused_mut)] // the README declares `let mut wal`
fn configuration() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let custom_wal = tmp.path().join("custom_wal");

    // --- README: Configuration ---
    let options = WalOptions {
        entry_retention: Duration::from_secs(60 * 60 * 24), // 1 day
        segments: 24,                                       // 24 segments (1 hour per segment)
        ..WalOptions::default()
    };

    let mut wal = Wal::new(&custom_wal, options)?;
    // --- end of README ---

    let expected = WalOptions::default()
        .with_retention(Duration::from_secs(86_400))
        .with_segments(24);
    assert_eq!(expected.segment_duration(), Duration::from_secs(3600));
    assert_eq!(wal.shard_count(), expected.shards);
    assert_eq!(wal.path(), custom_wal.as_path());
    wal.log_entry("configured", Bytes::from("yes"))?;
    assert_eq!(
        wal.enumerate_records("configured")?.collect::<Vec<_>>(),
        vec![Bytes::from("yes")]
    );
    wal.shutdown()?;
    assert_removed(&custom_wal);
    Ok(())
}

// --- README: Basic Usage (`fn main` takes the directory instead of "./example_wal") ---
#[allow(unused_mut)]
fn basic_usage_main(example_wal: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut wal = Wal::new(example_wal, WalOptions::default())?;

    // Store some data
    wal.append_entry(b"user:123", Bytes::from(r#"{"name": "Alice"}"#), false)?;
    wal.append_entry(b"user:456", Bytes::from(r#"{"name": "Bob"}"#), true)?;

    // Retrieve data
    let alice_records: Vec<Bytes> = wal.enumerate_records(b"user:123")?.collect();
    println!("Alice's records: {:?}", alice_records);
    // (check, added to the README's code)
    assert_eq!(alice_records, vec![Bytes::from(r#"{"name": "Alice"}"#)]);
    assert_eq!(
        wal.enumerate_records(b"user:456")?.collect::<Vec<_>>(),
        vec![Bytes::from(r#"{"name": "Bob"}"#)]
    );

    wal.shutdown()?;
    Ok(())
}
// --- end of README ---

#[test]
fn basic_usage() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let example_wal = tmp.path().join("example_wal");
    basic_usage_main(&example_wal)?;
    assert_removed(&example_wal);

    // The data went with the files: a new WAL at the same path is empty.
    let reopened = Wal::new(&example_wal, WalOptions::default())?;
    assert_eq!(reopened.enumerate_records(b"user:123")?.count(), 0);
    assert_eq!(reopened.enumerate_keys::<Vec<u8>>()?.count(), 0);
    assert_eq!(reopened.stats()?.records(), 0);
    reopened.shutdown()?;
    Ok(())
}

// --- README: Event Sourcing Pattern ---
fn store_event(
    wal: &mut Wal,
    entity_id: &str,
    event: serde_json::Value,
) -> Result<(), Box<dyn std::error::Error>> {
    let event_data = Bytes::from(event.to_string());
    wal.log_entry(entity_id.as_bytes(), event_data)?;
    Ok(())
}

fn replay_events(
    wal: &Wal,
    entity_id: &str,
) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
    let records: Vec<Bytes> = wal.enumerate_records(entity_id.as_bytes())?.collect();
    let events: Result<Vec<_>, _> = records.iter().map(|r| serde_json::from_slice(r)).collect();
    Ok(events?)
}
// --- end of README ---

#[test]
fn event_sourcing() -> TestResult {
    use serde_json::json;

    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("events_wal");
    let mut wal = Wal::new(&dir, WalOptions::default())?;

    let events = vec![
        json!({"type": "AccountOpened", "owner": "Alice", "balance": 0}),
        json!({"type": "Deposited", "amount": 100}),
        json!({"type": "Withdrawn", "amount": 30}),
    ];
    for event in &events {
        store_event(&mut wal, "account-1", event.clone())?;
    }
    store_event(
        &mut wal,
        "account-2",
        json!({"type": "AccountOpened", "owner": "Bob"}),
    )?;

    assert_eq!(replay_events(&wal, "account-1")?, events);
    assert_eq!(
        replay_events(&wal, "account-2")?,
        vec![json!({"type": "AccountOpened", "owner": "Bob"})]
    );
    assert!(replay_events(&wal, "account-3")?.is_empty());
    let balance: i64 = replay_events(&wal, "account-1")?
        .iter()
        .map(|e| match e["type"].as_str() {
            Some("Deposited") => e["amount"].as_i64().unwrap_or(0),
            Some("Withdrawn") => -e["amount"].as_i64().unwrap_or(0),
            _ => 0,
        })
        .sum();
    assert_eq!(balance, 70);

    // Events were logged durably: they replay identically after a reopen.
    wal.close()?;
    let wal = Wal::new(&dir, WalOptions::default())?;
    assert_eq!(replay_events(&wal, "account-1")?, events);

    wal.shutdown()?;
    assert_removed(&dir);
    Ok(())
}

/// `shutdown` deletes the WAL's files: the directory is gone (or, at most, empty).
fn assert_removed(dir: &Path) {
    if dir.exists() {
        let left: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "shutdown left files behind: {left:?}");
    }
}
