//! Replay pacing: every replay (a `since=` resume, a lagging client's catch-up) draws on one
//! budget of frames per second, shared by all of them. A reconnect storm, or a crowd of readers
//! that cannot keep up, then takes a bounded share of the machine and leaves the rest to live
//! delivery and ingest, instead of as much as the workers can give. While the store is behind
//! (see [`Backlog`]), the budget is `WS_REPLAY_RATE_BEHIND` where that is smaller: with both
//! cores busy, a thousand readers catching up took about a third of ingest's rate.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::store::Backlog;

pub struct ReplayPace {
    /// The time one frame's share of the budget takes; `None`: no limit.
    per_frame: Option<Duration>,
    /// The same while the store is behind.
    per_frame_behind: Option<Duration>,
    backlog: Backlog,
    /// When the budget is next free: pages are given consecutive slots, whoever sends them.
    next: Mutex<Instant>,
}

/// One frame's share of `frames_per_sec`; 0 sets no limit.
fn share(frames_per_sec: u64) -> Option<Duration> {
    (frames_per_sec > 0).then(|| Duration::from_secs_f64(1.0 / frames_per_sec as f64))
}

impl ReplayPace {
    /// `frames_per_sec` over every replay together, and `behind` while `backlog` says the
    /// store is behind (the smaller of the two applies then); 0 sets no limit.
    pub fn new(frames_per_sec: u64, behind: u64, backlog: Backlog) -> Self {
        let per_frame = share(frames_per_sec);
        ReplayPace {
            per_frame,
            per_frame_behind: per_frame.max(share(behind)),
            backlog,
            next: Mutex::new(Instant::now()),
        }
    }

    /// When a page of `frames` may be sent: the first free slot of the budget, now if it is
    /// free. Its frames' share is taken at once, so the page after it (of any client) waits
    /// for its own. A budget left unused does not pile up into a burst later; an empty page
    /// (a seam with nothing left to send) takes nothing and waits for nothing.
    pub fn slot(&self, frames: usize) -> Option<Instant> {
        let per_frame = if self.backlog.is_behind() {
            self.per_frame_behind
        } else {
            self.per_frame
        };
        let per_frame = per_frame.filter(|_| frames > 0)?;
        let now = Instant::now();
        // unwrap: nothing panics while the lock is held.
        let mut next = self.next.lock().unwrap();
        let start = (*next).max(now);
        *next = start + per_frame * frames as u32;
        (start > now).then_some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_get_consecutive_slots_at_the_rate_and_an_unlimited_pace_never_waits() {
        let pace = ReplayPace::new(1_000, 0, Backlog::default());
        let first = pace.slot(500);
        assert!(first.is_none(), "an idle budget sends at once");
        let second = pace.slot(500).expect("the budget is taken for 0.5 s");
        let third = pace.slot(10).expect("and then for 0.5 s more");
        assert_eq!(third - second, Duration::from_millis(500));
        assert!(pace.slot(0).is_none(), "an empty page takes nothing");
        assert!(ReplayPace::new(0, 0, Backlog::default())
            .slot(1_000_000)
            .is_none());
    }

    #[test]
    fn while_the_store_is_behind_the_smaller_budget_applies() {
        // Each slot starts where the page before it ends: the gap between two slots is the
        // first page's share of the budget.
        let backlog = Backlog::with_hold(Duration::ZERO);
        let pace = ReplayPace::new(1_000, 100, backlog.clone());
        assert!(pace.slot(10).is_none());
        let a = pace.slot(10).expect("10 ms taken");
        backlog.set(true);
        let b = pace.slot(10).expect("10 ms more");
        assert_eq!(b - a, Duration::from_millis(10));
        let c = pace.slot(10).expect("behind");
        assert_eq!(
            c - b,
            Duration::from_millis(100),
            "10 frames at 100 per second"
        );
        backlog.set(false);
        let d = pace.slot(10).expect("the full rate again");
        assert_eq!(d - c, Duration::from_millis(100));
        let e = pace.slot(10).expect("at the full rate");
        assert_eq!(e - d, Duration::from_millis(10));

        // Behind, the smaller of the two budgets applies; 0 leaves the whole one.
        backlog.set(true);
        for (rate, behind, gap) in [(1_000, 0, 10), (100, 1_000, 100), (0, 100, 100)] {
            let pace = ReplayPace::new(rate, behind, backlog.clone());
            assert!(pace.slot(10).is_none());
            let a = pace.slot(10).unwrap();
            let b = pace.slot(10).unwrap();
            assert_eq!(
                b - a,
                Duration::from_millis(gap),
                "{rate} and {behind} behind"
            );
        }
        assert!(ReplayPace::new(0, 0, backlog).slot(1_000_000).is_none());
    }

    #[test]
    fn the_store_counts_as_behind_for_the_hold_after_its_last_full_batch() {
        let backlog = Backlog::with_hold(Duration::from_secs(3600));
        assert!(!backlog.is_behind(), "no full batch yet");
        backlog.set(false);
        assert!(!backlog.is_behind());
        backlog.set(true);
        assert!(backlog.is_behind());
        backlog.set(false);
        assert!(backlog.is_behind(), "within the hold");
        let no_hold = Backlog::with_hold(Duration::ZERO);
        no_hold.set(true);
        no_hold.set(false);
        assert!(!no_hold.is_behind(), "only while batches are full");
    }
}
