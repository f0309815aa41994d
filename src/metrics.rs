//! Pipeline counters shared by every task: cheap atomics, read by `/api/ws/stats`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{MessageType, RejectReason};

/// One counter per message type.
#[derive(Default)]
pub struct PerType([AtomicU64; 3]);

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
        }
    }
}

/// One count per message type.
#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
pub struct TypeCounts {
    pub raw_log: u64,
    pub sensor_log: u64,
    pub vehicle_log: u64,
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
    /// Clients disconnected because their queue overflowed.
    pub slow_clients_dropped: AtomicU64,
    /// Frames `conflate=latest` clients skipped.
    pub frames_conflated: AtomicU64,
    /// Client messages dropped by the per-connection rate limit.
    pub client_messages_dropped: AtomicU64,
    pub batches_committed: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Broker redeliveries recognised as already stored (acknowledged, not stored again).
    pub duplicates_dropped: AtomicU64,
    /// Acks the MQTT client could not queue (the broker redelivers those messages).
    pub ack_failures: AtomicU64,
    pub last_seq: AtomicI64,
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
            slow_clients_dropped: AtomicU64::new(0),
            frames_conflated: AtomicU64::new(0),
            client_messages_dropped: AtomicU64::new(0),
            batches_committed: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            duplicates_dropped: AtomicU64::new(0),
            ack_failures: AtomicU64::new(0),
            last_seq: AtomicI64::new(0),
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
    pub frames_conflated: u64,
    pub client_messages_dropped: u64,
    pub batches_committed: u64,
    pub commit_failures: u64,
    pub duplicates_dropped: u64,
    pub ack_failures: u64,
    pub last_seq: i64,
}

impl Metrics {
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
            frames_conflated: self.frames_conflated.load(Relaxed),
            client_messages_dropped: self.client_messages_dropped.load(Relaxed),
            batches_committed: self.batches_committed.load(Relaxed),
            commit_failures: self.commit_failures.load(Relaxed),
            duplicates_dropped: self.duplicates_dropped.load(Relaxed),
            ack_failures: self.ack_failures.load(Relaxed),
            last_seq: self.last_seq.load(Relaxed),
        }
    }
}
