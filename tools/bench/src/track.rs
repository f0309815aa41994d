//! Per-client bookkeeping (which messages arrived, how late, how often) and the loss,
//! duplicate and latency accounting over all clients.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::payload::{now_us, Frame, Mark};

/// A growable set of sequence numbers (they are dense, from 0).
#[derive(Clone, Debug, Default)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// Adds `i`; false when it was already there.
    pub fn insert(&mut self, i: u64) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let had = self.words[w] & (1 << b) != 0;
        self.words[w] |= 1 << b;
        !had
    }

    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// |self \ other|.
    pub fn count_missing_from(&self, other: &BitSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| (w & !other.words.get(i).copied().unwrap_or(0)).count_ones() as u64)
            .sum()
    }
}

/// How a client's connection ended, if it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Closed {
    /// A close frame with this code (3001 slow consumer, 3002 heartbeat timeout, 1001 shutdown).
    Code(u16),
    /// The socket ended without a close frame.
    Eof,
    /// A read or protocol error.
    Error(String),
    /// It never got connected.
    ConnectFailed(String),
}

/// What one client saw during the current step; the client task writes, the coordinator reads
/// and resets between steps.
#[derive(Debug, Default)]
pub struct Tracker {
    /// The step whose frames count; frames of other steps are `stale`.
    pub run: u64,
    /// Received bench messages of this step, per publisher index.
    pub received: Vec<BitSet>,
    /// Data frames of this step, duplicates included.
    pub frames: u64,
    pub duplicates: u64,
    /// Frames whose vehicle is not the one this client asked for (or not the publisher's).
    pub wrong_vehicle: u64,
    /// Bench frames of another step.
    pub stale: u64,
    /// Frames without a bench mark (other types, other publishers on the same prefix).
    pub other: u64,
    /// Publish-to-receive latencies of this step's frames, in microseconds.
    pub latencies_us: Vec<u32>,
    /// When the last data frame of this step arrived (unix µs).
    pub last_frame_us: u64,
    pub closed: Option<Closed>,
    /// For slow clients: data frames found in the socket when it was finally read.
    pub backlog_frames: u64,
}

impl Tracker {
    /// Starts a new step.
    pub fn reset(&mut self, run: u64) {
        let closed = self.closed.take();
        *self = Tracker {
            run,
            closed,
            ..Default::default()
        };
    }
}

/// What a client is and what it should receive.
pub struct ClientSlot {
    pub index: usize,
    /// `Some(id)`: a vehicle stream (or topic); `None`: all vehicles.
    pub vehicle: Option<i64>,
    /// Connects and never reads.
    pub slow: bool,
    pub tracker: Mutex<Tracker>,
}

/// Counters shared by every client of a run, for progress and drain detection.
#[derive(Default)]
pub struct Progress {
    /// Clients that got their first frame (or SUBACK).
    pub connected: AtomicU64,
    /// Clients whose connection attempt failed for good.
    pub failed: AtomicU64,
    /// New (non-duplicate) frames of the current step, all clients together.
    pub unique_frames: AtomicU64,
    /// Woken when a client connects or fails, for the coordinator waiting on all of them.
    pub notify: tokio::sync::Notify,
}

/// Everything a client task needs to account one received message.
pub struct Accountant {
    pub start_id: i64,
    pub progress: Arc<Progress>,
}

impl Accountant {
    /// Records one frame (WebSocket text or MQTT payload); `topic_vehicle` is the vehicle from
    /// the MQTT topic. Returns true for the connection frame.
    pub fn record(&self, slot: &ClientSlot, frame: Frame, topic_vehicle: Option<i64>) -> bool {
        let now = now_us();
        match frame {
            Frame::Connection => true,
            Frame::Other => {
                // unwrap: the tracker's lock is never held across a panic.
                slot.tracker.lock().unwrap().other += 1;
                false
            }
            Frame::Bench { mark, vehicle_id } => {
                let vehicle_id = vehicle_id.or(topic_vehicle);
                self.record_mark(slot, mark, vehicle_id, now);
                false
            }
        }
    }

    fn record_mark(&self, slot: &ClientSlot, mark: Mark, vehicle_id: Option<i64>, now: u64) {
        // unwrap: the tracker's lock is never held across a panic.
        let mut t = slot.tracker.lock().unwrap();
        if mark.run != t.run {
            t.stale += 1;
            return;
        }
        let publisher_vehicle = self.start_id + mark.publisher as i64;
        let wanted = slot.vehicle.is_none_or(|v| v == publisher_vehicle);
        if !wanted || vehicle_id.is_some_and(|v| v != publisher_vehicle) {
            t.wrong_vehicle += 1;
            return;
        }
        t.frames += 1;
        t.last_frame_us = now;
        let p = mark.publisher as usize;
        if t.received.len() <= p {
            t.received.resize_with(p + 1, BitSet::default);
        }
        if t.received[p].insert(mark.seq) {
            self.progress.unique_frames.fetch_add(1, Relaxed);
            t.latencies_us
                .push(now.saturating_sub(mark.sent_us).min(u32::MAX as u64) as u32);
        } else {
            t.duplicates += 1;
        }
    }
}

/// Loss, duplicates and latency over the healthy clients of one step.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delivery {
    /// Healthy clients accounted.
    pub clients: u64,
    pub frames_expected: u64,
    /// Data frames received, duplicates included.
    pub frames_received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub wrong_vehicle: u64,
    /// Frames of unconfirmed publishes (QoS 1 never acknowledged): neither expected nor lost.
    pub unconfirmed_received: u64,
    pub stale_frames: u64,
    pub other_frames: u64,
    /// Healthy clients whose connection ended during the run.
    pub healthy_closed: u64,
    pub latency_ms: Option<Latency>,
    /// The client with the most lost, then duplicated frames, then the highest p99.
    pub worst_client: Option<WorstClient>,
    /// When the last frame arrived (unix µs), for the delivered rate.
    #[serde(skip)]
    pub last_frame_us: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    /// Absent from result files of earlier versions.
    #[serde(default)]
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorstClient {
    pub index: usize,
    pub vehicle: Option<i64>,
    pub lost: u64,
    pub duplicated: u64,
    pub p99_ms: Option<f64>,
}

/// Percentiles of a sample in µs, nearest rank, in milliseconds.
pub fn latency(samples: &mut [u32]) -> Option<Latency> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1] as f64 / 1000.0
    };
    Some(Latency {
        p50: at(0.50),
        p90: at(0.90),
        p95: at(0.95),
        p99: at(0.99),
        max: samples[samples.len() - 1] as f64 / 1000.0,
        samples: samples.len() as u64,
    })
}

/// Accounts the healthy clients against what the publishers confirmed, per publisher index.
pub fn account(slots: &[Arc<ClientSlot>], confirmed: &[BitSet], start_id: i64) -> Delivery {
    let mut d = Delivery::default();
    let mut all_latencies: Vec<u32> = Vec::new();
    let mut worst: Option<(u64, u64, f64, WorstClient)> = None;
    for slot in slots.iter().filter(|s| !s.slow) {
        // unwrap: the tracker's lock is never held across a panic.
        let mut t = slot.tracker.lock().unwrap();
        d.clients += 1;
        if t.closed.is_some() {
            d.healthy_closed += 1;
        }
        let mut lost = 0;
        for (p, sent) in confirmed.iter().enumerate() {
            let vehicle = start_id + p as i64;
            if slot.vehicle.is_some_and(|v| v != vehicle) {
                continue;
            }
            d.frames_expected += sent.len();
            let empty = BitSet::default();
            let got = t.received.get(p).unwrap_or(&empty);
            lost += sent.count_missing_from(got);
            d.unconfirmed_received += got.count_missing_from(sent);
        }
        for got in t.received.iter().skip(confirmed.len()) {
            d.unconfirmed_received += got.len();
        }
        d.lost += lost;
        d.frames_received += t.frames;
        d.duplicated += t.duplicates;
        d.wrong_vehicle += t.wrong_vehicle;
        d.stale_frames += t.stale;
        d.other_frames += t.other;
        d.last_frame_us = d.last_frame_us.max(t.last_frame_us);
        all_latencies.extend_from_slice(&t.latencies_us);
        let p99 = latency(&mut t.latencies_us).map(|l| l.p99);
        let key = (lost, t.duplicates, p99.unwrap_or(0.0));
        let is_worse = match &worst {
            None => true,
            Some((l, du, p, _)) => {
                (key.0, key.1) > (*l, *du) || ((key.0, key.1) == (*l, *du) && key.2 > *p)
            }
        };
        if is_worse {
            worst = Some((
                key.0,
                key.1,
                key.2,
                WorstClient {
                    index: slot.index,
                    vehicle: slot.vehicle,
                    lost,
                    duplicated: t.duplicates,
                    p99_ms: p99,
                },
            ));
        }
    }
    d.latency_ms = latency(&mut all_latencies);
    d.worst_client = worst.map(|w| w.3);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bitset_counts_and_subtracts() {
        let mut a = BitSet::default();
        assert!(a.insert(3));
        assert!(!a.insert(3));
        a.insert(200);
        let mut b = BitSet::default();
        b.insert(3);
        assert_eq!(a.len(), 2);
        assert_eq!(a.count_missing_from(&b), 1);
        assert_eq!(b.count_missing_from(&a), 0);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        let l = latency(&mut v).unwrap();
        assert_eq!(
            (l.p50, l.p90, l.p95, l.p99, l.max),
            (50.0, 90.0, 95.0, 99.0, 100.0)
        );
        assert!(latency(&mut []).is_none());
    }

    fn slot(index: usize, vehicle: Option<i64>) -> Arc<ClientSlot> {
        Arc::new(ClientSlot {
            index,
            vehicle,
            slow: false,
            tracker: Mutex::new(Tracker::default()),
        })
    }

    fn mark(publisher: u32, seq: u64) -> Frame {
        Frame::Bench {
            mark: Mark {
                run: 0,
                publisher,
                seq,
                sent_us: now_us(),
            },
            vehicle_id: Some(1 + publisher as i64),
        }
    }

    #[test]
    fn loss_duplicates_and_wrong_vehicles_are_counted_per_client() {
        let acc = Accountant {
            start_id: 1,
            progress: Arc::default(),
        };
        let all = slot(0, None);
        let v2 = slot(1, Some(2));
        for seq in 0..10 {
            if seq != 4 {
                acc.record(&all, mark(0, seq), None);
            }
            acc.record(&all, mark(1, seq), None);
            acc.record(&v2, mark(1, seq), None);
        }
        acc.record(&all, mark(0, 0), None); // duplicate
        acc.record(&v2, mark(0, 1), None); // vehicle 1 on vehicle 2's stream
        let mut sent = vec![BitSet::default(), BitSet::default()];
        for seq in 0..10 {
            sent[0].insert(seq);
            sent[1].insert(seq);
        }
        let d = account(&[all, v2], &sent, 1);
        assert_eq!(d.frames_expected, 30);
        assert_eq!(d.frames_received, 30);
        assert_eq!(d.lost, 1);
        assert_eq!(d.duplicated, 1);
        assert_eq!(d.wrong_vehicle, 1);
        let w = d.worst_client.unwrap();
        assert_eq!((w.index, w.lost, w.duplicated), (0, 1, 1));
    }
}
