//! What the tools share for their output: buffered stdout, tables and timestamps.

use std::error::Error;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

/// What the tools return: errors end them with a message.
pub(super) type ToolResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Runs `f` over a buffered stdout; a closed pipe (`| head`) ends output quietly.
pub(super) fn with_stdout(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> ToolResult<()> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match f(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A `| a | b |` table: numbers right-aligned, text left-aligned, no trailing `|`.
pub(super) fn write_table(
    out: &mut dyn Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> io::Result<()> {
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

pub(super) fn time_or_dash(us: Option<u64>) -> String {
    us.map_or_else(|| "-".into(), format_timestamp_us)
}

/// Microseconds since the Unix epoch as UTC ISO 8601, e.g. `2026-11-25T10:01:02.123456Z`.
pub(super) fn format_timestamp_us(us: u64) -> String {
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
}
