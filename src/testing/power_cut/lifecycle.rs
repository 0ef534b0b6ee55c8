//! Power cuts across a WAL's life, every call of it over the memory store: the
//! creation (the manifest's first write, the shard directories), a close (the index
//! checkpoints' writes), a reopen (the checkpoints' removal) and a second close (new
//! checkpoints where the old may still be), and the open of a version-1 WAL (the
//! manifest's upgrade). Cuts fall at every call of the open and the closes and at
//! random ones between; [`named`](super::named) draws what a disk holds of the
//! manifest and the checkpoints, [`disk_after_cut`] of the segments.
//!
//! Each state must hold the old file or the new one whole under `MANIFEST` and
//! `INDEX`, never a torn one (the bytes are compared with what was written), and
//! reopen with every acknowledged append, as in the other cases. The checkpoints
//! are given the stamps of the real files that hold the bytes they describe (the
//! memory store's stamps name no real file), so the reopen loads them where a disk
//! would. Recovery itself still reads files by path: the reopens between the runs
//! recover a copy of the memory store's files and hand the segments back to it.

use super::*;
use crate::format::checkpoint::{self, CRC_LEN, HEADER_LEN, SEGMENT_ENTRY_LEN};
use crate::format::names::{shard_dir, MANIFEST_FILE, MANIFEST_TMP_FILE};
use named::{write_wal, Named};
use std::path::PathBuf;
use std::sync::Arc;

/// The options of these runs: the model's, with index checkpoints.
fn options() -> WalOptions {
    model_options().with_index_checkpoint(true)
}

/// Opens the WAL in `storage` through the real open, each shard recovered from the
/// copy of its files at `real` (`None`: a new WAL, nothing to recover).
fn open_over(storage: &Arc<MemStorage>, options: &WalOptions, real: Option<&Path>) -> Wal {
    let recover = |shard: u32, salt| match real {
        None => Ok(crate::recovery::RecoveredShard::empty()),
        Some(dir) => crate::recovery::recover_shard(
            &dir.join(shard_dir_name(shard)),
            shard,
            RecoveryMode::Strict,
            false,
            salt,
        ),
    };
    let mut opened = crate::open::open_with(&**storage, options, &recover).expect("open");
    let io_of = |shard, sequence| {
        crate::io::Storage::open_segment(&**storage, shard, sequence).expect("in memory")
    };
    hand_over(&mut opened.shards, io_of);
    let (shards, lock, report) = (opened.shards, Some(opened.lock), opened.report);
    let storage = storage.clone();
    Wal::start(
        PathBuf::from("mem"),
        options.clone(),
        storage,
        shards,
        lock,
        report,
        opened.salt,
    )
    .expect("start over memory")
}

/// Writes the files `ops` leave in the page cache to `dir`, for a reopen's recovery.
fn copy_out(ops: &[Op], dir: &Path) {
    write_wal(
        dir,
        &Named::replay(ops).page_cache(),
        &page_cache(ops),
        true,
    );
}

/// Makes each append durable at `closed` at the latest (a close that returned).
fn closed_at(appends: &mut [Append], closed: usize) {
    for a in appends {
        a.durable_at = Some(a.durable_at.map_or(closed, |at| at.min(closed)));
    }
}

/// A run of the life: its log, its appends, where to cut (every call of the opens
/// and closes), its salt, and what was under `MANIFEST` before the log.
struct Life {
    ops: Vec<Op>,
    appends: Vec<Append>,
    points: Vec<usize>,
    salt: u32,
    /// The calls before the run's own: what was on disk before it (the shard
    /// directories too, if any).
    before: usize,
    old_manifest: Option<Vec<u8>>,
    /// The fixture's records, which must all come back (the upgrade).
    fixture: Vec<(Vec<u8>, Vec<Bytes>)>,
}

/// Create, append, close; reopen, append, close: two runs over one memory store.
fn a_wals_life(seed: u64, rng: &mut Rng, tmp: &Path) -> Life {
    let options = options();
    let log = OpLog::default();
    let storage = recording_store(seed, &log, 2048);
    let mut points = Vec::new();
    let wal = open_over(&storage, &options, None);
    points.extend(0..=log_len(&log));
    let (mut appends, _) = workload(&wal, &log, 0, seed, rng, 150, 0, "", false);
    let closing = log_len(&log);
    wal.close().expect("close");
    points.extend(closing..=log_len(&log));
    closed_at(&mut appends, log_len(&log));
    let real = tmp.join("reopened");
    let ops = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    copy_out(&ops, &real);
    let reopening = log_len(&log);
    let wal = open_over(&storage, &options, Some(&real));
    points.extend(reopening..=log_len(&log));
    let (mut second, _) = workload(&wal, &log, 0, seed, rng, 150, 0, "b", false);
    let closing = log_len(&log);
    wal.close().expect("close");
    points.extend(closing..=log_len(&log));
    closed_at(&mut second, log_len(&log));
    appends.extend(second);
    let salt = crate::open::read_manifest(&*storage)
        .expect("read")
        .expect("a manifest")
        .salt
        .expect("a salt");
    let ops = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Life {
        ops,
        appends,
        points,
        salt,
        before: 0,
        old_manifest: None,
        fixture: Vec::new(),
    }
}

/// Opens the version-1 WAL of `tests/fixtures/wal-v3` over a memory store holding
/// its files (the log starts with calls that leave them on disk), appends, closes.
fn an_upgrade(seed: u64, rng: &mut Rng, tmp: &Path) -> Life {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wal-v3");
    let real = tmp.join("fixture");
    let old = std::fs::read(fixture.join(MANIFEST_FILE)).expect("fixture manifest");
    let mut segments = BTreeMap::new();
    for shard in 0..SHARDS as u32 {
        let from = fixture.join(shard_dir_name(shard));
        for entry in std::fs::read_dir(&from).expect("fixture shard") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).expect("name");
            let sequence = crate::format::names::parse_segment_file_name(name).expect("a segment");
            segments.insert((shard, sequence), std::fs::read(&path).expect("segment"));
        }
    }
    let log = OpLog::default();
    let storage = recording_store(seed, &log, 2048);
    let manifest = PathBuf::from(MANIFEST_FILE);
    storage.adopt_file(&manifest, old.clone());
    for (&(shard, sequence), bytes) in &segments {
        storage.adopt(shard, sequence, bytes.clone());
    }
    let mut ops = durable_ops(&segments);
    ops.extend([
        Op::Put {
            path: manifest.clone(),
            bytes: old.clone(),
        },
        Op::SyncFile(manifest),
        Op::SyncRoot,
    ]);
    let base = ops.len();
    copy_out(&ops, &real);
    let options = options().with_max_key_size(64);
    let wal = open_over(&storage, &options, Some(&real));
    let mut points: Vec<usize> = (base..=base + log_len(&log)).collect();
    // Every record of the fixture (300 over 7 keys: `tests/format_upgrade.rs`).
    let fixture = (0..7)
        .map(|k| {
            let key = format!("key-{k}").into_bytes();
            let records: Vec<Bytes> = wal.enumerate_records(&key).expect("read").collect();
            assert_eq!(records.len(), 300 / 7 + usize::from(k < 300 % 7));
            (key, records)
        })
        .collect();
    let (mut appends, _) = workload(&wal, &log, base, seed, rng, 100, 0, "", false);
    let closing = base + log_len(&log);
    wal.close().expect("close");
    points.extend(closing..=base + log_len(&log));
    closed_at(&mut appends, base + log_len(&log));
    let salt = crate::open::read_manifest(&*storage)
        .expect("read")
        .expect("a manifest")
        .salt
        .expect("upgraded");
    ops.extend(
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned(),
    );
    Life {
        ops,
        appends,
        points,
        salt,
        before: base,
        old_manifest: Some(old),
        fixture,
    }
}

/// The bytes of each `Op::Put` of `tmp` in `ops`, with where it is in the log.
fn puts<'a>(ops: &'a [Op], tmp: &Path) -> Vec<(usize, &'a [u8])> {
    ops.iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Put { path, bytes } if path == tmp => Some((i, &bytes[..])),
            _ => None,
        })
        .collect()
}

/// Gives the checkpoint `bytes` of shard `shard`, written when the segments were
/// `then`, the stamps of the real files in `sdir` that still hold those bytes
/// (`now`), as a disk's own stamps would be; the others keep stamps no file has.
fn restamp(
    bytes: &mut [u8],
    shard: u32,
    then: &BTreeMap<FileId, Vec<u8>>,
    now: &BTreeMap<FileId, Vec<u8>>,
    sdir: &Path,
) {
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&bytes[..HEADER_LEN]);
    let len = bytes.len() as u64;
    let front = checkpoint::front_len(&header, len).expect("a whole checkpoint");
    let cp = checkpoint::decode(&bytes[..front + CRC_LEN], len, shard).expect("whole");
    for (i, s) in cp.segments.iter().enumerate() {
        let id = (shard, s.sequence);
        if then.get(&id).is_none_or(|b| now.get(&id) != Some(b)) {
            continue;
        }
        let meta = std::fs::symlink_metadata(sdir.join(segment_file_name(s.sequence)));
        let stamp = crate::format::stamp::FileStamp::of(&meta.expect("the segment"));
        // The stamp's fields in the segment's entry, after its sequence, creation,
        // newest record and record count (`format/checkpoint.rs`).
        let mut w = crate::format::codec::Writer::default();
        w.u64(stamp.len).u64(stamp.inode);
        w.i64(stamp.mtime.0).i64(stamp.mtime.1);
        w.i64(stamp.ctime.0).i64(stamp.ctime.1);
        let at = HEADER_LEN + i * SEGMENT_ENTRY_LEN + 32;
        bytes[at..at + 48].copy_from_slice(&w.into_vec());
    }
    let crc = crc32c::crc32c(&bytes[..front]);
    bytes[front..front + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// What the cuts of a life covered: states of each kind, by name.
type Figures = BTreeMap<String, usize>;

/// Cuts `life` at its points and at `cuts` random ones, `variants` disks each, and
/// reopens each disk (see the module docs).
fn cut_life(
    life: &Life,
    seed: u64,
    rng: &mut Rng,
    cuts: usize,
    variants: usize,
    tmp: &Path,
) -> Figures {
    let Life { ops, appends, .. } = life;
    let options = options().with_max_key_size(64);
    let skipping = options
        .clone()
        .with_recovery_mode(RecoveryMode::SkipCorrupted);
    let before = life.before;
    check_markers(
        &ops[..before],
        &ops[before..],
        life.salt,
        &format!("seed {seed}"),
    );
    let mut points = life.points.clone();
    points.extend(cut_points(ops, before, cuts, rng));
    let none_removable = vec![false; appends.len()];
    let mut figures = Figures::new();
    let count = |figures: &mut Figures, what: &str, n: usize| {
        *figures.entry(what.to_string()).or_default() += n;
    };
    for (n, &cut) in points.iter().enumerate() {
        for v in 0..variants {
            let case = format!(
                "seed {seed}, cut after {cut} of {} ops, variant {v}",
                ops.len()
            );
            let dir = tmp.join(format!("cut-{n}-{v}"));
            let (segments, _) = disk_after_cut(&ops[..cut], rng, false);
            let mut named = Named::replay(&ops[..cut]).after_cut(rng);
            count(&mut figures, "states", 1);
            // MANIFEST: what was there before the log, or what a write put there.
            let written = puts(&ops[..cut], Path::new(MANIFEST_TMP_FILE));
            let kind = match named.files.get(Path::new(MANIFEST_FILE)) {
                None => "manifest absent",
                Some(m) if life.old_manifest.as_ref() == Some(m) => "manifest old",
                Some(m) => {
                    assert!(
                        written.iter().any(|(_, w)| w == m),
                        "{case}: a torn manifest"
                    );
                    "manifest new"
                }
            };
            count(&mut figures, kind, 1);
            write_wal(&dir, &named, &segments, before > 0);
            // INDEX: what one close wrote, whole; given the real files' stamps.
            for shard in 0..SHARDS as u32 {
                let (path, tmp_path) = crate::format::names::checkpoint_paths(shard);
                let Some(bytes) = named.files.get_mut(&path) else {
                    count(&mut figures, "checkpoint absent", 1);
                    continue;
                };
                let written = puts(&ops[..cut], &tmp_path);
                let Some(k) = written.iter().position(|(_, w)| w == bytes) else {
                    panic!("{case}: a torn checkpoint of shard {shard}")
                };
                count(&mut figures, &format!("checkpoint of close {}", k + 1), 1);
                let then = page_cache(&ops[..written[k].0]);
                restamp(bytes, shard, &then, &segments, &dir.join(shard_dir(shard)));
                std::fs::write(dir.join(&path), &bytes[..]).expect("checkpoint");
            }
            match Wal::new(&dir, options.clone()) {
                Ok(wal) => {
                    let loaded = wal.recovery_report().checkpoints_loaded as usize;
                    count(&mut figures, "checkpoints loaded", loaded);
                    check(&wal, appends, &none_removable, cut, &case);
                    for (key, records) in &life.fixture {
                        let got: Vec<Bytes> = wal.enumerate_records(key).expect("read").collect();
                        assert_eq!(&got, records, "{case}: key {key:?} of the fixture");
                    }
                    durable_after_recovery(&wal, &dir, &options, &case);
                    std::fs::remove_dir_all(&dir).expect("cleanup");
                }
                Err(crate::WalError::Corruption { path, reason, .. }) if ambiguous(&reason) => {
                    count(&mut figures, "refused", 1);
                    let expected = Expected {
                        appends,
                        removable: &none_removable,
                        cut,
                    };
                    after_refusal(&dir, &path, &segments, &skipping, &expected, &case);
                }
                Err(e) => reopen_failed(&ops[..cut], &segments, &e, &case),
            }
        }
    }
    figures
}

fn report(what: &str, figures: &Figures) {
    let list: Vec<String> = figures.iter().map(|(k, v)| format!("{k} {v}")).collect();
    eprintln!("{what}: {}", list.join(", "));
}

/// A cut during the manifest's first write, a close's checkpoint writes and a
/// reopen's removal of them: the old file or the new one, whole, and nothing
/// acknowledged lost.
#[test]
fn power_cuts_across_a_wals_life_leave_its_manifest_and_checkpoints_whole() {
    let mut all = Figures::new();
    for seed in 1..=4 {
        let mut rng = Rng(seed);
        let tmp = tempfile::tempdir().expect("tempdir");
        let life = a_wals_life(seed, &mut rng, tmp.path());
        for (k, v) in cut_life(&life, seed, &mut rng, 20, 2, tmp.path()) {
            *all.entry(k).or_default() += v;
        }
    }
    report("power cuts across a WAL's life", &all);
    for seen in [
        "manifest absent",
        "manifest new",
        "checkpoint absent",
        "checkpoint of close 1",
        "checkpoint of close 2",
        "checkpoints loaded",
    ] {
        assert!(
            all.get(seen).is_some_and(|&n| n > 0),
            "no state with {seen}"
        );
    }
}

/// A cut during the upgrade of a version-1 manifest: the old one or the new one,
/// whole, and every record of the old WAL and every acknowledged append kept.
#[test]
fn power_cuts_during_a_manifest_upgrade_leave_the_old_or_the_new_manifest() {
    let mut all = Figures::new();
    for seed in 1..=3 {
        let mut rng = Rng(seed);
        let tmp = tempfile::tempdir().expect("tempdir");
        let life = an_upgrade(seed, &mut rng, tmp.path());
        for (k, v) in cut_life(&life, seed, &mut rng, 10, 3, tmp.path()) {
            *all.entry(k).or_default() += v;
        }
    }
    report("power cuts during a manifest upgrade", &all);
    for seen in ["manifest old", "manifest new"] {
        assert!(
            all.get(seen).is_some_and(|&n| n > 0),
            "no state with {seen}"
        );
    }
}
