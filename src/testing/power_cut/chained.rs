//! Crash, reopen, write on, cut the power.

use super::*;

/// How the first run of [`crash_then_power_cuts`] ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Crash {
    /// `kill -9`: the page cache stays, so the reopen reads every write, synced or
    /// not, and a power cut later can still lose the unsynced ones.
    Kill,
    /// A power cut: the reopen reads a state of [`disk_after_cut`], all of it on disk.
    PowerCut,
}

/// Crash, reopen, write on, cut the power. A first run (as in [`power_cuts`]) ends
/// at `firsts` random points of its log by `crash`; the WAL is reopened from what
/// that leaves (on files, by the real recovery, whose calls are logged too) and goes
/// on over the memory store, from the files as recovery left them, with a second run
/// of appends; a power cut then falls at `cuts` random points of the second run,
/// after each of its segment creations made while an earlier one was unsynced, after
/// its close, and before and after each call of the recovery (with the first run's
/// calls before them, so after a kill the first run's unsynced pages may still go).
/// Each cut must reopen in `Strict` mode and keep, per shard, one unbroken run:
/// first the records the reopen recovered, then the second run's appends. None of
/// those may be missing that was durable at the cut: a recovered record acknowledged as durable
/// before the crash (after a power cut, every one: it was on disk) or covered by a
/// durable answer of the second run (a `sync`, or a durable append to its shard,
/// which waits for the unsynced segments the reopen found:
/// `Actor::resync_recovered`), and an append of the second run acknowledged as
/// durable.
///
/// Returns what it covered ([`Chained`]).
pub(super) fn crash_then_power_cuts(
    seed: u64,
    crash: Crash,
    firsts: usize,
    cuts: usize,
) -> Chained {
    let mut rng = Rng(seed);
    let options = model_options();
    let skipping = options
        .clone()
        .with_recovery_mode(RecoveryMode::SkipCorrupted);
    let preallocation = 2048;
    // On odd seeds both runs start with a trickle of non-durable appends: the kill
    // then leaves seals no marker vouches for, and seals pile up on the syncer after
    // the reopen while it still has the recovered ones to sync.
    let quiet = if seed % 2 == 1 { 100 } else { 0 };
    let (ops, done) = run(seed, &mut rng, &options, 150, quiet, preallocation, false);
    check_markers(&[], &ops, crate::wal::MEM_SALT, &format!("seed {seed}"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let manifest = template_manifest(tmp.path(), &options);
    let mut covered = Chained::default();
    for n in 0..firsts {
        let crashed_at = rng.below(ops.len() as u32 + 1) as usize;
        let case = format!(
            "seed {seed}, {crash:?} after {crashed_at} of {} ops",
            ops.len()
        );
        let mut whole = match crash {
            Crash::Kill => ops[..crashed_at].to_vec(),
            Crash::PowerCut => durable_ops(&disk_after_cut(&ops[..crashed_at], &mut rng, false).0),
        };
        let killed = page_cache(&whole);
        let dir = tmp.path().join(format!("first-{n}"));
        write_dir(&dir, &manifest, &killed);
        // Recovery's own calls (cuts, fsyncs, removals, directory fsyncs) go into
        // the log as it makes them, and must explain every change it made.
        let recovery = OpLog::default();
        crate::io::observed::watch(&dir, recovery.clone());
        let mut opened = crate::open::open_dir(&dir, &options);
        // A power cut can leave lost pages before pages that reached the disk: the
        // state is refused, changing nothing, and salvaged with `SkipCorrupted`.
        let salvaged = match &opened {
            Err(crate::WalError::Corruption { path, reason, .. })
                if crash == Crash::PowerCut && ambiguous(reason) =>
            {
                covered.refused += 1;
                // Other shards may have cut their torn tails, as any open does.
                let damaged = |((s, _), _): &(&FileId, &Vec<u8>)| shard_of(&dir, path) == Some(*s);
                assert!(
                    read_wal(&dir)
                        .iter()
                        .filter(damaged)
                        .eq(killed.iter().filter(damaged)),
                    "{case}: a refused open modified the damaged shard"
                );
                opened = crate::open::open_dir(&dir, &skipping);
                true
            }
            _ => false,
        };
        crate::io::observed::unwatch(&dir);
        let opened = opened.unwrap_or_else(|e| reopen_failed(&whole, &killed, &e, &case));
        let recovery = recovery.lock().unwrap_or_else(|e| e.into_inner()).clone();
        covered.changed += usize::from(!recovery.is_empty());
        covered.cut_tails += usize::from(recovery.iter().any(|op| matches!(op, Op::Cut { .. })));
        covered.removed += usize::from(recovery.iter().any(|op| matches!(op, Op::Remove(_))));
        let recovery_from = whole.len();
        whole.extend(recovery);
        let after = read_wal(&dir);
        assert!(
            page_cache(&whole) == after,
            "{case}: recovery changed the files beyond the calls it made"
        );
        // The second run, over memory from the files as recovery left them.
        let log = OpLog::default();
        let storage = recording_store(seed, &log, preallocation);
        let mut shards = opened.shards;
        hand_over(&mut shards, |shard, sequence| {
            storage.adopt(shard, sequence, after[&(shard, sequence)].clone())
        });
        let wal = Wal::start(
            std::path::PathBuf::from("mem"),
            options.clone(),
            storage,
            shards,
            None,
            opened.report,
            opened.salt,
        )
        .expect("start over memory");
        drop(opened.lock);
        // The first reopen passes the checks of a single run cut there (after a kill
        // nothing acknowledged as durable may be missing either).
        if salvaged {
            check_skipping(&wal, &done, &vec![false; done.len()], crashed_at, &case);
        } else {
            check(&wal, &done, &vec![false; done.len()], crashed_at, &case);
        }
        let mut appends = recovered_appends(
            &wal,
            &done,
            |at| match crash {
                Crash::Kill => at.filter(|&at| at <= crashed_at),
                Crash::PowerCut => Some(0),
            },
            &case,
        );
        let base = whole.len();
        let (second, syncs) = workload(&wal, &log, base, seed, &mut rng, 150, quiet, "b", false);
        wal.close()
            .unwrap_or_else(|e| panic!("{case}: close of the second run: {e}"));
        // When the second run made each shard's recovered records durable.
        for a in &mut appends {
            let shard = shard_for(&a.key, SHARDS);
            let covered_at = second
                .iter()
                .filter(|b| b.durable && shard_for(&b.key, SHARDS) == shard)
                .filter_map(|b| b.durable_at)
                .chain(syncs.iter().copied())
                .min();
            covered.made_durable += usize::from(a.durable_at.is_none() && covered_at.is_some());
            a.durable_at = a.durable_at.into_iter().chain(covered_at).min();
        }
        appends.extend(second);
        whole.extend(
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        check_markers(&whole[..base], &whole[base..], crate::wal::MEM_SALT, &case);
        let mut points = cut_points(&whole, base, cuts, &mut rng);
        // Also a cut before recovery's first call and after each of its calls: a
        // power cut while the reopen repairs what the kill or cut left.
        if base > recovery_from {
            points.extend(recovery_from..=base);
            covered.in_recovery += base - recovery_from + 1;
        }
        let none_removable = vec![false; appends.len()];
        covered.states += points.len();
        for (m, &cut) in points.iter().enumerate() {
            let case = format!(
                "{case}, then a power cut after call {cut} of {} (the second run from call {base})",
                whole.len()
            );
            let dir = tmp.path().join(format!("second-{n}-{m}"));
            let (disk, _) = cut_into(&dir, &manifest, &whole[..cut], &mut rng, false);
            match Wal::new(&dir, options.clone()) {
                Ok(wal) if !salvaged => {
                    check(&wal, &appends, &none_removable, cut, &case);
                    durable_after_recovery(&wal, &dir, &options, &case);
                    std::fs::remove_dir_all(&dir).expect("cleanup");
                }
                Ok(wal) => {
                    // The salvaged first run's records are not a prefix of its appends.
                    check_skipping(&wal, &appends, &none_removable, cut, &case);
                    durable_after_recovery(&wal, &dir, &options, &case);
                    std::fs::remove_dir_all(&dir).expect("cleanup");
                }
                Err(crate::WalError::Corruption { path, reason, .. })
                    if ambiguous(&reason) || salvaged =>
                {
                    covered.refused += 1;
                    let expected = Expected {
                        appends: &appends,
                        removable: &none_removable,
                        cut,
                    };
                    after_refusal(&dir, &path, &disk, &skipping, &expected, &case);
                }
                Err(e) => reopen_failed(&whole[..cut], &disk, &e, &case),
            }
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
    covered
}

/// What [`crash_then_power_cuts`] covered.
#[derive(Default)]
pub(super) struct Chained {
    /// Recovered records that were not durable at the crash (after a power cut:
    /// none) and that a durable answer of the second run made durable.
    pub(super) made_durable: usize,
    /// Reopens whose recovery changed files; of them, those that cut a torn tail
    /// and those that removed a segment.
    pub(super) changed: usize,
    pub(super) cut_tails: usize,
    pub(super) removed: usize,
    /// Cut states checked, and how many of them fell during recovery.
    pub(super) states: usize,
    pub(super) in_recovery: usize,
    /// States `Strict` refused (damage followed by valid records), salvaged with
    /// `SkipCorrupted`.
    pub(super) refused: usize,
}

/// The records `wal` holds of the first run's appends `done`, as appends in the
/// order of `done`, each durable where `durable` says from its first-run
/// acknowledgement.
pub(super) fn recovered_appends(
    wal: &Wal,
    done: &[Append],
    durable: impl Fn(Option<usize>) -> Option<usize>,
    case: &str,
) -> Vec<Append> {
    let mut kept: Vec<usize> = by_key(done)
        .iter()
        .flat_map(|(key, list)| kept_in_order(wal, key, done, list, case))
        .collect();
    kept.sort_unstable();
    kept.into_iter()
        .map(|i| Append {
            key: done[i].key.clone(),
            value: done[i].value.clone(),
            durable_at: durable(done[i].durable_at),
            durable: done[i].durable,
        })
        .collect()
}

/// Crash, reopen, write on, cut the power: a kill (the page cache kept) or a power
/// cut ends the first run, and power cuts fall during the reopen's recovery and in
/// the second run.
#[test]
fn every_durable_append_survives_a_crash_a_reopen_and_a_power_cut() {
    let mut all = Chained::default();
    for seed in 1..=6 {
        for crash in [Crash::Kill, Crash::PowerCut] {
            let c = crash_then_power_cuts(seed, crash, 4, 12);
            all.made_durable += c.made_durable;
            all.changed += c.changed;
            all.cut_tails += c.cut_tails;
            all.removed += c.removed;
            all.states += c.states;
            all.in_recovery += c.in_recovery;
            all.refused += c.refused;
        }
    }
    eprintln!(
        "crash, reopen, power cut: {} cut states ({} during recovery); {} recovered \
         records made durable by the second run; {} of 48 reopens changed files ({} cut \
         a torn tail, {} removed a segment); Strict refused {} states, salvaged losing \
         nothing durable",
        all.states,
        all.in_recovery,
        all.made_durable,
        all.changed,
        all.cut_tails,
        all.removed,
        all.refused
    );
    // Every path ran: records a kill left unsynced that the second run's durable
    // answers had to cover, and recoveries that cut a torn tail (cuts then fall
    // between the cut and its fsync) and that removed a segment.
    assert!(
        all.made_durable > 0,
        "no recovered record needed the second run"
    );
    assert!(all.cut_tails > 0, "no recovery cut a torn tail");
    assert!(all.removed > 0, "no recovery removed a segment");
}
