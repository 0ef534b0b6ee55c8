//! Retention's install step on the actor: seal the active segment if it is due,
//! then drop the expired prefix of the sealed segments from the shard's index and
//! figures (compaction unlinks their files afterwards, off the actor).

use crate::error::Result;
use crate::shard::{Counters, RetiredSegment};
use crate::sync::now_us;
use crate::writer::active_segment::Segment;
use crate::writer::actor::Actor;

impl Actor {
    /// Notes every segment whose newest record is later than `now`, as first seen
    /// now (see `ahead`).
    pub(super) fn note_ahead(&mut self, now: u64) {
        for s in &self.segments {
            if s.newest_us > now {
                self.ahead.entry(s.sequence).or_insert(now);
            }
        }
    }

    /// The time retention takes for segment `s`'s newest record: its timestamp, or
    /// if that lay ahead of the clock, when this actor first saw it so (or wrote
    /// its newest record since). A record from the future thus expires at most
    /// `entry_retention` after it was first seen, not years later.
    fn newest_seen(&self, s: &Segment) -> u64 {
        self.ahead
            .get(&s.sequence)
            .map_or(s.newest_us, |&seen| seen.min(s.newest_us))
    }

    /// Compaction's install step (see `compaction.rs`).
    pub(super) fn retire(&mut self, cutoff_us: u64) -> Result<Vec<RetiredSegment>> {
        let now = now_us();
        self.note_ahead(now);
        let seal = self.segments.last().is_some_and(|active| {
            // Not one without records (sync markers and notes at most): retiring it
            // would only make the next durable call start another, and every later
            // compaction of an idle shard retire that one in turn.
            !active.sealed
                && active.records > 0
                && (self.due_by_age(active, now) || self.newest_seen(active) < cutoff_us)
        });
        if seal {
            self.seal_active()?;
        }
        let expired = expired_prefix(
            self.segments
                .iter()
                .map(|s| (s.sealed, self.newest_seen(s))),
            cutoff_us,
        );
        let retired: Vec<RetiredSegment> = self
            .segments
            .drain(..expired)
            .map(|s| RetiredSegment {
                sequence: s.sequence,
                bytes: s.len,
                records: s.records,
            })
            .collect();
        let sequences: Vec<u64> = retired.iter().map(|r| r.sequence).collect();
        if let Some(&newest_retired) = sequences.last() {
            // The retired are the oldest (a prefix, in order).
            self.ahead = match newest_retired.checked_add(1) {
                Some(first_kept) => self.ahead.split_off(&first_kept),
                None => Default::default(),
            };
        }
        self.shared.index.remove_segments(&sequences);
        self.shared.cache.forget_segments(&sequences);
        let c = &self.shared.counters;
        for r in &retired {
            Counters::sub(&c.records, r.records);
            Counters::sub(&c.bytes, r.bytes);
            Counters::sub(&c.segments, 1);
        }
        Ok(retired)
    }
}

/// How many segments, from the oldest, retention retires: the longest run of sealed
/// segments (given as `(sealed, newest record's time)`, oldest first) whose newest
/// record is older than `cutoff_us`. Only a prefix: a segment kept before a retired
/// one would leave a hole in its keys' histories, and a wall clock that stepped back
/// can make a later segment look older than an earlier one.
fn expired_prefix(segments: impl IntoIterator<Item = (bool, u64)>, cutoff_us: u64) -> usize {
    segments
        .into_iter()
        .take_while(|&(sealed, newest_us)| sealed && newest_us < cutoff_us)
        .count()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::expired_prefix;

    #[test]
    fn retention_retires_only_the_oldest_expired_segments() {
        let cutoff = 100;
        assert_eq!(expired_prefix([], cutoff), 0);
        assert_eq!(
            expired_prefix([(true, 10), (true, 50), (false, 60)], cutoff),
            2
        );
        // The active (unsealed) segment is never retired, however old.
        assert_eq!(expired_prefix([(true, 10), (false, 20)], cutoff), 1);
        // A newer segment in between stops the run: the older-looking one after it
        // (a clock that stepped back) stays with it.
        assert_eq!(
            expired_prefix([(true, 10), (true, 150), (true, 90)], cutoff),
            1
        );
        assert_eq!(expired_prefix([(true, 150), (true, 10)], cutoff), 0);
        // Newest record exactly at the cutoff is kept.
        assert_eq!(expired_prefix([(true, 100)], cutoff), 0);
    }
}
