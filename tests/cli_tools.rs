//! The operator tools end to end: `nano-wal inspect`, `verify` and `dump`, the real
//! binary, on a WAL written by the library (several shards, rotation, an empty key,
//! keys and values that are not UTF-8), then on damaged copies of it. Figures are
//! checked against what was written and against the files themselves (read with the
//! independent format reader of `tests/common`), and every run checks that no file
//! was modified.
#![cfg(feature = "cli")]

mod common;

use bytes::Bytes;
use common::{records_of_file, segment_files, RecordPos, TestResult, RECORD_HEADER_LEN};
use nano_wal::{Wal, WalError, WalOptions};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SHARDS: usize = 3;
const RECORDS: usize = 300;

fn options() -> WalOptions {
    WalOptions::default()
        .with_shards(SHARDS)
        .with_max_key_size(64)
        .with_max_record_size(200)
        .with_max_segment_size(1024)
}

fn keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0..10).map(|i| format!("user:{i}").into_bytes()).collect();
    keys.push(Vec::new());
    keys.push(vec![0xff, 0x00, 0xfe]);
    keys.push(b"quote\"nl\n".to_vec());
    keys.push("\u{e9}t\u{e9}".as_bytes().to_vec());
    keys
}

fn value_of(i: usize) -> Vec<u8> {
    match i % 11 {
        0 => Vec::new(),
        7 => vec![0x80, i as u8, 0xfe, b'"'],
        _ => format!("value {i} \"q\" \\ {}", "v".repeat(i % 40)).into_bytes(),
    }
}

/// What was appended: per key, its values in append order.
type Written = BTreeMap<Vec<u8>, Vec<Vec<u8>>>;

/// Writes the WAL at `root/wal`, closes it, returns its path and what was written.
fn build(root: &Path) -> Res<(PathBuf, Written)> {
    let dir = root.join("wal");
    let wal = Wal::new(&dir, options())?;
    let keys = keys();
    let mut written = Written::new();
    for i in 0..RECORDS {
        let key = &keys[(i * 7 + i / 5) % keys.len()];
        let value = value_of(i);
        wal.append_entry(key, Bytes::from(value.clone()), i % 10 == 0)?;
        written.entry(key.clone()).or_default().push(value);
    }
    wal.close()?;
    Ok((dir, written))
}

fn run(args: &[&str], dir: &Path) -> std::io::Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nano-wal"));
    cmd.arg(args[0]).arg(dir).args(&args[1..]);
    cmd.output()
}

fn stdout_of(out: &Output) -> Res<String> {
    Ok(String::from_utf8(out.stdout.clone())?)
}

/// Bytes and mtime of every file, and every directory, under `dir`.
type Snapshot = BTreeMap<PathBuf, Option<(Vec<u8>, SystemTime)>>;

fn snapshot(dir: &Path) -> Res<Snapshot> {
    let mut out = Snapshot::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let meta = std::fs::metadata(&path)?;
            if meta.is_dir() {
                todo.push(path.clone());
                out.insert(path, None);
            } else {
                out.insert(
                    path.clone(),
                    Some((std::fs::read(&path)?, meta.modified()?)),
                );
            }
        }
    }
    Ok(out)
}

/// Runs inspect, verify and every dump format, checks that nothing changed on disk,
/// returns the outputs by name.
fn run_all_unchanged(dir: &Path) -> Res<HashMap<&'static str, Output>> {
    let before = snapshot(dir)?;
    let mut outs = HashMap::new();
    for (name, args) in [
        ("inspect", &["inspect"][..]),
        ("verify", &["verify"][..]),
        ("text", &["dump"][..]),
        ("hex", &["dump", "--format", "hex"][..]),
        ("json", &["dump", "--format", "json"][..]),
        ("key", &["dump", "--key", "user:3", "--format", "json"][..]),
    ] {
        outs.insert(name, run(args, dir)?);
    }
    assert!(
        snapshot(dir)? == before,
        "a tool modified the WAL directory {}",
        dir.display()
    );
    Ok(outs)
}

/// The rows of the table that follows the line `title`, as maps header -> cell.
fn table(text: &str, title: &str) -> Vec<HashMap<String, String>> {
    let mut lines = text.lines().skip_while(|l| *l != title).skip(1);
    let cells = |l: &str| -> Vec<String> {
        l.trim_start_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let header = cells(header);
    lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| header.iter().cloned().zip(cells(l)).collect())
        .collect()
}

/// Parses `2026-11-25T10:01:02.123456Z` to microseconds since the epoch (days from
/// civil, the inverse of the tool's conversion, written independently).
fn parse_time(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, micros) = time.split_once('.')?;
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, min, sec) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + sec;
    u64::try_from(secs * 1_000_000 + micros.parse::<i64>().ok()?).ok()
}

fn unhex(h: &str) -> Res<Vec<u8>> {
    (0..h.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(h.get(i..i + 2).ok_or("odd hex")?, 16)?))
        .collect()
}

/// One record of `dump --format json`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dumped {
    shard: u64,
    segment: u64,
    offset: u64,
    timestamp_us: u64,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn bytes_field(v: &serde_json::Value, name: &str) -> Res<Vec<u8>> {
    match (v.get(name), v.get(format!("{name}_hex"))) {
        (Some(serde_json::Value::String(s)), None) => Ok(s.as_bytes().to_vec()),
        (None, Some(serde_json::Value::String(h))) => {
            let bytes = unhex(h)?;
            assert!(
                std::str::from_utf8(&bytes).is_err(),
                "{name}_hex used for UTF-8"
            );
            Ok(bytes)
        }
        other => Err(format!("bad {name} fields: {other:?}").into()),
    }
}

fn parse_json_dump(stdout: &str) -> Res<Vec<Dumped>> {
    stdout
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let num = |n: &str| {
                v.get(n)
                    .and_then(serde_json::Value::as_u64)
                    .ok_or(n.to_string())
            };
            Ok(Dumped {
                shard: num("shard")?,
                segment: num("segment")?,
                offset: num("offset")?,
                timestamp_us: num("timestamp_us")?,
                key: bytes_field(&v, "key")?,
                value: bytes_field(&v, "value")?,
            })
        })
        .collect()
}

/// Sequence number of a segment file, from its name.
fn sequence_of(path: &Path) -> Res<u64> {
    let stem = path.file_stem().and_then(|s| s.to_str()).ok_or("name")?;
    Ok(stem.parse()?)
}

/// Per shard, per segment file: the file and its records (independent reader).
type OnDisk = Vec<Vec<(PathBuf, Vec<RecordPos>)>>;

fn on_disk(dir: &Path) -> Res<OnDisk> {
    (0..SHARDS)
        .map(|s| {
            segment_files(dir, s)?
                .into_iter()
                .map(|f| {
                    let records = records_of_file(&f)?;
                    Ok((f, records))
                })
                .collect()
        })
        .collect()
}

#[test]
fn tools_report_a_clean_wal_exactly() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, written) = build(tmp.path())?;
    let disk = on_disk(&dir)?;
    assert!(
        disk.iter().filter(|segs| segs.len() > 1).count() >= 2,
        "rotation expected in several shards"
    );
    let outs = run_all_unchanged(&dir)?;

    // dump --format json: every record once, per key in append order, at the offsets
    // the independent reader finds.
    let json = &outs["json"];
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let dumped = parse_json_dump(&stdout_of(json)?)?;
    assert_eq!(dumped.len(), RECORDS);
    let mut by_key = Written::new();
    for d in &dumped {
        by_key
            .entry(d.key.clone())
            .or_default()
            .push(d.value.clone());
    }
    assert_eq!(by_key, written, "dump differs from what was written");
    let mut expected_positions = BTreeSet::new();
    for (shard, segs) in disk.iter().enumerate() {
        for (file, records) in segs {
            for r in records {
                expected_positions.insert((shard as u64, sequence_of(file)?, r.offset));
            }
        }
    }
    let positions: BTreeSet<_> = dumped
        .iter()
        .map(|d| (d.shard, d.segment, d.offset))
        .collect();
    assert_eq!(positions, expected_positions);

    // dump --key (UTF-8, hex, empty): that key's records, in order.
    let key_dump = parse_json_dump(&stdout_of(&outs["key"])?)?;
    let values: Vec<Vec<u8>> = key_dump.iter().map(|d| d.value.clone()).collect();
    assert_eq!(Some(&values), written.get(&b"user:3"[..]));
    for (args, key) in [
        (
            vec!["dump", "--key-hex", "FF00fe", "--format", "json"],
            vec![0xff, 0x00, 0xfe],
        ),
        (vec!["dump", "--key", "", "--format", "json"], Vec::new()),
        (
            vec!["dump", "--key", "quote\"nl\n", "--format", "json"],
            b"quote\"nl\n".to_vec(),
        ),
    ] {
        let out = run(&args, &dir)?;
        assert!(out.status.success());
        let got = parse_json_dump(&stdout_of(&out)?)?;
        assert!(got.iter().all(|d| d.key == key));
        let values: Vec<Vec<u8>> = got.into_iter().map(|d| d.value).collect();
        assert_eq!(Some(&values), written.get(&key), "{args:?}");
    }
    let absent = run(&["dump", "--key", "nobody"], &dir)?;
    assert!(absent.status.success() && absent.stdout.is_empty());
    let bad_hex = run(&["dump", "--key-hex", "xyz"], &dir)?;
    assert!(!bad_hex.status.success());

    // dump text and hex: one line per record, escapes, same order as JSON.
    for name in ["text", "hex"] {
        let out = &outs[name];
        assert!(out.status.success());
        assert_eq!(stdout_of(out)?.lines().count(), RECORDS, "{name}");
    }
    let text = stdout_of(&outs["text"])?;
    assert!(text.contains(r#"key="quote\"nl\n""#), "escaped key");
    assert!(text.contains(r#"key="\xff\0\xfe""#), "non-UTF-8 key");
    assert!(text.contains(r#"key="" "#), "empty key");
    let hex = stdout_of(&outs["hex"])?;
    assert!(hex.contains(" key=757365723a33 value="), "user:3 in hex");
    for (t, h) in text.lines().zip(hex.lines()) {
        let prefix = |l: &str| l.split(" key=").next().map(str::to_string);
        assert_eq!(prefix(t), prefix(h));
    }

    // verify: clean.
    let verify = &outs["verify"];
    let vout = stdout_of(verify)?;
    assert_eq!(verify.status.code(), Some(0), "{vout}");
    assert!(vout.contains("result: clean"), "{vout}");
    for (shard, segs) in disk.iter().enumerate() {
        let records: usize = segs.iter().map(|(_, r)| r.len()).sum();
        let line = format!(
            "shard {shard}: {} segments, {records} records: ok",
            segs.len()
        );
        assert!(vout.contains(&line), "{line} not in\n{vout}");
    }

    // inspect: the totals table against the files and what was written.
    let inspect = &outs["inspect"];
    let iout = stdout_of(inspect)?;
    assert!(inspect.status.success(), "{iout}");
    assert!(iout.contains("damage: none"), "{iout}");
    let totals = table(&iout, "totals");
    assert_eq!(totals.len(), SHARDS + 1, "{iout}");
    for (shard, segs) in disk.iter().enumerate() {
        let row = &totals[shard];
        let records: usize = segs.iter().map(|(_, r)| r.len()).sum();
        let keys: BTreeSet<&Vec<u8>> = segs
            .iter()
            .flat_map(|(_, r)| r.iter().map(|r| &r.key))
            .collect();
        let mut bytes = 0;
        for (f, _) in segs {
            bytes += std::fs::metadata(f)?.len();
        }
        assert_eq!(row["shard"], shard.to_string());
        assert_eq!(row["segments"], segs.len().to_string(), "{iout}");
        assert_eq!(row["records"], records.to_string(), "{iout}");
        assert_eq!(row["keys"], keys.len().to_string(), "{iout}");
        assert_eq!(row["file bytes"], bytes.to_string(), "{iout}");
        assert_eq!(row["damage"], "0");
        // Each shard has its own segment table with one row per file.
        let seg_rows = table(
            &iout,
            &format!(
                "shard {shard} ({}): {} segments, {records} records, {} keys, {bytes} bytes",
                common::shard_dir(&dir, shard).display(),
                segs.len(),
                keys.len()
            ),
        );
        assert_eq!(seg_rows.len(), segs.len(), "{iout}");
        for (row, (file, recs)) in seg_rows.iter().zip(segs) {
            assert_eq!(row["segment"], sequence_of(file)?.to_string());
            assert_eq!(row["records"], recs.len().to_string());
            assert_eq!(row["status"], "ok");
        }
    }
    let all = &totals[SHARDS];
    assert_eq!(all["shard"], "all");
    assert_eq!(all["records"], RECORDS.to_string());
    assert_eq!(all["keys"], written.len().to_string());
    let oldest = dumped.iter().map(|d| d.timestamp_us).min();
    let newest = dumped.iter().map(|d| d.timestamp_us).max();
    assert_eq!(parse_time(&all["oldest record"]), oldest, "{iout}");
    assert_eq!(parse_time(&all["newest record"]), newest, "{iout}");
    Ok(())
}

/// The first shard with at least two segments: (its first, sealed, segment; records).
fn sealed_segment(dir: &Path) -> Res<(PathBuf, Vec<RecordPos>)> {
    for shard in 0..SHARDS {
        let files = segment_files(dir, shard)?;
        if files.len() >= 2 {
            let records = records_of_file(&files[0])?;
            return Ok((files[0].clone(), records));
        }
    }
    Err("no shard with two segments".into())
}

fn flip(path: &Path, at: u64) -> std::io::Result<()> {
    let mut bytes = std::fs::read(path)?;
    bytes[at as usize] ^= 0x10;
    std::fs::write(path, bytes)
}

/// The damage line of `path` at `offset` in a tool's output, if any.
fn damage_line<'a>(text: &'a str, kind: &str, path: &Path, offset: u64) -> Option<&'a str> {
    let wanted = format!("{kind}: {} at offset {offset} (", path.display());
    text.lines().find(|l| l.trim_start().starts_with(&wanted))
}

#[test]
fn verify_names_a_flipped_bit_in_a_sealed_segment() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, _) = build(tmp.path())?;
    let (file, records) = sealed_segment(&dir)?;
    let victim = &records[1];
    flip(&file, victim.offset + victim.len - 1)?;

    let outs = run_all_unchanged(&dir)?;
    let vout = stdout_of(&outs["verify"])?;
    assert_eq!(outs["verify"].status.code(), Some(1), "{vout}");
    assert!(
        damage_line(&vout, "corrupt", &file, victim.offset).is_some(),
        "{vout}"
    );
    assert!(vout.contains(": DAMAGED"), "{vout}");
    assert!(
        vout.contains("result: DAMAGED: 1 damaged, 0 torn tail(s)"),
        "{vout}"
    );
    let iout = stdout_of(&outs["inspect"])?;
    assert!(outs["inspect"].status.success());
    assert!(
        damage_line(&iout, "corrupt", &file, victim.offset).is_some(),
        "{iout}"
    );
    // dump skips the damaged record, warns on stderr, and still exits 0.
    let json = &outs["json"];
    assert!(json.status.success());
    assert_eq!(parse_json_dump(&stdout_of(json)?)?.len(), RECORDS - 1);
    let warn = String::from_utf8(json.stderr.clone())?;
    assert!(
        damage_line(
            &warn.replace("nano-wal dump: warning: ", ""),
            "corrupt",
            &file,
            victim.offset
        )
        .is_some(),
        "{warn}"
    );

    // The engine agrees: Strict recovery refuses at the same file and offset.
    match Wal::new(&dir, options()) {
        Err(WalError::Corruption { path, offset, .. }) => {
            assert_eq!((path, offset), (file, victim.offset));
        }
        other => return Err(format!("expected corruption, got {:?}", other.map(|_| ())).into()),
    }
    Ok(())
}

#[test]
fn verify_warns_about_a_torn_tail_with_its_own_exit_code() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, _) = build(tmp.path())?;
    let shard = (0..SHARDS)
        .find(|&s| segment_files(&dir, s).is_ok_and(|f| f.len() >= 2))
        .ok_or("no rotated shard")?;
    // One more record per key after the close's sync marker, which vouches for the
    // sealed segments: tearing the last one keeps the marker. (Were the marker torn,
    // the seals would be unvouched, and recovery would drop the newest segment whole.)
    let wal = Wal::new(&dir, options())?;
    for key in keys() {
        wal.log_entry(&key, Bytes::from_static(b"after the marker"))?;
    }
    wal.close()?;
    let newest = segment_files(&dir, shard)?.pop().ok_or("no segment")?;
    let records = records_of_file(&newest)?;
    let last = records.last().ok_or("empty newest segment")?;
    let cut = last.offset + 7;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)?
        .set_len(cut)?;
    let before: usize = segment_files(&dir, shard)?
        .iter()
        .map(|f| records_of_file(f).map(|r| r.len()))
        .sum::<std::io::Result<usize>>()?;

    let outs = run_all_unchanged(&dir)?;
    let vout = stdout_of(&outs["verify"])?;
    assert_eq!(outs["verify"].status.code(), Some(3), "{vout}");
    let line = damage_line(&vout, "torn tail", &newest, last.offset).ok_or(vout.clone())?;
    // The damaged bytes end at the last non-zero byte: zeros after it are
    // indistinguishable from preallocated space (recovery cuts all 7 bytes).
    let cut_bytes = std::fs::read(&newest)?;
    let nonzero_end = cut_bytes.iter().rposition(|&b| b != 0).ok_or("all zero")? + 1;
    let torn = nonzero_end as u64 - last.offset;
    assert!(line.contains(&format!("({torn} bytes)")), "{line}");
    assert!(vout.contains(&format!("shard {shard}: ")), "{vout}");
    assert!(vout.contains("torn tail (warning"), "{vout}");
    assert!(vout.contains("result: torn tail only (1)"), "{vout}");
    let totals = table(&stdout_of(&outs["inspect"])?, "totals");
    assert_eq!(totals[shard]["records"], before.to_string());
    assert_eq!(totals[shard]["damage"], "1");
    assert_eq!(
        parse_json_dump(&stdout_of(&outs["json"])?)?.len(),
        RECORDS + keys().len() - 1
    );

    // The engine agrees: it truncates exactly there; afterwards verify is clean.
    let wal = Wal::new(&dir, options())?;
    assert_eq!(
        wal.recovery_report().truncated,
        vec![(newest, last.offset, 7)]
    );
    wal.close()?;
    let after = run(&["verify"], &dir)?;
    assert_eq!(after.status.code(), Some(0), "{}", stdout_of(&after)?);
    Ok(())
}

#[test]
fn verify_names_a_corrupt_segment_header() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, _) = build(tmp.path())?;
    let (file, records) = sealed_segment(&dir)?;
    flip(&file, 20)?; // inside the sequence number: header checksum mismatch

    let outs = run_all_unchanged(&dir)?;
    let vout = stdout_of(&outs["verify"])?;
    assert_eq!(outs["verify"].status.code(), Some(1), "{vout}");
    let line = damage_line(&vout, "bad header", &file, 0).ok_or(vout.clone())?;
    assert!(line.contains("checksum"), "{line}");
    // The segment's records still pass their own checks, so dump can salvage them.
    assert_eq!(parse_json_dump(&stdout_of(&outs["json"])?)?.len(), RECORDS);
    assert!(records.len() > 1);
    assert!(matches!(
        Wal::new(&dir, options()),
        Err(WalError::Corruption { path, offset: 0, .. }) if path == file
    ));
    Ok(())
}

#[test]
fn preallocated_zeros_and_several_damages_at_once() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, _) = build(tmp.path())?;
    // Preallocated space (zero bytes) after the newest segment of every shard: free.
    for shard in 0..SHARDS {
        if let Some(newest) = segment_files(&dir, shard)?.pop() {
            let len = std::fs::metadata(&newest)?.len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&newest)?
                .set_len(len + 4096)?;
        }
    }
    let outs = run_all_unchanged(&dir)?;
    assert_eq!(
        outs["verify"].status.code(),
        Some(0),
        "{}",
        stdout_of(&outs["verify"])?
    );
    assert!(stdout_of(&outs["inspect"])?.contains("4096 bytes preallocated"));
    assert_eq!(parse_json_dump(&stdout_of(&outs["json"])?)?.len(), RECORDS);

    // A torn tail and a flipped bit elsewhere: damage wins (exit 1), both named.
    let (sealed, records) = sealed_segment(&dir)?;
    flip(&sealed, records[0].offset + 4)?; // the length field
    let shard = (0..SHARDS).last().ok_or("no shard")?;
    let newest = segment_files(&dir, shard)?.pop().ok_or("no segment")?;
    // The last item of the segment: its last record, or the sync marker the close
    // wrote after it (when seals waited for it to be synced).
    let last = records_of_file(&newest)?.pop().ok_or("empty")?;
    let marker = common::walk_markers(&std::fs::read(&newest)?)
        .pop()
        .filter(|m| m.offset > last.offset);
    let (last_at, last_end) = match marker {
        // A sync marker is a record header and its 8-byte payload.
        Some(m) => (m.offset, m.offset + RECORD_HEADER_LEN as u64 + 8),
        None => (last.offset, last.offset + last.len),
    };
    flip(&newest, last_end - 1)?;
    let outs = run_all_unchanged(&dir)?;
    let vout = stdout_of(&outs["verify"])?;
    assert_eq!(outs["verify"].status.code(), Some(1), "{vout}");
    assert!(
        damage_line(&vout, "corrupt", &sealed, records[0].offset).is_some(),
        "{vout}"
    );
    assert!(
        damage_line(&vout, "torn tail", &newest, last_at).is_some(),
        "{vout}"
    );
    assert!(
        vout.contains("result: DAMAGED: 1 damaged, 1 torn tail(s)"),
        "{vout}"
    );

    // A foreign file is damage too (Wal::new refuses it), reported by name.
    let foreign = common::shard_dir(&dir, 0).join("stray.txt");
    std::fs::write(&foreign, b"hello")?;
    let vout = stdout_of(&run(&["verify"], &dir)?)?;
    assert!(
        damage_line(&vout, "foreign file", &foreign, 0).is_some(),
        "{vout}"
    );
    Ok(())
}

#[test]
fn verify_cannot_check_what_is_not_a_wal() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty)?;
    for dir in [empty.clone(), tmp.path().join("missing")] {
        let out = run(&["verify"], &dir)?;
        assert_eq!(out.status.code(), Some(2), "{}", dir.display());
        assert!(String::from_utf8(out.stderr)?.contains("cannot check"));
        assert!(!run(&["inspect"], &dir)?.status.success());
        assert!(!run(&["dump"], &dir)?.status.success());
    }
    // Nothing was created in the empty directory.
    assert_eq!(std::fs::read_dir(&empty)?.count(), 0);
    assert!(!tmp.path().join("missing").exists());
    Ok(())
}

/// Writes `RECORDS` non-durable records over ten keys into a new WAL at `dir` with
/// `index_checkpoint` set, and closes it: every shard then has its checkpoint.
fn closed_with_checkpoints(dir: &Path) -> Res<()> {
    let wal = Wal::new(dir, options().with_index_checkpoint(true))?;
    for i in 0..RECORDS {
        wal.append_entry(format!("user:{}", i % 10), Bytes::from(value_of(i)), false)?;
    }
    Ok(wal.close()?)
}

/// How `inspect` begins the line of a checkpoint the next open would load.
const LOADS: &str = "index checkpoint: an open with index_checkpoint set loads it (";

/// `inspect` says whether the next open loads each shard's index checkpoint;
/// `verify` checks every key's locations in it and exits 1 on a damaged one.
#[test]
fn verify_checks_the_index_checkpoint() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    closed_with_checkpoints(&dir)?;
    let outs = run_all_unchanged(&dir)?;
    assert_eq!(outs["verify"].status.code(), Some(0));
    let iout = stdout_of(&outs["inspect"])?;
    let loads = iout.lines().filter(|l| l.starts_with(LOADS)).count();
    assert_eq!(loads, SHARDS, "{iout}");

    // The last bytes of a checkpoint are its last key's locations.
    let index = (0..SHARDS)
        .map(|s| dir.join(format!("shard-{s:03}")).join("INDEX"))
        .find(|p| p.exists())
        .ok_or("no checkpoint")?;
    let len = std::fs::metadata(&index)?.len();
    flip(&index, len - 2)?;
    let outs = run_all_unchanged(&dir)?;
    let vout = stdout_of(&outs["verify"])?;
    assert_eq!(outs["verify"].status.code(), Some(1), "{vout}");
    let line = vout
        .lines()
        .find(|l| l.trim_start().starts_with("bad index checkpoint: "))
        .ok_or(vout.clone())?;
    assert!(line.contains(&index.display().to_string()), "{line}");
    assert!(line.contains("checksum"), "{line}");
    let iout = stdout_of(&outs["inspect"])?;
    assert!(iout.contains("index checkpoint: DAMAGED"), "{iout}");
    Ok(())
}

/// Damage in a segment that the close's checkpoint describes as it is: `inspect`
/// warns that the open loading the checkpoint does not see it, and removing that
/// `INDEX`, as it says, makes the open scan and refuse the damage.
#[test]
fn inspect_warns_that_a_loaded_checkpoint_hides_segment_damage() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    let wal = Wal::new(&dir, options().with_index_checkpoint(true))?;
    // Durable, so every record is in its file before the bit is flipped.
    for i in 0..RECORDS {
        wal.append_entry(format!("user:{}", i % 10), Bytes::from(value_of(i)), true)?;
    }
    let (file, records) = sealed_segment(&dir)?;
    let victim = &records[1];
    flip(&file, victim.offset + victim.len - 1)?;
    wal.close()?;

    let outs = run_all_unchanged(&dir)?;
    assert_eq!(outs["verify"].status.code(), Some(1));
    let iout = stdout_of(&outs["inspect"])?;
    assert_eq!(
        iout.lines().filter(|l| l.starts_with(LOADS)).count(),
        SHARDS,
        "{iout}"
    );
    let index = file.parent().ok_or("no shard dir")?.join("INDEX");
    let warnings: Vec<&str> = iout
        .lines()
        .filter(|l| l.contains("does not see their damage"))
        .collect();
    assert_eq!(warnings.len(), 1, "{iout}");
    assert!(
        warnings[0].contains(&format!("remove {}", index.display())),
        "{iout}"
    );

    std::fs::remove_file(&index)?;
    match Wal::new(&dir, options().with_index_checkpoint(true)) {
        Err(WalError::Corruption { path, offset, .. }) => {
            assert_eq!((path, offset), (file, victim.offset));
        }
        other => return Err(format!("expected corruption, got {:?}", other.map(|_| ())).into()),
    }
    Ok(())
}

/// A foreign file makes `Wal::new` refuse the directory before any checkpoint is
/// loaded: under each checkpoint's line `inspect` says so and names the file,
/// whether it lies in the WAL directory or in a shard's, and stops saying so once
/// the file is gone.
#[test]
fn inspect_says_when_no_open_gets_as_far_as_the_checkpoint() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    closed_with_checkpoints(&dir)?;
    let refusal = |iout: &str| -> Vec<String> {
        iout.lines()
            .filter(|l| l.starts_with("  but no open gets that far"))
            .map(str::to_owned)
            .collect()
    };
    for foreign in [
        dir.join("notes.txt"),
        dir.join("shard-001").join("notes.txt"),
    ] {
        std::fs::write(&foreign, b"mine")?;
        let outs = run_all_unchanged(&dir)?;
        let iout = stdout_of(&outs["inspect"])?;
        assert_eq!(
            iout.lines().filter(|l| l.starts_with(LOADS)).count(),
            SHARDS,
            "{iout}"
        );
        let lines = refusal(&iout);
        assert_eq!(lines.len(), SHARDS, "{iout}");
        for line in &lines {
            assert!(line.contains(&foreign.display().to_string()), "{line}");
            assert!(line.contains("foreign file"), "{line}");
        }
        match Wal::new(&dir, options().with_index_checkpoint(true)) {
            Err(WalError::ForeignFile { path }) => assert_eq!(path, foreign),
            other => return Err(format!("expected a refusal, got {:?}", other.map(|_| ())).into()),
        }
        std::fs::remove_file(&foreign)?;
        let outs = run_all_unchanged(&dir)?;
        let iout = stdout_of(&outs["inspect"])?;
        assert!(refusal(&iout).is_empty(), "{iout}");
    }
    let wal = Wal::new(&dir, options().with_index_checkpoint(true))?;
    assert_eq!(wal.recovery_report().checkpoints_loaded, SHARDS as u64);
    wal.close()?;
    Ok(())
}
