//! `nano-wal verify DIR`: checks every checksum.
//!
//! Exit codes of `verify`:
//! - `0`: clean (preallocated zero space at the end of a newest segment is not damage);
//! - `1`: damage that `Wal::new` would refuse under `RecoveryMode::Strict` (or skip
//!   under `SkipCorrupted`): every damage is listed with file and offset;
//! - `2`: nothing could be checked (not a WAL directory, I/O error) or bad usage;
//! - `3`: only torn tails of newest segments: what the next open truncates (a crash
//!   interrupted a write; on a live WAL, possibly a write in progress).

use super::output::with_stdout;
use nano_wal::inspect::{self, Damage, WalScan};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `nano-wal verify`.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The WAL directory.
    dir: PathBuf,
}

/// Exit code of `verify` for damage.
const EXIT_DAMAGED: u8 = 1;
/// Exit code of `verify` when nothing could be checked.
const EXIT_UNCHECKED: u8 = 2;
/// Exit code of `verify` when the only damage is torn tails.
const EXIT_TORN_TAIL: u8 = 3;
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
