//! How a durable waiter waits: how long it polls before it sleeps.

/// Up to this many concurrent durable waiters per shard poll before sleeping; more
/// would take the CPU from the actor they are waiting for.
pub(super) const POLLING_WAITERS: usize = 2;
/// The least a polling durable waiter polls, and all it polls before the shard's
/// first `fdatasync` is timed: a bit more than one `fdatasync` on a fast disk
/// (50-100 us here on a good day).
pub(crate) const POLL_BUDGET_MIN: std::time::Duration = std::time::Duration::from_micros(250);
/// The most a polling durable waiter polls. When twice the shard's average
/// `fdatasync` is longer, it sleeps at once: a wake-up (tens of microseconds) no
/// longer matters against the wait, and the CPU is better left idle.
pub(super) const POLL_BUDGET_MAX: std::time::Duration = std::time::Duration::from_millis(2);

/// How long a polling durable waiter polls, given the shard's average `fdatasync`
/// (`sync_us`, 0 if none yet): about two of them, so that the answer to a lone
/// caller usually finds it still polling (on a VM whose `fdatasync` took 150-350 us,
/// the fixed 0.25 ms poll before this made a lone caller sleep, and pay a wake-up,
/// on most appends; see docs/PERFORMANCE-LOG.md, W3).
pub(super) fn budget_for(sync_us: u64) -> std::time::Duration {
    let expected = std::time::Duration::from_micros(sync_us.saturating_mul(2));
    if expected > POLL_BUDGET_MAX {
        std::time::Duration::ZERO
    } else {
        expected.max(POLL_BUDGET_MIN)
    }
}

/// The moving average after one more `fdatasync` of `sample_us`: each new one
/// weighs 1/8, so a disk that slows down moves the average within a few batches
/// while one slow call moves it little.
pub(super) fn next_sync_average(average_us: u64, sample_us: u64) -> u64 {
    if average_us == 0 {
        sample_us.max(1)
    } else {
        (average_us - average_us / 8)
            .saturating_add(sample_us / 8)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
}
