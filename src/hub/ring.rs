//! The replay ring: the last committed frames, as the hub serialized them, bounded by bytes.
//!
//! A `since=` resume (or a lagging client's catch-up) within the ring's reach is served from
//! memory, the same bytes shared by every client that replays them, instead of each client
//! reading its own pages from the database and serializing every message again. The hub
//! appends every message it is fed, in seq order, so the ring holds every committed message
//! after [`ReplayRing::covers_after`]; older cursors page from the database as before.
//!
//! Frames served from the ring are the frames as they were broadcast: their `broadcast_time`
//! and `connection_count` are those of the broadcast, not of the replay.

use std::collections::VecDeque;

use bytestring::ByteString;

use crate::domain::MessageType;
use crate::store::replay::Selection;

/// What the ring keeps of one frame: enough to filter it for a replay.
struct Entry {
    seq: i64,
    vehicle_id: i64,
    kind: MessageType,
    bytes: ByteString,
}

/// Bytes an entry costs beside its frame (the entry and the frame's allocation header).
const ENTRY_OVERHEAD: usize = 64;

pub struct ReplayRing {
    entries: VecDeque<Entry>,
    bytes: usize,
    max_bytes: usize,
    /// Every committed message with a larger seq is in the ring.
    covers_after: i64,
}

impl ReplayRing {
    /// An empty ring of at most `max_bytes` (0: none kept), starting after `last_seq`.
    pub fn new(max_bytes: usize, last_seq: i64) -> ReplayRing {
        ReplayRing {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
            covers_after: last_seq,
        }
    }

    /// Appends the next committed frame (seqs arrive in order), evicting the oldest beyond the
    /// byte bound.
    pub fn push(&mut self, seq: i64, vehicle_id: i64, kind: MessageType, bytes: ByteString) {
        let cost = bytes.len() + ENTRY_OVERHEAD;
        if cost > self.max_bytes {
            // Too large to keep (or no ring): the ring now covers only what follows it.
            self.clear_through(seq);
            return;
        }
        while self.bytes + cost > self.max_bytes {
            self.evict();
        }
        self.bytes += cost;
        self.entries.push_back(Entry {
            seq,
            vehicle_id,
            kind,
            bytes,
        });
    }

    fn evict(&mut self) {
        if let Some(old) = self.entries.pop_front() {
            self.bytes -= old.bytes.len() + ENTRY_OVERHEAD;
            self.covers_after = old.seq;
        }
    }

    fn clear_through(&mut self, seq: i64) {
        self.entries.clear();
        self.bytes = 0;
        self.covers_after = seq;
    }

    /// The seq after which the ring holds every committed message.
    pub fn covers_after(&self) -> i64 {
        self.covers_after
    }

    /// Up to `limit` frames matching `sel` (after `sel.after_seq`, up to `sel.up_to_seq`), in
    /// seq order, with the seq of the last one; `None` if the ring does not reach back to
    /// `sel.after_seq` (the database has to serve it). The page ends early only where the
    /// ring's frames end.
    pub fn page(&self, sel: &Selection, limit: usize) -> Option<Vec<(i64, ByteString)>> {
        if sel.after_seq < self.covers_after {
            return None;
        }
        let start = self.entries.partition_point(|e| e.seq <= sel.after_seq);
        let page = self
            .entries
            .range(start..)
            .take_while(|e| sel.up_to_seq.is_none_or(|up_to| e.seq <= up_to))
            .filter(|e| {
                sel.types.contains(&e.kind)
                    && sel
                        .vehicles
                        .as_ref()
                        .is_none_or(|v| v.contains(&e.vehicle_id))
            })
            .take(limit)
            .map(|e| (e.seq, e.bytes.clone()))
            .collect();
        Some(page)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn sel(after_seq: i64, up_to_seq: Option<i64>) -> Selection {
        Selection {
            vehicles: None,
            types: MessageType::ALL.into_iter().collect(),
            after_seq,
            up_to_seq,
        }
    }

    fn seqs(page: Option<Vec<(i64, ByteString)>>) -> Option<Vec<i64>> {
        page.map(|p| p.into_iter().map(|(seq, _)| seq).collect())
    }

    fn frame(n: usize) -> ByteString {
        ByteString::from("x".repeat(n))
    }

    #[test]
    fn a_cursor_within_reach_is_served_in_order_and_an_older_one_is_not() {
        let mut ring = ReplayRing::new(10 * (100 + ENTRY_OVERHEAD), 5);
        for seq in 6..=20 {
            ring.push(seq, 1, MessageType::RawLog, frame(100));
        }
        // Ten fit: 11 to 20; it covers what follows 10.
        assert_eq!(ring.covers_after(), 10);
        assert_eq!(
            seqs(ring.page(&sel(10, None), 100)),
            Some((11..=20).collect())
        );
        assert_eq!(seqs(ring.page(&sel(15, Some(17)), 100)), Some(vec![16, 17]));
        assert_eq!(seqs(ring.page(&sel(12, None), 3)), Some(vec![13, 14, 15]));
        assert_eq!(seqs(ring.page(&sel(20, None), 3)), Some(vec![]));
        assert_eq!(seqs(ring.page(&sel(9, None), 100)), None);
    }

    #[test]
    fn pages_keep_only_the_selection_s_vehicles_and_types() {
        let mut ring = ReplayRing::new(1 << 20, 0);
        ring.push(1, 1, MessageType::RawLog, frame(10));
        ring.push(2, 2, MessageType::VehicleLog, frame(10));
        ring.push(3, 1, MessageType::VehicleLog, frame(10));
        let only = Selection {
            vehicles: Some(BTreeSet::from([1])),
            types: BTreeSet::from([MessageType::VehicleLog]),
            after_seq: 0,
            up_to_seq: None,
        };
        assert_eq!(seqs(ring.page(&only, 10)), Some(vec![3]));
    }

    #[test]
    fn a_frame_larger_than_the_ring_empties_it_and_no_ring_serves_nothing() {
        let mut ring = ReplayRing::new(2 * (100 + ENTRY_OVERHEAD), 0);
        ring.push(1, 1, MessageType::RawLog, frame(100));
        ring.push(2, 1, MessageType::RawLog, frame(1000));
        assert_eq!(ring.covers_after(), 2);
        assert_eq!(seqs(ring.page(&sel(1, None), 10)), None);
        ring.push(3, 1, MessageType::RawLog, frame(100));
        assert_eq!(seqs(ring.page(&sel(2, None), 10)), Some(vec![3]));

        let mut none = ReplayRing::new(0, 0);
        none.push(1, 1, MessageType::RawLog, frame(1));
        assert_eq!(seqs(none.page(&sel(0, None), 10)), None);
        assert_eq!(seqs(none.page(&sel(1, None), 10)), Some(vec![]));
    }
}
