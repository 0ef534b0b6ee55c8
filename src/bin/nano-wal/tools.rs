//! The operator tools: `nano-wal inspect DIR`, `nano-wal verify DIR` and
//! `nano-wal dump DIR [--key K | --key-hex H] [--format text|hex|json]`.
//!
//! All three go through `nano_wal::inspect`: the directory is opened read-only, its
//! lock is not taken and nothing is modified. On a live WAL they see what is on disk at
//! that moment, so the last record of a newest segment may appear torn.
//!
//! Exit codes of `verify`:
//! - `0`: clean (preallocated zero space at the end of a newest segment is not damage);
//! - `1`: damage that `Wal::new` would refuse under `RecoveryMode::Strict` (or skip
//!   under `SkipCorrupted`): every damage is listed with file and offset;
//! - `2`: nothing could be checked (not a WAL directory, I/O error) or bad usage;
//! - `3`: only torn tails of newest segments: what the next open truncates (a crash
//!   interrupted a write; on a live WAL, possibly a write in progress).
//!
//! `inspect` and `dump` exit 0 even on a damaged WAL (damage is shown, or warned
//! about on stderr), and 1 when the directory cannot be read.

use clap::ValueEnum;
use nano_wal::inspect::{self, CheckpointCheck, Damage, SegmentScan, WalScan};
use std::error::Error;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

type ToolResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Arguments of `nano-wal inspect`.
#[derive(clap::Args, Debug, Clone)]
pub struct InspectArgs {
    /// The WAL directory.
    dir: PathBuf,
}

/// Arguments of `nano-wal verify`.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The WAL directory.
    dir: PathBuf,
}

/// How `dump` prints a record.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// Key and value as quoted UTF-8 with escapes (`\n`, `\"`, `\xNN` for bytes that
    /// are not UTF-8).
    Text,
    /// Key and value as lowercase hex.
    Hex,
    /// One JSON object per line; key and value as strings when UTF-8, else as hex
    /// under `key_hex` / `value_hex`.
    Json,
}

/// Arguments of `nano-wal dump`.
#[derive(clap::Args, Debug, Clone)]
pub struct DumpArgs {
    /// The WAL directory.
    dir: PathBuf,
    /// Only the records of this key (given as UTF-8), in append order.
    #[arg(long, conflicts_with = "key_hex")]
    key: Option<String>,
    /// Only the records of this key, given as hex (for keys that are not UTF-8).
    #[arg(long, value_name = "HEX")]
    key_hex: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DumpFormat::Text)]
    format: DumpFormat,
}

/// Exit code of `verify` for damage.
const EXIT_DAMAGED: u8 = 1;
/// Exit code of `verify` when nothing could be checked.
const EXIT_UNCHECKED: u8 = 2;
/// Exit code of `verify` when the only damage is torn tails.
const EXIT_TORN_TAIL: u8 = 3;

/// Runs `f` over a buffered stdout; a closed pipe (`| head`) ends output quietly.
fn with_stdout(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> ToolResult<()> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match f(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

// ---------------------------------------------------------------------------------
// inspect

/// `nano-wal inspect DIR`: a table of segments per shard, then a table per shard with
/// totals, then the damage found.
pub fn inspect(args: &InspectArgs) -> ToolResult<()> {
    let scan = inspect::scan(&args.dir)?;
    with_stdout(|out| write_inspect(out, &scan))
}

/// The line under a checkpoint's when no open gets as far as the checkpoint.
fn write_refused(out: &mut dyn Write, refusal: &Damage) -> io::Result<()> {
    writeln!(
        out,
        "  but no open gets that far: Wal::new refuses the directory first, for {} ({}, \
         below)",
        refusal.path.display(),
        refusal.kind.label()
    )
}

fn write_inspect(out: &mut dyn Write, scan: &WalScan) -> io::Result<()> {
    writeln!(out, "WAL {}", scan.dir.display())?;
    writeln!(
        out,
        "manifest: {}, {} shards",
        if scan.manifest_ok {
            "ok"
        } else {
            "DAMAGED (shard count inferred)"
        },
        scan.shard_count
    )?;
    let refused = scan.refusing_damage();
    for shard in &scan.shards {
        writeln!(out)?;
        if !shard.exists {
            writeln!(
                out,
                "shard {} ({}): directory missing (Wal::new re-creates it)",
                shard.shard,
                shard.dir.display()
            )?;
            continue;
        }
        writeln!(
            out,
            "shard {} ({}): {} segments, {} records, {} keys, {} bytes",
            shard.shard,
            shard.dir.display(),
            shard.segments.len(),
            shard.records(),
            shard.keys,
            shard.file_bytes()
        )?;
        match &shard.checkpoint {
            CheckpointCheck::Usable { keys, locations } => {
                writeln!(
                    out,
                    "index checkpoint: an open with index_checkpoint set loads it ({keys} \
                     keys, {locations} locations)"
                )?;
                if let Some(refusal) = refused {
                    write_refused(out, refusal)?;
                } else if shard.segments.iter().any(|s| !s.damage.is_empty()) {
                    writeln!(
                        out,
                        "  that open does not read the segments, so it does not see their \
                         damage below; remove {} to have it scan",
                        shard.checkpoint_path().display()
                    )?;
                }
            }
            CheckpointCheck::Ignored { reason } => {
                writeln!(
                    out,
                    "index checkpoint: an open with index_checkpoint set ignores it and \
                     scans ({reason})"
                )?;
                if let Some(refusal) = refused {
                    write_refused(out, refusal)?;
                }
            }
            CheckpointCheck::Damaged => writeln!(out, "index checkpoint: DAMAGED (see below)")?,
            _ => {}
        }
        if shard.segments.is_empty() {
            continue;
        }
        let rows: Vec<Vec<String>> = shard.segments.iter().map(segment_row).collect();
        write_table(
            out,
            &[
                "segment",
                "state",
                "file bytes",
                "data bytes",
                "records",
                "keys",
                "created",
                "oldest record",
                "newest record",
                "status",
            ],
            &rows,
        )?;
    }
    writeln!(out)?;
    writeln!(out, "totals")?;
    let mut rows: Vec<Vec<String>> = scan
        .shards
        .iter()
        .map(|s| {
            vec![
                s.shard.to_string(),
                s.segments.len().to_string(),
                s.records().to_string(),
                s.keys.to_string(),
                s.file_bytes().to_string(),
                s.record_bytes().to_string(),
                time_or_dash(s.oldest_us()),
                time_or_dash(s.newest_us()),
                s.all_damage().count().to_string(),
            ]
        })
        .collect();
    rows.push(vec![
        "all".into(),
        scan.segments().to_string(),
        scan.records().to_string(),
        scan.keys().to_string(),
        scan.file_bytes().to_string(),
        scan.record_bytes().to_string(),
        time_or_dash(scan.oldest_us()),
        time_or_dash(scan.newest_us()),
        scan.all_damage().count().to_string(),
    ]);
    write_table(
        out,
        &[
            "shard",
            "segments",
            "records",
            "keys",
            "file bytes",
            "record bytes",
            "oldest record",
            "newest record",
            "damage",
        ],
        &rows,
    )?;
    let damage: Vec<&Damage> = scan.all_damage().collect();
    writeln!(out)?;
    if damage.is_empty() {
        writeln!(out, "damage: none")?;
    } else {
        writeln!(
            out,
            "damage: {} (run `nano-wal verify` for the verdict)",
            damage.len()
        )?;
        for d in damage {
            writeln!(out, "  {d}")?;
        }
    }
    Ok(())
}

fn segment_row(s: &SegmentScan) -> Vec<String> {
    let mut status: Vec<String> = s
        .damage
        .iter()
        .map(|d| format!("{} at {}", d.kind, d.offset))
        .collect();
    if status.is_empty() {
        status.push("ok".into());
    }
    if s.free_len > 0 {
        status.push(format!("{} bytes preallocated", s.free_len));
    }
    vec![
        s.file.sequence.to_string(),
        if s.file.newest { "newest" } else { "sealed" }.into(),
        s.file_len.to_string(),
        s.data_len.to_string(),
        s.records.to_string(),
        s.keys.to_string(),
        time_or_dash(s.header.map(|h| h.created_us)),
        time_or_dash(s.oldest_us),
        time_or_dash(s.newest_us),
        status.join(", "),
    ]
}

/// A `| a | b |` table: numbers right-aligned, text left-aligned, no trailing `|`.
fn write_table(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..headers.len())
        .map(|c| {
            rows.iter().all(|r| {
                r.get(c)
                    .is_none_or(|v| v == "all" || v.chars().all(|ch| ch.is_ascii_digit()))
            })
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = (usize, &str)>| -> String {
        let mut s = String::new();
        for (c, cell) in cells {
            let w = widths.get(c).copied().unwrap_or(0);
            let last = c + 1 == headers.len();
            if numeric.get(c).copied().unwrap_or(false) {
                let _ = write!(s, "| {cell:>w$} ");
            } else if last {
                let _ = write!(s, "| {cell}");
            } else {
                let _ = write!(s, "| {cell:<w$} ");
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&mut headers.iter().copied().enumerate()))?;
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    writeln!(out, "|{}", rule.join("|"))?;
    for row in rows {
        writeln!(
            out,
            "{}",
            line(&mut row.iter().map(String::as_str).enumerate())
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// verify

/// `nano-wal verify DIR`: checks every checksum; prints a verdict per shard and one
/// line per damage (file, offset); returns the exit code (see the module docs).
pub fn verify(args: &VerifyArgs) -> ExitCode {
    let scan = match inspect::scan(&args.dir) {
        Ok(scan) => scan,
        Err(e) => {
            eprintln!("nano-wal verify: cannot check {}: {e}", args.dir.display());
            return ExitCode::from(EXIT_UNCHECKED);
        }
    };
    let code = verdict(&scan);
    match with_stdout(|out| write_verify(out, &scan, code)) {
        Ok(()) => ExitCode::from(code),
        Err(e) => {
            eprintln!("nano-wal verify: {e}");
            ExitCode::from(EXIT_UNCHECKED)
        }
    }
}

fn verdict(scan: &WalScan) -> u8 {
    let mut code = 0;
    for d in scan.all_damage() {
        if d.kind.is_torn_tail() {
            code = code.max(EXIT_TORN_TAIL);
        } else {
            return EXIT_DAMAGED;
        }
    }
    code
}

fn write_verify(out: &mut dyn Write, scan: &WalScan, code: u8) -> io::Result<()> {
    writeln!(
        out,
        "verify {}: {} shards, {} segments, {} records checked",
        scan.dir.display(),
        scan.shard_count,
        scan.segments(),
        scan.records()
    )?;
    if !scan.damage.is_empty() {
        writeln!(out, "directory: DAMAGED")?;
        for d in &scan.damage {
            writeln!(out, "  {d}")?;
        }
    }
    for shard in &scan.shards {
        let damage: Vec<&Damage> = shard.all_damage().collect();
        let state = if damage.is_empty() {
            "ok"
        } else if damage.iter().all(|d| d.kind.is_torn_tail()) {
            "torn tail (warning: the next open truncates it)"
        } else {
            "DAMAGED"
        };
        writeln!(
            out,
            "shard {}: {} segments, {} records: {state}",
            shard.shard,
            shard.segments.len(),
            shard.records()
        )?;
        for d in damage {
            writeln!(out, "  {d}")?;
        }
    }
    let torn = scan.all_damage().filter(|d| d.kind.is_torn_tail()).count();
    let other = scan.all_damage().count() - torn;
    match code {
        0 => writeln!(out, "result: clean")?,
        EXIT_TORN_TAIL => writeln!(
            out,
            "result: torn tail only ({torn}); recovery truncates it on the next open (exit {code})"
        )?,
        _ => writeln!(
            out,
            "result: DAMAGED: {other} damaged, {torn} torn tail(s) (exit {code})"
        )?,
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// dump

/// `nano-wal dump DIR`: one line per valid record, shard by shard, segment by
/// segment, in file (= append) order. Damage is warned about on stderr.
pub fn dump(args: &DumpArgs) -> ToolResult<()> {
    let key: Option<Vec<u8>> = match (&args.key, &args.key_hex) {
        (Some(k), _) => Some(k.as_bytes().to_vec()),
        (None, Some(h)) => Some(parse_hex(h).ok_or_else(|| format!("--key-hex {h:?} is not hex"))?),
        (None, None) => None,
    };
    let layout = inspect::layout(&args.dir)?;
    for d in &layout.damage {
        eprintln!("nano-wal dump: warning: {d}");
    }
    // With a key, only its shard holds it (when the manifest can be trusted).
    let only_shard = key.as_deref().and_then(|k| layout.shard_for_key(k));
    with_stdout(|out| -> io::Result<()> {
        let mut line = String::new();
        for shard in &layout.shards {
            if only_shard.is_some_and(|s| s != shard.shard) {
                continue;
            }
            for d in &shard.damage {
                eprintln!("nano-wal dump: warning: {d}");
            }
            for segment in &shard.segments {
                let records = segment.read_records().map_err(io::Error::other)?;
                for d in records.damage() {
                    eprintln!("nano-wal dump: warning: {d}");
                }
                for r in records.iter() {
                    if key.as_deref().is_some_and(|k| k != r.key) {
                        continue;
                    }
                    line.clear();
                    format_record(&mut line, args.format, &r);
                    writeln!(out, "{line}")?;
                }
            }
        }
        Ok(())
    })
}

fn format_record(s: &mut String, format: DumpFormat, r: &inspect::RecordRef<'_>) {
    match format {
        DumpFormat::Text | DumpFormat::Hex => {
            let bytes: fn(&mut String, &[u8]) = if matches!(format, DumpFormat::Text) {
                escaped_text
            } else {
                hex
            };
            let _ = write!(
                s,
                "shard={} segment={} offset={} time={} key=",
                r.shard,
                r.sequence,
                r.offset,
                format_timestamp_us(r.timestamp_us)
            );
            bytes(s, r.key);
            s.push_str(" value=");
            bytes(s, r.value);
        }
        DumpFormat::Json => {
            let _ = write!(
                s,
                "{{\"shard\":{},\"segment\":{},\"offset\":{},\"timestamp_us\":{},",
                r.shard, r.sequence, r.offset, r.timestamp_us
            );
            json_bytes(s, "key", r.key);
            s.push(',');
            json_bytes(s, "value", r.value);
            s.push('}');
        }
    }
}

/// `"..."`: valid UTF-8 with Rust's debug escapes, other bytes as `\xNN`.
fn escaped_text(s: &mut String, bytes: &[u8]) {
    s.push('"');
    for chunk in bytes.utf8_chunks() {
        let _ = write!(s, "{}", chunk.valid().escape_debug());
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s.push('"');
}

fn hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
}

fn parse_hex(h: &str) -> Option<Vec<u8>> {
    let h = h.as_bytes();
    if !h.len().is_multiple_of(2) {
        return None;
    }
    h.chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// `"name":"text"` when UTF-8, else `"name_hex":"…"`.
fn json_bytes(s: &mut String, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let _ = write!(s, "\"{name}\":");
            json_string(s, text);
        }
        Err(_) => {
            let _ = write!(s, "\"{name}_hex\":\"");
            hex(s, bytes);
            s.push('"');
        }
    }
}

fn json_string(s: &mut String, text: &str) {
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

// ---------------------------------------------------------------------------------
// time

fn time_or_dash(us: Option<u64>) -> String {
    us.map_or_else(|| "-".into(), format_timestamp_us)
}

/// Microseconds since the Unix epoch as UTC ISO 8601, e.g. `2026-11-25T10:01:02.123456Z`.
fn format_timestamp_us(us: u64) -> String {
    let secs = us / 1_000_000;
    let micros = us % 1_000_000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(format_timestamp_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_timestamp_us(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            format_timestamp_us(1_795_600_862_123_456),
            "2026-11-25T10:01:02.123456Z"
        );
        assert_eq!(
            format_timestamp_us(4_102_444_799_999_999),
            "2099-12-31T23:59:59.999999Z"
        );
        // The largest timestamp does not overflow.
        assert!(format_timestamp_us(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn text_hex_and_json_escaping() {
        let mut s = String::new();
        escaped_text(&mut s, b"a\"b\n\xff\x00");
        assert_eq!(s, r#""a\"b\n\xff\0""#);
        assert_eq!(parse_hex("00fFa1"), Some(vec![0, 0xff, 0xa1]));
        assert_eq!(parse_hex("0"), None);
        assert_eq!(parse_hex("zz"), None);
        let mut j = String::new();
        json_bytes(&mut j, "key", "q\"\\\u{1}é".as_bytes());
        assert_eq!(j, "\"key\":\"q\\\"\\\\\\u0001é\"");
        j.clear();
        json_bytes(&mut j, "key", &[0xff, 0]);
        assert_eq!(j, "\"key_hex\":\"ff00\"");
    }
}
