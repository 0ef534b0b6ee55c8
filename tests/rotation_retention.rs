//! Segment rotation (by size and by age) and retention (`compact` drops whole sealed
//! segments whose newest record is older than `entry_retention`, deletes their files,
//! and lets appends continue meanwhile).

mod common;

use bytes::Bytes;
use common::{all_segment_files, segment_files, TestResult, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use nano_wal::{Wal, WalOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Length of a seal note (format version 4): a record header and its 16-byte payload.
const SEAL_NOTE_LEN: usize = RECORD_HEADER_LEN + 16;
/// Length of a sync marker (format version 4): a record header and its 8-byte payload.
const MARKER_LEN: usize = RECORD_HEADER_LEN + 8;

fn value_of(i: usize) -> Bytes {
    Bytes::from(format!("{i:06}:{}", "r".repeat(100 + i % 50)))
}

fn expected(range: std::ops::Range<usize>, keys: usize, k: usize) -> Vec<Bytes> {
    range.filter(|i| i % keys == k).map(value_of).collect()
}

#[test]
fn size_rotation_makes_several_segments_and_reads_stay_in_order() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let options = WalOptions::default()
        .with_shards(1)
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(4096);
    let wal = Wal::new(&dir, options.clone())?;
    const N: usize = 300;
    const KEYS: usize = 5;
    for i in 0..N {
        wal.append_entry(format!("size-{}", i % KEYS), value_of(i), i % 25 == 0)?;
    }
    // After a sync the last sync marker is written too (close then adds none), so
    // the byte count below covers everything close leaves on disk.
    wal.sync()?;
    let stats = wal.stats()?;
    assert!(
        stats.segments() > 5,
        "{} segments for ~45 KiB at 4 KiB each",
        stats.segments()
    );
    assert_eq!(stats.records(), N as u64);
    let check = |wal: &Wal| -> TestResult {
        for k in 0..KEYS {
            let got: Vec<Bytes> = wal.enumerate_records(format!("size-{k}"))?.collect();
            assert_eq!(got, expected(0..N, KEYS, k), "size-{k}");
        }
        Ok(())
    };
    check(&wal)?;
    wal.close()?;

    // On disk: as many files as segments, none larger than the limit.
    let files = segment_files(&dir, 0)?;
    assert_eq!(files.len() as u64, stats.segments());
    let mut total = 0;
    for f in &files {
        let len = std::fs::metadata(f)?.len();
        assert!(len <= 4096, "{f:?} is {len} bytes, above max_segment_size");
        total += len;
    }
    assert_eq!(total, stats.bytes(), "stats bytes equal the files' sizes");

    let wal = Wal::new(&dir, options)?;
    assert_eq!(wal.recovery_report().segments, files.len() as u64);
    assert_eq!(wal.stats()?.segments(), files.len() as u64);
    check(&wal)?;
    // Appending after a reopen continues in the newest segment or a new one, in order.
    for i in N..N + 50 {
        wal.append_entry(format!("size-{}", i % KEYS), value_of(i), false)?;
    }
    for k in 0..KEYS {
        let got: Vec<Bytes> = wal.enumerate_records(format!("size-{k}"))?.collect();
        assert_eq!(got, expected(0..N + 50, KEYS, k), "size-{k} after reopen");
    }
    wal.close()?;
    Ok(())
}

#[test]
fn time_rotation_seals_segments_after_their_duration() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    // 400 ms retention in 4 segments: the active segment is sealed after 100 ms.
    let options = WalOptions::default()
        .with_shards(1)
        .with_retention(Duration::from_millis(400))
        .with_segments(4);
    assert_eq!(options.segment_duration(), Duration::from_millis(100));
    let wal = Wal::new(&dir, options.clone())?;
    let mut last = 0;
    let mut i = 0;
    for phase in 0..4 {
        for _ in 0..5 {
            wal.append_entry("timed", value_of(i), false)?;
            i += 1;
        }
        let segments = wal.stats()?.segments();
        assert!(
            segments > last,
            "phase {phase}: {segments} segments, {last} before the pause"
        );
        last = segments;
        thread::sleep(Duration::from_millis(150));
    }
    assert!(last >= 4);
    assert_eq!(
        wal.enumerate_records("timed")?.collect::<Vec<_>>(),
        expected(0..i, 1, 0)
    );
    wal.close()?;
    assert_eq!(segment_files(&dir, 0)?.len() as u64, last);

    let wal = Wal::new(&dir, options.with_retention(Duration::from_secs(3600)))?;
    assert_eq!(
        wal.enumerate_records("timed")?.collect::<Vec<_>>(),
        expected(0..i, 1, 0)
    );
    wal.close()?;
    Ok(())
}

#[test]
fn compact_with_nothing_expired_removes_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let options = WalOptions::default()
        .with_shards(2)
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(4096);
    let wal = Wal::new(&dir, options)?;
    for i in 0..100 {
        wal.append_entry(format!("keep-{}", i % 3), value_of(i), false)?;
    }
    // Non-durable appends are pipelined: sync so every file exists before listing.
    wal.sync()?;
    let files = all_segment_files(&dir)?;
    let report = wal.compact()?;
    assert_eq!(report.segments_removed, 0);
    assert_eq!(report.records_removed, 0);
    assert_eq!(report.bytes_removed, 0);
    assert_eq!(all_segment_files(&dir)?, files);
    for k in 0..3 {
        assert_eq!(
            wal.enumerate_records(format!("keep-{k}"))?
                .collect::<Vec<_>>(),
            expected(0..100, 3, k)
        );
    }
    wal.close()?;
    Ok(())
}

#[test]
fn compact_drops_only_expired_segments() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    // 600 ms retention, 200 ms segments.
    let options = WalOptions::default()
        .with_shards(2)
        .with_retention(Duration::from_millis(600))
        .with_segments(3)
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(8192);
    let wal = Wal::new(&dir, options.clone())?;

    // Old records: under "old-only" and "mixed-*".
    const OLD: usize = 60;
    for i in 0..OLD {
        let key = if i % 2 == 0 {
            "old-only".to_string()
        } else {
            format!("mixed-{}", i % 3)
        };
        wal.append_entry(key, value_of(i), i % 10 == 0)?;
    }
    wal.sync()?;
    let old_files = all_segment_files(&dir)?;
    assert!(!old_files.is_empty());
    // Data bytes, headers included (the active file may be longer: preallocated
    // space past its data, which is cut when it is sealed).
    let old_bytes = wal.stats()?.bytes();

    thread::sleep(Duration::from_millis(700));

    // New records: under "mixed-*" and "new-only".
    const NEW: usize = 40;
    let mut new_model: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
    for i in OLD..OLD + NEW {
        let key = if i % 2 == 0 {
            "new-only".to_string()
        } else {
            format!("mixed-{}", i % 3)
        };
        wal.append_entry(&key, value_of(i), false)?;
        new_model.entry(key).or_default().push(value_of(i));
    }

    let report = wal.compact()?;
    assert_eq!(
        report.segments_removed,
        old_files.len() as u64,
        "{report:?}"
    );
    assert_eq!(report.records_removed, OLD as u64, "{report:?}");
    assert_eq!(report.bytes_removed, old_bytes, "{report:?}");
    for f in &old_files {
        assert!(!f.exists(), "compacted segment {f:?} is still on disk");
    }
    let remaining: BTreeSet<PathBuf> = all_segment_files(&dir)?.into_iter().collect();
    assert!(!remaining.is_empty(), "the new segments stay");

    let check = |wal: &Wal| -> TestResult {
        assert_eq!(
            wal.enumerate_records("old-only")?.count(),
            0,
            "expired records are gone"
        );
        for (key, values) in &new_model {
            assert_eq!(
                &wal.enumerate_records(key)?.collect::<Vec<_>>(),
                values,
                "{key}"
            );
        }
        let keys: BTreeSet<Vec<u8>> = wal.enumerate_keys()?.collect();
        let want: BTreeSet<Vec<u8>> = new_model.keys().map(|k| k.clone().into_bytes()).collect();
        assert_eq!(
            keys, want,
            "a key with only expired records is no longer listed"
        );
        let stats = wal.stats()?;
        assert_eq!(stats.records(), NEW as u64);
        assert_eq!(
            stats.shards.iter().map(|s| s.keys).sum::<u64>(),
            want.len() as u64
        );
        Ok(())
    };
    check(&wal)?;
    assert_eq!(wal.stats()?.segments(), remaining.len() as u64);

    // A second compact right away has nothing more to do.
    let again = wal.compact()?;
    assert_eq!(again.segments_removed, 0, "{again:?}");
    check(&wal)?;
    wal.close()?;

    // The removal is permanent: a reopen does not bring the old records back.
    let wal = Wal::new(&dir, options.with_retention(Duration::from_secs(3600)))?;
    check(&wal)?;
    wal.close()?;
    Ok(())
}

#[test]
fn compact_while_another_thread_keeps_appending() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    // 800 ms retention, 200 ms segments.
    let options = WalOptions::default()
        .with_shards(3)
        .with_retention(Duration::from_millis(800))
        .with_segments(4)
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(16 * 1024);
    let wal = Wal::new(&dir, options.clone())?;
    for i in 0..90 {
        wal.append_entry(format!("old-{}", i % 6), value_of(i), false)?;
    }
    wal.sync()?;
    let old_files = all_segment_files(&dir)?;
    thread::sleep(Duration::from_millis(1000));

    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let wal = wal.clone();
        let stop = stop.clone();
        thread::spawn(move || -> nano_wal::Result<usize> {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 200 {
                wal.append_entry(format!("live-{}", n % 4), value_of(n), n % 16 == 0)?;
                n += 1;
            }
            Ok(n)
        })
    };
    let mut removed = 0;
    let mut records_removed = 0;
    for _ in 0..5 {
        let r = wal.compact()?;
        removed += r.segments_removed;
        records_removed += r.records_removed;
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let n = appender.join().map_err(|_| "appender panicked")??;

    assert_eq!(
        removed,
        old_files.len() as u64,
        "every old segment was compacted away"
    );
    assert_eq!(records_removed, 90);
    for f in &old_files {
        assert!(!f.exists(), "{f:?} still on disk");
    }
    let check = |wal: &Wal| -> TestResult {
        for k in 0..4 {
            let got: Vec<Bytes> = wal.enumerate_records(format!("live-{k}"))?.collect();
            assert_eq!(
                got,
                expected(0..n, 4, k),
                "live-{k}: every append made during compaction"
            );
        }
        for k in 0..6 {
            assert_eq!(wal.enumerate_records(format!("old-{k}"))?.count(), 0);
        }
        assert_eq!(wal.stats()?.records(), n as u64);
        Ok(())
    };
    check(&wal)?;
    wal.close()?;
    let wal = Wal::new(&dir, options.with_retention(Duration::from_secs(3600)))?;
    check(&wal)?;
    wal.close()?;
    Ok(())
}

#[test]
fn a_batch_larger_than_a_segment_spans_several_segments() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let options = WalOptions::default()
        .with_shards(2)
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(2048);
    let wal = Wal::new(&dir, options.clone())?;
    const N: usize = 200;
    const KEYS: usize = 3;
    // ~30 KiB in one call, durable, then the same again non-durable.
    wal.append_batch(
        (0..N).map(|i| (format!("b-{}", i % KEYS), value_of(i))),
        true,
    )?;
    wal.append_batch(
        (N..2 * N).map(|i| (format!("b-{}", i % KEYS), value_of(i))),
        false,
    )?;
    assert!(
        wal.stats()?.segments() > 10,
        "{} segments",
        wal.stats()?.segments()
    );
    let check = |wal: &Wal| -> TestResult {
        for k in 0..KEYS {
            let got: Vec<Bytes> = wal.enumerate_records(format!("b-{k}"))?.collect();
            assert_eq!(got, expected(0..2 * N, KEYS, k), "b-{k}");
        }
        Ok(())
    };
    check(&wal)?;
    wal.close()?;
    for f in all_segment_files(&dir)? {
        assert!(
            std::fs::metadata(&f)?.len() <= 2048,
            "{f:?} above max_segment_size"
        );
    }
    let wal = Wal::new(&dir, options)?;
    assert!(wal.recovery_report().truncated.is_empty());
    check(&wal)?;
    wal.close()?;
    Ok(())
}

#[test]
fn records_of_the_largest_size_fill_the_smallest_segments() -> TestResult {
    // max_segment_size exactly one segment header, a seal note and one maximal record
    // (the smallest size that needed no record past the threshold before it became
    // a threshold): each record still fills a segment.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let (key_max, value_max) = (8usize, 100usize);
    let options = WalOptions::default()
        .with_shards(1)
        .with_max_key_size(key_max)
        .with_max_record_size(value_max)
        .with_max_segment_size(
            (SEGMENT_HEADER_LEN + SEAL_NOTE_LEN + RECORD_HEADER_LEN + key_max + value_max) as u64,
        );
    let wal = Wal::new(&dir, options.clone())?;
    let values: Vec<Bytes> = (0..6u8)
        .map(|i| Bytes::from(vec![b'a' + i; value_max]))
        .collect();
    for v in &values {
        wal.append_entry("12345678", v.clone(), false)?;
    }
    assert_eq!(
        wal.stats()?.segments(),
        6,
        "each maximal record fills one segment"
    );
    assert_eq!(
        wal.enumerate_records("12345678")?.collect::<Vec<_>>(),
        values
    );
    wal.close()?;
    // Six segments, each one record (the first a header and the record, the others
    // full with a header, their seal note and the record), and a seventh that close
    // started for the sync marker vouching for them (no room left in the sixth): a
    // header, its seal note and one marker, written once the sixth segment's seal was
    // synced.
    let record = RECORD_HEADER_LEN + key_max + value_max;
    let first = (SEGMENT_HEADER_LEN + record) as u64;
    let full = (SEGMENT_HEADER_LEN + SEAL_NOTE_LEN + record) as u64;
    let files = segment_files(&dir, 0)?;
    assert_eq!(files.len(), 7);
    assert_eq!(std::fs::metadata(&files[0])?.len(), first);
    for f in &files[1..6] {
        assert_eq!(std::fs::metadata(f)?.len(), full);
    }
    let last = std::fs::read(&files[6])?;
    assert_eq!(last.len(), SEGMENT_HEADER_LEN + SEAL_NOTE_LEN + MARKER_LEN);
    assert_eq!(common::seal_note_of(&last), Some((6, full)));
    let vouched: Vec<u64> = common::walk_markers(&last)
        .iter()
        .map(|m| m.synced_through)
        .collect();
    assert_eq!(vouched, vec![6]);
    let wal = Wal::new(&dir, options)?;
    assert_eq!(
        wal.enumerate_records("12345678")?.collect::<Vec<_>>(),
        values
    );
    wal.close()?;
    Ok(())
}

/// One shard of 4 KiB segments: three records with 1,000-byte values fill one, so
/// every third append after the first segment's seals one.
fn small_segments() -> WalOptions {
    WalOptions::default()
        .with_shards(1)
        .with_max_key_size(8)
        .with_max_record_size(1000)
        .with_max_segment_size(4096)
}

/// How long the seal syncer leaves a job unasked (`shard::wait::DEFER_LIMIT`;
/// these two copies of crate-private limits are checked against the crate's source
/// by `the_copies_of_the_crates_limits_match`).
const DEFER_LIMIT: Duration = Duration::from_secs(1);
/// How long a shard's actor waits without a request before its seal syncer runs what
/// it deferred (`shard::wait::IDLE_SYNC_AFTER`).
const IDLE_SYNC_AFTER: Duration = Duration::from_millis(10);

#[test]
fn the_copies_of_the_crates_limits_match() {
    let wait = include_str!("../src/shard/wait.rs");
    let defer = format!(
        "const DEFER_LIMIT: std::time::Duration = std::time::Duration::from_secs({});",
        DEFER_LIMIT.as_secs()
    );
    let idle = format!(
        "const IDLE_SYNC_AFTER: std::time::Duration = std::time::Duration::from_millis({});",
        IDLE_SYNC_AFTER.as_millis()
    );
    assert!(wait.contains(&defer), "src/shard/wait.rs lacks {defer}");
    assert!(wait.contains(&idle), "src/shard/wait.rs lacks {idle}");
}

#[test]
fn seal_fsyncs_wait_until_a_durable_call_needs_them() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::new(tmp.path().join("wal"), small_segments())?;
    let value = Bytes::from(vec![b'v'; 1000]);
    // The actor idles first: its first request must end the idle spell, or the
    // seals below would be synced at once.
    thread::sleep(IDLE_SYNC_AFTER * 3);
    let mut last = std::time::Instant::now();
    let mut longest_gap = Duration::ZERO;
    let mut append = |key: &str, value: Bytes| -> nano_wal::Result<()> {
        wal.append_entry(key, value, false)?;
        longest_gap = longest_gap.max(last.elapsed());
        last = std::time::Instant::now();
        Ok(())
    };
    for _ in 0..12 {
        append("k", value.clone())?;
    }
    // Then a request every millisecond for a while, which keeps the shard busy: had
    // the idle spell outlived the first request, the syncer would sync meanwhile.
    for _ in 0..8 {
        thread::sleep(Duration::from_millis(1));
        append("t", Bytes::from_static(b"tick"))?;
    }
    let stats = wal.stats()?;
    let sealed = stats.segments() - 1;
    assert!((2..=3).contains(&sealed), "{sealed} sealed segments");
    // The actor never went without a request for `IDLE_SYNC_AFTER` (always, unless
    // this machine stalled): nothing was synced, since nothing needed it.
    if longest_gap < IDLE_SYNC_AFTER / 2 {
        assert_eq!(stats.fsyncs(), 0, "a seal synced before anything needed it");
    } else {
        eprintln!("a gap of {longest_gap:?} between appends: the no-fsync check was skipped");
    }
    // A sync needs every seal before it: one fsync each, and one of the active
    // segment.
    wal.sync()?;
    assert_eq!(wal.stats()?.fsyncs(), sealed + 1);
    wal.close()?;
    Ok(())
}

#[test]
fn deferred_seal_fsyncs_run_unasked_when_too_many() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::new(tmp.path().join("wal"), small_segments())?;
    let value = Bytes::from(vec![b'v'; 1000]);
    // 16 seals: 33 syncer jobs (each new segment's directory fsync too). At most 8
    // wait unrun (four seals and four directory fsyncs) and one more may be running,
    // so at least 11 seals are synced without any durable call.
    for _ in 0..49 {
        wal.append_entry("k", value.clone(), false)?;
    }
    let stats = wal.stats()?;
    let sealed = stats.segments() - 1;
    assert_eq!(sealed, 16);
    assert!(
        stats.fsyncs() >= sealed - 5,
        "{} of {sealed} seals synced",
        stats.fsyncs()
    );
    // The rest run later, still unasked (polling `stats` sends the actor nothing).
    let deadline = std::time::Instant::now() + DEFER_LIMIT * 20;
    while wal.stats()?.fsyncs() < sealed && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(wal.stats()?.fsyncs(), sealed, "deferred seals never synced");
    wal.close()?;
    Ok(())
}

#[test]
fn deferred_seal_fsyncs_run_once_the_shard_is_idle() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::new(tmp.path().join("wal"), small_segments())?;
    let value = Bytes::from(vec![b'v'; 1000]);
    let started = std::time::Instant::now();
    // Two or three seals: at most 7 syncer jobs, fewer than the count bound, so none
    // runs during the ingest.
    for _ in 0..12 {
        wal.append_entry("k", value.clone(), false)?;
    }
    let sealed = wal.stats()?.segments() - 1;
    assert!((2..=3).contains(&sealed), "{sealed} sealed segments");
    // They run once the actor has had no request for `IDLE_SYNC_AFTER`, well before
    // the first of them has waited `DEFER_LIMIT` (that bound is `syncer::tests`').
    while wal.stats()?.fsyncs() < sealed && started.elapsed() < DEFER_LIMIT * 9 / 10 {
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        wal.stats()?.fsyncs(),
        sealed,
        "deferred seals not synced {:?} after the ingest began, though the shard was idle",
        started.elapsed()
    );
    wal.close()?;
    Ok(())
}

#[test]
fn the_segment_after_one_retention_sealed_and_dropped_names_it_in_its_seal_note() -> TestResult {
    // `compact` seals the active segment when it is due and drops it in the same
    // step when it expired: the next segment's seal note must still name it, since
    // its file stays on disk until compaction unlinks it (a crash meanwhile leaves it
    // there, sealed and not yet synced).
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let options = WalOptions::default()
        .with_shards(1)
        .with_retention(Duration::from_millis(300))
        .with_segments(3);
    let wal = Wal::new(&dir, options)?;
    let value = Bytes::from(vec![b'o'; 100]);
    for _ in 0..3 {
        wal.append_entry("k", value.clone(), false)?;
    }
    thread::sleep(Duration::from_millis(400));
    let report = wal.compact()?;
    assert_eq!(report.segments_removed, 1);
    wal.append_entry("k", value.clone(), false)?;
    wal.stats()?;
    let files = segment_files(&dir, 0)?;
    assert_eq!(files.len(), 1, "{files:?}");
    let sealed_len = (SEGMENT_HEADER_LEN + 3 * (RECORD_HEADER_LEN + 1 + 100)) as u64;
    assert_eq!(
        common::seal_note_of(&std::fs::read(&files[0])?),
        Some((1, sealed_len))
    );
    wal.close()?;
    Ok(())
}

#[test]
fn compacting_an_idle_shard_again_removes_nothing() -> TestResult {
    // A compaction leaves a sync marker vouching for what it removed, in a segment
    // of its own when it retired the active one. Later compactions of the idle shard
    // must not retire that record-less segment (and start another) each time.
    let tmp = tempfile::tempdir()?;
    let options = small_segments()
        .with_retention(Duration::from_millis(2))
        .with_segments(2);
    let wal = Wal::new(tmp.path().join("wal"), options)?;
    for _ in 0..9 {
        wal.append_entry("k", Bytes::from(vec![b'v'; 1000]), false)?;
    }
    thread::sleep(Duration::from_millis(10));
    let first = wal.compact()?;
    assert!(first.segments_removed >= 3, "{first:?}");
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(10));
        let again = wal.compact()?;
        assert_eq!(again.segments_removed, 0, "{again:?}");
    }
    assert_eq!(wal.enumerate_records("k")?.count(), 0);
    wal.close()?;
    Ok(())
}
