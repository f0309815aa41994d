//! The writer task: batches, one transaction per batch, broadcast and ack after commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use entity::{raw_log, rejected_message, sensor_log, vehicle, vehicle_log};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    QuerySelect, QueryTrait, RuntimeErr, Statement, Value,
};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::rollup::{Pending, RollupSync};
use super::tables::{for_table, MessageTable};
use crate::commands::{self, AckEffect};
use crate::domain::{
    fnv1a, raw_json, CommandAck, Decoded, MessageType, RejectReason, Rejection, SensorRef,
    StoredMessage, Telemetry, VehicleKey, FIRST_CODE_VEHICLE_ID, MAX_TOPIC_VEHICLE_ID,
};
use crate::metrics::Metrics;

/// A message from the broker on its way to the database, with the receipt `R` the store hands
/// back once it is committed. The store never looks inside a receipt: what it means to the
/// broker (a packet id on a connection) is the MQTT task's business.
pub struct Incoming<R> {
    pub topic: String,
    pub payload: Bytes,
    /// The broker may have sent it before (DUP flag, or its packet id was not acknowledged on a
    /// connection that dropped): checked against what is stored before it is stored.
    pub redelivery: bool,
    pub received_at: DateTime<Utc>,
    /// Telemetry or a rejection; `None` for the gateway's own downlink topics, which are only
    /// acknowledged (in order with the rest).
    pub outcome: Option<Result<Decoded, Rejection>>,
    pub receipt: R,
}

/// Whether the store is behind: its last batch was full (`BATCH_MAX_MESSAGES`), so more
/// messages were already waiting, or one was within the last second. The writer
/// sets it before each commit; replays read it and slow down to `WS_REPLAY_RATE_BEHIND`
/// meanwhile, so that storing keeps the CPU it needs. The hold keeps a moment's lull in a
/// surge (one batch cut by the window) from letting every replay through at full speed.
#[derive(Clone, Debug)]
pub struct Backlog(Arc<BacklogState>);

#[derive(Debug)]
struct BacklogState {
    hold: Duration,
    /// The batch being committed is full (however long its commit takes).
    full: AtomicBool,
    /// When the last full batch was taken.
    last_full: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog::with_hold(Backlog::HOLD)
    }
}

impl Backlog {
    /// How long the store counts as behind after its last full batch.
    const HOLD: Duration = Duration::from_secs(1);

    pub(crate) fn with_hold(hold: Duration) -> Self {
        Backlog(Arc::new(BacklogState {
            hold,
            full: AtomicBool::new(false),
            last_full: std::sync::Mutex::new(None),
        }))
    }

    pub fn is_behind(&self) -> bool {
        let s = &self.0;
        // unwrap: nothing panics while the lock is held.
        s.full.load(Relaxed)
            || s.last_full
                .lock()
                .unwrap()
                .is_some_and(|at| at.elapsed() < s.hold)
    }

    /// Records whether the batch about to be committed is full.
    pub(crate) fn set(&self, full: bool) {
        self.0.full.store(full, Relaxed);
        if full {
            // unwrap: nothing panics while the lock is held.
            *self.0.last_full.lock().unwrap() = Some(std::time::Instant::now());
        }
    }
}

/// Where the MQTT task sends messages. Bounded: when the database falls behind, the MQTT task
/// holds what the broker still sends in a backlog of its own and keeps polling (see
/// [`crate::mqtt`]); the broker holds the rest.
pub struct StoreHandle<R> {
    tx: mpsc::Sender<Incoming<R>>,
}

impl<R> Clone for StoreHandle<R> {
    fn clone(&self) -> Self {
        StoreHandle {
            tx: self.tx.clone(),
        }
    }
}

impl<R> StoreHandle<R> {
    /// Queues `msg` if there is room.
    #[allow(clippy::result_large_err)] // the message comes back to its owner, not boxed
    pub fn try_send(&self, msg: Incoming<R>) -> Result<(), mpsc::error::TrySendError<Incoming<R>>> {
        self.tx.try_send(msg)
    }

    /// Waits until the queue has room, or the writer has stopped.
    pub async fn ready(&self) {
        let _ = self.tx.reserve().await;
    }
}

/// Where the writer hands back the receipts of each committed batch, in commit order. Its
/// length is bounded by what the MQTT task handed over and has not had back: at most the
/// broker's in-flight limit of unacknowledged messages, since nothing is acknowledged before
/// its receipt returns.
pub type Receipts<R> = mpsc::UnboundedSender<Vec<R>>;

#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub batch_max: usize,
    pub batch_window: Duration,
    /// How many seqs back a redelivered message is looked for (see [`dedup_key`]).
    pub dedup_window: i64,
    /// How long a shutdown keeps retrying a failing commit before leaving the rest to the
    /// broker (unacknowledged messages are redelivered).
    pub shutdown_timeout: Duration,
    /// How many messages may wait for the writer (the MQTT task holds the rest).
    pub queue: usize,
    /// In a shared group, this instance's id: each commit is announced to the other instances
    /// (PostgreSQL NOTIFY on [`crate::cluster::CHANNEL`], in the commit's transaction).
    pub announce: Option<String>,
    /// Set while the batches are full (see [`Backlog`]).
    pub backlog: Backlog,
}

pub struct Writer<R> {
    db: DatabaseConnection,
    rx: mpsc::Receiver<Incoming<R>>,
    /// Where committed batches go, in seq order: the hub, or in a shared group the sequencer.
    feed: mpsc::Sender<Vec<StoredMessage>>,
    receipts: Receipts<R>,
    metrics: Arc<Metrics>,
    config: WriterConfig,
    shutdown: CancellationToken,
    /// The last seq committed (the dedup window reaches back from it).
    last_seq: i64,
    /// Whether the last commit succeeded (an outage is logged once, and its end once).
    healthy: bool,
    /// Once shutdown has begun: when the whole drain stops retrying failed commits.
    give_up_at: Option<Instant>,
    /// Figures of committed messages not yet written to `rollups` (see [`super::rollup`]).
    rollups: Pending,
    /// When the pending figures must be written at the latest.
    rollups_due: Instant,
    /// Readers asking for the pending figures to be written now.
    rollup_sync: mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
}

/// How long committed messages' figures may wait in memory before they are written to
/// `rollups`, while the writer is busy (when its queue is empty they go at once).
const ROLLUP_EVERY: Duration = Duration::from_secs(1);

/// Pending rollup rows that force a write before [`ROLLUP_EVERY`].
const ROLLUP_MAX_PENDING: usize = 20_000;

/// Rows per INSERT statement, under SQLite's and PostgreSQL's bind-parameter limits.
const ROWS_PER_STATEMENT: usize = 1000;

impl<R: Send + 'static> Writer<R> {
    /// Creates the writer and the handle that feeds it; `last_seq` is the last seq already
    /// stored.
    pub fn new(
        db: DatabaseConnection,
        feed: mpsc::Sender<Vec<StoredMessage>>,
        receipts: Receipts<R>,
        metrics: Arc<Metrics>,
        config: WriterConfig,
        last_seq: i64,
        shutdown: CancellationToken,
    ) -> (Writer<R>, StoreHandle<R>, RollupSync) {
        let (tx, rx) = mpsc::channel(config.queue);
        let (sync, rollup_sync) = RollupSync::new();
        let writer = Writer {
            db,
            rx,
            feed,
            receipts,
            metrics,
            config,
            shutdown,
            last_seq,
            healthy: true,
            give_up_at: None,
            rollups: Pending::new(),
            rollups_due: Instant::now(),
            rollup_sync,
        };
        (writer, StoreHandle { tx }, sync)
    }

    /// Runs until shutdown, then commits what was already received and returns.
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.config.batch_max);
        loop {
            let due = self.rollups_due;
            let pending = !self.rollups.is_empty();
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                Some(done) = self.rollup_sync.recv() => {
                    self.flush_rollups().await;
                    let _ = done.send(());
                    continue;
                }
                msg = self.rx.recv() => match msg {
                    Some(msg) => batch.push(msg),
                    None => break,
                },
                // No batch came to carry them: the pending figures go on their own.
                _ = sleep_until(due), if pending => {
                    self.flush_rollups().await;
                    continue;
                }
            }
            self.fill(&mut batch).await;
            self.config
                .backlog
                .set(batch.len() >= self.config.batch_max);
            self.commit(&mut batch).await;
        }
        // Drain: everything already taken from the broker is committed and acknowledged.
        self.rx.close();
        while let Some(msg) = self.rx.recv().await {
            batch.push(msg);
            if batch.len() >= self.config.batch_max {
                self.commit(&mut batch).await;
            }
        }
        self.commit(&mut batch).await;
        self.flush_rollups().await;
        // Readers waiting on the rollups: what could be written was.
        self.rollup_sync.close();
        while let Ok(done) = self.rollup_sync.try_recv() {
            let _ = done.send(());
        }
        // Returning drops the receipts' sender: the MQTT task acks the last ones and disconnects.
        log::info!("store: drained and stopped at seq {}", self.last_seq);
    }

    /// Adds what is already queued, then waits up to the batch window for more.
    async fn fill(&mut self, batch: &mut Vec<Incoming<R>>) {
        let max = self.config.batch_max;
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        if self.config.batch_window.is_zero() || batch.len() >= max {
            return;
        }
        let deadline = Instant::now() + self.config.batch_window;
        while batch.len() < max {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(msg) => batch.push(msg),
                    None => return,
                },
                _ = sleep_until(deadline) => return,
            }
        }
    }

    /// Commits `batch` (retrying while the database is away), then broadcasts and acks it.
    async fn commit(&mut self, batch: &mut Vec<Incoming<R>>) {
        if batch.is_empty() {
            return;
        }
        let mut backoff = Duration::from_millis(50);
        // After a failed attempt the outcome is unknown (the commit may have landed before the
        // connection broke): from then on every message is checked against what is stored.
        let mut suspect_all = false;
        let mut failures = 0;
        let last_seq = self.last_seq;
        let window = self.config.dedup_window;
        let announce = self.config.announce.as_deref();
        let started = std::time::Instant::now();
        // Rollups are written with this batch in a shared group (other instances read them
        // back and write their own) or when they have waited long enough; otherwise the
        // batch's figures join the pending ones.
        let flush = announce.is_some()
            || Instant::now() >= self.rollups_due
            || self.rollups.len() >= ROLLUP_MAX_PENDING;
        let committed = loop {
            let busy;
            let rollups = flush.then_some(&self.rollups);
            match write_batch(
                &self.db,
                batch,
                suspect_all,
                last_seq - window,
                announce,
                rollups,
            )
            .await
            {
                Ok(Written {
                    messages: committed,
                    dropped,
                    unknown_acks,
                    rollups,
                }) => {
                    self.rolled_up(rollups);
                    for _ in 0..unknown_acks {
                        self.metrics.reject(RejectReason::UnknownRequest);
                    }
                    if dropped > 0 {
                        self.metrics.duplicates_dropped.inc_by(dropped as u64);
                        log::info!("store: {dropped} redelivered messages were already stored; acknowledged, not stored again");
                    }
                    break committed;
                }
                Err(e) => {
                    let full = is_out_of_space(&e);
                    // Out of space is an outage like a lock: waiting (for a purge, a bigger
                    // disk) helps, and isolating would blame good messages.
                    busy = is_busy(&e) || full;
                    self.metrics.commit_failures.inc();
                    self.metrics.database_ok.set(false);
                    self.metrics.database_full.set(full);
                    self.metrics.set_database_error(Some(e.to_string()));
                    if full && self.healthy {
                        log::error!("store: the database is out of space: nothing is acknowledged or broadcast until it has room again; the broker keeps the rest");
                    }
                    if std::mem::replace(&mut self.healthy, false) {
                        log::error!(
                            "store: commit of {} messages failed, retrying: {e}",
                            batch.len()
                        );
                    }
                }
            }
            if self.shutdown.is_cancelled() {
                // One deadline for the whole drain, not one per batch.
                let timeout = self.config.shutdown_timeout;
                let deadline = *self
                    .give_up_at
                    .get_or_insert_with(|| Instant::now() + timeout);
                if Instant::now() >= deadline {
                    log::error!(
                        "store: giving up on {} uncommitted messages at shutdown; they stay unacknowledged and the broker redelivers them",
                        batch.len()
                    );
                    self.metrics.ingest_done(batch.len());
                    batch.clear();
                    return;
                }
            }
            suspect_all = true;
            failures += 1;
            // A database locked by another writer answers pings too: that is an outage, not a
            // refusal of this batch, and isolating would store good messages as rejected.
            if failures >= 3 && !busy && self.db.ping().await.is_ok() {
                // The database answers, yet refuses this batch: something in it cannot be stored.
                let committed = self.isolate(batch, last_seq - window).await;
                self.flush_rollups().await;
                break committed;
            }
            sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        };
        self.metrics.database_ok.set(true);
        self.metrics.database_full.set(false);
        self.metrics.set_database_error(None);
        if !std::mem::replace(&mut self.healthy, true) {
            log::info!("store: database is back, commits resumed");
        }
        self.metrics.batches_committed.inc();
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_size.observe(batch.len() as f64);
        let now = chrono::Utc::now().timestamp();
        let mut per_vehicle: BTreeMap<i64, u32> = BTreeMap::new();
        for msg in &committed {
            *per_vehicle.entry(msg.vehicle_id).or_default() += 1;
        }
        for (vehicle, n) in per_vehicle {
            self.metrics.vehicle_rates.record(vehicle, n, now);
        }
        if let Some(last) = committed.last() {
            self.last_seq = last.seq;
            self.metrics.last_seq.fetch_max(last.seq, Relaxed);
        }
        for msg in &committed {
            self.metrics.stored.add(msg.kind, 1);
        }
        if !committed.is_empty() {
            let _ = self.feed.send(committed).await;
        }
        self.metrics.ingest_done(batch.len());
        // Committed (or kept as rejected): hand back every receipt, in order. If the MQTT task
        // is gone there is no one to acknowledge to, and the broker redelivers.
        let _ = self
            .receipts
            .send(batch.drain(..).map(|m| m.receipt).collect());
    }
}

impl<R> Writer<R> {
    /// After a commit: the batch's figures if it did not write them, else it wrote the pending
    /// ones too. (An isolated message in a shared group writes its own, and nothing is ever
    /// pending there.)
    fn rolled_up(&mut self, batch: Option<Pending>) {
        match batch {
            Some(figures) => super::rollup::merge(&mut self.rollups, figures),
            None => {
                self.rollups.clear();
                self.rollups_due = Instant::now() + ROLLUP_EVERY;
            }
        }
    }

    /// Writes the pending rollups in a transaction of their own (at shutdown, after isolating
    /// a batch); on failure they stay for the next commit, and a restart recovers them.
    async fn flush_rollups(&mut self) {
        if self.rollups.is_empty() {
            return;
        }
        let through = self.last_seq;
        let result = async {
            let txn = super::begin_write(&self.db).await?;
            super::rollup::flush(&txn, &self.rollups, &Pending::new(), through).await?;
            txn.commit().await
        }
        .await;
        match result {
            Ok(()) => self.rolled_up(None),
            Err(e) => log::warn!("store: writing rollups failed, kept for later: {e}"),
        }
    }

    /// Writes `batch` one message at a time; a message the database refuses on its own is kept
    /// in `rejected_messages` as `storage_error`, so that one bad message cannot stall ingest.
    async fn isolate(&mut self, batch: &mut [Incoming<R>], dedup_floor: i64) -> Vec<StoredMessage> {
        let mut committed = Vec::new();
        for msg in batch.iter_mut() {
            let mut refusals = 0;
            loop {
                let none = Pending::new();
                let rollups = self.config.announce.is_some().then_some(&none);
                match write_batch(
                    &self.db,
                    std::slice::from_mut(msg),
                    true,
                    dedup_floor,
                    self.config.announce.as_deref(),
                    rollups,
                )
                .await
                {
                    Ok(written) => {
                        committed.extend(written.messages);
                        self.rolled_up(written.rollups);
                        break;
                    }
                    Err(e) if !is_busy(&e) && self.db.ping().await.is_ok() => {
                        refusals += 1;
                        if refusals > 1 {
                            // Not even as a rejected message (e.g. a topic the database refuses).
                            log::error!(
                                "store: cannot store {} at all, acknowledging it: {e}",
                                msg.topic
                            );
                            break;
                        }
                        log::error!(
                            "store: the database refuses {}: {e}; kept as storage_error",
                            msg.topic
                        );
                        self.metrics.reject(RejectReason::StorageError);
                        msg.outcome = Some(Err(Rejection {
                            reason: RejectReason::StorageError,
                            detail: format!("the database refused it: {e}"),
                        }));
                    }
                    // The database went away meanwhile: wait for it like any commit.
                    Err(_) => sleep(Duration::from_millis(500)).await,
                }
            }
        }
        committed
    }
}

/// The database is busy with another writer: SQLite's `SQLITE_BUSY`/`SQLITE_LOCKED` (and their
/// extended codes) after its busy timeout, PostgreSQL's `lock_not_available`,
/// `deadlock_detected` and `serialization_failure`. Wait and retry; never blame the message.
fn is_busy(e: &DbErr) -> bool {
    use sea_orm::sqlx;
    let (DbErr::Conn(RuntimeErr::SqlxError(e))
    | DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Query(RuntimeErr::SqlxError(e))) = e
    else {
        return false;
    };
    let sqlx::Error::Database(db) = &**e else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // Extended result codes keep the primary code in their low byte.
        code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
    } else {
        matches!(&*code, "55P03" | "40P01" | "40001")
    }
}

/// The database refused to write for lack of space: SQLite's `SQLITE_FULL`, or an I/O error
/// writing its files (what a full disk gives in WAL mode), and PostgreSQL's `disk_full`
/// (53100) or any other "insufficient resources" (class 53).
pub(crate) fn is_out_of_space(e: &DbErr) -> bool {
    use sea_orm::sqlx;
    let (DbErr::Conn(RuntimeErr::SqlxError(e))
    | DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Query(RuntimeErr::SqlxError(e))) = e
    else {
        return false;
    };
    match &**e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                code.parse::<i32>()
                    .is_ok_and(|c| matches!(c & 0xff, 10 | 13))
            } else {
                code.starts_with("53")
            }
        }
        sqlx::Error::Io(io) => io.raw_os_error() == Some(libc::ENOSPC),
        _ => false,
    }
}

/// The dedup key of a message: FNV-1a (64 bit) of its topic, a 0xFF separator and its payload.
/// It is stored, so it must not change between versions (std's hashers may).
pub fn dedup_key(topic: &str, payload: &[u8]) -> i64 {
    fnv1a(topic.as_bytes().iter().chain(&[0xff]).chain(payload)) as i64
}

/// Writes one batch in one transaction: telemetry, boats' answers to commands (with the state
/// changes they make), rejected messages.
///
/// Dedup rule: a message that may be a redelivery ([`Incoming::redelivery`]), or any message
/// when `suspect_all`, is not stored again if the same vehicle has a stored message with the same
/// topic and payload with a seq above `dedup_floor`, or earlier in this batch. Messages without
/// that mark are always stored: a vehicle that sends the same line twice keeps both.
async fn write_batch<R>(
    db: &DatabaseConnection,
    batch: &[Incoming<R>],
    suspect_all: bool,
    dedup_floor: i64,
    announce: Option<&str>,
    rollups: Option<&Pending>,
) -> Result<Written, DbErr> {
    let txn = super::begin_write(db).await?;

    let decoded: Vec<(&Incoming<R>, &Decoded)> = batch
        .iter()
        .filter_map(|m| match &m.outcome {
            Some(Ok(d)) => Some((m, d)),
            _ => None,
        })
        .collect();
    // Vehicles named by a code get their id here (registered on first sight).
    let code_ids = vehicle_ids_of_codes(&txn, &decoded).await?;
    let accepted = decoded
        .into_iter()
        .map(|(m, d)| {
            let vehicle_id = match &d.vehicle {
                VehicleKey::Id(id) => *id,
                VehicleKey::Code(code) => *code_ids.get(code.as_str()).ok_or_else(|| {
                    DbErr::Custom(format!("vehicle code {code} was not registered"))
                })?,
            };
            let key = dedup_key(&m.topic, &m.payload);
            Ok((m, d, key, vehicle_id))
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    // Boats' answers to commands change their commands' rows (crate::commands); a redelivered
    // answer is recognised there (its command already has one), not by the dedup key.
    let (acks, accepted): (Vec<_>, Vec<_>) = accepted
        .into_iter()
        .partition(|(_, d, ..)| matches!(d.body, Telemetry::Ack(_)));
    let acks: Vec<(&Incoming<R>, i64, &CommandAck)> = acks
        .into_iter()
        .filter_map(|(m, d, _, vehicle_id)| match &d.body {
            Telemetry::Ack(ack) => Some((m, vehicle_id, ack)),
            _ => None,
        })
        .collect();
    let effects = if acks.is_empty() {
        Vec::new()
    } else {
        let input: Vec<_> = acks
            .iter()
            .map(|(m, vehicle_id, ack)| (*vehicle_id, *ack, m.received_at))
            .collect();
        commands::apply_acks(&txn, &input).await?
    };
    let resolved = effects
        .iter()
        .filter(|e| matches!(e, AckEffect::Resolved(_)))
        .count();
    let suspects: Vec<(i64, i64, MessageType)> = accepted
        .iter()
        .filter(|(m, ..)| suspect_all || m.redelivery)
        .map(|(_, d, key, vehicle_id)| (*vehicle_id, *key, d.body.kind()))
        .collect();
    let mut seen = if suspects.is_empty() {
        HashSet::new()
    } else {
        stored_keys(&txn, &suspects, dedup_floor).await?
    };
    let mut dropped = 0;
    let accepted: Vec<_> = accepted
        .into_iter()
        .filter(|(m, _, key, vehicle_id)| {
            let fresh = seen.insert((*vehicle_id, *key));
            let keep = fresh || !(suspect_all || m.redelivery);
            dropped += usize::from(!keep);
            keep
        })
        .collect();
    // First and last receive time of each vehicle in this batch.
    let mut vehicles_seen: BTreeMap<i64, (DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
    for (m, _, _, vehicle_id) in &accepted {
        let (first, last) = vehicles_seen
            .entry(*vehicle_id)
            .or_insert((m.received_at, m.received_at));
        *first = (*first).min(m.received_at);
        *last = (*last).max(m.received_at);
    }
    if !vehicles_seen.is_empty() {
        // One row per vehicle: PostgreSQL refuses to upsert the same row twice in one statement.
        vehicle::Entity::insert_many(vehicles_seen.iter().map(|(id, (first, last))| {
            vehicle::ActiveModel {
                id: Set(*id),
                code: NotSet,
                first_seen_at: Set(*first),
                last_seen_at: Set(*last),
            }
        }))
        .on_conflict(
            OnConflict::column(vehicle::Column::Id)
                .update_column(vehicle::Column::LastSeenAt)
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    }

    let first_seq = reserve_seqs(&txn, (accepted.len() + resolved) as i64, announce).await?;
    let mut raws = Vec::new();
    let mut sensors = Vec::new();
    let mut vehicles = Vec::new();
    let mut out = Vec::with_capacity(accepted.len());
    for (i, &(m, d, key, vehicle_id)) in accepted.iter().enumerate() {
        let seq = first_seq + i as i64;
        let timestamp = d.timestamp.unwrap_or(m.received_at);
        let (sensor, data) = match &d.body {
            Telemetry::RawLog(line) => {
                raws.push(raw_log::ActiveModel {
                    id: NotSet,
                    seq: Set(seq),
                    vehicle_id: Set(vehicle_id),
                    data: Set(line.clone()),
                    timestamp: Set(timestamp),
                    received_at: Set(m.received_at),
                    dedup_key: Set(key),
                });
                (None::<&SensorRef>, raw_json(line))
            }
            Telemetry::SensorLog { sensor, data } => {
                let data = serde_json::Value::Object(data.clone());
                let raw = raw_json(&data);
                sensors.push(sensor_log::ActiveModel {
                    id: NotSet,
                    seq: Set(seq),
                    vehicle_id: Set(vehicle_id),
                    // 0 stands for "named by sensor_code" (the column predates codes).
                    sensor_id: Set(sensor.id().unwrap_or(0)),
                    sensor_code: Set(sensor.code().map(str::to_owned)),
                    data: Set(data),
                    timestamp: Set(timestamp),
                    received_at: Set(m.received_at),
                    dedup_key: Set(key),
                });
                (Some(sensor), raw)
            }
            Telemetry::VehicleLog(state) => {
                vehicles.push(vehicle_log::ActiveModel::from_state(
                    seq,
                    vehicle_id,
                    state,
                    timestamp,
                    m.received_at,
                    key,
                ));
                (None, raw_json(state))
            }
            Telemetry::Ack(_) => unreachable!("answers were set apart above"),
        };
        out.push(StoredMessage {
            seq,
            id: 0, // filled in from RETURNING below
            vehicle_id,
            vehicle_code: match &d.vehicle {
                VehicleKey::Code(code) => Some(code.clone()),
                VehicleKey::Id(_) => None,
            },
            kind: d.body.kind(),
            sensor_id: sensor.and_then(SensorRef::id),
            sensor_code: sensor.and_then(|s| s.code().map(str::to_owned)),
            data,
            timestamp,
            received_at: m.received_at,
        });
    }

    let mut ids = BTreeMap::new();
    insert_rows::<raw_log::Entity>(&txn, raws, &mut ids).await?;
    insert_rows::<sensor_log::Entity>(&txn, sensors, &mut ids).await?;
    insert_rows::<vehicle_log::Entity>(&txn, vehicles, &mut ids).await?;
    for msg in &mut out {
        msg.id = ids
            .get(&msg.seq)
            .copied()
            .ok_or_else(|| DbErr::Custom(format!("no row id returned for seq {}", msg.seq)))?;
    }
    let figures = super::rollup::summarize(&out);
    let seqs = (accepted.len() + resolved) as i64;
    let rollups = match rollups {
        // With seqs reserved this transaction holds the cursor's lock: writers take turns.
        Some(pending) if seqs > 0 => {
            super::rollup::flush(&txn, pending, &figures, first_seq + seqs - 1).await?;
            None
        }
        _ => Some(figures),
    };
    let events = commands::store_acks(
        &txn,
        &effects,
        first_seq + accepted.len() as i64,
        Utc::now(),
    )
    .await?;
    out.extend(events);
    // An answer to no command of that vehicle is kept like any message the gateway refuses.
    let unknown_acks: Vec<(&Incoming<R>, Rejection)> = acks
        .iter()
        .zip(&effects)
        .filter_map(|((m, ..), effect)| match effect {
            AckEffect::Unknown(why) => Some((
                *m,
                Rejection {
                    reason: RejectReason::UnknownRequest,
                    detail: why.clone(),
                },
            )),
            _ => None,
        })
        .collect();

    let rejected: Vec<_> = batch
        .iter()
        .filter_map(|m| match &m.outcome {
            Some(Err(r)) => Some((m, r)),
            _ => None,
        })
        .chain(unknown_acks.iter().map(|(m, r)| (*m, r)))
        .map(|(m, r)| rejected_message::ActiveModel {
            id: NotSet,
            topic: Set(m.topic.clone()),
            payload: Set(m.payload.to_vec()),
            reason: Set(r.reason.as_str().to_owned()),
            detail: Set(r.detail.clone()),
            received_at: Set(m.received_at),
        })
        .collect();
    for chunk in chunks(rejected) {
        rejected_message::Entity::insert_many(chunk)
            .exec_without_returning(&txn)
            .await?;
    }

    txn.commit().await?;
    Ok(Written {
        messages: out,
        dropped,
        unknown_acks: unknown_acks.len(),
        rollups,
    })
}

/// What a committed batch wrote.
struct Written {
    /// Its telemetry and command state changes, in seq order.
    messages: Vec<StoredMessage>,
    /// Redeliveries found already stored.
    dropped: usize,
    /// Answers to no known command, kept as rejected messages.
    unknown_acks: usize,
    /// Its messages' rollup figures when it did not write them (they are pending).
    rollups: Option<Pending>,
}

/// The ids of the vehicles named by a code in `accepted`; a code seen for the first time is
/// registered with the next id above [`MAX_TOPIC_VEHICLE_ID`] (ids from topics stay at or below
/// it, so the two never meet).
///
/// Two writers registering at once (several instances) may pick the same id: the second's
/// insert fails, its transaction is retried like any failed commit, and the retry finds the
/// code or the next free id.
async fn vehicle_ids_of_codes<C: ConnectionTrait, R>(
    txn: &C,
    decoded: &[(&Incoming<R>, &Decoded)],
) -> Result<HashMap<String, i64>, DbErr> {
    let mut first_seen: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for (m, d) in decoded {
        if let VehicleKey::Code(code) = &d.vehicle {
            let at = first_seen.entry(code.as_str()).or_insert(m.received_at);
            *at = (*at).min(m.received_at);
        }
    }
    if first_seen.is_empty() {
        return Ok(HashMap::new());
    }
    let mut ids: HashMap<String, i64> = vehicle::Entity::find()
        .select_only()
        .columns([vehicle::Column::Code, vehicle::Column::Id])
        .filter(vehicle::Column::Code.is_in(first_seen.keys().copied()))
        .into_tuple::<(Option<String>, i64)>()
        .all(txn)
        .await?
        .into_iter()
        .filter_map(|(code, id)| code.map(|c| (c, id)))
        .collect();
    let new: Vec<(&str, DateTime<Utc>)> = first_seen
        .into_iter()
        .filter(|(code, _)| !ids.contains_key(*code))
        .collect();
    if new.is_empty() {
        return Ok(ids);
    }
    let highest: Option<i64> = vehicle::Entity::find()
        .select_only()
        .column_as(vehicle::Column::Id.max(), "id")
        .filter(vehicle::Column::Id.gt(MAX_TOPIC_VEHICLE_ID))
        .into_tuple::<Option<i64>>()
        .one(txn)
        .await?
        .flatten();
    let first = highest.map_or(FIRST_CODE_VEHICLE_ID, |h| h + 1);
    let mut rows = Vec::new();
    for (id, (code, at)) in (first..).zip(new) {
        log::info!("store: vehicle {code} registered as vehicle {id}");
        ids.insert(code.to_owned(), id);
        rows.push(vehicle::ActiveModel {
            id: Set(id),
            code: Set(Some(code.to_owned())),
            first_seen_at: Set(at),
            last_seen_at: Set(at),
        });
    }
    vehicle::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(ids)
}

/// One table's (vehicle, dedup key) pairs with a key in `keys` and a seq above `floor`.
async fn stored<E: MessageTable>(
    txn: &impl ConnectionTrait,
    keys: &[i64],
    floor: i64,
) -> Result<Vec<(i64, i64)>, DbErr> {
    let mut found = Vec::new();
    // A batch may be all suspects: stay under the databases' bind-parameter limits.
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<(i64, i64)> = E::find()
            .select_only()
            .columns([E::VEHICLE_ID, E::DEDUP_KEY])
            .filter(E::DEDUP_KEY.is_in(chunk.iter().copied()))
            .filter(E::SEQ.gt(floor))
            .into_tuple()
            .all(txn)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// The (vehicle, dedup key) pairs among `suspects` that are already stored above `floor`.
async fn stored_keys<C: ConnectionTrait>(
    txn: &C,
    suspects: &[(i64, i64, MessageType)],
    floor: i64,
) -> Result<HashSet<(i64, i64)>, DbErr> {
    let mut found = HashSet::new();
    for kind in MessageType::TELEMETRY {
        let keys: Vec<i64> = suspects
            .iter()
            .filter(|s| s.2 == kind)
            .map(|s| s.1)
            .collect();
        if !keys.is_empty() {
            found.extend(for_table!(kind, stored(txn, &keys, floor))?);
        }
    }
    Ok(found)
}

/// Inserts one table's rows of a batch and records each row's id by its seq. PostgreSQL
/// returns the ids with the insert; SQLite is asked for them afterwards ([`insert_sqlite`]).
async fn insert_rows<E: MessageTable>(
    txn: &impl ConnectionTrait,
    rows: Vec<E::ActiveModel>,
    ids: &mut BTreeMap<i64, i64>,
) -> Result<(), DbErr> {
    for chunk in chunks(rows) {
        if txn.get_database_backend() == DbBackend::Sqlite {
            insert_sqlite::<E>(txn, chunk, ids).await?;
            continue;
        }
        let mut q = E::insert_many(chunk).into_query();
        q.returning(Query::returning().columns([E::ID, E::SEQ]));
        for row in txn.query_all(&q).await? {
            let id: i64 = row.try_get_by_index(0)?;
            let seq: i64 = row.try_get_by_index(1)?;
            ids.insert(seq, id);
        }
    }
    Ok(())
}

/// SQLite's side of [`insert_rows`] for one statement's rows. sqlx hands a `RETURNING` row at
/// a time from its worker thread to ours, and under load those 2,000 hand-offs a batch were
/// what ingest waited on; the ids are read back in one row instead. One statement's rows get
/// consecutive rowids under the write lock, in the order given (seq order): that is checked,
/// and only if it does not hold are the ids read row by row.
async fn insert_sqlite<E: MessageTable>(
    txn: &impl ConnectionTrait,
    rows: Vec<E::ActiveModel>,
    ids: &mut BTreeMap<i64, i64>,
) -> Result<(), DbErr> {
    let seqs = rows
        .iter()
        .map(|row| match row.get(E::SEQ).into_value() {
            Some(Value::BigInt(Some(seq))) => Ok(seq),
            other => Err(DbErr::Custom(format!(
                "a row to insert has no seq: {other:?}"
            ))),
        })
        .collect::<Result<Vec<i64>, DbErr>>()?;
    let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
        return Ok(());
    };
    E::insert_many(rows).exec_without_returning(txn).await?;
    // This transaction reserved these seqs: the table has no other rows between them.
    let in_range = E::SEQ.between(first, last);
    let (lo, hi, n) = E::find()
        .select_only()
        .column_as(E::ID.min(), "lo")
        .column_as(E::ID.max(), "hi")
        .column_as(E::ID.count(), "n")
        .filter(in_range.clone())
        .into_tuple::<(Option<i64>, Option<i64>, i64)>()
        .one(txn)
        .await?
        .unwrap_or_default();
    if let (Some(lo), Some(hi)) = (lo, hi) {
        if n == seqs.len() as i64 && hi - lo + 1 == n {
            ids.extend(seqs.into_iter().zip(lo..));
            return Ok(());
        }
    }
    let rows = E::find()
        .select_only()
        .columns([E::ID, E::SEQ])
        .filter(in_range)
        .into_tuple::<(i64, i64)>()
        .all(txn)
        .await?;
    ids.extend(rows.into_iter().map(|(id, seq)| (seq, id)));
    Ok(())
}

/// Reserves `n` consecutive seqs in the transaction; returns the first.
///
/// The `UPDATE` takes the cursor row's lock and holds it until the transaction ends, so any
/// number of writers (tasks or instances) commit in seq order with no gap: a second writer's
/// `UPDATE` waits until the first has committed or rolled back, then reads what it left
/// (`tests/api/cluster.rs` runs two instances on one PostgreSQL and checks every seq is taken
/// once). With `announce` (this instance's id), the same statement queues a NOTIFY of
/// `<last seq>:<instance>`, which PostgreSQL delivers to the other instances only once this
/// transaction has committed.
pub(crate) async fn reserve_seqs<C: ConnectionTrait>(
    txn: &C,
    n: i64,
    announce: Option<&str>,
) -> Result<i64, DbErr> {
    if n == 0 {
        return Ok(0);
    }
    // `n` is a count we computed, not input: inlining it keeps one statement for both backends.
    let update = format!("UPDATE seq_cursor SET value = value + {n} WHERE id = 1 RETURNING value");
    let sql = match announce {
        // The instance id is checked at start-up to be letters, digits, '.', '_' and '-' only.
        Some(instance) => format!(
            "WITH c AS ({update}) SELECT value, pg_notify('{}', value::text || ':{instance}') FROM c",
            crate::cluster::CHANNEL
        ),
        None => update,
    };
    let row = txn
        .query_one_raw(Statement::from_string(txn.get_database_backend(), sql))
        .await?
        .ok_or_else(|| DbErr::Custom("seq_cursor has no row".into()))?;
    let last: i64 = row.try_get_by_index(0)?;
    Ok(last - n + 1)
}

fn chunks<T>(mut rows: Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    while rows.len() > ROWS_PER_STATEMENT {
        let rest = rows.split_off(ROWS_PER_STATEMENT);
        out.push(std::mem::replace(&mut rows, rest));
    }
    if !rows.is_empty() {
        out.push(rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectOptions, Database};

    async fn sqlite(path: &std::path::Path, busy: Duration) -> DatabaseConnection {
        let mut opts = ConnectOptions::new(format!("sqlite://{}?mode=rwc", path.display()));
        opts.max_connections(1)
            .map_sqlx_sqlite_opts(move |o| o.busy_timeout(busy));
        Database::connect(opts).await.unwrap()
    }

    #[tokio::test]
    async fn a_locked_database_is_busy_and_a_refused_row_is_not() {
        let path = std::env::temp_dir().join(format!("seano-busy-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let holder = sqlite(&path, Duration::from_secs(5)).await;
        let sql = |s: &str| Statement::from_string(holder.get_database_backend(), s.to_owned());
        holder
            .execute_raw(sql("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
            .await
            .unwrap();
        holder
            .execute_raw(sql("INSERT INTO t VALUES (1)"))
            .await
            .unwrap();
        let lock = sea_orm::TransactionTrait::begin(&holder).await.unwrap();
        lock.execute_raw(sql("INSERT INTO t VALUES (2)"))
            .await
            .unwrap();

        let writer = sqlite(&path, Duration::ZERO).await;
        let locked = writer
            .execute_raw(sql("INSERT INTO t VALUES (3)"))
            .await
            .unwrap_err();
        assert!(is_busy(&locked), "{locked}");
        lock.rollback().await.unwrap();
        let refused = writer
            .execute_raw(sql("INSERT INTO t VALUES (1)"))
            .await
            .unwrap_err();
        assert!(
            !is_busy(&refused),
            "a constraint violation is the row's fault: {refused}"
        );
        let _ = std::fs::remove_file(&path);
    }
}
