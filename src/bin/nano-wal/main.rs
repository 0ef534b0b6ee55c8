//! The `nano-wal` command-line tool.
//!
//! - `nano-wal bench`: a many-thread ingest on a fresh temporary directory, then reads
//!   by key and a reopen, with a progress bar and a result table (see `bench.rs`).

mod bench;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nano-wal: {e}");
            ExitCode::FAILURE
        }
    }
}
