//! Pipeline figures every task reports, kept in one Prometheus registry (the `prometheus`
//! crate): `/metrics` encodes it, and `/api/ws/stats`, `/ready` and the cluster heartbeat read
//! the same counters back, so there is one set of figures. Counters touched per message or
//! frame are single atomic adds on children looked up once, at start. They carry figures only:
//! no task decides anything from what another wrote here (each keeps its own state: the MQTT
//! session in `mqtt`, the last seq and database health in the store's writer).

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::Instant;

use chrono::{DateTime, Utc};
use prometheus::{
    core::Collector, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use serde::Serialize;

use crate::domain::{MessageType, RejectReason};

/// One counter per message type: the `type` children of one family, looked up once.
pub struct PerType([IntCounter; MessageType::ALL.len()]);

impl PerType {
    pub fn add(&self, kind: MessageType, n: u64) {
        self.0[kind.index()].inc_by(n);
    }

    pub fn get(&self, kind: MessageType) -> u64 {
        self.0[kind.index()].get()
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

/// A yes/no state, exposed as a 0/1 gauge.
pub struct Flag(IntGauge);

impl Flag {
    pub fn set(&self, on: bool) {
        self.0.set(i64::from(on));
    }

    pub fn get(&self) -> bool {
        self.0.get() != 0
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
    /// Every figure below that is a Prometheus metric, plus the process's own (CPU, memory,
    /// file descriptors, on Linux); every sample carries `instance="<INSTANCE_ID>"`.
    registry: Registry,
    pub started: Instant,
    pub started_at: DateTime<Utc>,
    /// Accepted (decoded) messages handed to the store, by type.
    pub received: PerType,
    /// Committed rows, by type.
    pub stored: PerType,
    /// Messages fanned out to the hub's clients, by type (once per message, not per client).
    pub broadcast: PerType,
    rejected: [IntCounter; RejectReason::ALL.len()],
    /// Frames written to WebSocket clients (data and control).
    pub frames_sent: IntCounter,
    /// Clients closed (3001) because their socket took nothing for WS_STALL_TIMEOUT_SECS, or
    /// they fell further behind than the replay window.
    pub slow_clients_dropped: IntCounter,
    /// Times a reading client's queue overflowed in a burst and it caught up from the database
    /// instead of being disconnected.
    pub clients_caught_up: IntCounter,
    /// Messages taken from the broker and held by the MQTT task while the store's queue is full
    /// (the event loop keeps being polled, so keep-alives still flow).
    pub ingest_backlog: IntGauge,
    /// Frames `conflate=latest` clients skipped.
    pub frames_conflated: IntCounter,
    /// Frames sent in replays (`since=` and catch-ups) from the replay ring, and from the
    /// database.
    pub replayed_from_ring: IntCounter,
    pub replayed_from_database: IntCounter,
    /// Seconds replays waited for the replay budget (`WS_REPLAY_RATE`), over every client.
    pub replay_paced_seconds: prometheus::Counter,
    /// Client messages dropped by the per-connection rate limit.
    pub client_messages_dropped: IntCounter,
    pub batches_committed: IntCounter,
    pub commit_failures: IntCounter,
    /// Broker redeliveries recognised as already stored (acknowledged, not stored again).
    pub duplicates_dropped: IntCounter,
    /// Acks waiting for room in rumqttc's request queue (the MQTT task offers them again).
    pub acks_owed: IntGauge,
    /// Acks not sent because their message came on a connection that has since dropped (the
    /// broker redelivers those messages, and the store recognises them as stored).
    pub acks_stale: IntCounter,
    /// Broker connections lost since start.
    pub mqtt_connections_lost: IntCounter,
    /// Why the last attempt to reach the broker failed; cleared when a session is established.
    pub mqtt_last_error: std::sync::Mutex<Option<String>>,
    /// Raised with `fetch_max` by the store and the cluster reader; copied into its gauge at
    /// each scrape.
    pub last_seq: AtomicI64,
    last_seq_gauge: IntGauge,
    /// Messages other instances committed, read back from the database for this instance's
    /// clients (shared group only). A gauge, as it has always been exposed.
    pub cluster_read: IntGauge,
    /// Commands accepted (stored and handed to the broker).
    pub commands_accepted: IntCounter,
    /// Commands refused by the per-vehicle rate limit.
    pub commands_refused: IntCounter,
    /// Seconds per batch commit (write and commit of one transaction).
    pub commit_seconds: Histogram,
    /// Messages per committed batch.
    pub batch_size: Histogram,
    /// Seconds from receiving a message to handing its frame to the clients' queues.
    pub broadcast_lag_seconds: Histogram,
    pub vehicle_rates: VehicleRates,
    /// Messages handed to the store and not yet committed (or given up); copied into its gauge
    /// at each scrape.
    pub ingest_in_flight: AtomicI64,
    ingest_in_flight_gauge: IntGauge,
    /// Unix milliseconds of the last commit, or of when messages started waiting after an idle
    /// spell: ingest has stalled when messages wait and this is too old.
    pub ingest_progress_at: AtomicI64,
    pub mqtt_connected: Flag,
    /// The broker acknowledged our subscriptions on the current connection.
    pub mqtt_subscribed: Flag,
    pub mqtt_running: Flag,
    pub database_ok: Flag,
    /// The last commit failed because the database is out of space.
    pub database_full: Flag,
    /// Why the last commit failed; cleared by the next one that succeeds.
    database_error: std::sync::Mutex<Option<String>>,
    /// Rows retention purged, by table.
    purged: IntCounterVec,
    /// Open WebSocket connections, set from the hub's count at each scrape.
    ws_connections: IntGauge,
}

/// Registers metrics in the registry as they are made.
struct Registrar(Registry);

impl Registrar {
    fn add<M: Collector + Clone + 'static>(&self, made: prometheus::Result<M>) -> M {
        // unwrap: the names, helps and label names are constants of this file, each registered
        // once; a mistake fails every test that builds `Metrics`.
        let metric = made.expect("a valid metric");
        self.0
            .register(Box::new(metric.clone()))
            .expect("a metric registered once");
        metric
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help))
    }

    fn flag(&self, name: &str, help: &str) -> Flag {
        Flag(self.gauge(name, help))
    }

    fn histogram(&self, name: &str, help: &str, bounds: &[f64]) -> Histogram {
        self.add(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(bounds.to_vec()),
        ))
    }

    fn per_type(&self, name: &str, help: &str) -> PerType {
        let family = self.add(IntCounterVec::new(Opts::new(name, help), &["type"]));
        PerType(MessageType::ALL.map(|kind| family.with_label_values(&[kind.as_str()])))
    }
}

impl Metrics {
    /// The figures of the instance `instance` (INSTANCE_ID), all zero.
    pub fn new(instance: &str) -> Self {
        let labels = [("instance".to_string(), instance.to_string())].into();
        // unwrap: `instance` is a valid label name; label values may be anything.
        let r = Registrar(Registry::new_custom(None, Some(labels)).expect("a valid label name"));
        #[cfg(target_os = "linux")]
        r.0.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("the process metrics registered once");

        let started_at = Utc::now();
        r.add(Gauge::new(
            "seano_start_time_seconds",
            "When the gateway started, in Unix seconds.",
        ))
        .set(started_at.timestamp_millis() as f64 / 1000.0);
        r.add(IntGauge::with_opts(
            Opts::new("seano_build_info", "The gateway's version.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        ))
        .set(1);
        let rejected = r.add(IntCounterVec::new(
            Opts::new(
                "seano_messages_rejected_total",
                "MQTT messages rejected (kept in rejected_messages), by reason.",
            ),
            &["reason"],
        ));
        let replayed = r.add(IntCounterVec::new(
            Opts::new(
                "seano_ws_replayed_frames_total",
                "Frames sent in replays (since= and catch-ups), by source: ring (the last committed frames, kept in memory) or database.",
            ),
            &["source"],
        ));
        let database_ok = r.flag(
            "seano_database_up",
            "0 after a failed commit, until the next one succeeds.",
        );
        database_ok.set(true);
        let purged = r.add(IntCounterVec::new(
            Opts::new(
                "seano_rows_purged_total",
                "Rows retention purged, by table.",
            ),
            &["table"],
        ));
        for table in crate::retention::Table::ALL {
            purged.with_label_values(&[table.name()]);
        }

        Metrics {
            started: Instant::now(),
            started_at,
            received: r.per_type(
                "seano_messages_received_total",
                "Messages decoded from MQTT and handed to the store.",
            ),
            stored: r.per_type(
                "seano_messages_stored_total",
                "Messages committed to the database.",
            ),
            broadcast: r.per_type(
                "seano_messages_broadcast_total",
                "Committed messages fanned out to WebSocket clients (once per message, not per client).",
            ),
            rejected: RejectReason::ALL.map(|reason| rejected.with_label_values(&[reason.as_str()])),
            frames_sent: r.counter(
                "seano_ws_frames_sent_total",
                "Frames written to WebSocket clients (data and control).",
            ),
            slow_clients_dropped: r.counter(
                "seano_ws_slow_clients_dropped_total",
                "WebSocket clients closed (3001): their socket took nothing for WS_STALL_TIMEOUT_SECS, or they fell behind the replay window.",
            ),
            clients_caught_up: r.counter(
                "seano_ws_clients_caught_up_total",
                "Bursts after which a reading client caught up from the database instead of being disconnected.",
            ),
            ingest_backlog: r.gauge(
                "seano_mqtt_ingest_backlog",
                "Messages taken from the broker and held while the store's queue is full.",
            ),
            frames_conflated: r.counter(
                "seano_ws_frames_conflated_total",
                "Frames conflate=latest clients skipped.",
            ),
            replayed_from_ring: replayed.with_label_values(&["ring"]),
            replayed_from_database: replayed.with_label_values(&["database"]),
            replay_paced_seconds: r.add(prometheus::Counter::new(
                "seano_ws_replay_paced_seconds_total",
                "Seconds replays (since= and catch-ups) waited for the replay budget (WS_REPLAY_RATE), summed over clients.",
            )),
            client_messages_dropped: r.counter(
                "seano_ws_client_messages_dropped_total",
                "Client messages dropped by the per-connection rate limit.",
            ),
            batches_committed: r.counter(
                "seano_batches_committed_total",
                "Store transactions committed.",
            ),
            commit_failures: r.counter(
                "seano_commit_failures_total",
                "Store commits that failed (and were retried).",
            ),
            duplicates_dropped: r.counter(
                "seano_duplicates_dropped_total",
                "Broker redeliveries recognised as already stored (acknowledged, not stored again).",
            ),
            acks_owed: r.gauge(
                "seano_mqtt_acks_owed",
                "Acks of committed messages waiting for room in the MQTT client's request queue.",
            ),
            acks_stale: r.counter(
                "seano_acks_stale_total",
                "MQTT acks not sent because their connection had dropped (the broker redelivers).",
            ),
            mqtt_connections_lost: r.counter(
                "seano_mqtt_connections_lost_total",
                "Broker connections lost since start.",
            ),
            mqtt_last_error: std::sync::Mutex::new(None),
            last_seq: AtomicI64::new(0),
            last_seq_gauge: r.gauge(
                "seano_last_seq",
                "The last seq committed by this gateway.",
            ),
            cluster_read: r.gauge(
                "seano_cluster_messages_read",
                "Messages other instances committed, read back from the database for this instance's clients.",
            ),
            commands_accepted: r.counter(
                "seano_commands_accepted_total",
                "Commands accepted: stored and handed to the broker.",
            ),
            commands_refused: r.counter(
                "seano_commands_rate_limited_total",
                "Commands refused by the per-vehicle rate limit (COMMAND_RATE, COMMAND_BURST).",
            ),
            commit_seconds: r.histogram(
                "seano_commit_seconds",
                "Seconds to write and commit one batch.",
                SECONDS,
            ),
            batch_size: r.histogram(
                "seano_batch_size",
                "Messages per committed batch.",
                SIZES,
            ),
            broadcast_lag_seconds: r.histogram(
                "seano_broadcast_lag_seconds",
                "Seconds from receiving a message to queueing its frame for the clients.",
                SECONDS,
            ),
            vehicle_rates: VehicleRates::default(),
            ingest_in_flight: AtomicI64::new(0),
            ingest_in_flight_gauge: r.gauge(
                "seano_ingest_in_flight",
                "Messages handed to the store and not yet committed.",
            ),
            ingest_progress_at: AtomicI64::new(Utc::now().timestamp_millis()),
            mqtt_connected: r.flag(
                "seano_mqtt_connected",
                "1 while the MQTT session is connected.",
            ),
            mqtt_subscribed: r.flag(
                "seano_mqtt_subscribed",
                "1 when the broker acknowledged the subscriptions on the current connection.",
            ),
            mqtt_running: r.flag("seano_mqtt_running", "1 while the ingest task runs."),
            database_ok,
            database_full: r.flag(
                "seano_database_full",
                "1 while commits fail because the database is out of space (nothing is acknowledged meanwhile).",
            ),
            database_error: std::sync::Mutex::new(None),
            purged,
            ws_connections: r.gauge("seano_ws_connections", "Open WebSocket connections."),
            registry: r.0,
        }
    }

    /// Every metric in the Prometheus text exposition format (0.0.4); `connections` is the
    /// number of open WebSocket connections. The figures kept outside the registry are copied
    /// into their gauges first.
    pub fn encode(&self, connections: usize) -> prometheus::Result<String> {
        self.ws_connections.set(connections as i64);
        self.last_seq_gauge.set(self.last_seq.load(Relaxed));
        self.ingest_in_flight_gauge
            .set(self.ingest_in_flight.load(Relaxed).max(0));
        let mut families = self.registry.gather();
        // The registry appends `instance` after a metric's own labels; in name order every
        // sample reads `name{instance="..",type=".."}`, as it always has.
        for metric in families.iter_mut().flat_map(|f| f.mut_metric().iter_mut()) {
            metric.mut_label().sort_by(|a, b| a.name().cmp(b.name()));
        }
        TextEncoder::new().encode_to_string(&families)
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
    /// Rows retention purged, by table (this instance's purges since it started).
    pub purged: std::collections::BTreeMap<&'static str, u64>,
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

    /// Retention purged `n` rows of `table`.
    pub fn purged(&self, table: &str, n: u64) {
        self.purged.with_label_values(&[table]).inc_by(n);
    }

    /// Rows purged by this instance so far, for each of `tables`.
    pub fn purged_counts(
        &self,
        tables: impl IntoIterator<Item = &'static str>,
    ) -> std::collections::BTreeMap<&'static str, u64> {
        tables
            .into_iter()
            .map(|t| (t, self.purged.with_label_values(&[t]).get()))
            .collect()
    }

    pub fn set_database_error(&self, error: Option<String>) {
        // unwrap: the lock is never held across a panic.
        *self.database_error.lock().unwrap() = error;
    }

    pub fn database_error(&self) -> Option<String> {
        // unwrap: the lock is never held across a panic.
        self.database_error.lock().unwrap().clone()
    }

    pub fn reject(&self, reason: RejectReason) {
        self.rejected[reason.index()].inc();
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()].get()
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
            frames_sent: self.frames_sent.get(),
            slow_clients_dropped: self.slow_clients_dropped.get(),
            clients_caught_up: self.clients_caught_up.get(),
            ingest_backlog: self.ingest_backlog.get().max(0) as u64,
            frames_conflated: self.frames_conflated.get(),
            client_messages_dropped: self.client_messages_dropped.get(),
            batches_committed: self.batches_committed.get(),
            commit_failures: self.commit_failures.get(),
            duplicates_dropped: self.duplicates_dropped.get(),
            acks_owed: self.acks_owed.get().max(0) as u64,
            acks_stale: self.acks_stale.get(),
            last_seq: self.last_seq.load(Relaxed),
            purged: self.purged_counts(crate::retention::Table::ALL.map(|t| t.name())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
