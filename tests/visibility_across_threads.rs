//! Guarantee 1 (visibility): once a non-durable `append_entry` returns Ok, every later
//! `enumerate_records` of its key, from any thread, returns the record. Non-durable
//! appends return once queued, so these tests catch a read that does not wait for
//! the queue ahead of it. The order "append returned, then read started" is made by
//! a channel or by spawning the reader only after the append returned.

mod common;

use bytes::Bytes;
use common::TestResult;
use nano_wal::{Wal, WalOptions};
use std::sync::mpsc;
use std::thread;

fn key(k: usize) -> String {
    format!("vis-key-{k}")
}

fn value(writer: usize, seq: usize) -> Bytes {
    Bytes::from(format!("w{writer}-s{seq}"))
}

/// A fresh thread, spawned after each append returned, finds the record.
#[test]
fn reader_spawned_after_append_sees_it() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::new(tmp.path().join("wal"), WalOptions::default().with_shards(4))?;
    const KEYS: usize = 8;
    let mut counts = [0usize; KEYS];
    for i in 0..300 {
        let k = i % KEYS;
        let v = Bytes::from(format!("value-{i}"));
        wal.append_entry(key(k), v.clone(), false)?;
        counts[k] += 1;
        let expected = counts[k];
        let reader = wal.clone();
        let k_name = key(k);
        let seen = thread::spawn(move || {
            reader
                .enumerate_records(&k_name)
                .map(|r| r.collect::<Vec<_>>())
        })
        .join()
        .map_err(|_| "reader thread panicked")??;
        assert_eq!(
            seen.len(),
            expected,
            "iteration {i}: {k_name:?} record count",
            k_name = key(k)
        );
        assert_eq!(
            seen.last(),
            Some(&v),
            "iteration {i}: newest record of {}",
            key(k)
        );
    }
    wal.close()?;
    Ok(())
}

/// Several writer threads, each with its own keys, append without durability and
/// tell long-lived reader threads (over a channel) what they just appended. Each
/// reader must find the whole prefix the writer had appended to that key.
#[test]
fn readers_notified_over_channel_see_every_acknowledged_append() -> TestResult {
    const WRITERS: usize = 4;
    const READERS: usize = 3;
    const KEYS_PER_WRITER: usize = 3;
    const APPENDS: usize = 2000;

    let tmp = tempfile::tempdir()?;
    let wal = Wal::new(tmp.path().join("wal"), WalOptions::default().with_shards(3))?;

    // (writer, key index, number of records the writer had appended to that key)
    type Notice = (usize, usize, usize);
    let mut reader_txs = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (tx, rx) = mpsc::channel::<Notice>();
        reader_txs.push(tx);
        let wal = wal.clone();
        readers.push(thread::spawn(move || -> Result<usize, String> {
            let mut checked = 0;
            for (w, k, n) in rx {
                let name = format!("w{w}-{}", key(k));
                let records: Vec<Bytes> = wal
                    .enumerate_records(&name)
                    .map_err(|e| e.to_string())?
                    .collect();
                if records.len() < n {
                    return Err(format!(
                        "{name}: {} records visible, {n} acknowledged",
                        records.len()
                    ));
                }
                // The first n records are exactly the writer's first n appends to the key.
                for (i, r) in records.iter().take(n).enumerate() {
                    let expected = value(w, i * KEYS_PER_WRITER + k);
                    if *r != expected {
                        return Err(format!(
                            "{name}: record {i} is {r:?}, expected {expected:?}"
                        ));
                    }
                }
                checked += 1;
            }
            Ok(checked)
        }));
    }

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let wal = wal.clone();
        let txs = reader_txs.clone();
        writers.push(thread::spawn(move || -> Result<(), String> {
            let mut per_key = [0usize; KEYS_PER_WRITER];
            for seq in 0..APPENDS {
                let k = seq % KEYS_PER_WRITER;
                let name = format!("w{w}-{}", key(k));
                wal.append_entry(&name, value(w, seq), false)
                    .map_err(|e| e.to_string())?;
                per_key[k] += 1;
                txs[seq % READERS]
                    .send((w, k, per_key[k]))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }));
    }
    drop(reader_txs);
    for w in writers {
        w.join().map_err(|_| "writer panicked")??;
    }
    let mut checked = 0;
    for r in readers {
        checked += r.join().map_err(|_| "reader panicked")??;
    }
    assert_eq!(checked, WRITERS * APPENDS, "every notice was checked");
    wal.close()?;
    Ok(())
}

/// Ping-pong between two threads on two handles (clones): each appends, then hands
/// over; the other must see the append before adding its own. Also covers
/// `append_batch` and `enumerate_keys`.
#[test]
fn ping_pong_between_threads_sees_each_other() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::new(tmp.path().join("wal"), WalOptions::default().with_shards(2))?;
    let (to_b, from_a) = mpsc::channel::<usize>();
    let (to_a, from_b) = mpsc::channel::<usize>();
    const ROUNDS: usize = 500;

    let wal_b = wal.clone();
    let b = thread::spawn(move || -> Result<(), String> {
        for round in from_a {
            let key_a = format!("pp-a-{}", round % 5);
            let recs: Vec<Bytes> = wal_b
                .enumerate_records(&key_a)
                .map_err(|e| e.to_string())?
                .collect();
            if recs.last() != Some(&Bytes::from(format!("a{round}"))) {
                return Err(format!(
                    "round {round}: B sees {:?} last under {key_a}",
                    recs.last()
                ));
            }
            let batch_key = format!("pp-batch-{round}");
            let keys: Vec<Vec<u8>> = wal_b.enumerate_keys().map_err(|e| e.to_string())?.collect();
            if !keys.contains(&batch_key.clone().into_bytes()) {
                return Err(format!("round {round}: B does not list key {batch_key}"));
            }
            wal_b
                .append_entry(
                    format!("pp-b-{}", round % 7),
                    Bytes::from(format!("b{round}")),
                    false,
                )
                .map_err(|e| e.to_string())?;
            to_a.send(round).map_err(|e| e.to_string())?;
        }
        Ok(())
    });

    for round in 0..ROUNDS {
        wal.append_batch(
            [
                (
                    format!("pp-a-{}", round % 5),
                    Bytes::from(format!("a{round}")),
                ),
                (format!("pp-batch-{round}"), Bytes::from("x")),
            ],
            false,
        )?;
        to_b.send(round)?;
        let back = from_b.recv()?;
        assert_eq!(back, round);
        let key_b = format!("pp-b-{}", round % 7);
        let recs: Vec<Bytes> = wal.enumerate_records(&key_b)?.collect();
        assert_eq!(
            recs.last(),
            Some(&Bytes::from(format!("b{round}"))),
            "round {round}: A reads {key_b}"
        );
    }
    drop(to_b);
    b.join().map_err(|_| "thread B panicked")??;

    // Every record is there, in order, once.
    for k in 0..5 {
        let recs: Vec<Bytes> = wal.enumerate_records(format!("pp-a-{k}"))?.collect();
        let expected: Vec<Bytes> = (0..ROUNDS)
            .filter(|r| r % 5 == k)
            .map(|r| Bytes::from(format!("a{r}")))
            .collect();
        assert_eq!(recs, expected, "pp-a-{k}");
    }
    wal.close()?;
    Ok(())
}

/// The block cache (64 KiB blocks of segment files) must never serve bytes from
/// before a record was written. Small records of 8 keys are appended round-robin, so
/// each block holds records of every key and is cached while it is still being
/// filled; after every append the reader, on another thread, reads that key and must
/// find every record so far, in order, with the right bytes. Once with the cache and
/// once without, over several segments.
#[test]
fn block_cache_never_serves_bytes_older_than_an_acknowledged_append() -> TestResult {
    for cache in [64 * 1024 * 1024, 0] {
        let tmp = tempfile::tempdir()?;
        let options = WalOptions::default()
            .with_shards(1)
            .with_max_key_size(64)
            .with_max_record_size(1024)
            .with_max_segment_size(96 * 1024)
            .with_read_cache_bytes(cache);
        let wal = Wal::new(tmp.path().join("wal"), options)?;
        const KEYS: usize = 8;
        const N: usize = 6_000;
        let (tx, rx) = mpsc::sync_channel::<(usize, usize)>(64);
        let reader = {
            let wal = wal.clone();
            thread::spawn(move || -> Result<usize, String> {
                let mut checked = 0;
                for (k, count) in rx {
                    let got: Vec<Bytes> = wal
                        .enumerate_records(key(k))
                        .map_err(|e| e.to_string())?
                        .collect();
                    // At least the acknowledged ones (the writer may be ahead), each
                    // with its own bytes, in order.
                    let want: Vec<Bytes> = (0..got.len()).map(|s| value(k, s)).collect();
                    if got.len() < count || got != want {
                        return Err(format!(
                            "cache {cache}: key {k}: {} records, want at least {count}, in order",
                            got.len()
                        ));
                    }
                    checked += 1;
                }
                Ok(checked)
            })
        };
        for i in 0..N {
            let (k, seq) = (i % KEYS, i / KEYS);
            wal.append_entry(key(k), value(k, seq), i % 500 == 0)?;
            // Every 7th append is checked, so the reader keeps up with the writer.
            if i % 7 == 0 && tx.send((k, seq + 1)).is_err() {
                break; // the reader stopped: its error is reported below
            }
        }
        drop(tx);
        let checked = reader.join().map_err(|_| "reader panicked")??;
        assert_eq!(checked, N.div_ceil(7));
        assert!(
            wal.stats()?.segments() > 1,
            "the run spans several segments"
        );
        if cache > 0 {
            assert!(
                wal.stats()?.read_cache_bytes() > 0,
                "reads went through the cache"
            );
        } else {
            assert_eq!(wal.stats()?.read_cache_bytes(), 0);
        }
        wal.close()?;
    }
    Ok(())
}
