//! Power cuts anywhere in a run: with preallocation, during compaction, with
//! sector tears.

use super::*;

/// Runs `seed`'s workload and opens the disk after each of `cuts` cut points (and
/// after the whole log), `variants` times each. Returns how many states `Strict`
/// refused as corruption: for damage followed by valid records ([`ambiguous`]), or,
/// with `tears`, in a shard with a torn sector.
pub(super) fn power_cuts(
    seed: u64,
    appends: usize,
    cuts: usize,
    variants: usize,
    preallocation: u64,
    tears: bool,
    compaction: bool,
) -> usize {
    let mut rng = Rng(seed);
    let mut options = model_options();
    if compaction {
        // Segments of 1 ms: time rotation too.
        options = options
            .with_retention(std::time::Duration::from_millis(2))
            .with_segments(2);
    }
    let (ops, done) = run(
        seed,
        &mut rng,
        &options,
        appends,
        0,
        preallocation,
        compaction,
    );
    check_markers(&[], &ops, crate::wal::MEM_SALT, &format!("seed {seed}"));
    let placed = placement(&ops);
    let removed = placed.removed_at.len();
    assert_eq!(
        compaction,
        removed > 0,
        "seed {seed}: {removed} segments removed"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let manifest = template_manifest(tmp.path(), &options);
    let points = cut_points(&ops, 0, cuts, &mut rng);
    let mut refused = 0;
    for (n, &cut) in points.iter().enumerate() {
        for v in 0..variants {
            let case = format!(
                "seed {seed}, cut after {cut} of {} ops, variant {v}",
                ops.len()
            );
            let dir = tmp.path().join(format!("cut-{n}-{v}"));
            let (disk, torn) = cut_into(&dir, &manifest, &ops[..cut], &mut rng, tears);
            let wal = match Wal::new(&dir, options.clone()) {
                Ok(wal) => wal,
                Err(crate::WalError::Corruption { path, reason, .. })
                    if ambiguous(&reason)
                        || shard_of(&dir, &path).is_some_and(|s| torn.contains(&s)) =>
                {
                    refused += 1;
                    let skipping = options
                        .clone()
                        .with_recovery_mode(RecoveryMode::SkipCorrupted);
                    let removable = removable(&done, &placed, cut);
                    let expected = Expected {
                        appends: &done,
                        removable: &removable,
                        cut,
                    };
                    after_refusal(&dir, &path, &disk, &skipping, &expected, &case);
                    continue;
                }
                Err(e) => reopen_failed(&ops[..cut], &disk, &e, &case),
            };
            check(&wal, &done, &removable(&done, &placed, cut), cut, &case);
            durable_after_recovery(&wal, &dir, &options, &case);
            std::fs::remove_dir_all(&dir).expect("cleanup");
        }
    }
    refused
}

#[test]
fn every_durable_append_survives_power_cuts_anywhere_in_a_run() {
    let mut refused = 0;
    for seed in 1..=8 {
        refused += power_cuts(seed, 300, 40, 2, 0, false, false);
        refused += power_cuts(seed, 300, 40, 2, 2048, false, false);
    }
    eprintln!(
        "power cuts: Strict refused {refused} of {} states",
        8 * 2 * 41 * 2
    );
}

/// The same with `compact` now and then: cuts fall among its unlinks too.
#[test]
fn every_durable_append_survives_power_cuts_during_compaction() {
    let mut refused = 0;
    for seed in 1..=8 {
        refused += power_cuts(seed, 300, 40, 2, 2048, false, true);
    }
    eprintln!(
        "power cuts during compaction: Strict refused {refused} of {} states",
        8 * 41 * 2
    );
}

/// A disk that writes a page sector by sector can keep some of a page's sectors and
/// lose the rest. Recovery's rules work in 4 KiB pages, so a state with a torn page
/// before records that reached the disk can be refused as corruption
/// (docs/FORMAT.md, "Sector tears are refused, not cut"): that must be the only way
/// it fails, only with a torn page, and rarely, and the damaged shard must be left
/// as it was. Such a state opens with `SkipCorrupted`, with no record invented and
/// every append acknowledged as durable kept, and takes durable appends that
/// survive a kill and a close; every state `Strict` opens passes the full checks.
#[test]
fn sector_tears_open_or_are_refused_as_corruption_losing_nothing_durable() {
    let (seeds, cuts, variants) = (8, 40, 4);
    let mut refused = 0;
    for seed in 1..=seeds {
        refused += power_cuts(seed, 300, cuts, variants, 2048, true, false);
    }
    let states = seeds as usize * (cuts + 1) * variants;
    eprintln!("sector tears: Strict refused {refused} of {states} states as corruption");
    // A refusal is the exception, not the rule; but one happens in every run (with
    // 8 seeds and 4 variants: 11-24 of 1,312 in the 7 runs measured), so the
    // refusal checks above always run.
    assert!(refused * 10 <= states, "{refused} of {states} refused");
    assert!(
        refused > 0,
        "no torn page was refused: the checks above did not run"
    );
}
