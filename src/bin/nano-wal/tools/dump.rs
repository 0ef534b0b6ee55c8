//! `nano-wal dump DIR`: records as text, hex or JSON lines, optionally of one key.

use super::output::{format_timestamp_us, with_stdout, ToolResult};
use clap::ValueEnum;
use nano_wal::inspect;
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

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

#[cfg(test)]
mod tests {
    use super::*;

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
