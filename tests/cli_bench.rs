//! `nano-wal bench` end to end: the real binary, small workloads, its table checked.
#![cfg(feature = "cli")]

use std::path::Path;
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn bench(dir: &Path, extra: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_nano-wal"))
        .arg("bench")
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .output()
}

/// The value of a table row, e.g. `| fsyncs | 12` -> `12`.
fn row<'a>(table: &'a str, metric: &str) -> Option<&'a str> {
    table.lines().find_map(|line| {
        let mut cells = line.trim_start_matches('|').splitn(2, '|');
        let name = cells.next()?.trim();
        (name == metric).then(|| cells.next().map(str::trim))?
    })
}

fn leading_number(cell: &str) -> Option<f64> {
    cell.split_whitespace().next()?.parse().ok()
}

#[test]
fn bench_prints_every_figure_and_cleans_up() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = bench(
        tmp.path(),
        &[
            "--threads",
            "4",
            "--records",
            "4000",
            "--keys",
            "100",
            "--value-size",
            "64",
            "--durable",
            "0.25",
            "--shards",
            "2",
        ],
    )?;
    let stdout = String::from_utf8(out.stdout)?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(out.status.success(), "bench failed: {stderr}\n{stdout}");

    let rate = row(&stdout, "ingest ops/s (appends + final sync)").ok_or("no ops/s row")?;
    assert!(rate.contains("(4000 records in"), "{rate}");
    let read = row(&stdout, "read records/s (all keys)").ok_or("no read row")?;
    assert!(read.contains("(4000 records in"), "{read}");
    let durable = row(&stdout, "append latency p50 / p99, durable").ok_or("no latency")?;
    assert!(durable.ends_with("(1000 appends)"), "{durable}");
    let fast = row(&stdout, "append latency p50 / p99, non-durable").ok_or("no latency")?;
    assert!(fast.ends_with("(3000 appends)"), "{fast}");

    // 1000 durable appends need at least one fsync, and no more than one each
    // (plus the final sync of each shard).
    let fsyncs = leading_number(row(&stdout, "fsyncs").ok_or("no fsyncs")?).ok_or("fsyncs")?;
    assert!((1.0..=1002.0).contains(&fsyncs), "{fsyncs} fsyncs");
    let per = row(&stdout, "durable appends per fsync").ok_or("no ratio")?;
    let per = leading_number(per).ok_or("ratio")?;
    assert!(
        (per - 1000.0 / fsyncs).abs() < 0.06,
        "{per} vs 1000/{fsyncs}"
    );
    for metric in [
        "ingest MB/s (values)",
        "index memory",
        "on disk",
        "reopen (recovery + index rebuild)",
    ] {
        assert!(
            row(&stdout, metric).is_some(),
            "no {metric} row in\n{stdout}"
        );
    }

    let reopen = row(&stdout, "reopen (recovery + index rebuild)").ok_or("no reopen")?;
    assert!(
        reopen.ends_with("0 of 2 shards from the index checkpoint)"),
        "{reopen}"
    );

    // The scratch WAL is gone; nothing else was left in --dir.
    assert_eq!(std::fs::read_dir(tmp.path())?.count(), 0);
    Ok(())
}

#[test]
fn bench_with_an_index_checkpoint_reopens_from_it() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let flags = ["--records", "3000", "--keys", "50", "--shards", "2"];
    let out = bench(tmp.path(), &[&flags[..], &["--index-checkpoint"]].concat())?;
    let stdout = String::from_utf8(out.stdout)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reopen = row(&stdout, "reopen (recovery + index rebuild)").ok_or("no reopen")?;
    assert!(
        reopen.ends_with("2 of 2 shards from the index checkpoint)"),
        "{reopen}"
    );
    assert_eq!(std::fs::read_dir(tmp.path())?.count(), 0);
    Ok(())
}

#[test]
fn bench_keep_leaves_a_wal_that_reopens_with_every_record() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = bench(
        tmp.path(),
        &[
            "--threads",
            "3",
            "--records",
            "900",
            "--keys",
            "30",
            "--keep",
        ],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept: Vec<_> = std::fs::read_dir(tmp.path())?.collect::<Result<_, _>>()?;
    assert_eq!(kept.len(), 1);
    let wal = nano_wal::Wal::new(kept[0].path().join("wal"), nano_wal::WalOptions::default())?;
    assert_eq!(wal.stats()?.records(), 900);
    assert_eq!(wal.enumerate_keys::<Vec<u8>>()?.count(), 30);
    assert_eq!(wal.enumerate_records("key-00000007")?.count(), 30);
    wal.close()?;
    Ok(())
}

#[test]
fn bench_refuses_bad_flags_with_a_message() -> TestResult {
    let tmp = tempfile::tempdir()?;
    for (flags, message) in [
        (
            &["--durable", "1.5"][..],
            "--durable must be within 0.0..=1.0",
        ),
        (&["--threads", "0"][..], "--threads must be at least 1"),
        (&["--shards", "0"][..], "shards"),
    ] {
        let out = bench(tmp.path(), flags)?;
        let stderr = String::from_utf8(out.stderr)?;
        assert!(!out.status.success(), "{flags:?} accepted");
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
    }
    assert_eq!(std::fs::read_dir(tmp.path())?.count(), 0);
    Ok(())
}
