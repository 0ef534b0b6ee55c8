//! `nano-wal inspect DIR`: segments, records, keys, bytes and time ranges per shard.

use super::output::{time_or_dash, with_stdout, write_table, ToolResult};
use nano_wal::inspect::{self, CheckpointCheck, Damage, SegmentScan, WalScan};
use std::io::{self, Write};
use std::path::PathBuf;

/// Arguments of `nano-wal inspect`.
#[derive(clap::Args, Debug, Clone)]
pub struct InspectArgs {
    /// The WAL directory.
    dir: PathBuf,
}

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
