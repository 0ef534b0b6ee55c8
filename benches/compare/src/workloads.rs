//! The measured operations (ingest, read by key, reopen) and their verification.
//! Everything here takes a `&dyn System`, so every system runs the same code.

use std::any::Any;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Barrier, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use bytes::Bytes;

use crate::systems::{Open, System};

/// The harness's keys: `key-00000`, `key-00001`, ... (9 ASCII bytes each).
pub fn make_keys(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("key-{i:05}").into_bytes()).collect()
}

/// An ingest: record `i` (of `0..records`) goes to key `i % keys.len()`; thread `t`
/// of `threads` appends a contiguous share of the records.
#[derive(Clone, Copy, Debug)]
pub struct Ingest {
    pub threads: usize,
    pub records: usize,
    pub value_size: usize,
    pub durable: bool,
}

/// What an ingest measured.
pub struct Ingested {
    pub elapsed: Duration,
    /// `fdatasync` calls during the timed region, if the system counts them.
    pub fsyncs: Option<u64>,
}

/// Runs `w` against `sys`. Timing starts once every thread is spawned and waiting,
/// and ends once every append returned and (non-durable) [`System::flush`] did.
pub fn ingest(sys: &dyn System, keys: &[Vec<u8>], w: &Ingest) -> Result<Ingested> {
    let value = Bytes::from((0..w.value_size).map(|i| i as u8).collect::<Vec<u8>>());
    let fsyncs_before = sys.fsyncs()?;
    let start;
    if w.threads == 1 {
        start = Instant::now();
        append_range(sys, keys, &value, 0..w.records, w.durable)?;
    } else {
        // Every thread is spawned and parked on `gate` before the clock starts, and
        // the clock starts before `gate` lets any of them append.
        let ready = Barrier::new(w.threads + 1);
        let gate = RwLock::new(());
        let closed = gate.write().unwrap_or_else(|p| p.into_inner());
        let (started, result) = thread::scope(|s| {
            let handles: Vec<_> = (0..w.threads)
                .map(|t| {
                    let (value, ready, gate) = (&value, &ready, &gate);
                    let range = share(w.records, w.threads, t);
                    s.spawn(move || {
                        ready.wait();
                        drop(gate.read().unwrap_or_else(|p| p.into_inner()));
                        append_range(sys, keys, value, range, w.durable)
                    })
                })
                .collect();
            ready.wait();
            let started = Instant::now();
            drop(closed);
            let result = handles
                .into_iter()
                .try_for_each(|h| h.join().unwrap_or_else(|p| Err(panic_error(p))));
            (started, result)
        });
        start = started;
        result?;
    }
    if !w.durable {
        sys.flush()?;
    }
    let elapsed = start.elapsed();
    let fsyncs = match (fsyncs_before, sys.fsyncs()?) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    Ok(Ingested { elapsed, fsyncs })
}

/// Thread `t`'s contiguous share of `0..records`.
fn share(records: usize, threads: usize, t: usize) -> Range<usize> {
    records * t / threads..records * (t + 1) / threads
}

fn append_range(
    sys: &dyn System,
    keys: &[Vec<u8>],
    value: &Bytes,
    range: Range<usize>,
    durable: bool,
) -> Result<()> {
    for i in range {
        sys.append(&keys[i % keys.len()], value, durable)?;
    }
    Ok(())
}

/// How many records of key number `k` an ingest of `records` writes.
pub fn expected(records: usize, nkeys: usize, k: usize) -> usize {
    records / nkeys + usize::from(k < records % nkeys)
}

/// Reads back up to 100 keys spread over the written ones and checks their record
/// counts and value bytes. Returns how many keys were checked.
pub fn verify(sys: &dyn System, keys: &[Vec<u8>], w: &Ingest) -> Result<usize> {
    let written = w.records.min(keys.len());
    let mut sample: Vec<usize> = (0..100).map(|j| j * written / 100).collect();
    sample.dedup();
    let asked: Vec<&[u8]> = sample.iter().map(|&k| keys[k].as_slice()).collect();
    let found = sys.read_many(&asked)?;
    for (&k, &(records, bytes)) in sample.iter().zip(&found) {
        let want = expected(w.records, keys.len(), k);
        ensure!(
            records == want && bytes == want * w.value_size,
            "verification: key {k} read back {records} records / {bytes} bytes, \
             wrote {want} / {}",
            want * w.value_size
        );
    }
    Ok(sample.len())
}

/// Reads every record of keys `0..n` (timed) and checks each count against an
/// ingest of `records`. Returns (records read, elapsed).
pub fn read_keys(
    sys: &dyn System,
    keys: &[Vec<u8>],
    n: usize,
    records: usize,
) -> Result<(usize, Duration)> {
    let start = Instant::now();
    let mut total = 0;
    let mut counts = Vec::with_capacity(n);
    for key in &keys[..n] {
        let (got, _bytes) = sys.read(key)?;
        counts.push(got);
        total += got;
    }
    let elapsed = start.elapsed();
    for (k, &got) in counts.iter().enumerate() {
        let want = expected(records, keys.len(), k);
        ensure!(got == want, "key {k}: read {got} records, wrote {want}");
    }
    Ok((total, elapsed))
}

/// Opens `dir` again (timed: the system rebuilds whatever it needs to serve reads),
/// then checks key 0's record count and closes. Returns the open time and the
/// system's note on the open.
pub fn reopen(
    open: Open,
    dir: &Path,
    keys: &[Vec<u8>],
    records: usize,
) -> Result<(Duration, Option<String>)> {
    let start = Instant::now();
    let sys = open(dir)?;
    let elapsed = start.elapsed();
    let note = sys.open_note();
    let (got, _) = sys.read(&keys[0])?;
    let want = expected(records, keys.len(), 0);
    ensure!(
        got == want,
        "after reopen, key 0 has {got} records, wrote {want}"
    );
    sys.close()?;
    Ok((elapsed, note))
}

/// Runs `f`, turning a panic into an error so one failing system never stops the run.
pub fn guard<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panic_error(p)))
}

fn panic_error(payload: Box<dyn Any + Send>) -> anyhow::Error {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string payload".to_string());
    anyhow!("panicked: {msg}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_record_once() {
        for (records, threads) in [(1_000_000, 16), (10, 3), (3, 64)] {
            let mut next = 0;
            for t in 0..threads {
                let r = share(records, threads, t);
                assert_eq!(r.start, next);
                next = r.end;
            }
            assert_eq!(next, records);
        }
    }

    #[test]
    fn expected_counts_sum_to_records() {
        for records in [0, 7, 10_000, 1_000_003] {
            let sum: usize = (0..10_000).map(|k| expected(records, 10_000, k)).sum();
            assert_eq!(sum, records);
        }
    }

    #[test]
    fn guard_turns_a_thread_panic_into_an_error() {
        let err = guard(|| -> Result<()> {
            thread::scope(|s| {
                s.spawn(|| panic!("boom"));
            });
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
    }
}
