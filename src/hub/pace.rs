//! Replay pacing: every replay (a `since=` resume, a lagging client's catch-up) draws on one
//! budget of frames per second, shared by all of them. A reconnect storm, or a crowd of readers
//! that cannot keep up, then takes a bounded share of the machine and leaves the rest to live
//! delivery and ingest, instead of as much as the workers can give.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct ReplayPace {
    /// The time one frame's share of the budget takes; `None`: no limit.
    per_frame: Option<Duration>,
    /// When the budget is next free: pages are given consecutive slots, whoever sends them.
    next: Mutex<Instant>,
}

impl ReplayPace {
    /// `frames_per_sec` over every replay together; 0 sets no limit.
    pub fn new(frames_per_sec: u64) -> Self {
        ReplayPace {
            per_frame: (frames_per_sec > 0)
                .then(|| Duration::from_secs_f64(1.0 / frames_per_sec as f64)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// When a page of `frames` may be sent: the first free slot of the budget, now if it is
    /// free. Its frames' share is taken at once, so the page after it (of any client) waits
    /// for its own. A budget left unused does not pile up into a burst later; an empty page
    /// (a seam with nothing left to send) takes nothing and waits for nothing.
    pub fn slot(&self, frames: usize) -> Option<Instant> {
        let per_frame = self.per_frame.filter(|_| frames > 0)?;
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
        let pace = ReplayPace::new(1_000);
        let first = pace.slot(500);
        assert!(first.is_none(), "an idle budget sends at once");
        let second = pace.slot(500).expect("the budget is taken for 0.5 s");
        let third = pace.slot(10).expect("and then for 0.5 s more");
        assert_eq!(third - second, Duration::from_millis(500));
        assert!(pace.slot(0).is_none(), "an empty page takes nothing");
        assert!(ReplayPace::new(0).slot(1_000_000).is_none());
    }
}
