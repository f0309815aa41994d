//! Pipeline figures every task reports: cheap atomics, read by `/api/ws/stats`, `/metrics` and
//! `/ready`. They carry figures only: no task decides anything from what another wrote here
//! (each keeps its own state: the MQTT session in `mqtt`, the last seq and database health in
//! the store's writer).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{MessageType, RejectReason};

/// One counter per message type.
#[derive(Default)]
pub struct PerType([AtomicU64; MessageType::ALL.len()]);

impl PerType {
    pub fn add(&self, kind: MessageType, n: u64) {
        self.0[kind.index()].fetch_add(n, Relaxed);
    }

    pub fn get(&self, kind: MessageType) -> u64 {
        self.0[kind.index()].load(Relaxed)
    }

    fn snapshot(&self) -> TypeCounts {
        TypeCounts {
            raw_log: self.get(MessageType::RawLog),
            sensor_log: self.get(MessageType::SensorLog),
            vehicle_log: self.get(MessageType::VehicleLog),
            command_status: self.get(MessageType::CommandStatus),
        }
    }
}

/// One count per message type.
#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
pub struct TypeCounts {
    pub raw_log: u64,
    pub sensor_log: u64,
    pub vehicle_log: u64,
    /// Command state changes (a boat's answers, for `received`).
    pub command_status: u64,
}

/// A Prometheus-style histogram with fixed bounds, lock-free.
pub struct Histogram {
    pub bounds: &'static [f64],
    /// One count per bound, plus the overflow (+Inf) bucket; not cumulative.
    counts: Vec<AtomicU64>,
    /// The sum of observations, as f64 bits.
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        let _ = self.sum.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }

    /// Cumulative counts per bound (the last is +Inf, i.e. the total), and the sum.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Relaxed);
                total
            })
            .collect();
        (cumulative, f64::from_bits(self.sum.load(Relaxed)))
    }
}

const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const SIZES: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// Messages per vehicle over the last [`RATE_WINDOW_SECS`] seconds, in one-second buckets.
#[derive(Default)]
pub struct VehicleRates {
    windows: std::sync::Mutex<std::collections::HashMap<i64, Window>>,
}

pub const RATE_WINDOW_SECS: usize = 10;

struct Window {
    buckets: [u32; RATE_WINDOW_SECS],
    /// The second the buckets are current for.
    current: i64,
    /// The last second a message was recorded.
    last_seen: i64,
}

impl Window {
    /// Moves the window to `now`, clearing the seconds it passes.
    fn advance(&mut self, now: i64) {
        for s in (self.current + 1)..=now.min(self.current + RATE_WINDOW_SECS as i64) {
            self.buckets[s.rem_euclid(RATE_WINDOW_SECS as i64) as usize] = 0;
        }
        self.current = self.current.max(now);
    }
}

impl VehicleRates {
    /// Counts `n` messages of `vehicle` committed in second `now` (unix seconds).
    pub fn record(&self, vehicle: i64, n: u32, now: i64) {
        // unwrap: nothing panics while the lock is held.
        let mut windows = self.windows.lock().unwrap();
        let w = windows.entry(vehicle).or_insert(Window {
            buckets: [0; RATE_WINDOW_SECS],
            current: now,
            last_seen: now,
        });
        w.advance(now);
        w.buckets[now.rem_euclid(RATE_WINDOW_SECS as i64) as usize] += n;
        w.last_seen = w.last_seen.max(now);
    }

    /// Messages per second of each vehicle seen within the window, averaged over the window.
    pub fn rates(&self, now: i64) -> std::collections::BTreeMap<i64, f64> {
        // unwrap: see `record`.
        let mut windows = self.windows.lock().unwrap();
        windows.retain(|_, w| now - w.last_seen < RATE_WINDOW_SECS as i64);
        windows
            .iter_mut()
            .map(|(v, w)| {
                w.advance(now);
                let total: u32 = w.buckets.iter().sum();
                (*v, f64::from(total) / RATE_WINDOW_SECS as f64)
            })
            .collect()
    }
}

pub struct Metrics {
    pub started: Instant,
    pub started_at: DateTime<Utc>,
    /// Accepted (decoded) messages handed to the store, by type.
    pub received: PerType,
    /// Committed rows, by type.
    pub stored: PerType,
    /// Messages fanned out to the hub's clients, by type (once per message, not per client).
    pub broadcast: PerType,
    rejected: [AtomicU64; RejectReason::ALL.len()],
    /// Frames written to WebSocket clients (data and control).
    pub frames_sent: AtomicU64,
    /// Clients closed (3001) because their socket took nothing for WS_STALL_TIMEOUT_SECS, or
    /// they fell further behind than the replay window.
    pub slow_clients_dropped: AtomicU64,
    /// Times a reading client's queue overflowed in a burst and it caught up from the database
    /// instead of being disconnected.
    pub clients_caught_up: AtomicU64,
    /// Messages taken from the broker and held by the MQTT task while the store's queue is full
    /// (the event loop keeps being polled, so keep-alives still flow).
    pub ingest_backlog: AtomicU64,
    /// Frames `conflate=latest` clients skipped.
    pub frames_conflated: AtomicU64,
    /// Client messages dropped by the per-connection rate limit.
    pub client_messages_dropped: AtomicU64,
    pub batches_committed: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Broker redeliveries recognised as already stored (acknowledged, not stored again).
    pub duplicates_dropped: AtomicU64,
    /// Acks waiting for room in rumqttc's request queue (the MQTT task offers them again).
    pub acks_owed: AtomicU64,
    /// Acks not sent because their message came on a connection that has since dropped (the
    /// broker redelivers those messages, and the store recognises them as stored).
    pub acks_stale: AtomicU64,
    /// Broker connections lost since start.
    pub mqtt_connections_lost: AtomicU64,
    /// Why the last attempt to reach the broker failed; cleared when a session is established.
    pub mqtt_last_error: std::sync::Mutex<Option<String>>,
    pub last_seq: AtomicI64,
    /// Messages other instances committed, read back from the database for this instance's
    /// clients (shared group only).
    pub cluster_read: AtomicU64,
    /// Commands accepted (stored and handed to the broker).
    pub commands_accepted: AtomicU64,
    /// Commands refused by the per-vehicle rate limit.
    pub commands_refused: AtomicU64,
    /// Seconds per batch commit (write and commit of one transaction).
    pub commit_seconds: Histogram,
    /// Messages per committed batch.
    pub batch_size: Histogram,
    /// Seconds from receiving a message to handing its frame to the clients' queues.
    pub broadcast_lag_seconds: Histogram,
    pub vehicle_rates: VehicleRates,
    /// Messages handed to the store and not yet committed (or given up).
    pub ingest_in_flight: AtomicI64,
    /// Unix milliseconds of the last commit, or of when messages started waiting after an idle
    /// spell: ingest has stalled when messages wait and this is too old.
    pub ingest_progress_at: AtomicI64,
    pub mqtt_connected: AtomicBool,
    /// The broker acknowledged our subscriptions on the current connection.
    pub mqtt_subscribed: AtomicBool,
    pub mqtt_running: AtomicBool,
    pub database_ok: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            started_at: Utc::now(),
            received: PerType::default(),
            stored: PerType::default(),
            broadcast: PerType::default(),
            rejected: Default::default(),
            frames_sent: AtomicU64::new(0),
            cluster_read: AtomicU64::new(0),
            commands_accepted: AtomicU64::new(0),
            commands_refused: AtomicU64::new(0),
            slow_clients_dropped: AtomicU64::new(0),
            clients_caught_up: AtomicU64::new(0),
            ingest_backlog: AtomicU64::new(0),
            frames_conflated: AtomicU64::new(0),
            client_messages_dropped: AtomicU64::new(0),
            batches_committed: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            duplicates_dropped: AtomicU64::new(0),
            acks_owed: AtomicU64::new(0),
            acks_stale: AtomicU64::new(0),
            mqtt_connections_lost: AtomicU64::new(0),
            mqtt_last_error: std::sync::Mutex::new(None),
            last_seq: AtomicI64::new(0),
            commit_seconds: Histogram::new(SECONDS),
            batch_size: Histogram::new(SIZES),
            broadcast_lag_seconds: Histogram::new(SECONDS),
            vehicle_rates: VehicleRates::default(),
            ingest_in_flight: AtomicI64::new(0),
            ingest_progress_at: AtomicI64::new(Utc::now().timestamp_millis()),
            mqtt_connected: AtomicBool::new(false),
            mqtt_subscribed: AtomicBool::new(false),
            mqtt_running: AtomicBool::new(false),
            database_ok: AtomicBool::new(true),
        }
    }
}

/// The pipeline half of `/api/ws/stats`.
#[derive(Debug, Serialize, Clone, utoipa::ToSchema)]
pub struct PipelineStats {
    pub received: TypeCounts,
    pub stored: TypeCounts,
    pub broadcast: TypeCounts,
    /// Rejected messages by reason (every reason listed, zero included).
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
    pub rejected_total: u64,
    pub frames_sent: u64,
    pub slow_clients_dropped: u64,
    /// Bursts a reading client caught up on from the database instead of being disconnected.
    pub clients_caught_up: u64,
    /// Messages held by the MQTT task while the store is behind.
    pub ingest_backlog: u64,
    pub frames_conflated: u64,
    pub client_messages_dropped: u64,
    pub batches_committed: u64,
    pub commit_failures: u64,
    pub duplicates_dropped: u64,
    pub acks_owed: u64,
    pub acks_stale: u64,
    pub last_seq: i64,
}

impl Metrics {
    /// A message was handed to the store.
    pub fn ingest_started(&self) {
        if self.ingest_in_flight.fetch_add(1, Relaxed) == 0 {
            self.ingest_progress_at
                .store(Utc::now().timestamp_millis(), Relaxed);
        }
    }

    /// `n` messages were committed (or given up on).
    pub fn ingest_done(&self, n: usize) {
        self.ingest_in_flight.fetch_sub(n as i64, Relaxed);
        self.ingest_progress_at
            .store(Utc::now().timestamp_millis(), Relaxed);
    }

    /// How long messages have waited without any commit, if they are waiting.
    pub fn ingest_stalled_for(&self) -> Option<std::time::Duration> {
        if self.ingest_in_flight.load(Relaxed) <= 0 {
            return None;
        }
        let waited = Utc::now().timestamp_millis() - self.ingest_progress_at.load(Relaxed);
        Some(std::time::Duration::from_millis(waited.max(0) as u64))
    }

    pub fn reject(&self, reason: RejectReason) {
        self.rejected[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()].load(Relaxed)
    }

    pub fn pipeline(&self) -> PipelineStats {
        let rejected: std::collections::BTreeMap<_, _> = RejectReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.rejected(*r)))
            .collect();
        PipelineStats {
            received: self.received.snapshot(),
            stored: self.stored.snapshot(),
            broadcast: self.broadcast.snapshot(),
            rejected_total: rejected.values().sum(),
            rejected,
            frames_sent: self.frames_sent.load(Relaxed),
            slow_clients_dropped: self.slow_clients_dropped.load(Relaxed),
            clients_caught_up: self.clients_caught_up.load(Relaxed),
            ingest_backlog: self.ingest_backlog.load(Relaxed),
            frames_conflated: self.frames_conflated.load(Relaxed),
            client_messages_dropped: self.client_messages_dropped.load(Relaxed),
            batches_committed: self.batches_committed.load(Relaxed),
            commit_failures: self.commit_failures.load(Relaxed),
            duplicates_dropped: self.duplicates_dropped.load(Relaxed),
            acks_owed: self.acks_owed.load(Relaxed),
            acks_stale: self.acks_stale.load(Relaxed),
            last_seq: self.last_seq.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[1.0, 10.0]);
        for v in [0.5, 2.0, 3.0, 50.0] {
            h.observe(v);
        }
        assert_eq!(h.snapshot(), (vec![1, 3, 4], 55.5));
    }

    #[test]
    fn vehicle_rates_slide_with_the_window() {
        let r = VehicleRates::default();
        r.record(1, 30, 100);
        r.record(1, 20, 105);
        r.record(2, 10, 105);
        assert_eq!(r.rates(105)[&1], 5.0);
        assert_eq!(
            r.rates(111)[&1],
            2.0,
            "the first second has left the window"
        );
        assert!(
            !r.rates(120).contains_key(&1),
            "a vehicle silent for a window is dropped"
        );
    }
}
