//! The `nano-wal` command-line tool.
//!
//! - `nano-wal bench`: a many-thread ingest on a fresh temporary directory, then reads
//!   by key and a reopen, with a progress bar and a result table (see `bench.rs`).
//! - `nano-wal crash-loop`: the kill -9 crash test; spawns the hidden `crash-child`,
//!   SIGKILLs it at random moments, reopens and checks the WAL (see `crash/`).
//! - `nano-wal inspect|verify|dump DIR`: read-only operator tools (see `tools/`).

mod bench;
mod crash;
mod tools;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// nano-wal: an embedded, sharded, key-indexed write-ahead log.
#[derive(Parser)]
#[command(name = "nano-wal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Many threads share one handle and ingest a mix of durable and non-durable
    /// appends; then every key is read back and the WAL is reopened. Prints a table.
    Bench(bench::BenchArgs),
    /// The kill -9 crash test: cycles of spawning an ingesting child, SIGKILL at a
    /// random moment, reopen and check every record. Prints the figures.
    CrashLoop(crash::LoopArgs),
    /// Child of `crash-loop`: ingests from many threads until killed.
    #[command(hide = true)]
    CrashChild(crash::ChildArgs),
    /// Read-only: shards, segments, records, keys, bytes and time ranges of a WAL.
    Inspect(tools::InspectArgs),
    /// Read-only: checks every checksum. Exit 0 clean, 1 damaged, 2 not checked,
    /// 3 only torn tails (which the next open truncates).
    Verify(tools::VerifyArgs),
    /// Read-only: prints records as text, hex or JSON lines, optionally of one key.
    Dump(tools::DumpArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::CrashLoop(args) => crash::run_loop(&args),
        Command::CrashChild(args) => crash::run_child(&args),
        Command::Inspect(args) => tools::inspect(&args),
        Command::Verify(args) => return tools::verify(&args),
        Command::Dump(args) => tools::dump(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nano-wal: {e}");
            ExitCode::FAILURE
        }
    }
}
