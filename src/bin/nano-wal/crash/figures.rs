//! The totals the crash loop prints at the end.

use std::time::Duration;

/// Running totals printed at the end.
#[derive(Default, Debug)]
pub(super) struct Figures {
    /// Kill/reopen/check cycles run.
    pub(super) cycles: u64,
    /// Durable records the child acknowledged, all looked for.
    pub(super) acked_checked: u64,
    /// Acknowledged durable records missing after a reopen.
    pub(super) lost: u64,
    /// Records of each cycle's own generation found, durable and not.
    pub(super) durable_found: u64,
    pub(super) non_durable_found: u64,
    /// Records read back and verified, over all reopens.
    pub(super) records_verified: u64,
    /// Recoveries that truncated something, and the bytes they cut.
    pub(super) truncations: u64,
    pub(super) truncated_bytes: u64,
    /// Segment files that held bytes and that a recovery removed whole (an unfinished
    /// seal's later segments; since seal notes, a kill should leave none).
    pub(super) segments_removed: u64,
    /// Children killed before they had opened the WAL.
    pub(super) killed_before_ready: u64,
    /// WALs started afresh.
    pub(super) fresh_starts: u64,
    /// Records of the largest WAL a check read.
    pub(super) largest_wal_records: u64,
    /// Violations found, all counted.
    pub(super) violations: u64,
    /// Reopens from a checkpoint compared with the scan before them.
    pub(super) checkpoint_reopens: u64,
}

/// Prints the totals as a two-column table.
pub(super) fn print_figures(f: &Figures, wall: Duration) {
    let count = |name: &'static str, n: u64| (name, n.to_string());
    let rows = [
        count("cycles", f.cycles),
        count("acknowledged durable records checked", f.acked_checked),
        count("records lost", f.lost),
        count("durable records found (this cycle's)", f.durable_found),
        count(
            "non-durable records found (this cycle's)",
            f.non_durable_found,
        ),
        count("records verified (all reopens)", f.records_verified),
        (
            "recoveries with truncation",
            format!("{}   ({} bytes cut)", f.truncations, f.truncated_bytes),
        ),
        count(
            "segment files removed whole (not empty)",
            f.segments_removed,
        ),
        count("kills before the WAL was open", f.killed_before_ready),
        count("fresh WALs", f.fresh_starts),
        count("checkpoint reopens matching the scan", f.checkpoint_reopens),
        count("largest WAL checked (records)", f.largest_wal_records),
        count("violations", f.violations),
        (
            "wall time",
            format!(
                "{:.1?}   ({:.0?} per cycle)",
                wall,
                wall / f.cycles.max(1) as u32
            ),
        ),
    ];
    println!("| {:<41}| result", "metric");
    println!("|{:-<42}|-------", "");
    for (name, value) in rows {
        println!("| {name:<41}| {value}");
    }
}
