//! The original README's event-sourcing pattern: each entity's events are the records
//! of its key, logged durably and replayed in order, also after a reopen.
//!
//! Run: `cargo run --example event_sourcing`.

use bytes::Bytes;
use nano_wal::{Wal, WalOptions};
use serde_json::json;

fn store_event(
    wal: &Wal,
    entity_id: &str,
    event: serde_json::Value,
) -> Result<(), Box<dyn std::error::Error>> {
    wal.log_entry(entity_id.as_bytes(), Bytes::from(event.to_string()))?;
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events_wal");
    let wal = Wal::new(&path, WalOptions::default())?;
    store_event(
        &wal,
        "account-1",
        json!({"type": "AccountOpened", "owner": "Alice"}),
    )?;
    store_event(
        &wal,
        "account-1",
        json!({"type": "Deposited", "amount": 100}),
    )?;
    store_event(
        &wal,
        "account-1",
        json!({"type": "Withdrawn", "amount": 30}),
    )?;
    wal.close()?;

    // After a restart the events replay in the order they were logged.
    let wal = Wal::new(&path, WalOptions::default())?;
    let balance: i64 = replay_events(&wal, "account-1")?
        .iter()
        .map(|e| match e["type"].as_str() {
            Some("Deposited") => e["amount"].as_i64().unwrap_or(0),
            Some("Withdrawn") => -e["amount"].as_i64().unwrap_or(0),
            _ => 0,
        })
        .sum();
    println!("account-1 balance after replay: {balance}");
    assert_eq!(balance, 70);
    wal.close()?;
    Ok(())
}
