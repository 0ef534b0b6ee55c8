//! Every waiting policy of the crate in one place: how long a thread polls before it
//! sleeps, and how long deferred work may wait. The mechanisms that apply them stay
//! where they are: `sync::poll_for` (poll, yielding between polls), the channel's
//! `recv_polling`, `Waiter::wait_polling`, and the seal syncer's timed wait.
//!
//! - A durable waiter ([`durable_poll`]): polls for about two of its shard's
//!   `fdatasync`s when alone, briefly when one other waits, not at all in a crowd.
//! - The actor's idle queue ([`idle_poll_after`], [`IDLE_SYNC_AFTER`]): polls
//!   briefly, longer after answering several callers, then sleeps; after a while
//!   without requests it lets the seal syncer run what it deferred.
//! - The seal syncer's deferred jobs ([`deferral_left`]): wait until needed, until
//!   too many wait, or for at most [`DEFER_LIMIT`].

use std::time::Duration;

/// Up to this many concurrent durable waiters per shard poll before sleeping; more
/// would take the CPU from the actor they are waiting for.
pub(crate) const POLLING_WAITERS: usize = 2;
/// The least a polling durable waiter polls, and all it polls before the shard's
/// first `fdatasync` is timed: a bit more than one `fdatasync` on a fast disk.
pub(crate) const POLL_BUDGET_MIN: Duration = Duration::from_micros(250);
/// The most a polling durable waiter polls. When twice the shard's average
/// `fdatasync` is longer, it sleeps at once: a wake-up (tens of microseconds) no
/// longer matters against the wait, and the CPU is better left idle.
pub(crate) const POLL_BUDGET_MAX: Duration = Duration::from_millis(2);

/// How long a polling durable waiter polls, given the shard's average `fdatasync`
/// (`sync_us`, 0 if none yet): about two of them, so that the answer to a lone
/// caller usually finds it still polling, on a slow disk as on a fast one.
pub(crate) fn budget_for(sync_us: u64) -> Duration {
    let expected = Duration::from_micros(sync_us.saturating_mul(2));
    if expected > POLL_BUDGET_MAX {
        Duration::ZERO
    } else {
        expected.max(POLL_BUDGET_MIN)
    }
}

/// How a durable waiter waits when `others` waiters of its shard already wait and
/// the shard's average `fdatasync` is `sync_us`: polling for the returned budget
/// before it sleeps, or (`None`) sleeping at once. A lone waiter polls for
/// [`budget_for`]; the next of [`POLLING_WAITERS`] for [`POLL_BUDGET_MIN`] only,
/// since a long poll by every waiter of a group takes the CPU that the others need
/// to join it; when many wait, group commit covers them anyway.
pub(crate) fn durable_poll(others: usize, sync_us: u64) -> Option<Duration> {
    if others == 0 {
        Some(budget_for(sync_us))
    } else if others < POLLING_WAITERS {
        Some(POLL_BUDGET_MIN)
    } else {
        None
    }
}

/// The moving average after one more `fdatasync` of `sample_us`: each new one
/// weighs 1/8, so a disk that slows down moves the average within a few batches
/// while one slow call moves it little.
pub(crate) fn next_sync_average(average_us: u64, sample_us: u64) -> u64 {
    if average_us == 0 {
        sample_us.max(1)
    } else {
        (average_us - average_us / 8)
            .saturating_add(sample_us / 8)
            .max(1)
    }
}

/// How long an idle actor polls its queue (yielding between polls) before sleeping,
/// after a batch that answered two or more waiting callers (durable appends, `sync`):
/// such callers send their next requests as soon as they have their answers, and are
/// then served without the wake-up of a sleeping actor; a woken batch of many callers
/// takes a while to come back, so the budget covers a few fsyncs. At most this much
/// CPU per idle spell.
pub(crate) const IDLE_POLL_AFTER_ANSWERS: Duration = Duration::from_micros(250);

/// The same after a batch that answered nobody (non-durable appends): the callers
/// did not wait, so an empty queue means they are slower than the actor, and a long
/// poll would only take CPU from them. Also after a batch that answered one caller:
/// a lone caller that comes back to this shard does so within a few microseconds,
/// and one whose next key is another shard's comes back only after that shard's
/// fsync, which a long poll here would slow by taking a CPU from it.
pub(crate) const IDLE_POLL: Duration = Duration::from_micros(50);

/// How long the actor polls its queue after a batch that answered `answered`
/// waiting callers.
pub(crate) fn idle_poll_after(answered: usize) -> Duration {
    if answered >= 2 {
        IDLE_POLL_AFTER_ANSWERS
    } else {
        IDLE_POLL
    }
}

/// After this long without a request the actor lets its seal syncer run the jobs it
/// defers (`writer/syncer.rs`): the ingest has stopped, so they compete with nothing,
/// and a durable call or `sync` after a burst of non-durable appends finds the
/// burst's seals synced instead of waiting for up to four of them per shard. Long
/// against the gaps between a caller's appends (microseconds), short against
/// [`DEFER_LIMIT`].
pub(crate) const IDLE_SYNC_AFTER: std::time::Duration = std::time::Duration::from_millis(10);

/// Jobs of one shard's seal syncer that wait, unrun, until something needs them:
/// four seals and their successors' directory fsyncs.
pub(crate) const DEFERRED_JOBS: usize = 8;
/// How long a seal syncer's job waits at most before the syncer runs it unasked: a
/// shard that ingests slowly, or stops, has its seals synced about this long after
/// sealing, so a later durable call finds them done.
pub(crate) const DEFER_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long the oldest of `queued` seal-syncer jobs, queued `waited` ago, may still
/// wait (zero: run it now). It waits until `hurried` (a durable call waits for the
/// jobs, the actor is idle, or the syncer is closing), until more than
/// [`DEFERRED_JOBS`] are queued, or for at most [`DEFER_LIMIT`].
pub(crate) fn deferral_left(queued: usize, waited: Duration, hurried: bool) -> Duration {
    if hurried || queued > DEFERRED_JOBS {
        Duration::ZERO
    } else {
        DEFER_LIMIT.saturating_sub(waited)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_polls_about_two_fsyncs_within_its_bounds() {
        assert_eq!(budget_for(0), POLL_BUDGET_MIN, "no fsync timed yet");
        assert_eq!(
            budget_for(40),
            POLL_BUDGET_MIN,
            "a fast disk keeps the floor"
        );
        assert_eq!(budget_for(300), Duration::from_micros(600));
        assert_eq!(
            budget_for(1_000),
            POLL_BUDGET_MAX,
            "the ceiling itself polls"
        );
        assert_eq!(
            budget_for(1_001),
            Duration::ZERO,
            "beyond it, sleep at once"
        );
        assert_eq!(budget_for(u64::MAX), Duration::ZERO);
    }

    #[test]
    fn the_sync_average_starts_at_the_first_sample_and_moves_by_an_eighth() {
        assert_eq!(next_sync_average(0, 200), 200);
        assert_eq!(next_sync_average(0, 0), 1, "0 stays 'not timed yet'");
        assert_eq!(next_sync_average(200, 1_000), 300, "200 - 25 + 125");
        assert_eq!(next_sync_average(200, 0), 175);
        let settled = (0..100).fold(50, |average, _| next_sync_average(average, 400));
        assert!((390..=400).contains(&settled), "settled at {settled}");
        assert_eq!(next_sync_average(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn an_actor_polls_long_only_after_answering_several_callers() {
        assert_eq!(idle_poll_after(0), IDLE_POLL);
        assert_eq!(idle_poll_after(1), IDLE_POLL, "a lone caller");
        assert_eq!(idle_poll_after(2), IDLE_POLL_AFTER_ANSWERS);
        assert_eq!(idle_poll_after(64), IDLE_POLL_AFTER_ANSWERS);
        assert!(IDLE_POLL < IDLE_POLL_AFTER_ANSWERS);
    }
}
