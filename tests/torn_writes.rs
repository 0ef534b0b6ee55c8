//! Guarantee 4, torn writes, exhaustively: the newest segment of a shard, after a
//! clean close (so file lengths are exact), is cut at every byte offset inside its
//! last three records, or gets seeded random garbage appended after a valid prefix of
//! its records. Each case runs on a fresh copy of one written WAL directory.
//!
//! For every case: reopening keeps exactly the valid prefix (every key's records are
//! checked against the expected prefix), `recovery_report()` lists exactly the cut
//! (or nothing, when the bytes past the prefix are all zero: free space), appends
//! continue right after the prefix, and everything survives another reopen, which
//! finds nothing to repair.

mod common;

use bytes::Bytes;
use common::{
    records_of_file, restore, segment_files, shard_dir, snapshot, RecordPos, Rng, Snapshot,
    TestResult, RECORD_HEADER_LEN,
};
use nano_wal::{Wal, WalOptions};
use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Length of a sync marker (format version 4): a record header and its 8-byte payload.
const MARKER_LEN: u64 = RECORD_HEADER_LEN as u64 + 8;

const KEYS: [&[u8]; 8] = [
    b"",
    b"alpha",
    &[0xff, 0x00, 0xfe],
    b"k3",
    b"beta",
    &[0x80],
    b"gamma",
    b"k7",
];

fn options(shards: usize) -> WalOptions {
    WalOptions::default()
        .with_shards(shards)
        .with_max_key_size(64)
        .with_max_record_size(1024)
        .with_max_segment_size(2048)
}

fn key_of(i: usize) -> &'static [u8] {
    KEYS[i % KEYS.len()]
}

/// Value of record `i`: starts with its number, so a walked record names its append.
fn value_of(i: usize) -> Bytes {
    Bytes::from(format!("{i:06}|{}", "v".repeat(i * 7 % 61)))
}

fn index_of(r: &RecordPos) -> usize {
    std::str::from_utf8(&r.value[..6])
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("a record written by this test")
}

/// Writes records `0..n` (every fifth durable, the rest in batches or alone) and
/// closes cleanly.
fn write_and_close(dir: &Path, shards: usize, n: usize) -> TestResult {
    let wal = Wal::new(dir, options(shards))?;
    let mut i = 0;
    while i < n {
        if i % 9 == 0 && i + 3 <= n {
            wal.append_batch((i..i + 3).map(|j| (key_of(j), value_of(j))), i % 2 == 0)?;
            i += 3;
        } else {
            wal.append_entry(key_of(i), value_of(i), i % 5 == 0)?;
            i += 1;
        }
    }
    wal.close()?;
    Ok(())
}

/// Whether [`write_and_close`] of `n` records appended record `i` durably.
fn durable(i: usize, n: usize) -> bool {
    let mut j = 0;
    while j < n {
        if j % 9 == 0 && j + 3 <= n {
            if (j..j + 3).contains(&i) {
                return j % 2 == 0;
            }
            j += 3;
        } else {
            if j == i {
                return j % 5 == 0;
            }
            j += 1;
        }
    }
    false
}

/// Each key's records, from the records `0..total` that are not in `missing`.
fn assert_contents(wal: &Wal, total: usize, missing: &BTreeSet<usize>, case: &str) -> TestResult {
    for (k, key) in KEYS.iter().enumerate() {
        let got: Vec<Bytes> = wal.enumerate_records(key)?.collect();
        let want: Vec<Bytes> = (0..total)
            .filter(|i| i % KEYS.len() == k && !missing.contains(i))
            .map(value_of)
            .collect();
        assert!(
            got == want,
            "{case}: key {key:?}: got {} records, want {}",
            got.len(),
            want.len()
        );
    }
    let kept = (total - missing.len()) as u64;
    assert_eq!(wal.stats()?.records(), kept, "{case}: record count");
    let live: BTreeSet<Vec<u8>> = wal.enumerate_keys()?.collect();
    let want: BTreeSet<Vec<u8>> = (0..total)
        .filter(|i| !missing.contains(i))
        .map(|i| key_of(i).to_vec())
        .collect();
    assert_eq!(live, want, "{case}: live keys");
    Ok(())
}

/// The damaged copy at `dir` (shard `shard`'s newest segment `newest` now ends in
/// `tail` bytes past the valid prefix, which ends at `prefix_end`; `missing` are the
/// records no longer whole) reopens as exactly the prefix; appends continue after it
/// and survive another reopen.
struct Case<'a> {
    name: String,
    dir: &'a Path,
    shards: usize,
    written: usize,
    newest: &'a Path,
    prefix_end: u64,
    tail: Vec<u8>,
    missing: BTreeSet<usize>,
}

fn check_case(c: &Case) -> TestResult {
    let case = c.name.as_str();
    // When the cut took the only sync marker vouching for a sealed segment, the
    // segments after it go as well, with their records.
    let mut shard_files: Vec<PathBuf> = std::fs::read_dir(c.newest.parent().ok_or("shard")?)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    shard_files.sort();
    let segments = shard_files
        .iter()
        .map(|f| Ok((f.clone(), std::fs::read(f)?)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let dropped = common::dropped_after_unvouched_seal(&segments);
    let mut missing = c.missing.clone();
    for f in &dropped {
        for i in records_of_file(f)?.iter().map(index_of) {
            // The rule may only cost records nobody was told are durable.
            assert!(!durable(i, c.written), "{case}: durable record {i} dropped");
            missing.insert(i);
        }
    }
    let wal = Wal::new(c.dir, options(c.shards))?;
    let report = wal.recovery_report().clone();
    // An empty or all-zero remainder is free space, not a torn write.
    let free = c.tail.iter().all(|&b| b == 0);
    let mut expect_truncated = if free {
        vec![]
    } else {
        vec![(c.newest.to_path_buf(), c.prefix_end, c.tail.len() as u64)]
    };
    for f in &dropped {
        let left = match f == c.newest {
            true if free => c.prefix_end + c.tail.len() as u64,
            true => c.prefix_end,
            false => std::fs::metadata(f).map_or(0, |m| m.len()),
        };
        expect_truncated.push((f.clone(), 0, left));
    }
    assert_eq!(report.truncated, expect_truncated, "{case}: truncated");
    assert!(report.skipped.is_empty(), "{case}: {report:?}");
    assert_eq!(
        report.records,
        (c.written - missing.len()) as u64,
        "{case}: recovered records"
    );
    if !dropped.is_empty() {
        assert!(!c.newest.exists(), "{case}: the newest segment is removed");
    } else if !free {
        assert_eq!(
            std::fs::metadata(c.newest)?.len(),
            c.prefix_end,
            "{case}: the cut is on disk"
        );
    }
    assert_contents(&wal, c.written, &missing, case)?;

    // Appends continue after the prefix (the last one durable: one fsync per case
    // keeps the test fast).
    let more = c.written..c.written + 6;
    for i in more.clone() {
        wal.append_entry(key_of(i), value_of(i), i + 1 == more.end)?;
    }
    assert_contents(&wal, more.end, &missing, case)?;
    wal.close()?;
    if dropped.is_empty() {
        continues_at_the_prefix(c)?;
    }

    let wal = Wal::new(c.dir, options(c.shards))?;
    let report = wal.recovery_report().clone();
    assert!(
        report.truncated.is_empty(),
        "{case}: second reopen {report:?}"
    );
    assert!(
        report.skipped.is_empty(),
        "{case}: second reopen {report:?}"
    );
    assert_eq!(
        report.records,
        (more.end - missing.len()) as u64,
        "{case}: second reopen"
    );
    assert_contents(&wal, more.end, &missing, case)?;
    wal.close()?;
    Ok(())
}

/// After the appends of [`check_case`], the newest segment continues right at the
/// prefix and is whole.
fn continues_at_the_prefix(c: &Case) -> TestResult {
    let case = c.name.as_str();
    let data = std::fs::read(c.newest)?;
    let walked = common::walk_records(&data);
    let markers = common::walk_markers(&data);
    let walked_end = common::walked_end(&data);
    assert_eq!(
        walked_end,
        std::fs::metadata(c.newest)?.len(),
        "{case}: the repaired segment is whole after close"
    );
    assert!(
        walked.iter().any(|r| r.offset == c.prefix_end)
            || markers.iter().any(|m| m.offset == c.prefix_end)
            || walked_end == c.prefix_end,
        "{case}: appends did not continue at the prefix end {}",
        c.prefix_end
    );
    Ok(())
}

/// The shard with the most records in its newest segment, its newest segment and the
/// records in it. Asserts the walk covers the whole file (a clean close).
fn pick_newest(dir: &Path, shards: usize) -> AnyResult<(PathBuf, Vec<RecordPos>)> {
    let mut best: Option<(PathBuf, Vec<RecordPos>)> = None;
    for shard in 0..shards {
        let files = segment_files(dir, shard)?;
        for f in &files {
            let end = common::walked_end(&std::fs::read(f)?);
            assert_eq!(end, std::fs::metadata(f)?.len(), "{f:?} is exact");
        }
        let Some(newest) = files.last() else {
            continue; // no key of this test routes here
        };
        let records = records_of_file(newest)?;
        if best.as_ref().is_none_or(|(_, b)| records.len() > b.len()) {
            best = Some((newest.clone(), records));
        }
    }
    best.ok_or_else(|| "no shard".into())
}

/// [`restore`], and the shard directories that hold no file (a shard no key of the
/// test routes to), which a snapshot of files does not record: a WAL in use whose
/// shard directory is gone is refused, not repaired.
fn restore_wal(snap: &Snapshot, dir: &Path, shards: usize) -> TestResult {
    use std::os::unix::fs::DirBuilderExt;
    restore(snap, dir)?;
    for shard in 0..shards {
        let d = shard_dir(dir, shard);
        if !d.is_dir() {
            std::fs::DirBuilder::new().mode(0o700).create(d)?;
        }
    }
    Ok(())
}

fn count_records(dir: &Path, shards: usize) -> AnyResult<usize> {
    let mut n = 0;
    for shard in 0..shards {
        for f in segment_files(dir, shard)? {
            n += records_of_file(&f)?.len();
        }
    }
    Ok(n)
}

/// Cuts at every offset inside the last three records of the newest segment.
fn every_cut(shards: usize, written: usize) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let original = tmp.path().join("original");
    write_and_close(&original, shards, written)?;
    assert_eq!(count_records(&original, shards)?, written);
    let (newest, records) = pick_newest(&original, shards)?;
    assert!(
        records.len() >= 4,
        "the newest segment holds {} records; the test wants 4",
        records.len()
    );
    assert!(
        segment_files(&original, 0)?.len() > 1,
        "the test wants rotation"
    );
    let relative = newest.strip_prefix(&original)?.to_path_buf();
    let pristine = snapshot(&original)?;
    let dir = tmp.path().join("case");
    let data = std::fs::read(&newest)?;
    let last3 = &records[records.len() - 3..];
    let item_ends: Vec<u64> = records
        .iter()
        .map(|r| r.offset + r.len)
        .chain(
            common::walk_markers(&data)
                .iter()
                .map(|m| m.offset + MARKER_LEN),
        )
        .collect();
    let from = last3[0].offset;
    let to = data.len() as u64;
    let mut cases = 0;
    for cut in from..to {
        restore_wal(&pristine, &dir, shards)?;
        let seg = dir.join(&relative);
        OpenOptions::new().write(true).open(&seg)?.set_len(cut)?;
        // The records not wholly before the cut are lost; the prefix ends where the
        // last record or sync marker wholly before the cut ends.
        let torn: Vec<&RecordPos> = last3.iter().filter(|r| r.offset + r.len > cut).collect();
        let prefix_end = item_ends
            .iter()
            .copied()
            .filter(|&end| end <= cut)
            .max()
            .ok_or("no record before the cut")?;
        let missing: BTreeSet<usize> = torn.iter().map(|r| index_of(r)).collect();
        let tail = data[prefix_end as usize..cut as usize].to_vec();
        check_case(&Case {
            name: format!("{shards} shards, cut at {cut} of {to}"),
            dir: &dir,
            shards,
            written,
            newest: &seg,
            prefix_end,
            tail,
            missing,
        })?;
        cases += 1;
    }
    // The cut points were exactly the bytes of the last three records and of the
    // sync markers among or after them.
    let span: u64 = last3.iter().map(|r| r.len).sum();
    let markers = common::walk_markers(&data)
        .iter()
        .filter(|m| m.offset >= from)
        .count() as u64;
    assert_eq!(
        cases as u64,
        span + MARKER_LEN * markers,
        "{cases} cut points"
    );
    assert!(
        cases as u64 >= span,
        "{cases} cases for {span} record bytes"
    );
    Ok(())
}

#[test]
fn every_cut_inside_the_last_three_records() -> TestResult {
    every_cut(1, 150)
}

#[test]
fn every_cut_inside_the_last_three_records_of_one_shard_of_three() -> TestResult {
    // Only the cut shard loses records; the other shards' records are all there.
    every_cut(3, 200)
}

/// Garbage of one of several shapes: random bytes, zeros then random bytes, a
/// plausible record header with a wrong checksum, a real record of this segment with
/// one bit flipped, or a real record cut short.
fn garbage(rng: &mut Rng, data: &[u8], records: &[RecordPos]) -> (Vec<u8>, &'static str) {
    match rng.below(6) {
        0 => {
            let n = 1 + rng.below(3000) as usize;
            (rng.bytes(n), "random")
        }
        1 => {
            let zeros = 1 + rng.below(600) as usize;
            let mut g = vec![0u8; zeros];
            let n = 1 + rng.below(200) as usize;
            g.extend(rng.bytes(n).into_iter().map(|b| b | 1));
            (g, "zeros then random")
        }
        2 => {
            let len = RECORD_HEADER_LEN as u32 + rng.below(200) as u32;
            let mut g = Vec::new();
            g.extend_from_slice(&(rng.next() as u32).to_le_bytes()); // wrong crc
            g.extend_from_slice(&len.to_le_bytes());
            g.extend_from_slice(&rng.next().to_le_bytes()); // seq
            g.extend_from_slice(&rng.next().to_le_bytes()); // timestamp
            let key_room = u64::from(len) - RECORD_HEADER_LEN as u64;
            g.extend_from_slice(&(rng.below(key_room + 1) as u32).to_le_bytes());
            let rest = len as usize - g.len() + rng.below(40) as usize;
            g.extend(rng.bytes(rest));
            (g, "plausible header, wrong crc")
        }
        3 => {
            let r = &records[rng.below(records.len() as u64) as usize];
            let mut g = data[r.offset as usize..(r.offset + r.len) as usize].to_vec();
            let bit = rng.below(g.len() as u64 * 8) as usize;
            g[bit / 8] ^= 1 << (bit % 8);
            (g, "a real record with one bit flipped")
        }
        4 => {
            let r = &records[rng.below(records.len() as u64) as usize];
            let cut = 1 + rng.below(r.len - 1);
            (
                data[r.offset as usize..(r.offset + cut) as usize].to_vec(),
                "a real record cut short",
            )
        }
        _ => {
            let n = 1 + rng.below(64) as usize;
            (vec![0u8; n], "zeros only (free space)")
        }
    }
}

#[test]
fn seeded_garbage_after_a_valid_prefix() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let original = tmp.path().join("original");
    let written = 120;
    write_and_close(&original, 1, written)?;
    let (newest, records) = pick_newest(&original, 1)?;
    assert!(
        records.len() >= 4,
        "{} records in the newest",
        records.len()
    );
    let relative = newest.strip_prefix(&original)?.to_path_buf();
    let pristine = snapshot(&original)?;
    let dir = tmp.path().join("case");
    let data = std::fs::read(&newest)?;
    let mut shapes = BTreeSet::new();
    for seed in 1..=200u64 {
        let mut rng = Rng::seeded(seed);
        // Keep the first `keep` records of the newest segment (0..=all of them).
        let keep = rng.below(records.len() as u64 + 1) as usize;
        let prefix_end = records.get(keep).map_or(data.len() as u64, |r| r.offset);
        let (tail, shape) = garbage(&mut rng, &data, &records);
        shapes.insert(shape);
        restore_wal(&pristine, &dir, 1)?;
        let seg = dir.join(&relative);
        let f = OpenOptions::new().write(true).open(&seg)?;
        f.set_len(prefix_end)?;
        OpenOptions::new()
            .append(true)
            .open(&seg)?
            .write_all(&tail)?;
        check_case(&Case {
            name: format!(
                "seed {seed}: {keep} of {} records kept, {} bytes of {shape}",
                records.len(),
                tail.len()
            ),
            dir: &dir,
            shards: 1,
            written,
            newest: &seg,
            prefix_end,
            tail,
            missing: records[keep..].iter().map(index_of).collect(),
        })?;
    }
    assert_eq!(shapes.len(), 6, "every garbage shape was tried: {shapes:?}");
    Ok(())
}
