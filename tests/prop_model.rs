//! Model-based property tests: random sequences of operations run against a real
//! `Wal` and against a model (`BTreeMap<key, Vec<value>>`, records of a key in append
//! order), compared after every read and at the end of every case.
//!
//! Operations: non-durable and durable appends, `append_batch` (durable or not,
//! possibly empty, possibly repeating a key), refused input (over-long key or value,
//! alone and inside a batch: nothing written), `sync`, reads of one key,
//! `enumerate_keys`, `stats`, `compact`, close + reopen and drop + reopen (with a
//! different `shards` option: the manifest's count wins). Keys include the empty key
//! and non-UTF-8 bytes; segments are small so rotation happens; 1 to 4 shards.
//!
//! `long_retention_model`: nothing ever expires, so `compact` must remove nothing.
//! `short_retention_model`: retention of a few milliseconds. A plain `compact` may
//! drop old segments at any time, so what is checked is what holds whatever the
//! clock did: per shard, compaction removes whole segments oldest first, so every key
//! keeps a suffix of its records, and the report counts exactly what disappeared.
//! `Expire` sleeps past the retention first; then every record written before the
//! sleep is older than the cutoff and every segment is due to be sealed, so `compact`
//! must remove everything.

mod common;

use bytes::Bytes;
use nano_wal::{Wal, WalError, WalOptions};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

type Model = BTreeMap<Vec<u8>, Vec<Bytes>>;
type Outcome = Result<(), TestCaseError>;

const MAX_KEY: usize = 24;
const MAX_VALUE: usize = 160;
/// Retention of the short-retention model.
const SHORT_RETENTION: Duration = Duration::from_millis(15);

#[derive(Debug, Clone)]
enum Op {
    Append {
        key: Vec<u8>,
        value: Vec<u8>,
        durable: bool,
    },
    Batch {
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        durable: bool,
    },
    /// An over-long key or value, alone (`in_batch == false`) or as the last entry of
    /// an otherwise valid batch: refused, nothing written.
    Refused {
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        long_key: bool,
        in_batch: bool,
    },
    Sync,
    Read {
        key: Vec<u8>,
    },
    Keys,
    Stats,
    Compact,
    /// Sleep past the retention, then compact (short-retention model only).
    Expire,
    /// `close()` then reopen, asking for `shards` (ignored: the manifest wins).
    CloseReopen {
        shards: usize,
    },
    /// Drop every handle without calling `close()`, then reopen.
    DropReopen,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // A small fixed pool, so keys repeat and records pile up per key.
        4 => prop::sample::select(vec![
            Vec::new(),
            b"a".to_vec(),
            b"user:1".to_vec(),
            vec![0xff, 0xfe, 0x00],
            vec![0x00],
            vec![0xc3, 0x28], // invalid UTF-8 sequence
            "ключ".as_bytes().to_vec(),
            vec![b'k'; MAX_KEY],
        ]),
        1 => prop::collection::vec(any::<u8>(), 0..=MAX_KEY),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        6 => prop::collection::vec(any::<u8>(), 0..=MAX_VALUE),
    ]
}

fn entries(max: usize) -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    prop::collection::vec((key(), value()), 0..=max)
}

fn op(expire: bool) -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (key(), value(), any::<bool>())
            .prop_map(|(key, value, durable)| Op::Append { key, value, durable }),
        4 => (entries(12), any::<bool>())
            .prop_map(|(entries, durable)| Op::Batch { entries, durable }),
        1 => (entries(3), any::<bool>(), any::<bool>())
            .prop_map(|(entries, long_key, in_batch)| Op::Refused { entries, long_key, in_batch }),
        1 => Just(Op::Sync),
        5 => key().prop_map(|key| Op::Read { key }),
        2 => Just(Op::Keys),
        1 => Just(Op::Stats),
        2 => Just(Op::Compact),
        1 => Just(if expire { Op::Expire } else { Op::Compact }),
        2 => (1usize..=4).prop_map(|shards| Op::CloseReopen { shards }),
        1 => Just(Op::DropReopen),
    ]
}

/// Options of a case: small segments so records rotate every few appends.
fn options(shards: usize, max_segment_size: u64, short: bool) -> WalOptions {
    let o = WalOptions::default()
        .with_shards(shards)
        .with_max_key_size(MAX_KEY)
        .with_max_record_size(MAX_VALUE)
        .with_max_segment_size(max_segment_size);
    if short {
        o.with_retention(SHORT_RETENTION).with_segments(3)
    } else {
        o
    }
}

fn wal_error(e: WalError) -> TestCaseError {
    TestCaseError::fail(format!("unexpected WalError: {e:?}"))
}

fn io_error(e: std::io::Error) -> TestCaseError {
    TestCaseError::fail(format!("unexpected io::Error: {e:?}"))
}

fn total(model: &Model) -> u64 {
    model.values().map(|v| v.len() as u64).sum()
}

fn read(wal: &Wal, key: &[u8]) -> Result<Vec<Bytes>, TestCaseError> {
    Ok(wal.enumerate_records(key).map_err(wal_error)?.collect())
}

/// Every key of the model reads back exactly; the key set and the record count match.
fn check_all(wal: &Wal, model: &Model) -> Outcome {
    let keys: Vec<Vec<u8>> = wal.enumerate_keys().map_err(wal_error)?.collect();
    let set: BTreeSet<Vec<u8>> = keys.iter().cloned().collect();
    prop_assert_eq!(set.len(), keys.len(), "enumerate_keys repeated a key");
    prop_assert_eq!(&set, &model.keys().cloned().collect::<BTreeSet<_>>());
    for (key, want) in model {
        prop_assert_eq!(&read(wal, key)?, want, "key {:?}", key);
    }
    prop_assert_eq!(wal.stats().map_err(wal_error)?.records(), total(model));
    Ok(())
}

/// After a compaction that may have expired records: each key kept a suffix of its
/// records (segments go oldest first), and the report counts what disappeared. The
/// model becomes what is left.
fn adopt_suffixes(wal: &Wal, model: &mut Model, removed_records: u64) -> Outcome {
    let mut gone = 0u64;
    let mut next = Model::new();
    for (key, want) in model.iter() {
        let got = read(wal, key)?;
        prop_assert!(got.len() <= want.len(), "key {:?} grew", key);
        let cut = want.len() - got.len();
        prop_assert_eq!(&got[..], &want[cut..], "key {:?}: not a suffix", key);
        gone += cut as u64;
        if !got.is_empty() {
            next.insert(key.clone(), got);
        }
    }
    prop_assert_eq!(gone, removed_records, "compaction report vs records lost");
    *model = next;
    check_all(wal, model)
}

fn is_refusal(e: &WalError, long_key: bool) -> bool {
    if long_key {
        matches!(e, WalError::KeyTooLong { len, max } if *len == MAX_KEY + 1 && *max == MAX_KEY)
    } else {
        matches!(e, WalError::RecordTooLarge { len, max } if *len == MAX_VALUE + 1 && *max == MAX_VALUE)
    }
}

fn run(dir: &Path, opts: WalOptions, ops: Vec<Op>, short: bool) -> Outcome {
    let created_shards = opts.shards;
    let mut wal = Wal::new(dir, opts.clone()).map_err(wal_error)?;
    let mut model = Model::new();
    for op in ops {
        match op {
            Op::Append {
                key,
                value,
                durable,
            } => {
                let value = Bytes::from(value);
                wal.append_entry(&key, value.clone(), durable)
                    .map_err(wal_error)?;
                model.entry(key).or_default().push(value);
            }
            Op::Batch { entries, durable } => {
                let entries: Vec<(Vec<u8>, Bytes)> = entries
                    .into_iter()
                    .map(|(k, v)| (k, Bytes::from(v)))
                    .collect();
                wal.append_batch(entries.clone(), durable)
                    .map_err(wal_error)?;
                for (k, v) in entries {
                    model.entry(k).or_default().push(v);
                }
            }
            Op::Refused {
                mut entries,
                long_key,
                in_batch,
            } => {
                let bad = if long_key {
                    (vec![b'x'; MAX_KEY + 1], Vec::new())
                } else {
                    (b"a".to_vec(), vec![7; MAX_VALUE + 1])
                };
                let result = if in_batch {
                    entries.push(bad);
                    wal.append_batch(
                        entries
                            .into_iter()
                            .map(|(k, v)| (k, Bytes::from(v)))
                            .collect::<Vec<_>>(),
                        false,
                    )
                } else {
                    wal.append_entry(&bad.0, Bytes::from(bad.1), true)
                };
                match result {
                    Err(e) => prop_assert!(is_refusal(&e, long_key), "got {:?}", e),
                    Ok(()) => prop_assert!(false, "over-long input accepted"),
                }
                check_all(&wal, &model)?;
            }
            Op::Sync => wal.sync().map_err(wal_error)?,
            Op::Read { key } => {
                let want = model.get(&key).cloned().unwrap_or_default();
                prop_assert_eq!(read(&wal, &key)?, want, "key {:?}", key);
            }
            Op::Keys => {
                let keys: Vec<Vec<u8>> = wal.enumerate_keys().map_err(wal_error)?.collect();
                prop_assert_eq!(
                    keys.iter().cloned().collect::<BTreeSet<_>>().len(),
                    keys.len(),
                    "enumerate_keys repeated a key"
                );
                prop_assert_eq!(
                    keys.into_iter().collect::<BTreeSet<_>>(),
                    model.keys().cloned().collect::<BTreeSet<_>>()
                );
            }
            Op::Stats => {
                let stats = wal.stats().map_err(wal_error)?;
                prop_assert_eq!(stats.records(), total(&model));
                prop_assert_eq!(stats.shards.len(), created_shards);
            }
            Op::Compact => {
                let report = wal.compact().map_err(wal_error)?;
                if short {
                    adopt_suffixes(&wal, &mut model, report.records_removed)?;
                } else {
                    prop_assert_eq!(report.segments_removed, 0);
                    prop_assert_eq!(report.records_removed, 0);
                    check_all(&wal, &model)?;
                }
            }
            Op::Expire => {
                // Every queued append is written (and timestamped) before the sleep,
                // which is strictly longer than the retention (it never returns early).
                wal.sync().map_err(wal_error)?;
                std::thread::sleep(SHORT_RETENTION + Duration::from_millis(2));
                let report = wal.compact().map_err(wal_error)?;
                prop_assert_eq!(report.records_removed, total(&model));
                model.clear();
                check_all(&wal, &model)?;
            }
            Op::CloseReopen { shards } => {
                wal.close().map_err(wal_error)?;
                prop_assert!(matches!(wal.sync(), Err(WalError::Closed)));
                wal = Wal::new(dir, opts.clone().with_shards(shards)).map_err(wal_error)?;
                prop_assert_eq!(wal.shard_count(), created_shards);
                let report = wal.recovery_report();
                prop_assert!(report.truncated.is_empty(), "{:?}", report);
                prop_assert!(report.skipped.is_empty(), "{:?}", report);
                prop_assert_eq!(report.records, total(&model));
                check_all(&wal, &model)?;
            }
            Op::DropReopen => {
                drop(wal);
                wal = Wal::new(dir, opts.clone()).map_err(wal_error)?;
                prop_assert!(wal.recovery_report().truncated.is_empty());
                prop_assert_eq!(wal.recovery_report().records, total(&model));
                check_all(&wal, &model)?;
            }
        }
    }
    check_all(&wal, &model)?;
    wal.close().map_err(wal_error)?;
    // A final reopen holds everything, and every closed segment ends at its last
    // record (a clean close leaves no preallocated space behind).
    let wal = Wal::new(dir, opts).map_err(wal_error)?;
    check_all(&wal, &model)?;
    wal.close().map_err(wal_error)?;
    for seg in common::all_segment_files(dir).map_err(io_error)? {
        let data = std::fs::read(&seg).map_err(io_error)?;
        let end = common::walked_end(&data);
        prop_assert_eq!(
            end,
            data.len() as u64,
            "{:?} has bytes past its records",
            seg
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn long_retention_model(
        shards in 1usize..=4,
        max_segment_size in 300u64..1500,
        ops in prop::collection::vec(op(false), 1..60),
    ) {
        let tmp = tempfile::tempdir().map_err(io_error)?;
        run(&tmp.path().join("wal"), options(shards, max_segment_size, false), ops, false)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        max_shrink_iters: 1000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn short_retention_model(
        shards in 1usize..=4,
        max_segment_size in 300u64..1500,
        ops in prop::collection::vec(op(true), 1..40),
    ) {
        let tmp = tempfile::tempdir().map_err(io_error)?;
        run(&tmp.path().join("wal"), options(shards, max_segment_size, true), ops, true)?;
    }
}

#[test]
fn rotation_happens_with_these_options() -> common::TestResult {
    // The property tests rely on small segments rotating: check that they do.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options(1, 300, false))?;
    for i in 0..20u8 {
        wal.append_entry([i % 3], Bytes::from(vec![i; MAX_VALUE]), i % 5 == 0)?;
    }
    assert!(wal.stats()?.segments() >= 10, "{:?}", wal.stats()?);
    wal.close()?;
    Ok(())
}
