//! The kill -9 crash loop, end to end: the real binary's `crash-loop` spawns its
//! hidden `crash-child` (8 ingest threads, durable and non-durable appends under 32
//! shared keys), SIGKILLs it at a random moment, reopens the WAL and checks every
//! record (see `src/bin/nano-wal/crash/` for the record format and the checks).
//!
//! The long run is the ignored test below, or directly:
//! `cargo run --release -- crash-loop --cycles 500`.
#![cfg(all(feature = "cli", unix))]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn crash_loop(dir: &Path, cycles: u64, extra: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_nano-wal"))
        .arg("crash-loop")
        .arg("--cycles")
        .arg(cycles.to_string())
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .output()
}

/// The value of a table row as a number, e.g. `| records lost | 0` -> `0`.
fn figure(table: &str, metric: &str) -> Result<u64, String> {
    let cell = table
        .lines()
        .find_map(|line| {
            let mut cells = line.trim_start_matches('|').splitn(2, '|');
            let name = cells.next()?.trim();
            (name == metric).then(|| cells.next().map(str::trim))?
        })
        .ok_or_else(|| format!("no row {metric:?} in:\n{table}"))?;
    let number = cell.split_whitespace().next().unwrap_or_default();
    number
        .parse()
        .map_err(|_| format!("row {metric:?}: {cell:?} is not a number"))
}

/// Runs `cycles` cycles (with the `extra` flags) and asserts the figures: every
/// cycle ran, acknowledged records were checked, none was lost, no violation, and
/// the scratch dir is gone. Returns the table.
fn run_and_check(cycles: u64, extra: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let started = Instant::now();
    let out = crash_loop(tmp.path(), cycles, extra)?;
    let stdout = String::from_utf8(out.stdout)?;
    let stderr = String::from_utf8(out.stderr)?;
    // Shown with --nocapture: the figures of this run.
    println!(
        "{stdout}{stderr}wall time of the test: {:.1?}",
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "crash-loop failed:\n{stderr}\n{stdout}"
    );

    assert_eq!(figure(&stdout, "cycles")?, cycles);
    let acked = figure(&stdout, "acknowledged durable records checked")?;
    assert!(
        acked >= cycles,
        "too few acknowledged records: {acked}\n{stdout}"
    );
    assert_eq!(figure(&stdout, "records lost")?, 0, "{stdout}");
    assert_eq!(figure(&stdout, "violations")?, 0, "{stdout}");
    let durable = figure(&stdout, "durable records found (this cycle's)")?;
    assert!(
        durable >= acked,
        "fewer durable records than acks: {stdout}"
    );
    assert!(figure(&stdout, "non-durable records found (this cycle's)")? > 0);
    assert!(figure(&stdout, "records verified (all reopens)")? >= durable);
    assert!(
        figure(&stdout, "kills before the WAL was open")? < cycles,
        "the child never got to ingest: {stdout}"
    );
    // Figures are parsed from the table, not assumed: the truncation count exists.
    figure(&stdout, "recoveries with truncation")?;
    // A kill leaves every sealed segment whole, and its successor's seal note says
    // so: no recovery removes a segment that held anything (format version 3).
    assert_eq!(
        figure(&stdout, "segment files removed whole (not empty)")?,
        0,
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path())?.count(),
        0,
        "scratch directory left behind"
    );
    Ok(stdout)
}

/// 20 cycles of spawn, ingest, SIGKILL, reopen and check (about 10 s in release).
#[test]
fn kill9_twenty_cycles_lose_no_acknowledged_record() -> TestResult {
    let table = run_and_check(20, &[])?;
    assert_eq!(figure(&table, "checkpoint reopens matching the scan")?, 0);
    Ok(())
}

/// The same with `WalOptions::index_checkpoint`: every child opens from the
/// checkpoint the previous check's close wrote and is killed; the check's reopen
/// must scan, and a reopen from the checkpoint its close writes must serve exactly
/// what the scan served (about 10 s in release).
#[test]
fn kill9_with_index_checkpoints_loses_nothing_and_reopens_match() -> TestResult {
    let table = run_and_check(12, &["--index-checkpoint"])?;
    assert_eq!(figure(&table, "checkpoint reopens matching the scan")?, 12);
    Ok(())
}

/// The long run: `cargo test --release --test crash_kill9 -- --ignored --nocapture`.
#[test]
#[ignore = "long run: 500 kill -9 cycles, a few minutes"]
fn kill9_five_hundred_cycles_lose_no_acknowledged_record() -> TestResult {
    run_and_check(500, &[]).map(drop)
}
