//! Guarantee 2 (per-key order): a key's records come back in the order their appends
//! returned, for appends from many threads, durable or not, single or batched.

mod common;

use bytes::Bytes;
use common::TestResult;
use nano_wal::{Wal, WalOptions};
use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;

const THREADS: usize = 16;
const PER_THREAD: usize = 600;
const KEYS: usize = 5;

fn encode(thread: usize, seq: usize) -> Bytes {
    Bytes::from(format!("{thread}:{seq}"))
}

fn decode(v: &[u8]) -> (usize, usize) {
    let s = std::str::from_utf8(v).expect("utf-8 value");
    let (t, q) = s.split_once(':').expect("thread:seq");
    (t.parse().expect("thread"), q.parse().expect("seq"))
}

/// Which key thread `t` uses for its `seq`-th append (every thread touches every key).
fn key_for(t: usize, seq: usize) -> String {
    format!("shared-{}", (t * 7 + seq * 3) % KEYS)
}

/// Checks that under every key each thread's records are exactly the ones it sent
/// there, in increasing order. Returns the number of records seen.
fn check_per_thread_order(wal: &Wal) -> Result<usize, Box<dyn std::error::Error>> {
    let mut total = 0;
    for k in 0..KEYS {
        let key = format!("shared-{k}");
        let mut per_thread: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for r in wal.enumerate_records(&key)? {
            let (t, q) = decode(&r);
            per_thread.entry(t).or_default().push(q);
            total += 1;
        }
        for t in 0..THREADS {
            let expected: Vec<usize> = (0..PER_THREAD).filter(|&q| key_for(t, q) == key).collect();
            let got = per_thread.remove(&t).unwrap_or_default();
            assert_eq!(
                got, expected,
                "key {key}: records of thread {t} (in order, complete)"
            );
        }
        assert!(
            per_thread.is_empty(),
            "key {key}: records of unknown threads {per_thread:?}"
        );
    }
    Ok(total)
}

#[test]
fn sixteen_threads_on_shared_keys_keep_each_threads_order() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let options = WalOptions::default()
        .with_shards(3)
        .with_channel_capacity(64)
        .with_max_batch(32);
    let wal = Wal::new(&dir, options.clone())?;
    let start = Arc::new(Barrier::new(THREADS));
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let wal = wal.clone();
        let start = start.clone();
        handles.push(thread::spawn(move || -> nano_wal::Result<()> {
            start.wait();
            let mut seq = 0;
            while seq < PER_THREAD {
                match seq % 10 {
                    // A batch of three, possibly spanning keys and shards.
                    0 if seq + 3 <= PER_THREAD => {
                        let entries: Vec<(String, Bytes)> = (seq..seq + 3)
                            .map(|q| (key_for(t, q), encode(t, q)))
                            .collect();
                        wal.append_batch(entries, t % 2 == 0)?;
                        seq += 3;
                        continue;
                    }
                    7 => wal.log_entry(key_for(t, seq), encode(t, seq))?,
                    _ => wal.append_entry(key_for(t, seq), encode(t, seq), false)?,
                }
                seq += 1;
            }
            Ok(())
        }));
    }
    for h in handles {
        h.join().map_err(|_| "appender panicked")??;
    }
    assert_eq!(check_per_thread_order(&wal)?, THREADS * PER_THREAD);
    assert_eq!(wal.stats()?.records(), (THREADS * PER_THREAD) as u64);

    // The order is what was written: it survives a reopen.
    wal.close()?;
    let wal = Wal::new(&dir, options)?;
    assert_eq!(check_per_thread_order(&wal)?, THREADS * PER_THREAD);
    wal.close()?;
    Ok(())
}

/// Appends that are ordered across threads (each one starts after the previous one
/// returned, handed over by a channel) come back in that order under their key.
#[test]
fn appends_ordered_across_threads_come_back_in_that_order() -> TestResult {
    const HOPS: usize = 3;
    const ROUNDS: usize = 300;
    let tmp = tempfile::tempdir()?;
    let wal = Wal::new(tmp.path().join("wal"), WalOptions::default().with_shards(2))?;

    // A ring of threads: thread i waits for its turn, appends, passes the turn on.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..HOPS).map(|_| mpsc::channel::<usize>()).unzip();
    let mut handles = Vec::new();
    for (i, rx) in rxs.into_iter().enumerate() {
        let next = txs[(i + 1) % HOPS].clone();
        let wal = wal.clone();
        handles.push(thread::spawn(move || -> Result<(), String> {
            for turn in rx {
                if turn == HOPS * ROUNDS {
                    let _ = next.send(turn);
                    break;
                }
                let durable = turn % 4 == 0;
                wal.append_entry("ring", Bytes::from(format!("{turn}")), durable)
                    .map_err(|e| e.to_string())?;
                next.send(turn + 1).map_err(|e| e.to_string())?;
            }
            Ok(())
        }));
    }
    txs[0].send(0)?;
    drop(txs);
    for h in handles {
        h.join().map_err(|_| "ring thread panicked")??;
    }
    let got: Vec<usize> = wal
        .enumerate_records("ring")?
        .map(|r| {
            std::str::from_utf8(&r)
                .expect("utf-8")
                .parse()
                .expect("number")
        })
        .collect();
    assert_eq!(got, (0..HOPS * ROUNDS).collect::<Vec<_>>());
    wal.close()?;
    Ok(())
}

/// One thread, mixed durable / non-durable appends and batches, several keys and
/// shards: every key's records equal a model, before and after a reopen.
#[test]
fn single_thread_mixed_appends_match_a_model() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let options = WalOptions::default().with_shards(4);
    let wal = Wal::new(&dir, options.clone())?;
    let mut model: BTreeMap<Vec<u8>, Vec<Bytes>> = BTreeMap::new();
    let mut n = 0u64;
    let mut next_value = |model: &mut BTreeMap<Vec<u8>, Vec<Bytes>>, key: &[u8]| {
        n += 1;
        let v = Bytes::from(format!("v{n}-{}", "z".repeat((n % 13) as usize)));
        model.entry(key.to_vec()).or_default().push(v.clone());
        v
    };
    for i in 0..400usize {
        let key = format!("mixed-{}", i % 9).into_bytes();
        match i % 5 {
            0 => {
                let v = next_value(&mut model, &key);
                wal.log_entry(&key, v)?;
            }
            1 | 2 => {
                let v = next_value(&mut model, &key);
                wal.append_entry(&key, v, i % 2 == 0)?;
            }
            3 => {
                // A batch that repeats a key: its records keep their order.
                let k2 = format!("mixed-{}", (i + 4) % 9).into_bytes();
                let entries = vec![
                    (key.clone(), next_value(&mut model, &key)),
                    (k2.clone(), next_value(&mut model, &k2)),
                    (key.clone(), next_value(&mut model, &key)),
                ];
                wal.append_batch(entries, i % 2 == 1)?;
            }
            _ => {
                let v = next_value(&mut model, &key);
                wal.append_entry(&key, v, false)?;
                wal.sync()?;
            }
        }
        if i % 50 == 49 {
            check_model(&wal, &model)?;
        }
    }
    check_model(&wal, &model)?;
    wal.close()?;
    let wal = Wal::new(&dir, options)?;
    check_model(&wal, &model)?;
    wal.close()?;
    Ok(())
}

fn check_model(wal: &Wal, model: &BTreeMap<Vec<u8>, Vec<Bytes>>) -> TestResult {
    for (key, values) in model {
        let got: Vec<Bytes> = wal.enumerate_records(key)?.collect();
        assert_eq!(&got, values, "key {:?}", String::from_utf8_lossy(key));
    }
    let mut keys: Vec<Vec<u8>> = wal.enumerate_keys()?.collect();
    keys.sort();
    assert_eq!(keys, model.keys().cloned().collect::<Vec<_>>());
    Ok(())
}
