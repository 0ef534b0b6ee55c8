//! Recovery against damage a hostile storage engineer makes on purpose, one family
//! per class of the recovery issue:
//!
//! 1. **User bytes are never records.** Values that hold encoded records (made for
//!    the very offset they land at, in either layout, or copied from the WAL's own
//!    files) are never read as records: a torn last record around them is cut as a
//!    torn tail, and a resync after damage never lands inside a value.
//! 2. **Damage before the tail is never cut.** A flipped bit in a record with a
//!    value of zeros, zeroed header bytes over valid records, a zeroed page or the
//!    rest of a page zeroed before valid records: `Strict` refuses with
//!    `Corruption` naming file and offset and changes nothing; `SkipCorrupted`
//!    keeps every record that verifies.
//! 3. **Holes are never served as whole.** A segment missing from the middle of a
//!    shard, or a sealed segment shorter than its successor's seal note records:
//!    `Strict` refuses and changes nothing; `SkipCorrupted` opens and reports the
//!    hole in `RecoveryReport::holes`.

mod common;

use bytes::Bytes;
use common::{
    encode_record, records_of_file, salt_of, seed_of, segment_files, snapshot, walk_records,
    TestResult, SEGMENT_HEADER_LEN,
};
use nano_wal::{RecoveryMode, Wal, WalError, WalOptions};
use std::path::{Path, PathBuf};

fn options(mode: RecoveryMode) -> WalOptions {
    WalOptions::default()
        .with_shards(1)
        .with_max_segment_size(1024 * 1024)
        .with_recovery_mode(mode)
}

fn strict() -> WalOptions {
    options(RecoveryMode::Strict)
}

fn skipping() -> WalOptions {
    options(RecoveryMode::SkipCorrupted)
}

/// The values of `key`, in order.
fn values(wal: &Wal, key: &str) -> Result<Vec<Bytes>, WalError> {
    Ok(wal.enumerate_records(key)?.collect())
}

fn keys(wal: &Wal) -> Result<Vec<Vec<u8>>, WalError> {
    let mut keys: Vec<Vec<u8>> = wal.enumerate_keys()?.collect();
    keys.sort();
    Ok(keys)
}

/// Opens `dir` under `Strict`, expecting `Corruption` in `file` at `offset`, and
/// checks that the refused open changed no file.
fn refused_at(dir: &Path, file: &Path, offset: u64) -> TestResult {
    let before = snapshot(dir)?;
    match Wal::new(dir, strict()) {
        Err(WalError::Corruption {
            path, offset: at, ..
        }) => {
            assert_eq!(path, file, "the damaged file is named");
            assert_eq!(at, offset, "the damage's offset is named");
        }
        Err(e) => panic!("expected Corruption in {}, got {e}", file.display()),
        Ok(_) => panic!("Strict opened damage in {} at {offset}", file.display()),
    }
    assert_eq!(snapshot(dir)?, before, "a refused open changed files");
    Ok(())
}

/// `n` durable records of `key` with values `{i:05}|` and `fill` bytes, closed.
fn durable_wal(dir: &Path, key: &str, n: usize, fill: u8, len: usize) -> TestResult {
    let wal = Wal::new(dir, strict())?;
    for i in 0..n {
        let mut v = format!("{i:05}|").into_bytes();
        v.resize(6 + len, fill);
        wal.log_entry(key, Bytes::from(v))?;
    }
    wal.close()?;
    Ok(())
}

fn numbers(values: &[Bytes]) -> Vec<usize> {
    values
        .iter()
        .map(|v| std::str::from_utf8(&v[..5]).unwrap().parse().unwrap())
        .collect()
}

/// The values a hostile user plants inside one value, all for file offset `at`
/// (where the planted bytes land) of segment `segment`: a version-4 record bound
/// with a guessed salt, one bound with the right salt for another offset, and one in
/// the layout of versions 1 to 3, each under the key `planted`.
fn planted(salt: u32, segment: u64, at: u64) -> Vec<Vec<u8>> {
    vec![
        encode_record(Some(seed_of(0, 0, segment)), at, 1, b"planted", b"evil"),
        encode_record(
            Some(seed_of(salt, 0, segment)),
            at + 1,
            1,
            b"planted",
            b"evil",
        ),
        encode_record(None, at, 1, b"planted", b"evil"),
    ]
}

/// Writes a WAL whose last record's value embeds `inner` at its start, then cuts
/// the file inside that last record, after the embedded bytes: a torn tail whose
/// torn part holds something that looks like a record.
fn torn_around(
    dir: &Path,
    inner: impl Fn(u64) -> Vec<u8>,
) -> Result<(PathBuf, u64), Box<dyn std::error::Error>> {
    durable_wal(dir, "k", 20, b'a', 50)?;
    let file = segment_files(dir, 0)?.pop().expect("a segment");
    let data = std::fs::read(&file)?;
    let end = common::walked_end(&data);
    // The last record goes at `end` after reopening (the writer appends there);
    // its value starts after its 28-byte header and the 1-byte key.
    let value_at = end + common::RECORD_HEADER_LEN as u64 + 1;
    let wal = Wal::new(dir, strict())?;
    let mut value = inner(value_at);
    value.extend_from_slice(&[b'z'; 64]);
    wal.log_entry("k", Bytes::from(value))?;
    wal.close()?;
    let data = std::fs::read(&file)?;
    let last = walk_records(&data).pop().expect("the last record");
    assert_eq!(
        last.offset, end,
        "the last record lies where the test planned"
    );
    // Cut inside its trailing 64 bytes: the embedded bytes stay whole.
    let cut = last.offset + last.len - 10;
    let f = std::fs::OpenOptions::new().write(true).open(&file)?;
    f.set_len(cut)?;
    Ok((file, last.offset))
}

#[test]
fn a_torn_last_record_holding_encoded_records_is_cut_as_a_torn_tail() -> TestResult {
    for variant in 0..4 {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("wal");
        let salt = {
            Wal::new(&dir, strict())?.close()?;
            salt_of(&dir)?
        };
        let (file, torn_at) = torn_around(&dir, |at| match variant {
            0..=2 => planted(salt, 1, at)[variant].clone(),
            // A verbatim copy of the segment's first record.
            _ => {
                let data = std::fs::read(segment_files(&dir, 0).unwrap()[0].clone()).unwrap();
                let first = &walk_records(&data)[0];
                data[first.offset as usize..(first.offset + first.len) as usize].to_vec()
            }
        })?;
        for mode in [RecoveryMode::Strict, RecoveryMode::SkipCorrupted] {
            let copy = tmp.path().join(format!("copy-{mode:?}"));
            common::restore(&snapshot(&dir)?, &copy)?;
            let wal = Wal::new(&copy, options(mode))?;
            let report = wal.recovery_report();
            assert_eq!(
                report.truncated,
                vec![(
                    copy.join("shard-000").join(file.file_name().unwrap()),
                    torn_at,
                    report.truncated[0].2
                )],
                "variant {variant}, {mode:?}: the torn record is cut"
            );
            assert!(report.skipped.is_empty(), "variant {variant}: {report:?}");
            assert_eq!(numbers(&values(&wal, "k")?), (0..20).collect::<Vec<_>>());
            assert_eq!(
                keys(&wal)?,
                vec![b"k".to_vec()],
                "variant {variant}: no planted key"
            );
            wal.close()?;
        }
    }
    Ok(())
}

#[test]
fn a_resync_after_damage_never_lands_inside_a_value() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    Wal::new(&dir, strict())?.close()?;
    let salt = salt_of(&dir)?;
    // Records whose values hold planted records (for where they land); then a bit
    // flipped in a record's header, so that the resync starts inside its value.
    let wal = Wal::new(&dir, strict())?;
    let mut at = SEGMENT_HEADER_LEN as u64;
    for i in 0..30u64 {
        let value_at = at + common::RECORD_HEADER_LEN as u64 + 1;
        let mut value = format!("{i:05}|").into_bytes();
        for p in planted(salt, 1, value_at + value.len() as u64) {
            value.extend_from_slice(&p);
        }
        at += (common::RECORD_HEADER_LEN + 1 + value.len()) as u64;
        wal.log_entry("k", Bytes::from(value))?;
    }
    wal.close()?;
    let file = segment_files(&dir, 0)?[0].clone();
    let mut data = std::fs::read(&file)?;
    let records = walk_records(&data);
    assert_eq!(records.len(), 30);
    for damaged in [0usize, 7, 29] {
        let copy = tmp.path().join(format!("flip-{damaged}"));
        common::restore(&snapshot(&dir)?, &copy)?;
        let r = &records[damaged];
        data = std::fs::read(&file)?;
        // A header byte: the planted records in its value stay intact.
        data[(r.offset + 10) as usize] ^= 0x01;
        let copied = copy.join("shard-000").join(file.file_name().unwrap());
        std::fs::write(&copied, &data)?;
        if damaged < 29 {
            refused_at(&copy, &copied, r.offset)?;
        }
        let wal = Wal::new(&copy, skipping())?;
        assert_eq!(
            keys(&wal)?,
            vec![b"k".to_vec()],
            "flip {damaged}: a planted key"
        );
        let want: Vec<usize> = (0..30).filter(|&i| i != damaged).collect();
        assert_eq!(numbers(&values(&wal, "k")?), want, "flip {damaged}");
        wal.close()?;
    }
    Ok(())
}

#[test]
fn a_flipped_bit_in_a_zero_valued_record_before_durable_records_is_refused() -> TestResult {
    // Values of zeros that cover whole 4 KiB pages, then 5 durable records.
    for (zeros, flip_in) in [(9000usize, 0usize), (4096, 1), (12_000, 2)] {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("wal");
        durable_wal(&dir, "k", 3, 0, zeros)?;
        let wal = Wal::new(&dir, strict())?;
        for i in 3..8 {
            wal.log_entry("k", Bytes::from(format!("{i:05}|after")))?;
        }
        wal.close()?;
        let file = segment_files(&dir, 0)?[0].clone();
        let mut data = std::fs::read(&file)?;
        let r = walk_records(&data)[flip_in].clone();
        data[(r.offset + 40) as usize] ^= 0x10;
        std::fs::write(&file, &data)?;
        refused_at(&dir, &file, r.offset)?;
        let wal = Wal::new(&dir, skipping())?;
        let want: Vec<usize> = (0..8).filter(|&i| i != flip_in).collect();
        assert_eq!(numbers(&values(&wal, "k")?), want, "zeros {zeros}");
        assert_eq!(
            wal.recovery_report().skipped.first().map(|s| s.1),
            Some(r.offset)
        );
        wal.close()?;
    }
    Ok(())
}

#[test]
fn a_zeroed_header_over_valid_records_is_refused_not_unlinked() -> TestResult {
    for zeroed in [0..40usize, 0..8, 32..40, 8..12] {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("wal");
        durable_wal(&dir, "k", 100, b'v', 20)?;
        let files = segment_files(&dir, 0)?;
        assert_eq!(files.len(), 1, "the only segment");
        let mut data = std::fs::read(&files[0])?;
        data[zeroed.clone()].fill(0);
        std::fs::write(&files[0], &data)?;
        refused_at(&dir, &files[0], 0)?;
        let wal = Wal::new(&dir, skipping())?;
        assert_eq!(
            numbers(&values(&wal, "k")?),
            (0..100).collect::<Vec<_>>(),
            "zeroed {zeroed:?}: every record that verifies is kept"
        );
        assert!(files[0].exists(), "the segment stays");
        wal.close()?;
    }
    Ok(())
}

#[test]
fn zeroed_pages_before_valid_records_are_refused_not_cut() -> TestResult {
    // A whole aligned page zeroed, and the rest of a page zeroed from inside a
    // record, in the newest segment with durable records after.
    for (from, to) in [(4096usize, 8192usize), (5000, 8192), (4100, 4096 + 3000)] {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("wal");
        durable_wal(&dir, "k", 200, b'p', 60)?;
        let file = segment_files(&dir, 0)?.pop().expect("a segment");
        let mut data = std::fs::read(&file)?;
        let records = walk_records(&data);
        assert!(data.len() > to + 1000, "records after the zeros");
        data[from..to].fill(0);
        std::fs::write(&file, &data)?;
        let first_bad = records
            .iter()
            .find(|r| (r.offset + r.len) as usize > from)
            .expect("a record hit");
        refused_at(&dir, &file, first_bad.offset)?;
        let wal = Wal::new(&dir, skipping())?;
        let kept = numbers(&values(&wal, "k")?);
        let untouched: Vec<usize> = records
            .iter()
            .filter(|r| (r.offset + r.len) as usize <= from || r.offset as usize >= to)
            .map(|r| std::str::from_utf8(&r.value[..5]).unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            kept, untouched,
            "zeros {from}..{to}: every intact record kept"
        );
        wal.close()?;
    }
    Ok(())
}

/// A closed WAL of one shard whose `n` durable records of 200 bytes fill several
/// 4 KiB segments; every seal is vouched for by a sync marker.
fn sealed_wal(dir: &Path, n: usize) -> TestResult {
    let wal = Wal::new(dir, strict().with_max_segment_size(4096))?;
    for i in 0..n {
        let mut v = format!("{i:05}|").into_bytes();
        v.resize(200, b's');
        wal.log_entry("k", Bytes::from(v))?;
    }
    wal.close()?;
    Ok(())
}

#[test]
fn a_segment_missing_from_the_middle_is_refused_or_reported() -> TestResult {
    for missing in [vec![2usize], vec![3, 4], vec![1]] {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("wal");
        sealed_wal(&dir, 120)?;
        let files = segment_files(&dir, 0)?;
        assert!(files.len() >= 6, "{} segments", files.len());
        let mut lost = Vec::new();
        for &m in &missing {
            lost.extend(records_of_file(&files[m])?);
            std::fs::remove_file(&files[m])?;
        }
        refused_at(&dir, &files[missing[missing.len() - 1]], 0)?;
        let wal = Wal::new(&dir, skipping())?;
        let holes: Vec<PathBuf> = wal
            .recovery_report()
            .holes
            .iter()
            .map(|h| h.0.clone())
            .collect();
        let want: Vec<PathBuf> = missing.iter().map(|&m| files[m].clone()).collect();
        // The segment the note names is reported; with two missing, the later one.
        assert!(
            holes.iter().all(|h| want.contains(h)) && !holes.is_empty(),
            "missing {missing:?}: holes {holes:?}"
        );
        let lost: Vec<usize> = lost
            .iter()
            .map(|r| std::str::from_utf8(&r.value[..5]).unwrap().parse().unwrap())
            .collect();
        let kept = numbers(&values(&wal, "k")?);
        let want: Vec<usize> = (0..120).filter(|i| !lost.contains(i)).collect();
        assert_eq!(kept, want, "missing {missing:?}: every other record served");
        wal.close()?;
    }
    Ok(())
}

#[test]
fn a_sealed_segment_shorter_than_its_seal_note_is_refused_or_reported() -> TestResult {
    for (segment, drop_records) in [(1usize, 1usize), (2, 3), (0, 1)] {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("wal");
        sealed_wal(&dir, 120)?;
        let files = segment_files(&dir, 0)?;
        let data = std::fs::read(&files[segment])?;
        let records = walk_records(&data);
        let keep = records.len() - drop_records;
        // Cut at a record boundary: the file is valid, only shorter.
        let cut = records[keep].offset;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&files[segment])?
            .set_len(cut)?;
        refused_at(&dir, &files[segment], cut)?;
        let wal = Wal::new(&dir, skipping())?;
        let holes = wal.recovery_report().holes.clone();
        assert_eq!(holes.len(), 1, "{holes:?}");
        assert_eq!(
            (holes[0].0.clone(), holes[0].1),
            (files[segment].clone(), cut)
        );
        assert_eq!(holes[0].2, data.len() as u64 - cut, "the bytes it lacks");
        let lost: Vec<usize> = records[keep..]
            .iter()
            .map(|r| std::str::from_utf8(&r.value[..5]).unwrap().parse().unwrap())
            .collect();
        let want: Vec<usize> = (0..120).filter(|i| !lost.contains(i)).collect();
        assert_eq!(numbers(&values(&wal, "k")?), want);
        wal.close()?;
    }
    Ok(())
}
