//! The seal syncer: makes sealed segments durable off the writer's path.
//!
//! The actor cuts a full segment to its data, marks it sealed, hands it here and goes
//! on writing into the next segment, rather than standing still while up to 64 MiB
//! go to disk; this shard's syncer thread (started at the first job) fsyncs sealed
//! segments one at a time, in sequence order, and publishes the highest sequence
//! whose fsync succeeded.
//!
//! The rules that keep durability exact (docs/ARCHITECTURE.md, docs/FORMAT.md):
//!
//! - Nothing is acknowledged as durable while a sealed segment of the shard is still
//!   waiting here: a durable batch, `sync` and close wait for [`SealSyncer::wait_all`].
//! - Once segments up to `n` are synced, the actor writes a sync marker saying so
//!   into its active segment before its next durable fsync (starting a new segment
//!   for it when the active one is full or absent). So if any record after segment
//!   `n` was acknowledged as durable, a marker for `n` is on disk after it; recovery
//!   only treats damage in a sealed segment as an unfinished seal when no marker
//!   vouches for it.
//! - A failed fsync is never retried: the error is kept, every later call returns it
//!   and the actor poisons the shard.
//! - A new segment's name is made durable here too (an fsync of the shard directory,
//!   queued when the actor creates the file): on ext4 that fsync commits the journal,
//!   which in `data=ordered` mode first writes back the data of the segment sealed
//!   just before, so on the actor it would take as long as the seal's own fsync.
//! - **Deferred until needed.** A queued job waits until something needs it done: a
//!   durable batch, `sync` or close ([`SealSyncer::wait_all`]), or more than
//!   [`DEFERRED_JOBS`] jobs waiting (then the oldest go until that many are left),
//!   or a job that has waited [`DEFER_LIMIT`](crate::shard::wait::DEFER_LIMIT), or the actor had no request for
//!   [`IDLE_SYNC_AFTER`](crate::shard::wait::IDLE_SYNC_AFTER) (the ingest has
//!   stopped: nothing competes with the fsyncs, and a durable call that comes later
//!   finds them done); the policy is [`deferral_left`], in `shard/wait.rs`.
//!   A non-durable ingest therefore does not pay for writing its sealed segments
//!   back while it runs: the kernel writes the pages back on its own schedule, and
//!   the fsync that a later durable call needs then has little left to do.
//!   What deferring costs: the first durable call after a burst waits for the
//!   deferred fsyncs (at most [`DEFERRED_JOBS`] jobs: four sealed segments per
//!   shard), and a `kill -9` leaves more sealed segments no sync marker vouches for,
//!   which recovery keeps when their seal notes show them whole (`recovery/`).
//! - At most [`MAX_PENDING_JOBS`] jobs wait at a time (a seal and the next segment's
//!   directory fsync are two); a further one waits for the oldest, which bounds both
//!   the unsynced data and the work after a crash.
//!
//! Under loom the jobs run inline on the actor, so the models of the other protocols
//! keep their thread count and see the same actor code; `tests/loom_seal_sync.rs`
//! opens its WAL with the thread (`model::mem_wal_with_syncer_thread`) to check the
//! hand-off itself. The choice belongs to each WAL's store
//! (`Storage::seal_syncs_inline`), so models running side by side cannot change
//! each other's.

use crate::error::{Result, WalError};
use crate::io::{SegmentIo, Storage};
use crate::shard::wait::{deferral_left, DEFERRED_JOBS};
use crate::shard::{Counters, ShardShared};
use crate::sync::{lock, wait, wait_timeout, Arc, Condvar, JoinHandle, Mutex, ThreadBuilder};
use std::collections::VecDeque;
use std::time::Instant;

/// Jobs of one shard that may wait at once (more than [`DEFERRED_JOBS`], so that the
/// syncer is always running when the actor waits for room).
pub(crate) const MAX_PENDING_JOBS: usize = DEFERRED_JOBS + 2;

/// An fsync waiting to run.
enum Job {
    /// A sealed segment.
    Seal {
        sequence: u64,
        io: std::sync::Arc<dyn SegmentIo>,
    },
    /// The shard directory, after a segment was created in it.
    Dir,
}

#[derive(Default)]
struct State {
    /// Jobs not started yet, oldest first, each with when it was queued.
    queue: VecDeque<(Job, Instant)>,
    /// Jobs queued or being synced.
    outstanding: usize,
    /// Every sealed segment up to this sequence is durable.
    synced_through: u64,
    /// The first failed fsync; nothing is synced after it.
    error: Option<WalError>,
    /// The actor waits for every queued job ([`SealSyncer::wait_all`]).
    demanded: bool,
    /// The actor has had no request for a while ([`SealSyncer::set_idle`]).
    idle: bool,
    closed: bool,
}

impl State {
    /// How long the oldest queued job may still wait (zero: run it now); `None`
    /// when nothing is queued.
    fn deferral_left(&self, now: Instant) -> Option<std::time::Duration> {
        let &(_, queued) = self.queue.front()?;
        let hurried = self.demanded || self.idle || self.closed;
        // The loom models check who waits for whom; time does not pass in them.
        #[cfg(loom)]
        let waited = {
            let _ = (now, queued);
            std::time::Duration::ZERO
        };
        #[cfg(not(loom))]
        let waited = now.saturating_duration_since(queued);
        Some(deferral_left(self.queue.len(), waited, hurried))
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// The shard, for its fsync counter.
    shard: Arc<ShardShared>,
    storage: std::sync::Arc<dyn Storage>,
}

/// One shard's seal syncer, owned by its actor.
pub(crate) struct SealSyncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SealSyncer {
    /// A syncer for `shard`, whose segments up to `synced_through` are known durable.
    pub(crate) fn new(
        shard: Arc<ShardShared>,
        storage: std::sync::Arc<dyn Storage>,
        synced_through: u64,
    ) -> SealSyncer {
        SealSyncer {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    synced_through,
                    ..State::default()
                }),
                changed: Condvar::new(),
                shard,
                storage,
            }),
            thread: None,
        }
    }

    /// Queues sealed segment `sequence` for its fsync. Waits while
    /// [`MAX_PENDING_JOBS`] are already waiting. Fails with the first fsync error.
    pub(crate) fn submit(
        &mut self,
        sequence: u64,
        io: std::sync::Arc<dyn SegmentIo>,
    ) -> Result<()> {
        self.push(Job::Seal { sequence, io })
    }

    /// Queues an fsync of the shard directory, after a segment was created in it.
    pub(crate) fn submit_dir(&mut self) -> Result<()> {
        self.push(Job::Dir)
    }

    fn push(&mut self, job: Job) -> Result<()> {
        if self.shared.storage.seal_syncs_inline() {
            let result = run_job(&self.shared, &job);
            finish_job(&self.shared, &job, result);
            return self.synced_through().map(drop);
        }
        if self.thread.is_none() {
            let shared = self.shared.clone();
            let spawned = ThreadBuilder::new()
                .name(format!("nano-wal-sync-{}", self.shared.shard.id))
                .spawn(move || run(&shared));
            let thread = spawned.map_err(|e| {
                let path = match &job {
                    Job::Seal { io, .. } => io.path().to_path_buf(),
                    // The shard directory, by name (the syncer has no root path).
                    Job::Dir => std::path::PathBuf::from(crate::io::shard_dir_name(
                        self.shared.shard.id as u32,
                    )),
                };
                WalError::io("spawning the seal syncer for", path, e)
            })?;
            self.thread = Some(thread);
        }
        let mut state = lock(&self.shared.state);
        while state.outstanding >= MAX_PENDING_JOBS && state.error.is_none() {
            state = wait(&self.shared.changed, state);
        }
        if let Some(e) = &state.error {
            return Err(e.clone());
        }
        state.queue.push_back((job, Instant::now()));
        state.outstanding += 1;
        self.shared.changed.notify_all();
        Ok(())
    }

    /// The actor is idle (`true`: queued jobs run now, as nothing competes with
    /// them) or busy again (`false`: later jobs wait as usual; one already running
    /// finishes).
    pub(crate) fn set_idle(&self, idle: bool) {
        let mut state = lock(&self.shared.state);
        state.idle = idle;
        if idle {
            self.shared.changed.notify_all();
        }
    }

    /// Every sealed segment up to the returned sequence is durable (some later ones
    /// may still be waiting). Fails with the first fsync error.
    pub(crate) fn synced_through(&self) -> Result<u64> {
        let state = lock(&self.shared.state);
        match &state.error {
            Some(e) => Err(e.clone()),
            None => Ok(state.synced_through),
        }
    }

    /// Has every queued job run and waits until none is left; returns what
    /// [`synced_through`](Self::synced_through) returns then.
    pub(crate) fn wait_all(&self) -> Result<u64> {
        let mut state = lock(&self.shared.state);
        if state.outstanding > 0 {
            state.demanded = true;
            self.shared.changed.notify_all();
        }
        while state.outstanding > 0 && state.error.is_none() {
            state = wait(&self.shared.changed, state);
        }
        state.demanded = false;
        match &state.error {
            Some(e) => Err(e.clone()),
            None => Ok(state.synced_through),
        }
    }
}

impl Drop for SealSyncer {
    /// Lets the thread finish what is queued (a closing actor has waited for it
    /// already; a panicking one has poisoned its shard) and joins it.
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The syncer thread: fsyncs queued segments in order until closed and drained.
fn run(shared: &Shared) {
    loop {
        let (job, failed) = {
            let mut state = lock(&shared.state);
            loop {
                match state.deferral_left(Instant::now()) {
                    Some(left) if left.is_zero() => {
                        if let Some((job, _)) = state.queue.pop_front() {
                            break (job, state.error.is_some());
                        }
                    }
                    Some(left) => state = wait_timeout(&shared.changed, state, left),
                    None if state.closed => return,
                    None => state = wait(&shared.changed, state),
                }
            }
        };
        // After a failed fsync nothing more is synced: the shard is poisoned, and a
        // later success would vouch for segments after the one that failed.
        let result = if failed {
            Ok(())
        } else {
            run_job(shared, &job)
        };
        finish_job(shared, &job, result);
    }
}

fn run_job(shared: &Shared, job: &Job) -> Result<()> {
    match job {
        Job::Seal { io, .. } => {
            // fsync (data and size) of a sealed segment: until it returns, nothing
            // after this segment may be acknowledged as durable, and no sync marker
            // may vouch for it.
            io.sync_all()
                .map_err(|e| WalError::io("syncing sealed segment", io.path(), e))?;
            Counters::add(&shared.shard.counters.fsyncs, 1);
        }
        // The fsync of the shard directory itself (a new segment's name must be
        // durable before any record in it is acknowledged) is in `sync_dir`.
        Job::Dir => shared.storage.sync_dir(shared.shard.id as u32)?,
    }
    Ok(())
}

fn finish_job(shared: &Shared, job: &Job, result: Result<()>) {
    let mut state = lock(&shared.state);
    state.outstanding = state.outstanding.saturating_sub(1);
    match (result, job) {
        (Ok(()), Job::Seal { sequence, .. }) if state.error.is_none() => {
            state.synced_through = *sequence;
        }
        (Ok(()), _) => {}
        (Err(e), _) => {
            if state.error.is_none() {
                state.error = Some(e);
            }
        }
    }
    shared.changed.notify_all();
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::shard::wait::DEFER_LIMIT;
    use std::time::Duration;

    /// A state with `jobs` directory fsyncs queued, the oldest `waited` ago.
    fn queued(jobs: usize, waited: Duration, now: Instant) -> State {
        let mut state = State::default();
        for _ in 0..jobs {
            state.queue.push_back((Job::Dir, now - waited));
        }
        state.outstanding = jobs;
        state
    }

    #[test]
    fn a_job_waits_until_its_time_is_up_unless_something_hurries_it() {
        let now = Instant::now();
        assert_eq!(State::default().deferral_left(now), None, "nothing queued");
        let fresh = queued(1, Duration::ZERO, now);
        assert_eq!(fresh.deferral_left(now), Some(DEFER_LIMIT));
        let half = queued(1, DEFER_LIMIT / 2, now);
        assert_eq!(half.deferral_left(now), Some(DEFER_LIMIT - DEFER_LIMIT / 2));
        let old = queued(1, DEFER_LIMIT + Duration::from_millis(1), now);
        assert_eq!(old.deferral_left(now), Some(Duration::ZERO), "time bound");
        let many = queued(DEFERRED_JOBS + 1, Duration::ZERO, now);
        assert_eq!(many.deferral_left(now), Some(Duration::ZERO), "count bound");
        let enough = queued(DEFERRED_JOBS, Duration::ZERO, now);
        assert_eq!(enough.deferral_left(now), Some(DEFER_LIMIT));
        for hurry in [
            |s: &mut State| s.demanded = true,
            |s: &mut State| s.idle = true,
            |s: &mut State| s.closed = true,
        ] {
            let mut state = queued(1, Duration::ZERO, now);
            hurry(&mut state);
            assert_eq!(state.deferral_left(now), Some(Duration::ZERO));
        }
    }
}
